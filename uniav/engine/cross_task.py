"""Cross-task localization: one task's test videos scored with another task's class names.

``uniav cross-task`` runs a model with the prompt classifier over the test split of each of its
tasks, once per :class:`~uniav.data.concepts.CrossTaskPair` whose scored task it trains (the
tasks sharing concepts, ``datasets.<benchmark>.tasks.<task>.concepts``), and scores it twice
over the shared concepts' classes only (ground truth of other classes left out):

* ``own``: prompted with the task's own class names ("Cat", "Dog" for SED clips);
* ``cross``: prompted with the other task's names of the same concepts ("cat meowing",
  "dog barking"); detections are labelled with the task's class of the same concept, so the
  same ground truth scores them.

Both go through :mod:`uniav.engine.vocabulary` exactly as ``uniav evaluate --classes`` does
(names embedded with the weights' text encoder and the task's prompt template; for a
class-aware task each prompt takes the regression channels of the trained class nearest to it
in the model's projected text space), so the difference between the two is the vocabulary
alone.  The output (``results/metrics/experiments/<run>.cross_task.json``)::

    {"experiment", "split", "benchmark", "protocol", "weights", "weights_config_hash",
     "config_hash",
     "pairs": {"<task>.<names_from>": {"task", "names_from", "classes": {label: prompt},
                                       "own": <task metrics>, "cross": <task metrics>}}}

where ``<task metrics>`` has the shape of a task's entry in ``uniav evaluate``'s metrics
(``thresholds``, ``mAP``, ``average_mAP``, ``per_class``, ``vocabulary``...).  A pair whose
classes have no instance in the test split (a tiny split) has ``"own": null, "cross": null,
"no_ground_truth": true``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from uniav.config import Config, config_hash, to_plain
from uniav.errors import ConfigError, InputError
from uniav.fileio import atomic_write_json, refuse_output_over_input

LOGGER = logging.getLogger(__name__)


def cross_task_settings(config: Config, experiment: str) -> dict[str, Any]:
    """Every setting ``uniav cross-task`` reads: those of ``uniav evaluate`` and the pairs (the
    pipeline reruns the job when they change)."""
    from uniav.data.concepts import cross_task_pairs
    from uniav.engine.inference import evaluation_settings

    tasks = config.experiment(experiment).tasks
    return {**evaluation_settings(config, experiment),
            "pairs": {pair.key: pair.classes for pair in cross_task_pairs(config, tasks)}}


def evaluate_cross_task(config: Config, experiment: str, *, weights: str | Path,
                        metrics_path: str | Path, config_path: str | Path | None = None,
                        threads: int | None = None, progress: bool = True,
                        text_encoder: Any = None) -> dict[str, Any]:
    """``uniav cross-task``: score the experiment's weights on the test split of each of its
    tasks with the names other tasks give the shared concepts (see module docs).

    Args:
        config: the validated configuration (the concepts of its benchmark).
        experiment: the experiment the weights were trained for.
        weights: ``model.safetensors`` written by ``uniav train``.
        metrics_path: the JSON file to write.
        config_path: the configuration file (refused as the output).
        threads: torch CPU threads.
        progress: show progress bars.
        text_encoder: the sentence encoder to use instead of the weights' recorded one (tests).

    Returns:
        The summary that was written.

    Raises:
        ConfigError: no task of the experiment shares a concept with another task.
        InputError: the weights (linear classifier, another experiment, a missing task) or a
            concept class missing from the task's annotations, naming the file and field.
    """
    from uniav.data.concepts import cross_task_pairs
    from uniav.engine.distributed import resolve_device
    from uniav.engine.inference import (check_weights_experiment, evaluate_dataset,
                                        load_model_from_weights)
    from uniav.engine.training_data import open_dataset
    from uniav.engine.vocabulary import VocabularyRequest, resolve_vocabulary

    resolved = config.experiment(experiment)
    refuse_output_over_input({"--metrics": metrics_path},
                             {"--weights": weights, "--config": config_path,
                              **{f"annotations of task {t}": resolved.specs[t].data.annotations
                                 for t in resolved.tasks}})
    pairs = cross_task_pairs(config, resolved.tasks)
    if not pairs:
        raise ConfigError(f"experiment {experiment!r}: none of its tasks "
                          f"({', '.join(resolved.tasks)}) shares a concept with another task "
                          f"(datasets.{config.benchmark}.tasks.<task>.concepts)")
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(resolved.train.device)
    model, metadata = load_model_from_weights(weights, device)
    check_weights_experiment(metadata, experiment, weights, allow_other_experiment=False)
    summary: dict[str, Any] = {"experiment": experiment, "split": "test",
                               "benchmark": config.benchmark, "protocol": config.protocol,
                               "weights": str(weights),
                               "weights_config_hash": metadata.get("config_hash"),
                               "eval": to_plain(config.eval), "pairs": {}}
    datasets: dict[str, Any] = {}
    for pair in pairs:
        task = pair.task
        if metadata.get("classes", {}).get(task) is None:
            raise InputError(f"the weights have no task {task!r}", file=weights, field="classes")
        spec = resolved.specs[task]
        if task not in datasets:
            datasets[task] = open_dataset(config, spec, "test")
        dataset = datasets[task]
        missing = [name for name in pair.classes if name not in dataset.classes]
        if missing:
            raise InputError(f"concept classes {missing} are not classes of task {task!r} "
                             f"(its classes: {', '.join(dataset.classes)})",
                             file=spec.data.annotations,
                             field=f"datasets.{config.benchmark}.tasks.{task}.concepts")
        labels = list(pair.classes)
        prompts = [pair.classes[label] for label in labels]
        present = {label for video in dataset.ground_truth() for label in video.labels}
        if not present & set(labels):
            # nothing to score: recorded (the table shows the cell as missing), not an error
            LOGGER.warning("%s %s videos, %s names: no test instance of %s; not scored",
                           experiment, task, pair.names_from, ", ".join(labels))
            summary["pairs"][pair.key] = {"task": task, "names_from": pair.names_from,
                                          "classes": dict(pair.classes), "own": None,
                                          "cross": None, "no_ground_truth": True}
            continue
        own = resolve_vocabulary(model, metadata, weights, task, VocabularyRequest(tuple(labels)),
                                 text_encoder=text_encoder)
        cross = resolve_vocabulary(model, metadata, weights, task,
                                   VocabularyRequest(tuple(prompts)), text_encoder=text_encoder)
        # the other task's prompts, labelled with this task's classes of the same concepts
        cross = dataclasses.replace(cross, classes=labels, record={
            **cross.record, "prompts": prompts, "names_from": pair.names_from,
            "scored_as": dict(zip(prompts, labels))})
        results = {}
        for name, vocabulary in (("own", own), ("cross", cross)):
            vocabulary.install(model)
            metrics, _ = evaluate_dataset(model, dataset, spec, config.eval, device,
                                          progress=progress, vocabulary=vocabulary)
            metrics.pop("class_groups", None)   # every class is a trained one here
            results[name] = metrics
        summary["pairs"][pair.key] = {"task": task, "names_from": pair.names_from,
                                      "classes": dict(pair.classes), **results}
        LOGGER.info("%s %s videos, %s names: average mAP %.4f (own names %.4f)", experiment,
                    task, pair.names_from, results["cross"]["average_mAP"],
                    results["own"]["average_mAP"])
    summary["config_hash"] = config_hash(summary["eval"])
    atomic_write_json(metrics_path, summary)
    return summary
