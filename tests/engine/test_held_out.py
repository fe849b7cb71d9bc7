"""Held-out classes (`experiments.<name>.held_out_classes`): their instances are left out of
training and validation (counted in the data report), the training vocabulary is the seen
classes, and `uniav evaluate` scores every class of the split with seen/novel groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.engine.conftest import CLASSES, tiny_config, tiny_raw
from uniav.config import config_from_dict
from uniav.engine.inference import evaluate_experiment
from uniav.engine.trainer import Trainer
from uniav.errors import ConfigError
from uniav.pipeline.jobs import JobPlan

HELD_OUT = {"sed": ["Blender"], "avel": ["playing guitar"]}


def _config(planted_root: Path, held_out=HELD_OUT):
    return tiny_config(planted_root, **{
        "experiments.open_set": {"tasks": ["sed", "avel"], "held_out_classes": held_out,
                                 "train": {"epochs": 1, "warmup_epochs": 0}},
        "prompts.output_dir": str(planted_root / "prompts")})


def _count(planted_root: Path, task: str, subset: str, label: str) -> int:
    database = json.loads((planted_root / task / "annotations.json").read_text())["database"]
    return sum(a["label"] == label for v in database.values() if v["subset"] == subset
               for a in v["annotations"])


@pytest.fixture(scope="module")
def open_set_run(planted_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("open_set")
    trainer = Trainer(_config(planted_root), "open_set", output_dir=root / "out",
                      work_dir=root / "work", prompts_dir=planted_root / "prompts",
                      progress=False)
    result = trainer.fit()
    return root, trainer, result


def test_held_out_instances_leave_training_and_validation(planted_root, open_set_run):
    _, trainer, _ = open_set_run
    for task, (held_out,) in HELD_OUT.items():
        data = trainer.data[task]
        assert data.train.classes == [c for c in CLASSES[task] if c != held_out]
        assert trainer.spec.tasks[task].num_classes == 2
        for split, subset in (("train", "training"), ("validation", "validation")):
            dataset = getattr(data, split)
            expected = _count(planted_root, task, subset, held_out)
            assert expected > 0
            assert dataset.report.to_dict()["annotations_dropped"]["held_out"] == expected
            assert all(held_out not in video.labels for video in dataset.ground_truth())
        labels = torch.cat([data.train.get(i).labels for i in range(len(data.train))])
        assert int(labels.max()) <= 1
        # the seen classes' rows of the prompt file (planted prompts: row k is e_k)
        seen_rows = [CLASSES[task].index(c) for c in data.train.classes]
        assert np.array_equal(data.prompts, np.eye(3, 6, dtype=np.float32)[seen_rows])


def test_evaluation_scores_seen_and_novel_classes(planted_root, open_set_run):
    root, _, result = open_set_run
    summary = evaluate_experiment(_config(planted_root), "open_set", weights=result.weights,
                                  predictions_dir=root / "predictions",
                                  metrics_path=root / "metrics.json", progress=False)
    assert summary["held_out_classes"] == HELD_OUT
    for task, (held_out,) in HELD_OUT.items():
        metrics = summary["tasks"][task]
        vocabulary = metrics["vocabulary"]
        assert vocabulary["source"] == "prompts" and vocabulary["classes"] == CLASSES[task]
        assert vocabulary["held_out_classes"] == [held_out]
        assert vocabulary["ground_truth_dropped"] == 0
        groups = metrics["class_groups"]
        assert groups["novel"]["classes"] == [held_out]
        assert groups["seen"]["classes"] == [c for c in CLASSES[task] if c != held_out]
        for group in groups.values():
            expected = np.mean([metrics["per_class"][c] for c in group["classes"]], axis=0)
            np.testing.assert_allclose(group["mAP"], expected)
            assert group["average_mAP"] == pytest.approx(float(np.mean(expected)))
        assert held_out in metrics["per_class"]
        assert "held_out" not in summary["data_report"][task]["test"]["annotations_dropped"]
        assert summary["data_report"][task]["train"]["annotations_dropped"]["held_out"] > 0
        predictions = json.loads((root / "predictions" / f"{task}.json").read_text())["results"]
        assert held_out in {d["label"] for found in predictions.values() for d in found}


def test_unknown_held_out_class_names_experiment_task_and_class(planted_root, tmp_path):
    config = _config(planted_root, {"sed": ["Dog", "Cat"]})
    with pytest.raises(ConfigError, match=r"experiments\.open_set\.held_out_classes\.sed: "
                                          r"held-out class 'Cat' of task 'sed' is not a class"):
        Trainer(config, "open_set", output_dir=tmp_path / "o", work_dir=tmp_path / "w",
                prompts_dir=planted_root / "prompts", progress=False)


@pytest.mark.parametrize("experiment, message", [
    ({"tasks": ["sed"], "held_out_classes": {"tal": ["Surfing"]}},
     r"experiments\.x\.held_out_classes\.tal: the experiment does not train task 'tal'"),
    ({"tasks": ["sed"], "held_out_classes": {"sed": ["Dog", "Dog"]}}, "'Dog' is listed twice"),
    ({"tasks": ["sed"], "held_out_classes": {"sed": []}}, r"held_out_classes\.sed"),
    ({"tasks": ["sed"], "model": {"classifier": "linear"}, "held_out_classes": {"sed": ["Dog"]}},
     "needs the prompt classifier"),
])
def test_held_out_config_is_validated(planted_root, experiment, message):
    raw = tiny_raw(planted_root)
    raw["experiments"]["x"] = experiment
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_job_plan_gives_held_out_evaluation_the_prompts(planted_root):
    plan = JobPlan(_config(planted_root))
    assert plan.evaluation_inputs("open_set")["prompts_sed"].endswith("prompts/sed.npy")
    assert "prompts_sed" not in plan.evaluation_inputs("uniav")
    settings = json.loads(plan.settings("evaluate", experiment="open_set"))
    assert settings["held_out_classes"] == HELD_OUT
