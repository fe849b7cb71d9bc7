"""The default held-out classes of the synthetic benchmark's open-set experiments: per task one
class whose concept another task still trains and one whose concept no task trains; the
open-set experiments of params.yaml (the `benchmarks.synthetic` overlay) use exactly that choice,
and the paper benchmark's pipeline does not get them."""

from __future__ import annotations

from uniav.config import config_from_dict, deep_merge, load_config
from uniav.fileio import load_yaml_file
from uniav.pipeline.jobs import JobPlan
from uniav.prepare.synthetic_plan import RECIPES, default_held_out, default_held_out_classes


def _concepts(task: str) -> dict[str, str]:
    return {name: concept for name, concept, _ in RECIPES[task].classes}


def test_default_choice_follows_the_rule():
    chosen = default_held_out()
    held_out = {task: set(picks.values()) for task, picks in chosen.items()}
    # concepts each task still trains once the held-out classes are gone
    trained = {task: {c for name, c in _concepts(task).items() if name not in held_out[task]}
               for task in RECIPES}
    for task, picks in chosen.items():
        assert set(picks) == {"seen_concept", "novel_concept"}
        assert picks["seen_concept"] != picks["novel_concept"]
        seen_concept = _concepts(task)[picks["seen_concept"]]
        novel_concept = _concepts(task)[picks["novel_concept"]]
        assert any(seen_concept in trained[other] for other in RECIPES if other != task), task
        assert all(novel_concept not in trained[other] for other in RECIPES), task


def test_default_choice_is_deterministic_and_in_class_order():
    assert default_held_out() == default_held_out()
    classes = default_held_out_classes()
    for task, names in classes.items():
        order = [name for name, _, _ in RECIPES[task].classes]
        assert names == sorted(names, key=order.index) and len(names) == 2


def test_open_set_experiments_use_the_default_and_stay_off_the_paper_benchmark(repo_root):
    raw = load_yaml_file(repo_root / "params.yaml")
    experiments = raw["benchmarks"]["synthetic"]["experiments"]
    open_set = {name: e for name, e in experiments.items() if name.startswith("open_set_")}
    assert set(open_set) == {"open_set_uniav", "open_set_naive_multi", "open_set_single_tal",
                             "open_set_single_sed", "open_set_single_avel"}
    expected = default_held_out_classes()
    for name, experiment in open_set.items():
        assert experiment["held_out_classes"] == {t: expected[t] for t in experiment["tasks"]}
    config = load_config(repo_root / "params.yaml")
    assert config.experiment("open_set_naive_multi").model.task_experts is False
    assert config.experiment("open_set_single_sed").held_out_classes == {
        "sed": tuple(expected["sed"])}
    assert {row.label for row in config.tables.open_set} == {
        "Single-task", "Naive multi-task", "UniAV"}
    # the paper benchmark: the six experiments of the paper's tables, nothing else
    paper = config_from_dict(deep_merge(raw, {"benchmark": "paper"}))
    assert JobPlan(paper).experiments() == [
        "single_tal", "single_sed", "single_avel", "naive_multi", "uniav", "linear_cls"]
    assert not paper.tables.open_set and not paper.tables.cross_task
    assert not paper.tables.pretraining


def test_synthetic_concepts_are_the_generators(repo_root):
    """datasets.synthetic.tasks.<task>.concepts (the cross-task pairs) equal the concepts the
    generator renders."""
    config = load_config(repo_root / "params.yaml")
    for task in RECIPES:
        assert dict(config.datasets.synthetic.tasks[task].concepts) == _concepts(task), task
