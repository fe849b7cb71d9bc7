"""The job plan: each job's settings change exactly when a value it reads changes; paths and
inputs of both benchmarks."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO_ROOT
from uniav.config import load_config
from uniav.errors import ConfigError
from uniav.pipeline.jobs import JobPlan

JOBS = {"synthesize": {"task": "sed"}, "extract": {"task": "sed"}, "prompts": {"task": "sed"},
        "train": {"experiment": "uniav"}, "evaluate": {"experiment": "uniav"}, "tables": {},
        "figures": {}}


def _plan(*overrides: str) -> JobPlan:
    return JobPlan(load_config(REPO_ROOT / "params.yaml", list(overrides)))


def _changed(override: str) -> set[str]:
    base, other = _plan(), _plan(override)
    return {job for job, wildcards in JOBS.items()
            if base.settings(job, **wildcards) != other.settings(job, **wildcards)}


@pytest.mark.parametrize("override, jobs", [
    ("train.epochs=3", {"train", "tables"}),        # captions compare open-set/fine-tune epochs
    # evaluate: via the weights (and not through the fine-tunes of uniav: their own architecture)
    ("experiments.uniav.model={droppath: 0.2}", {"train"}),
    ("experiments.uniav.model={task_experts: false}", None),     # finetune_* start from uniav
    ("eval.max_segments=50", {"train", "evaluate"}),            # validation reads eval settings
    ("seed=5", {"train", "evaluate"}),
    ("data.duration_mismatch=warn", {"train", "evaluate"}),
    ("features.audio_encoder=logmel_fine", None),               # unknown encoder: refused
    ("tasks.sed.prompt_template=A sound of {}.", {"prompts", "train", "evaluate"}),
    ("tasks.sed.nms_sigma=0.5", {"train", "evaluate"}),
    ("datasets.synthetic.seed=8", {"synthesize"}),
    ("datasets.synthetic.tasks.sed.feat_stride=8", {"extract", "train", "evaluate"}),
    ("tables.published=other.yaml", set()),                     # read for the paper benchmark only
    ("tracking.experiment_name=other", set()),                  # tracking is a side effect
])
def test_settings_change_exactly_for_the_jobs_that_read_them(override, jobs):
    if jobs is None:
        with pytest.raises(ConfigError):
            _plan(override)
        return
    assert _changed(override) == jobs


def test_protocol_reruns_training_evaluation_and_tables():
    changed = _changed("protocol=released")
    assert {"train", "evaluate", "tables"} <= changed
    assert "synthesize" not in changed and "extract" not in changed


def test_settings_are_canonical_json():
    text = _plan().settings("train", experiment="uniav")
    assert json.loads(text)["experiment"]["name"] == "uniav"
    assert text == _plan().settings("train", experiment="uniav")
    with pytest.raises(KeyError, match="no job"):
        _plan().settings("deploy")


#: The shipped experiments' training checkpoint directories (keyed by the hash of the training
#: settings), the same hash without the speed settings ``train.compile`` / ``train.prefetch``
#: (added after the others: the value computed on main before experiments.<name>.init_from /
#: held_out_classes, seeds and those two keys existed) and the start of the SHA-256 of their
#: evaluation settings.  New keys must leave every existing experiment's settings - so its
#: config hash and its Snakemake rerun triggers - as they were; the speed settings are the one
#: deliberate change (they are training settings, like ``train.device``).
SHIPPED = {
    "single_tal": ("ec389e8bd6bd", "f7388280b901", "bc15a3b517aa8176"),
    "single_sed": ("c214b42f996a", "a9899404888a", "39fa9cbf4b9e7cb6"),
    "single_avel": ("b6f59ff05824", "a2f253ad2e1c", "564bf7ff34716d4a"),
    "naive_multi": ("ca6051960c43", "9b6d7fee1d25", "04da02700998ad05"),
    "uniav": ("1b82af3a6822", "5fb77d7fda00", "04da02700998ad05"),
    "linear_cls": ("8a82f9285a3f", "db087732aa5e", "04da02700998ad05"),
}


def test_shipped_experiments_keep_their_settings_and_plain_jobs():
    import hashlib

    from uniav.pipeline.jobs import canonical

    plan = _plan()
    assert plan.experiments()[:len(SHIPPED)] == list(SHIPPED)   # then those of the synthetic
    for name, (train_hash, before_speed_settings, evaluate_hash) in SHIPPED.items():
        assert plan.checkpoint_dir(name) == f"work/checkpoints/{name}/{train_hash}", name
        settings = json.loads(plan.settings("train", experiment=name))
        assert {settings["experiment"]["train"].pop(key) for key in ("compile", "prefetch")}
        assert hashlib.sha256(canonical(settings).encode()).hexdigest()[:12] \
            == before_speed_settings, name
        evaluate = plan.settings("evaluate", experiment=name)
        assert hashlib.sha256(evaluate.encode()).hexdigest()[:16] == evaluate_hash, name
        assert plan.train_arguments(name) == ""
        assert "init_from" not in plan.experiment_inputs(name)
        assert not any(key.startswith("prompts_") for key in plan.evaluation_inputs(name))


def test_checkpoint_dir_follows_the_training_settings():
    assert _plan().checkpoint_dir("uniav") == _plan().checkpoint_dir("uniav")
    assert _plan().checkpoint_dir("uniav") != _plan("train.epochs=3").checkpoint_dir("uniav")
    assert _plan().checkpoint_dir("uniav").startswith("work/checkpoints/uniav/")


def test_synthetic_paths_become_one_task_pattern():
    plan = _plan()
    assert plan.synthetic_pattern("annotations") == "resources/synthetic/{task}/annotations.json"
    assert plan.annotations_of("tal") == "resources/synthetic/tal/annotations.json"
    assert plan.data_targets()[0] == "resources/synthetic/tal/annotations.json"
    bad = _plan("datasets.synthetic.tasks.tal.annotations=annotations.json")
    with pytest.raises(ConfigError, match=r"datasets\.synthetic\.tasks\.tal\.annotations: "
                                          r"'resources/synthetic/annotations\.json' must contain"):
        bad.synthetic_pattern("annotations")


def test_paper_inputs_are_download_targets():
    plan = _plan("benchmark=paper")
    assert plan.features_of("tal") == "resources/paper/activitynet13/av_features"
    assert plan.annotations_of("sed") == "resources/paper/desed/annotations/dcase_all.json"
    assert "resources/paper/activitynet13/av_features" in plan.manifest_outputs(directories=True)
    assert plan.download_names("resources/paper/desed/av_features") == [
        "desed_features_audio", "desed_features_visual"]
    assert plan.prompt_inputs("tal")["npy"] == "resources/paper/activitynet13/anet_prompt.npy"
    moved = _plan("benchmark=paper", "datasets.paper.root=/data/uniav")
    assert moved.features_of("tal") == "/data/uniav/activitynet13/av_features"
    assert moved.published_file() == "workflow/published/uniav_arxiv2404.03179.yaml"
    assert _plan().published_file() is None


def test_phase_targets_cover_every_experiment():
    plan = _plan()
    assert plan.model_files()[:2] == ["results/models/single_tal/model.safetensors",
                                      "results/models/single_tal/training.json"]
    # the paper's six, then the synthetic benchmark's open-set and fine-tuning experiments
    assert len(plan.metrics_files()) == len(plan.experiments()) == 6 + 5 + 3
    cross = [f"results/metrics/experiments/{name}.cross_task.json"
             for name in ("single_tal", "single_sed", "single_avel", "naive_multi", "uniav")]
    assert plan.cross_task_files() == cross
    assert set(cross) <= set(plan.phase_outputs()["evaluate"])
    assert plan.table_inputs()["cross_task"] == cross
    assert set(plan.cross_task_inputs("single_sed")) == {"annotations_sed", "features_sed"}
    assert _plan("benchmark=paper").cross_task_files() == []
    assert "results/tables/main.md" in plan.table_files()
    assert "results/tables/main.csv-metadata.json" in plan.table_sidecars()
    inputs = plan.experiment_inputs("uniav")
    assert inputs["prompts_sed"] == "results/prompts/sed.npy"
    assert set(plan.evaluation_inputs("single_tal")) == {"annotations_tal", "features_tal"}
