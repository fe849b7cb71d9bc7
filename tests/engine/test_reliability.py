"""Hostile input to the engine's commands (items 4, 7, 9 of the reliability issue; NaN weights):
exit status 2 naming the file and field, no traceback, nothing overwritten."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from tests.engine.conftest import tiny_config, tiny_raw
from uniav.cli import main
from uniav.engine.checkpoint import export_weights, load_exported_weights
from uniav.engine.predict import prediction_paths
from uniav.engine.trainer import Trainer


def _trainer(config, root: Path, experiment: str, tag: str) -> Trainer:
    prompts = Path(config.datasets.synthetic.tasks["tal"].annotations).parents[1] / "prompts"
    return Trainer(config, experiment, output_dir=root / f"out_{tag}",
                   work_dir=root / f"work_{tag}", prompts_dir=prompts, progress=False)


@pytest.fixture(scope="module")
def other_weights(planted_root, tmp_path_factory) -> tuple[Path, Path, dict]:
    """Untrained weights exported for experiment naive_multi, and a params.yaml for them."""
    root = tmp_path_factory.mktemp("reliability")
    trainer = _trainer(tiny_config(planted_root), root, "naive_multi", "naive")
    metadata = trainer.export_metadata()
    weights = root / "naive_multi.safetensors"
    export_weights(weights, trainer.step.ema.module.state_dict(), metadata)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(planted_root)))
    return weights, params, metadata


def _evaluate(params: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", "--config", str(params), "--experiment", "uniav", "--weights",
            str(weights), "--predictions-dir", str(out / "predictions"), "--metrics",
            str(out / "metrics.json"), "--no-tracking", "--no-progress", *extra]


# ---- item 7: weights of another experiment ---------------------------------------------------

def test_weights_of_another_experiment_are_refused(other_weights, tmp_path, capsys):
    weights, params, _ = other_weights
    status = main(_evaluate(params, weights, tmp_path))
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert f"file {weights}" in stderr and "field 'experiment'" in stderr
    assert "trained for experiment 'naive_multi', not 'uniav'" in stderr
    assert "--allow-other-experiment" in stderr
    assert not (tmp_path / "metrics.json").exists()


def test_allowed_other_experiment_records_the_weights_own_identity(other_weights, tmp_path,
                                                                   capsys):
    weights, params, metadata = other_weights
    assert main(_evaluate(params, weights, tmp_path, "--allow-other-experiment")) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["experiment"] == "uniav"
    assert metrics["weights_experiment"] == "naive_multi"
    assert metrics["weights_config_hash"] == metadata["config_hash"]


# ---- item 4: evaluate's outputs never replace its inputs -------------------------------------

@pytest.mark.parametrize("victim", ["weights", "annotations", "config"])
def test_evaluate_refuses_outputs_over_inputs(other_weights, planted_root, tmp_path, capsys,
                                              victim):
    weights, params, _ = other_weights
    target = {"weights": weights, "config": params,
              "annotations": planted_root / "sed" / "annotations.json"}[victim]
    before = target.read_bytes()
    args = _evaluate(params, weights, tmp_path, "--allow-other-experiment")
    args[args.index("--metrics") + 1] = str(target)
    status = main(args)
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert "field '--metrics'" in stderr and "same file" in stderr
    assert target.read_bytes() == before


def test_evaluate_refuses_predictions_over_the_weights(other_weights, tmp_path, capsys):
    weights, params, _ = other_weights
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    (predictions / "tal.json").symlink_to(weights)
    before = weights.read_bytes()
    status = main(_evaluate(params, weights, tmp_path, "--allow-other-experiment"))
    stderr = capsys.readouterr().err
    assert status == 2 and "--predictions-dir (tal.json)" in stderr and "--weights" in stderr
    assert weights.read_bytes() == before


# ---- item 4: predict names its outputs after the whole file name -----------------------------

def test_predict_output_names_keep_the_extension(tmp_path):
    assert prediction_paths(tmp_path / "x.mp4") == (tmp_path / "x.mp4.uniav.json",
                                                    tmp_path / "x.mp4.uniav.png")
    assert prediction_paths(tmp_path / "x.mkv", tmp_path / "out") == (
        tmp_path / "out" / "x.mkv.uniav.json", tmp_path / "out" / "x.mkv.uniav.png")
    assert len({*prediction_paths("x.mp4"), *prediction_paths("x.mkv")}) == 4


def test_predict_refuses_an_output_that_is_an_input(tmp_path, capsys):
    video, weights = tmp_path / "clip.mp4", tmp_path / "model.safetensors"
    video.write_bytes(b"not decoded: refused before")
    weights.write_bytes(b"precious")
    (tmp_path / "clip.mp4.uniav.json").symlink_to(weights)
    status = main(["predict", str(video), "--weights", str(weights)])
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert "the JSON output is the same file as --weights" in stderr
    assert weights.read_bytes() == b"precious"


# ---- item 9: temporaries of killed saves are removed when training starts --------------------

def test_training_start_removes_stale_temporaries(planted_root, tmp_path, caplog):
    work = tmp_path / "work_tmp"
    work.mkdir()
    stale = [work / ".iter_0000007.pt.a1b2c3d4.tmp", work / ".latest.json.zz_9y8x7.tmp",
             work / ".best.safetensors.q1w2e3r4.tmp"]
    kept = [work / "notes.tmp", work / ".unrelated.tmp", work / "iter.tmp.bak"]
    for path in stale + kept:
        path.write_bytes(b"\0" * 4096)
    with caplog.at_level(logging.INFO, logger="uniav.fileio"):
        _trainer(tiny_config(planted_root), tmp_path, "uniav", "tmp").fit(
            stop_after_iterations=1)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert (work / "latest.json").exists()  # and training went on
    for path in stale:
        assert f"removed {path} (4096 bytes)" in caplog.text


# ---- NaN weights in an exported file ----------------------------------------------------------

def test_exported_weights_with_nan_are_refused(other_weights, tmp_path, capsys):
    weights, params, _ = other_weights
    tensors, metadata = load_exported_weights(weights)
    name = sorted(tensors)[3]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    broken = tmp_path / "nan.safetensors"
    export_weights(broken, tensors, metadata)
    status = main(_evaluate(params, broken, tmp_path, "--allow-other-experiment"))
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert f"file {broken}" in stderr and f"field '{name}'" in stderr
    assert "NaN or infinite" in stderr


def test_weights_with_malformed_metadata_are_refused(other_weights, tmp_path, capsys):
    from safetensors.torch import save_file

    weights, params, _ = other_weights
    tensors, metadata = load_exported_weights(weights)
    broken = tmp_path / "broken.safetensors"
    text = {key: json.dumps(value) for key, value in metadata.items()}
    text["model_spec"] = json.dumps({"model": "wide"})
    save_file(tensors, str(broken), metadata=text)
    status = main(_evaluate(params, broken, tmp_path, "--allow-other-experiment"))
    stderr = capsys.readouterr().err
    assert status == 2 and "field 'metadata.model_spec'" in stderr and "Traceback" not in stderr
    text["model_spec"] = json.dumps(metadata["model_spec"])
    text["classes"] = '{"tal": 1, "tal": 2}'
    save_file(tensors, str(broken), metadata=text)
    status = main(_evaluate(params, broken, tmp_path, "--allow-other-experiment"))
    stderr = capsys.readouterr().err
    assert status == 2 and "duplicate key 'tal'" in stderr and "field 'metadata.classes'" in stderr
    assert torch.equal(tensors[sorted(tensors)[0]], load_exported_weights(weights)[0][
        sorted(tensors)[0]])
