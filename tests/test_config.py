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
    ("model.preset=huge", "model.preset: expected one of 'paper', 'cpu', got 'huge'"),
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


# ---- values out of range and relations: refused before any work, exit 2, no traceback -------

@pytest.mark.parametrize("override, message", [
    ("train.val_every_epochs=0", "train.val_every_epochs: must be >= 1, got 0"),
    ("train.lr.sed=-1", "train.lr.sed: must be > 0, got -1"),
    ("train.batch_size.tal=0", "train.batch_size.tal: must be >= 1, got 0"),
    ("train.device=tpu", "train.device: 'tpu' does not match the pattern ^(auto|cpu|cuda(:\\d+)?)$"),
    ("train.ema_decay=1.5", "train.ema_decay: must be < 1, got 1.5"),
    ("eval.iou_threshold=7", "eval.iou_threshold: must be <= 1, got 7"),
    ("model.embd_dim=-8", "model.embd_dim: must be >= 1, got -8"),
    ("train.epochs=-3", "train.epochs: must be >= 1, got -3"),
    ("tasks.tal.tiou_thresholds=[0.5, 1.5]", "tasks.tal.tiou_thresholds[1]: must be <= 1, got 1.5"),
    ("tasks.tal.tiou_thresholds=[]", "tasks.tal.tiou_thresholds: expected 1 item(s) at least, got 0"),
    ("seed=-1", "seed: must be >= 0, got -1"),
    ("protocol=strict", "protocol: expected one of 'auto', 'released', 'clean', got 'strict'"),
    ("data.missing_features=ignore", "data.missing_features: expected one of 'error', 'skip', got 'ignore'"),
    ("datasets.paper.manifest[0]=x", "datasets.paper.manifest[0]: unknown key (allowed: root"),
    # relations between settings
    ("model.n_head=5", "model.n_head: 5 heads do not divide embd_dim 64"),
    ("datasets.synthetic.tasks.sed.max_seq_len=60",
     "datasets.synthetic.tasks.sed.max_seq_len: 60 is not divisible by the model's largest stride 32"),
    ("train.val_every_epochs=50", "train.val_every_epochs: 50 is more than the 14 epochs"),
    ("datasets.synthetic.videos.tal.train=4", "datasets.synthetic.videos.tal.train: 4 videos leave"),
    ("datasets.synthetic.tasks.tal.subsets.validation=testing",
     "datasets.synthetic.tasks.tal.subsets.validation: the validation subset must not be the test"),
    ("train.validation_split=test", "train.validation_split: test selects on the test split; only "
                                    "protocol: released"),
    ("tasks.tal.crop_ratio=[0.9, 0.5]", "tasks.tal.crop_ratio: need low <= high"),
    ("model.arch=[2, 3, 4]", "model.regression_ranges: 6 ranges for 5 pyramid levels"),
    ("train.task_order=[tal, asr]", "train.task_order: unknown task 'asr'"),
    ("features.visual_encoder=logmel", "features.visual_encoder: 'logmel' encodes audio, not visual"),
    ("prompts.source=npy", "prompts.source: npy reads datasets.paper.prompts"),
    ("train.exported_weights=best_validation", None),  # fine under the clean protocol
])
def test_bad_values_exit_2_naming_key_value_and_rule(repo_root, capsys, override, message):
    from uniav.cli import main

    status = main(["check-config", str(repo_root / "params.yaml"), "--set", override])
    captured = capsys.readouterr()
    if message is None:
        assert status == 0, captured.err
        return
    assert status == 2, captured.out
    assert "Traceback" not in captured.err
    assert message in captured.err, captured.err


def test_released_protocol_refuses_best_validation_selection(repo_root):
    with pytest.raises(ConfigError, match="train.exported_weights: protocol: released exports"):
        load_config(repo_root / "params.yaml",
                    ["protocol=released", "train.exported_weights=best_validation"])


def test_duplicate_keys_in_params_are_refused(tmp_path, repo_root):
    text = (repo_root / "params.yaml").read_text()
    doubled = tmp_path / "params.yaml"
    doubled.write_text(text + "\ntrain:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"params.yaml: line \d+: duplicate key 'train' "
                                          r"\(first at line \d+\)"):
        load_config(doubled)


def test_overlay_errors_name_their_place_in_the_file(raw):
    raw["scales"]["tiny"]["train"]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"^scales\.tiny\.train\.epochs: must be >= 1, got 0"):
        config_from_dict(raw)
    raw = yaml.safe_load(yaml.safe_dump(raw))
    raw["scales"]["tiny"]["train"]["epochs"] = 1
    raw["protocols"]["released"]["train"]["sampler"] = "random"
    with pytest.raises(ConfigError, match=r"^protocols\.released\.train\.sampler: expected one "):
        config_from_dict(raw)


def test_schema_carries_the_ranges(repo_root):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["train"]["val_every_epochs"] = 0
    with pytest.raises(jsonschema.ValidationError, match="less than the minimum of 1"):
        jsonschema.validate(raw, schema)
    raw["train"]["val_every_epochs"] = 1
    raw["scales"]["tiny"]["train"]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, schema)


def test_schema_file_is_generated_from_the_definitions(repo_root):
    on_disk = json.loads((repo_root / "workflow" / "schemas" / "params.schema.json").read_text())
    assert on_disk == json_schema(), "run `uniav schema --output workflow/schemas/params.schema.json`"
