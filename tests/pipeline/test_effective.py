"""The effective configuration: type restoration of Snakemake --config values, content addressing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from uniav.config import config_from_dict, load_config
from uniav.errors import ConfigError
from uniav.pipeline.effective import command_line_values, with_command_line, write_effective_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def _raw() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def test_strings_become_the_expected_types_only() -> None:
    # what `snakemake --config 'train={epochs: 3, lr: {tal: 0.01}, deterministic: false}'` yields
    snakemake_values = {
        "train": {"epochs": "3", "lr": {"tal": "0.01"}, "deterministic": "false",
                  "device": "cpu"},
        "tasks": {"tal": {"tiou_thresholds": ["0.5", "0.75"], "prompt_template": "1 {}"}},
        "tracking": {"uri": "null", "experiment_name": "123"},
        "model": {"embd_dim": "16", "preset": "cpu"},
        "experiments": {"x": {"tasks": ["tal"], "train": {"epochs": "2"},
                              "model": {"task_experts": "false"}}},
        "scales": {"tiny": {"train": {"epochs": "1"}}},
        "scale": "tiny",
        "datasets": {"synthetic": {"tasks": {"tal": {"resize_length": "64",
                                                     "subsets": {"validation": "null"}}}}},
    }
    selectors, typed = command_line_values(snakemake_values)
    assert typed["train"] == {"epochs": 3, "lr": {"tal": 0.01}, "deterministic": False,
                              "device": "cpu"}
    assert typed["tasks"]["tal"] == {"tiou_thresholds": [0.5, 0.75], "prompt_template": "1 {}"}
    assert typed["tracking"] == {"uri": None, "experiment_name": "123"}
    assert typed["model"] == {"embd_dim": 16, "preset": "cpu"}
    assert typed["experiments"]["x"] == {"tasks": ["tal"], "train": {"epochs": 2},
                                         "model": {"task_experts": False}}
    assert selectors == {"scales": {"tiny": {"train": {"epochs": 1}}}, "scale": "tiny"}
    task = typed["datasets"]["synthetic"]["tasks"]["tal"]
    assert task["resize_length"] == 64 and task["subsets"]["validation"] is None
    with pytest.raises(ConfigError, match=r"^train\.epochs: expected an integer, got 'three'"):
        command_line_values({"train": {"epochs": "three"}})
    with pytest.raises(ConfigError, match=r"^train\.surprise: unknown key"):
        command_line_values({"train": {"surprise": "1"}})


def test_effective_file_is_content_addressed_and_equivalent(tmp_path: Path) -> None:
    raw = _raw()
    first, config = write_effective_config(raw, tmp_path)
    again, _ = write_effective_config(_raw(), tmp_path)
    assert first == again and first.parent == tmp_path and first.name.startswith("params-")
    raw["train"]["epochs"] = 9
    other, other_config = write_effective_config(raw, tmp_path)
    assert other != first and other_config.train.epochs == 9
    # the CLI reading the file sees what the Snakefile validated
    assert load_config(other).train.epochs == 9
    assert load_config(first) == config


def test_invalid_effective_config_is_refused_before_writing(tmp_path: Path) -> None:
    raw = _raw()
    raw["train"]["epochs"] = "many"
    with pytest.raises(ConfigError, match="train.epochs"):
        write_effective_config(raw, tmp_path)
    assert not list(tmp_path.iterdir())


def test_command_line_values_win_over_the_overlays() -> None:
    raw = _raw()
    raw["scale"] = "tiny"
    raw["benchmark"] = "paper"
    raw["train"]["epochs"] = 5  # what Snakemake merged from --config 'train={epochs: 5}'
    raw["model"]["embd_dim"] = 48
    effective = with_command_line(raw, {"train": {"epochs": "5"}, "model": {"embd_dim": "48"},
                                        "scale": "tiny", "benchmark": "paper"})
    config = config_from_dict(effective)
    assert config.train.epochs == 5 and config.model_config().embd_dim == 48
    # the rest of the overlays still applies, and uniav --set gives the same result
    assert config.model_config().head_dim == 32                    # scales.tiny
    assert config.prompts.source == "npy"                          # benchmarks.paper
    assert config.train.precision == "fp32"                        # protocols.released
    same = load_config(REPO_ROOT / "params.yaml",
                       ["scale=tiny", "benchmark=paper", "train.epochs=5", "model.embd_dim=48"])
    assert same.train == config.train and same.model_config() == config.model_config()
    # without command-line values nothing changes
    assert with_command_line(_raw(), {}) == _raw()
