"""A run of another seed (``--set seed=<s>``, as the pipeline's jobs of ``seeds:`` pass it):
``uniav evaluate`` accepts the run's weights, and tracking names the run after its seed."""

from __future__ import annotations

import argparse
import json

import yaml

from tests.engine.conftest import tiny_config, tiny_raw
from tests.engine.test_reliability import _evaluate, _trainer
from uniav.cli import main
from uniav.engine.checkpoint import export_weights
from uniav.engine.cli import _run_name


def test_weights_of_a_seed_run_are_evaluated_with_that_seed(planted_root, tmp_path):
    trainer = _trainer(tiny_config(planted_root, seed=7), tmp_path, "uniav", "seed7")
    metadata = trainer.export_metadata()
    primary = _trainer(tiny_config(planted_root), tmp_path, "uniav", "primary").export_metadata()
    assert metadata["config_hash"] != primary["config_hash"]  # the seed is part of the run
    weights = tmp_path / "uniav.seed7.safetensors"
    export_weights(weights, trainer.step.ema.module.state_dict(), metadata)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(planted_root, seeds=[2024, 7])))
    assert main(_evaluate(params, weights, tmp_path, "--set", "seed=7")) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["experiment"] == metrics["weights_experiment"] == "uniav"
    assert metrics["weights_config_hash"] == metadata["config_hash"]


def test_tracking_run_name_comes_from_the_seed(planted_root, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(planted_root, seeds=[2024, 7])))

    def name(*overrides: str) -> str:
        args = argparse.Namespace(config=str(params), overrides=list(overrides),
                                  experiment="uniav")
        from uniav.config.cli import config_from_args

        return _run_name(args, config_from_args(args))

    assert name() == "uniav"
    assert name("seed=2024") == "uniav"
    assert name("seed=7") == "uniav.seed7"
    assert name("eval.batch_size=4", "seed=7") == "uniav.seed7"
