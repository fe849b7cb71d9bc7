"""Training engine: exact resume, atomic checkpoints, config-hash refusal, learning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.engine.conftest import tiny_config
from uniav.engine.checkpoint import POINTER, load_checkpoint_file
from uniav.engine.trainer import Trainer
from uniav.errors import InputError


def _trainer(config, root, tag, experiment="uniav"):
    prompts = Path(config.datasets.synthetic.tasks["tal"].annotations).parents[1] / "prompts"
    return Trainer(config, experiment, output_dir=root / f"out_{tag}", work_dir=root / f"work_{tag}",
                   prompts_dir=prompts, progress=False)


def test_resume_mid_epoch_gives_identical_parameters(planted_root, tmp_path):
    config = tiny_config(planted_root)
    straight = _trainer(config, tmp_path, "straight")
    total = straight.iterations_per_epoch + 2          # past one epoch end (validation, gates)
    straight.fit(stop_after_iterations=total)

    interrupted = _trainer(config, tmp_path, "resumed")
    interrupted.fit(stop_after_iterations=3)            # mid-epoch "kill"
    resumed = _trainer(config, tmp_path, "resumed")
    resumed.fit(stop_after_iterations=total)

    assert resumed.iteration == straight.iteration == total
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.step.ema.module.state_dict().values(), resumed.step.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    assert straight.history == resumed.history


def test_crash_during_checkpoint_write_keeps_previous(planted_root, tmp_path, monkeypatch):
    config = tiny_config(planted_root)
    trainer = _trainer(config, tmp_path, "crash")
    trainer.fit(stop_after_iterations=2)
    work = tmp_path / "work_crash"
    pointer_before = (work / POINTER).read_text()
    name_before = json.loads(pointer_before)["checkpoint"]
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        trainer.fit(stop_after_iterations=3)
    monkeypatch.setattr(torch, "save", real_save)
    assert (work / POINTER).read_text() == pointer_before
    assert load_checkpoint_file(work / name_before)["iteration"] == 2
    assert not list(work.glob(".*.tmp")), "a temp file was left behind"
    # and the run resumes from the intact checkpoint
    again = _trainer(config, tmp_path, "crash")
    again.fit(stop_after_iterations=3)
    assert again.iteration == 3


def test_checkpoint_of_another_config_is_refused(planted_root, tmp_path):
    _trainer(tiny_config(planted_root), tmp_path, "hash").fit(stop_after_iterations=1)
    other = tiny_config(planted_root, **{"train.weight_decay": 0.05})
    with pytest.raises(InputError, match="another configuration"):
        _trainer(other, tmp_path, "hash").fit(stop_after_iterations=2)


def test_corrupt_checkpoint_is_reported_with_its_path(planted_root, tmp_path):
    config = tiny_config(planted_root)
    _trainer(config, tmp_path, "corrupt").fit(stop_after_iterations=1)
    work = tmp_path / "work_corrupt"
    name = json.loads((work / POINTER).read_text())["checkpoint"]
    data = (work / name).read_bytes()
    (work / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=name):
        _trainer(config, tmp_path, "corrupt").fit(stop_after_iterations=2)


def test_full_run_exports_best_weights_and_learns(planted_root, tmp_path):
    config = tiny_config(planted_root, **{"train.epochs": 30})
    trainer = _trainer(config, tmp_path, "full")
    result = trainer.fit()
    assert result.finished and result.weights.exists()
    history = json.loads(result.history.read_text())
    assert history["best_epoch"] is not None
    final = history["history"][-1]["val_average_mAP"]
    assert all(value > 0.2 for value in final.values()), final


def test_resumed_run_still_exports_the_best_weights(planted_root, tmp_path):
    """Snakemake deletes the outputs of a failed job; the best weights live in the work dir,
    so a run resumed after its best epoch still writes model.safetensors."""
    config = tiny_config(planted_root, **{"train.epochs": 2})
    first = _trainer(config, tmp_path, "export")
    first.fit(stop_after_iterations=first.total_iterations - 1)
    assert (tmp_path / "work_export" / "best.safetensors").exists()
    assert not (tmp_path / "out_export" / "model.safetensors").exists()
    result = _trainer(config, tmp_path, "export").fit()
    assert result.weights.exists() and result.best_epoch is not None
