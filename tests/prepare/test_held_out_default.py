"""The default held-out classes of the synthetic benchmark's open-set experiments: per task one
class whose concept another task still trains and one whose concept no task trains; the
experiments of params.open_set.yaml use exactly that choice and leave params.yaml's pipeline
as it is."""

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


def test_open_set_block_uses_the_default_and_leaves_the_pipeline_alone(repo_root):
    block = load_yaml_file(repo_root / "params.open_set.yaml")
    assert set(block) == {"experiments"}
    expected = default_held_out_classes()
    experiments = block["experiments"]
    assert set(experiments) == {"open_set_uniav", "open_set_naive_multi", "open_set_single_tal",
                                "open_set_single_sed", "open_set_single_avel"}
    for name, experiment in experiments.items():
        assert experiment["held_out_classes"] == {t: expected[t] for t in experiment["tasks"]}
    raw = load_yaml_file(repo_root / "params.yaml")
    merged = config_from_dict(deep_merge(raw, block))
    assert merged.experiment("open_set_naive_multi").model.task_experts is False
    assert merged.experiment("open_set_single_sed").held_out_classes == {
        "sed": tuple(expected["sed"])}
    # params.yaml alone: the experiments reproduce_tables trains are the six it always had
    assert JobPlan(load_config(repo_root / "params.yaml")).experiments() == [
        "single_tal", "single_sed", "single_avel", "naive_multi", "uniav", "linear_cls"]
