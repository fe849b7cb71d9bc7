"""Seeds (``seeds:``): run names, their validation, and the job plan of several seeds."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import REPO_ROOT
from tests.pipeline.test_jobs import SHIPPED
from uniav.config import ConfigError, load_config, run_name
from uniav.pipeline.jobs import JobPlan


def _plan(*overrides: str) -> JobPlan:
    return JobPlan(load_config(REPO_ROOT / "params.yaml", list(overrides)))


def test_run_names_round_trip():
    plan = _plan("seeds=[2024, 7]")
    assert run_name("uniav", 2024, 2024) == "uniav"
    assert run_name("uniav", 7, 2024) == "uniav.seed7"
    assert plan.run_name("uniav", 2024) == "uniav"
    assert plan.run_name("single_tal", 0) == "single_tal.seed0"
    assert plan.run_of("uniav") == ("uniav", 2024)
    assert plan.run_of("uniav.seed7") == ("uniav", 7)
    assert plan.runs() == [name for e in plan.experiments() for name in (e, f"{e}.seed7")]
    assert plan.experiment_runs("linear_cls") == ["linear_cls", "linear_cls.seed7"]
    assert _plan().runs() == _plan().experiments()
    assert _plan().seeds() == [2024]


@pytest.mark.parametrize("name", ["uniav.seed8", "uniav.seed2024", "nothing", "nothing.seed7",
                                  "uniav.seed07", "uniav.seed"])
def test_unknown_run_names_are_refused(name):
    with pytest.raises(ConfigError, match=rf"no run named '{name}' \(runs: single_tal, "):
        _plan("seeds=[2024, 7]").run_of(name)


def test_primary_seed_not_listed_names_every_run_by_its_seed():
    plan = _plan("seeds=[1, 2]")
    assert plan.experiment_runs("uniav") == ["uniav.seed1", "uniav.seed2"]
    with pytest.raises(ConfigError, match="no run named 'uniav'"):
        plan.run_of("uniav")
    # the protocol's overlay sets the top-level seed: its value names the primary run
    released = _plan("protocol=released", "seeds=[1234567891, 5]")
    assert released.experiment_runs("uniav") == ["uniav", "uniav.seed5"]


@pytest.mark.parametrize("value, message", [
    ("[1, 2, 1]", r"^seeds\[2\]: seed 1 is listed twice"),
    ("[]", r"^seeds: "),
    ("[-1]", r"^seeds\[0\]: "),
    ("[4294967296]", r"^seeds\[0\]: "),
    ("[1.5]", r"^seeds\[0\]: expected an integer"),
    ("7", r"^seeds: "),
])
def test_seeds_are_validated_naming_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(REPO_ROOT / "params.yaml", [f"seeds={value}"])


def test_largest_seed_is_accepted():
    assert load_config(REPO_ROOT / "params.yaml", ["seeds=[0, 4294967295]"]).seeds == [
        0, 4294967295]


def test_default_plan_is_unchanged_by_seeds_listing_the_primary_seed():
    """`seeds: [2024, 7]`: the primary run keeps the settings, hashes and paths of a plan
    without seeds - nothing that exists is rerun - and the other run differs by its seed."""
    plain, seeded = _plan(), _plan("seeds=[2024, 7]")
    for name in plain.experiments():
        for job in ("train", "evaluate"):
            assert seeded.settings(job, experiment=name) == plain.settings(job, experiment=name)
        assert seeded.checkpoint_dir(name) == plain.checkpoint_dir(name)
        assert seeded.experiment_inputs(name) == plain.experiment_inputs(name)
        assert seeded.evaluation_inputs(name) == plain.evaluation_inputs(name)
        assert seeded.run_arguments(name) == f"--experiment {name} --set seed=2024"
    # the hashes recorded in test_jobs.SHIPPED (the evaluation's computed before seeds existed)
    train_hash, _, evaluate_hash = SHIPPED["uniav"]
    assert seeded.checkpoint_dir("uniav") == f"work/checkpoints/uniav/{train_hash}"
    evaluate = seeded.settings("evaluate", experiment="uniav")
    assert hashlib.sha256(evaluate.encode()).hexdigest()[:16] == evaluate_hash
    for job in ("tables", "figures"):
        assert _plan("seeds=[2024]").settings(job) == plain.settings(job)
    assert plain.metrics_files() == [f"results/metrics/experiments/{e}.json"
                                     for e in plain.experiments()]
    assert set(plain.metrics_files()) < set(seeded.metrics_files())
    assert set(plain.model_files()) < set(seeded.model_files())
    assert set(plain.prediction_dirs()) < set(seeded.prediction_dirs())


def test_other_seed_runs_with_its_own_settings_and_paths():
    plan = _plan("seeds=[2024, 7]")
    train = json.loads(plan.settings("train", experiment="uniav.seed7"))
    assert train["seed"] == 7 and train["experiment"]["name"] == "uniav"
    assert json.loads(plan.settings("train", experiment="uniav"))["seed"] == 2024
    assert json.loads(plan.settings("evaluate", experiment="uniav.seed7"))["seed"] == 7
    assert plan.settings("train", experiment="uniav.seed7") == _plan("seed=7").settings(
        "train", experiment="uniav")
    seven, primary = plan.checkpoint_dir("uniav.seed7"), plan.checkpoint_dir("uniav")
    assert seven.startswith("work/checkpoints/uniav.seed7/")
    assert seven.rsplit("/", 1)[1] != primary.rsplit("/", 1)[1]
    assert plan.run_arguments("uniav.seed7") == "--experiment uniav --set seed=7"
    assert plan.model_path("uniav.seed7") == "results/models/uniav.seed7/model.safetensors"
    assert plan.metrics_file("uniav.seed7") == "results/metrics/experiments/uniav.seed7.json"
    assert plan.model_files()[:4] == [
        "results/models/single_tal/model.safetensors", "results/models/single_tal/training.json",
        "results/models/single_tal.seed7/model.safetensors",
        "results/models/single_tal.seed7/training.json"]
    assert len(plan.metrics_files()) == 2 * len(plan.experiments()) == 2 * 14
    assert plan.cross_task_files()[:2] == [
        "results/metrics/experiments/single_tal.cross_task.json",
        "results/metrics/experiments/single_tal.seed7.cross_task.json"]
    assert len(plan.table_inputs()["cross_task"]) == 2 * 5
    assert "results/predictions/uniav.seed7" in plan.prediction_dirs()
    assert plan.experiment_inputs("uniav.seed7") == plan.experiment_inputs("uniav")
    assert plan.train_launcher("uniav.seed7") == "uniav"
    metrics = plan.table_inputs()["metrics"]
    assert metrics[:2] == ["results/metrics/experiments/single_tal.json",
                           "results/metrics/experiments/single_tal.seed7.json"]
    assert len(metrics) == 2 * 14   # every experiment is in a table
    figures = plan.figure_inputs()
    assert "results/models/uniav.seed7/training.json" in figures["training"]
    assert "results/metrics/experiments/uniav.seed7.json" in figures["metrics"]
    assert "results/predictions/uniav" in figures["predictions"]
    assert "results/predictions/uniav.seed7" not in figures["predictions"]
    assert json.loads(plan.settings("tables"))["seeds"] == [2024, 7]
    # the phase outputs (what the DVC reconciliation checks) cover every run
    outputs = plan.phase_outputs()
    assert "results/models/uniav.seed7/model.safetensors" in outputs["train"]
    assert "results/predictions/uniav.seed7" in outputs["evaluate"]


def test_fine_tuning_run_starts_from_the_parent_run_of_its_seed():
    plan = JobPlan(load_config(REPO_ROOT / "params.yaml", [
        "seeds=[2024, 7]",
        "experiments.ft={tasks: [sed], init_from: {experiment: uniav}}"]))
    assert plan.train_arguments("ft") == "--init-from results/models/uniav/model.safetensors"
    assert plan.train_arguments("ft.seed7") == (
        "--init-from results/models/uniav.seed7/model.safetensors")
    assert plan.experiment_inputs("ft.seed7")["init_from"] == (
        "results/models/uniav.seed7/model.safetensors")
