"""`uniav import-checkpoint` on hostile input (item 10 of the reliability issue and beyond):
NaN/Inf weights or prompts, outputs over inputs - exit status 2 naming file and tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT, SHARED_REFERENCE
from uniav.cli import main

TASKS = ("tal", "avel", "sed")
SETS = ["--set", "datasets.paper.tasks.tal.max_seq_len=64",
        "--set", "datasets.paper.tasks.avel.max_seq_len=64",
        "--set", "datasets.paper.tasks.sed.max_seq_len=32"]


@pytest.fixture(scope="module")
def reference():
    return torch.load(SHARED_REFERENCE / "original_small" / "original_small.pt",
                      weights_only=True)


def _import(reference, tmp_path: Path, *, ema=None, prompts=None, output=None):
    ema = ema if ema is not None else {f"module.{n}": t
                                       for n, t in reference["state_dict"].items()}
    checkpoint = tmp_path / "epoch_006.pth.tar"
    torch.save({"epoch": 6, "state_dict_ema": ema}, checkpoint)
    prompt_args = []
    for task in TASKS:
        path = tmp_path / f"{task}_prompt.npy"
        rows = (prompts or {}).get(task, reference["prompts"][task].numpy())
        np.save(path, rows)
        prompt_args.append(f"{task}={path}")
    output = output or tmp_path / "imported.safetensors"
    status = main(["import-checkpoint", str(checkpoint), "--config", str(REPO_ROOT / "params.yaml"),
                   *SETS, "--output", str(output), "--prompts", *prompt_args])
    return status, checkpoint, output


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(reference, tmp_path, capsys, value):
    ema = {f"module.{n}": t.clone() for n, t in reference["state_dict"].items()}
    name = "module.backbone.embd_V.0.conv.weight"
    ema[name].view(-1)[5] = value
    status, checkpoint, output = _import(reference, tmp_path, ema=ema)
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert f"file {checkpoint}" in stderr and f"field 'state_dict_ema.{name}'" in stderr
    assert "1 of" in stderr and "NaN or infinite" in stderr
    assert not output.exists()


def test_non_finite_prompt_embeddings_are_refused(reference, tmp_path, capsys):
    rows = reference["prompts"]["sed"].numpy().copy()
    rows[1, 2] = np.nan
    status, _, output = _import(reference, tmp_path, prompts={"sed": rows})
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert f"file {tmp_path / 'sed_prompt.npy'}" in stderr and "field 'prompts'" in stderr
    assert not output.exists()


def test_output_over_the_checkpoint_is_refused(reference, tmp_path, capsys):
    target = tmp_path / "epoch_006.pth.tar"
    status, checkpoint, _ = _import(reference, tmp_path, output=target)
    stderr = capsys.readouterr().err
    assert status == 2 and "--output is the same file as checkpoint" in stderr
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 6  # untouched
