"""The strict configuration loader: key paths in errors, scales, presets, experiments."""

from __future__ import annotations

import json

import pytest
import yaml

from uniav.config import (MODEL_PRESETS, ConfigError, config_from_dict, json_schema,
                          load_config)


@pytest.fixture
def raw(repo_root):
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def test_repository_params_are_valid(repo_root):
    config = load_config(repo_root / "params.yaml")
    assert config.benchmark == "synthetic"
    assert config.task_names == ["tal", "sed", "avel"]
    for name in config.experiments:
        exp = config.experiment(name)
        assert set(exp.specs) == set(exp.tasks)


@pytest.mark.parametrize("override, message", [
    ("train.lr.tal=fast", "train.lr.tal: expected a number, got 'fast'"),
    ("train.epochs=2.5", "train.epochs: expected an integer"),
    ("tasks.sed.class_aware=1", "tasks.sed.class_aware: expected true or false"),
    ("model.hidden=3", "model.hidden: unknown key"),
    ("eval.nms=fancy", "eval.nms: expected one of 'soft', 'hard', 'none'"),
    ("benchmark=imagenet", "benchmark: expected one of 'synthetic', 'paper'"),
    ("scale=huge", "scale: unknown scale 'huge'"),
    ("experiments.uniav.tasks=[tal, asr]", "experiments.uniav.tasks: unknown task 'asr'"),
    ("experiments.uniav.model.width=3", "experiments.uniav.model.width: unknown key"),
    ("experiments.uniav.train.optimizer=sgd", "experiments.uniav.train.optimizer: unknown key"),
    ("model.preset=huge", "model.preset: unknown preset 'huge'"),
])
def test_errors_name_the_key_path(repo_root, override, message):
    with pytest.raises(ConfigError) as info:
        load_config(repo_root / "params.yaml", [override])
    assert message in str(info.value)


def test_missing_required_value_is_named(raw):
    del raw["train"]["epochs"]
    with pytest.raises(ConfigError, match=r"^train\.epochs: missing required value"):
        config_from_dict(raw)


def test_missing_task_entry_is_named(raw):
    del raw["train"]["batch_size"]["sed"]
    with pytest.raises(ConfigError, match=r"train\.batch_size\.sed: missing"):
        config_from_dict(raw)


def test_tiny_scale_merges_overrides(raw):
    raw["scale"] = "tiny"
    config = config_from_dict(raw)
    assert config.datasets.synthetic.videos["tal"].train == 8
    assert config.train.epochs == 2
    # keys not overridden keep their values
    assert config.train.lr == {"tal": 0.001, "sed": 0.001, "avel": 0.001}
    assert config.model_config().embd_dim == 32


def test_model_preset_then_overrides(raw):
    config = config_from_dict(raw)
    assert config.model_config().embd_dim == MODEL_PRESETS["cpu"]["embd_dim"]
    raw["model"] = {"preset": "paper", "n_head": 8}
    config = config_from_dict(raw)
    model = config.model_config()
    assert model.embd_dim == 512 and model.n_head == 8
    naive = config.experiment("naive_multi").model
    assert naive.task_experts is False and naive.n_head == 8


def test_experiment_train_overrides_deep_merge(raw):
    raw["experiments"]["uniav"]["train"] = {"lr": {"sed": 0.002}}
    exp = config_from_dict(raw).experiment("uniav")
    assert exp.train.lr == {"tal": 0.001, "sed": 0.002, "avel": 0.001}


def test_json_schema_matches_dataclasses(repo_root, raw):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    jsonschema.validate(raw, schema)
    bad = json.loads(json.dumps(raw))
    bad["train"]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_explicit_override_wins_over_the_scale(repo_root):
    config = load_config(repo_root / "params.yaml",
                         ["train.epochs=7", "scale=tiny", "datasets.synthetic.videos.tal.train=5"])
    assert config.scale == "tiny"
    assert config.train.epochs == 7                                 # tiny says 2
    assert config.datasets.synthetic.videos["tal"].train == 5      # tiny says 8
    assert config.datasets.synthetic.videos["sed"].train == 8      # from the scale
