"""Cross-task localization: `uniav cross-task` scores each task's test videos with another
task's names of the concepts they share (uniav/engine/cross_task.py, uniav/data/concepts.py).

The model is exported untrained on planted features of the real encoders' widths, with prompts
of the shipped sentence encoder (names are embedded for real); what is checked is which classes
are prompted and scored, not accuracy.  AVEL's class list here includes "Playing violin", TAL's
name of the same concept: prompting TAL videos with AVEL's name must then give exactly the
scores of TAL's own name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.engine import conftest as engine_conftest
from tests.engine.conftest import _write_task, tiny_config, tiny_raw
from uniav.cli import main
from uniav.data.concepts import cross_task_pairs
from uniav.engine.checkpoint import export_weights
from uniav.engine.cross_task import cross_task_settings, evaluate_cross_task
from uniav.engine.trainer import Trainer
from uniav.errors import ConfigError, InputError

CONCEPTS = {"tal": {"Playing violin": "violin"},
            "sed": {"Dog": "dog", "Speech": "speech"},
            "avel": {"dog barking": "dog", "Playing violin": "violin"}}


def _overrides(root: Path, concepts: dict[str, dict[str, str]] = CONCEPTS) -> dict:
    values = {"prompts.output_dir": str(root / "prompts_st")}
    values.update({f"datasets.synthetic.tasks.{task}.concepts": names
                   for task, names in concepts.items()})
    return values


@pytest.fixture(scope="module")
def cross_model(tmp_path_factory):
    """Untrained uniav and linear_cls weights, and the params.yaml with the concepts."""
    from uniav.prepare.prompts import build_all_prompts

    root = tmp_path_factory.mktemp("cross_task")
    original = engine_conftest.CLASSES["avel"]
    engine_conftest.CLASSES["avel"] = ["dog barking", "Playing violin", "car passing by"]
    try:
        for i, task in enumerate(("tal", "sed", "avel")):
            _write_task(root, task, seed=400 + i, dims=(119, 91),
                        encoders=("colour_motion", "logmel"))
    finally:
        engine_conftest.CLASSES["avel"] = original
    config = tiny_config(root, **_overrides(root))
    build_all_prompts(config)
    weights = {}
    for experiment in ("uniav", "linear_cls"):
        trainer = Trainer(config, experiment, output_dir=root / f"out_{experiment}",
                          work_dir=root / f"work_{experiment}", prompts_dir=root / "prompts_st",
                          progress=False)
        weights[experiment] = root / f"{experiment}.safetensors"
        export_weights(weights[experiment], trainer.step.ema.module.state_dict(),
                       trainer.export_metadata())
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(root, **_overrides(root))))
    return {"root": root, "config": config, "params": params, **weights}


def test_pairs_are_the_shared_concepts_in_task_order(cross_model):
    pairs = cross_task_pairs(cross_model["config"])
    assert [(p.key, p.classes) for p in pairs] == [
        ("tal.avel", {"Playing violin": "Playing violin"}),
        ("sed.avel", {"Dog": "dog barking"}),
        ("avel.tal", {"Playing violin": "Playing violin"}),
        ("avel.sed", {"dog barking": "Dog"})]
    assert [p.key for p in cross_task_pairs(cross_model["config"], ["sed"])] == ["sed.avel"]


def test_cross_task_scores_each_pair_over_its_shared_classes(cross_model, tmp_path):
    out = tmp_path / "uniav.cross_task.json"
    assert main(["cross-task", "--config", str(cross_model["params"]), "--experiment", "uniav",
                 "--weights", str(cross_model["uniav"]), "--metrics", str(out),
                 "--no-progress"]) == 0
    summary = json.loads(out.read_text())
    assert summary["experiment"] == "uniav" and summary["split"] == "test"
    assert set(summary["pairs"]) == {"tal.avel", "sed.avel", "avel.tal", "avel.sed"}
    sed = summary["pairs"]["sed.avel"]
    assert (sed["task"], sed["names_from"], sed["classes"]) == ("sed", "avel",
                                                                {"Dog": "dog barking"})
    assert sed["own"]["vocabulary"]["classes"] == ["Dog"]
    assert sed["cross"]["vocabulary"]["prompts"] == ["dog barking"]
    assert sed["cross"]["vocabulary"]["scored_as"] == {"dog barking": "Dog"}
    # only Dog is scored: the ground truth of Speech and Blender is left out, and counted
    database = json.loads((cross_model["root"] / "sed" / "annotations.json").read_text())
    others = sum(a["label"] != "Dog" for v in database["database"].values()
                 if v["subset"] == "testing" for a in v["annotations"])
    for side in ("own", "cross"):
        assert list(sed[side]["per_class"]) == ["Dog"]
        assert sed[side]["vocabulary"]["ground_truth_dropped"] == others > 0
        assert "class_groups" not in sed[side]
    # the other task's name equal to the task's own name: the very same scores
    for key in ("tal.avel", "avel.tal"):
        pair = summary["pairs"][key]
        assert pair["cross"]["mAP"] == pair["own"]["mAP"]
        assert pair["cross"]["average_mAP"] == pair["own"]["average_mAP"]


def test_linear_classifier_and_missing_concept_classes_are_refused(cross_model, tmp_path):
    with pytest.raises(InputError, match="linear") as caught:
        evaluate_cross_task(cross_model["config"], "linear_cls", weights=cross_model["linear_cls"],
                            metrics_path=tmp_path / "linear.json", progress=False)
    assert str(cross_model["linear_cls"]) in str(caught.value)
    concepts = {**CONCEPTS, "sed": {"Dog": "dog", "Cat": "cat"},
                "avel": {"dog barking": "dog", "cat meowing": "cat"}}
    config = tiny_config(cross_model["root"], **_overrides(cross_model["root"], concepts))
    with pytest.raises(InputError, match=r"'Cat'.*not classes of task 'sed'") as caught:
        evaluate_cross_task(config, "uniav", weights=cross_model["uniav"],
                            metrics_path=tmp_path / "missing.json", progress=False)
    assert "datasets.synthetic.tasks.sed.concepts" in str(caught.value)
    assert not (tmp_path / "missing.json").exists()


def test_output_over_input_and_no_shared_concept_are_refused(cross_model, tmp_path):
    with pytest.raises(InputError, match="--metrics"):
        evaluate_cross_task(cross_model["config"], "uniav", weights=cross_model["uniav"],
                            metrics_path=cross_model["uniav"], progress=False)
    alone = _overrides(cross_model["root"], {"tal": {}, "sed": {"Dog": "dog"}, "avel": {}})
    with pytest.raises(ConfigError, match="tables.cross_task: no two tasks share a concept"):
        tiny_config(cross_model["root"], **alone)
    lonely = tiny_config(cross_model["root"], **alone,
                         **{"benchmarks.synthetic.tables.cross_task": []})
    with pytest.raises(ConfigError, match="shares a concept"):
        evaluate_cross_task(lonely, "uniav", weights=cross_model["uniav"],
                            metrics_path=tmp_path / "none.json", progress=False)


def test_settings_name_the_pairs(cross_model):
    """The pipeline reruns the job when a pair changes."""
    settings = cross_task_settings(cross_model["config"], "uniav")
    assert settings["pairs"]["sed.avel"] == {"Dog": "dog barking"}
    changed = tiny_config(cross_model["root"], **_overrides(
        cross_model["root"], {**CONCEPTS, "sed": {"Dog": "dog", "Speech": "violin"}}))
    assert cross_task_settings(changed, "uniav") != settings


def test_one_class_per_concept_and_task(cross_model):
    with pytest.raises(ConfigError, match="both name the concept 'dog'"):
        tiny_config(cross_model["root"], **_overrides(
            cross_model["root"], {**CONCEPTS, "sed": {"Dog": "dog", "Speech": "dog"}}))


def test_a_pair_without_test_instances_is_recorded_unscored(cross_model, tmp_path):
    """SED's test split without Speech: the pair SED videos / AVEL names (Speech only) is
    recorded with null scores; the reverse pair is scored."""
    root = cross_model["root"]
    database = json.loads((root / "sed" / "annotations.json").read_text())
    for video in database["database"].values():
        if video["subset"] == "testing":
            video["annotations"] = [a for a in video["annotations"] if a["label"] != "Speech"]
    annotations = tmp_path / "sed_without_speech.json"
    annotations.write_text(json.dumps(database))
    config = tiny_config(root, **_overrides(root, {"tal": {}, "sed": {"Speech": "speech"},
                                                   "avel": {"car passing by": "speech"}}),
                         **{"datasets.synthetic.tasks.sed.annotations": str(annotations)})
    summary = evaluate_cross_task(config, "uniav", weights=cross_model["uniav"],
                                  metrics_path=tmp_path / "out.json", progress=False)
    assert summary["pairs"]["sed.avel"] == {"task": "sed", "names_from": "avel",
                                            "classes": {"Speech": "car passing by"},
                                            "own": None, "cross": None, "no_ground_truth": True}
    assert summary["pairs"]["avel.sed"]["cross"]["vocabulary"]["prompts"] == ["Speech"]
    assert json.loads((tmp_path / "out.json").read_text()) == summary
