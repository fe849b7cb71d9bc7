"""Inference over a dataset split, post-processing, and scoring (docs/architecture.md).

The model returns raw per-level outputs; :func:`detections_of_batch` decodes them with
:mod:`uniav.postprocess` (top-k, decoding, per-task soft-NMS, grid -> seconds) and
:func:`evaluate_dataset` scores them with :mod:`uniav.evaluation` against the split's ground
truth.  :func:`evaluate_experiment` is ``uniav evaluate``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch

from uniav.config import Config, EvalConfig, TaskSpec, config_hash, to_plain
from uniav.errors import ConfigError, InputError
from uniav.fileio import atomic_write_json, refuse_output_over_input
from uniav.tracking import NullTracker, Tracker

LOGGER = logging.getLogger(__name__)

#: One detection in the ActivityNet results format.
Detection = dict[str, Any]


def detections_of_batch(output: Any, videos: list[Any], task_settings: Any, eval_cfg: EvalConfig,
                        classes: list[str], class_aware: bool) -> list[list[Detection]]:
    """Decode one batch of raw outputs into per-video detections in seconds.

    On CUDA the whole batch is decoded on the device at once
    (:func:`~uniav.postprocess.postprocess_batch`: one copy to the host instead of a host
    synchronisation per video and level); on the CPU video by video
    (:func:`~uniav.postprocess.postprocess_video`), as before: bitwise the previous results on
    the CPU (a batch's sigmoid can differ in the last bit there).  NMS runs on the CPU either
    way.

    Args:
        output: :class:`~uniav.model.ModelOutput` of the batch.
        videos: per video its :class:`~uniav.data.batching.VideoMeta` (grid and duration).
        task_settings: the task's :class:`~uniav.config.TaskConfig` (NMS sigma).
        eval_cfg: post-processing settings.
        classes: class names of the task.
        class_aware: whether offsets are per class.

    Returns:
        Per video, detections ``{"segment": [t0, t1], "label": name, "score": s}`` sorted by
        descending score.
    """
    from uniav.postprocess import postprocess_batch, postprocess_video

    settings = dict(
        pre_nms_threshold=eval_cfg.pre_nms_threshold, pre_nms_topk=eval_cfg.pre_nms_topk,
        duration_threshold=eval_cfg.duration_threshold, nms_method=eval_cfg.nms,
        iou_threshold=eval_cfg.iou_threshold, sigma=task_settings.nms_sigma,
        min_score=eval_cfg.min_score, max_segments=eval_cfg.max_segments,
        multiclass=eval_cfg.multiclass_nms, voting_threshold=eval_cfg.voting_threshold)
    if output.cls_logits[0].device.type == "cuda":
        decoded = postprocess_batch(output.cls_logits, output.offsets, output.masks,
                                    output.level_strides, grids=[v.grid for v in videos],
                                    durations=[v.duration for v in videos], **settings)
    else:
        decoded = [postprocess_video(
            [level[index].float() for level in output.cls_logits],
            [level[index].float() for level in output.offsets],
            [level[index] for level in output.masks],
            output.level_strides, grid=video.grid, duration=video.duration, **settings)
            for index, video in enumerate(videos)]
    results = []
    for segments, scores, labels in decoded:
        detections = []
        for (start, end), score, label in zip(segments.tolist(), scores.tolist(), labels.tolist()):
            start, end = round(start, 4), round(end, 4)
            if end > start:  # rounding can close a segment shorter than 1e-4 s
                detections.append({"segment": [start, end], "label": classes[int(label)],
                                   "score": round(score, 6)})
        results.append(detections)
    return results


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: Any, spec: TaskSpec, eval_cfg: EvalConfig,
                    device: torch.device, *, autocast_dtype: torch.dtype | None = None,
                    progress: bool = False, vocabulary: Any = None
                    ) -> dict[str, list[Detection]]:
    """Detections for every video of a dataset split (ActivityNet results mapping).

    With a :class:`~uniav.engine.vocabulary.TaskVocabulary` (installed in the model already)
    the labels are its classes; otherwise the dataset's."""
    from tqdm import tqdm

    from uniav.data.batching import collate, padded_length

    was_training = model.training
    model.eval()
    max_stride = model.level_strides[-1]
    predictions: dict[str, list[Detection]] = {}
    classes = vocabulary.classes if vocabulary is not None else dataset.classes
    indices = list(range(len(dataset)))
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    batches = [indices[i:i + eval_cfg.batch_size] for i in range(0, len(indices), eval_cfg.batch_size)]
    for batch_indices in tqdm(batches, desc=f"predict {spec.name}", disable=not progress,
                              mininterval=2.0):
        items = [dataset.get(i) for i in batch_indices]
        length = padded_length([item.visual.shape[-1] for item in items],
                               max_seq_len=spec.data.max_seq_len, max_stride=max_stride,
                               training=False)
        batch = collate(items, length).to(device)
        with autocast:
            output = model(batch.visual, batch.audio, batch.mask, spec.name)
        if vocabulary is not None:
            output = vocabulary.adapt(output)
        for meta, detections in zip(batch.videos, detections_of_batch(
                output, batch.videos, spec.task, eval_cfg, classes, spec.class_aware)):
            predictions[meta.video_id] = detections
    model.train(was_training)
    return predictions


def score_predictions(dataset: Any, spec: TaskSpec, predictions: dict[str, list[Detection]],
                      eval_cfg: EvalConfig, sed_extras: bool = False, vocabulary: Any = None
                      ) -> dict[str, Any]:
    """Detection mAP (and SED extras) of predictions against a split's ground truth.

    With a :class:`~uniav.engine.vocabulary.TaskVocabulary` the class list is its classes:
    ground-truth instances of other labels are left out (counted in ``vocabulary``), and when
    it differs from the trained classes ``class_groups`` averages the per-class AP over the
    ``seen`` and the ``novel`` classes.

    Raises:
        InputError: no ground-truth instance of the split has a class of the vocabulary.
    """
    from uniav.engine.vocabulary import class_groups, restrict_ground_truth
    from uniav.evaluation import evaluate_detection

    # the split's ground truth after the data policy: zero-length instances are there only when
    # the policy keeps them as ground truth no prediction can match (the released evaluator)
    ground_truth = dataset.ground_truth()
    classes = dataset.classes
    record = None
    if vocabulary is not None:
        classes = vocabulary.classes
        ground_truth, dropped = restrict_ground_truth(ground_truth, classes)
        present = {label for video in ground_truth for label in video.labels}
        record = {**vocabulary.record, "ground_truth_dropped": sum(dropped.values()),
                  "ground_truth_dropped_by_class": dropped,
                  "classes_not_in_split": [c for c in classes if c not in present]}
        if not present:
            raise InputError(f"task {spec.name!r}: no ground-truth instance of the {dataset.split} "
                             f"split has a class of the vocabulary {classes} (the split's "
                             f"classes: {', '.join(dataset.all_classes)}); choose other names "
                             f"or the tasks to evaluate (--tasks)", field="--classes")
    result = evaluate_detection(ground_truth, {"results": predictions},
                                thresholds=spec.task.tiou_thresholds, classes=classes,
                                remove_duplicate_gt=eval_cfg.remove_duplicate_gt,
                                allow_zero_length_gt=True,
                                fit_ground_truth=dataset.policy.segments_past_duration == "clamp")
    metrics = result.to_dict()
    if sed_extras:
        from uniav.evaluation.sed import sed_extras as compute_sed_extras
        metrics["sed"] = compute_sed_extras(ground_truth, {"results": predictions}, classes)
    if record is not None:
        metrics["vocabulary"] = record
        if not vocabulary.is_trained:
            metrics["class_groups"] = class_groups(
                metrics["per_class"], metrics["thresholds"],
                {"seen": vocabulary.seen, "novel": vocabulary.novel})
    return metrics


def evaluate_dataset(model: torch.nn.Module, dataset: Any, spec: TaskSpec, eval_cfg: EvalConfig,
                     device: torch.device, *, autocast_dtype: torch.dtype | None = None,
                     sed_extras: bool = False, progress: bool = False, vocabulary: Any = None
                     ) -> tuple[dict[str, Any], dict[str, list[Detection]]]:
    """Predict a split and score it (optionally over another vocabulary, installed in the
    model already).  Returns ``(metrics, predictions)``."""
    predictions = predict_dataset(model, dataset, spec, eval_cfg, device,
                                  autocast_dtype=autocast_dtype, progress=progress,
                                  vocabulary=vocabulary)
    return (score_predictions(dataset, spec, predictions, eval_cfg, sed_extras, vocabulary),
            predictions)


def load_model_from_weights(path: str | Path, device: torch.device | str = "cpu"
                            ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a :class:`~uniav.model.UniAV` from ``model.safetensors`` (strict load).

    Returns:
        ``(model in eval mode, metadata)``.
    """
    from uniav.engine.checkpoint import load_exported_weights
    from uniav.model import ModelSpec, UniAV

    tensors, metadata = load_exported_weights(path)
    if metadata.get("format") != "uniav-weights-v1" or "model_spec" not in metadata:
        raise InputError("not a weights file written by `uniav train` or `uniav import-checkpoint`",
                         file=path, field="metadata")
    try:
        spec = ModelSpec.from_dict(metadata["model_spec"])
        model = UniAV(spec)
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"the stored model spec is malformed ({exc})", file=path,
                         field="metadata.model_spec") from None
    for key in ("classes", "tasks"):
        entry = metadata.get(key)
        missing = [t for t in spec.tasks if not isinstance(entry, dict) or t not in entry]
        if missing:
            raise InputError(f"no {key} recorded for task(s) {', '.join(missing)}", file=path,
                             field=f"metadata.{key}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise InputError(f"weights do not fit the stored model spec: {exc}", file=path) from None
    return model.to(device).eval(), metadata


def evaluation_settings(config: Config, experiment: str) -> dict[str, Any]:
    """Every setting ``uniav evaluate`` reads from the configuration besides the weights: the
    experiment's tasks and task specs, the evaluation settings, the seed, the data policy and
    the protocol (the pipeline reruns the job when they change)."""
    resolved = config.experiment(experiment)
    settings = {"tasks": resolved.tasks, "specs": resolved.to_dict()["specs"],
                "eval": to_plain(config.eval), "seed": config.seed, "data": to_plain(config.data),
                "protocol": config.protocol}
    if resolved.held_out_classes:  # scored over every class, with the prompts of all of them
        settings["held_out_classes"] = resolved.to_dict()["held_out_classes"]
        settings["prompts_dir"] = config.prompts.output_dir
    return settings


#: The ``experiment`` that :mod:`uniav.engine.importer` records in imported weights (they were
#: not trained for any experiment of this configuration, so any may evaluate them).
IMPORTED_EXPERIMENT = "released-import"


def check_evaluate_paths(config: Config, experiment: str, *, config_path: str | Path | None,
                         weights: str | Path, predictions_dir: str | Path,
                         metrics_path: str | Path,
                         other_inputs: dict[str, str | Path] | None = None) -> None:
    """Refuse an ``uniav evaluate`` whose outputs would replace one of its inputs (the weights,
    the configuration, a task's annotations, ``other_inputs`` such as a ``--classes-file``) or
    one another.

    Raises:
        InputError: naming the output and the input it would overwrite.
    """
    resolved = config.experiment(experiment)
    inputs: dict[str, str | Path | None] = {"--weights": weights, "--config": config_path,
                                            **(other_inputs or {})}
    for task in resolved.tasks:
        inputs[f"annotations of task {task}"] = resolved.specs[task].data.annotations
    predictions = {f"--predictions-dir ({task}.json)": Path(predictions_dir) / f"{task}.json"
                   for task in resolved.tasks}
    refuse_output_over_input({"--metrics": metrics_path}, {**inputs, **predictions})
    refuse_output_over_input(predictions, inputs)


def check_weights_experiment(metadata: dict[str, Any], experiment: str, weights: str | Path,
                             allow_other_experiment: bool) -> None:
    """Refuse weights that ``uniav train`` wrote for another experiment unless allowed.

    Raises:
        InputError: naming the weights file, the field and both experiments.
    """
    trained_for = metadata.get("experiment")
    if trained_for in (experiment, IMPORTED_EXPERIMENT):
        return
    if not allow_other_experiment:
        raise InputError(f"the weights were trained for experiment {trained_for!r}, not "
                         f"{experiment!r}: their metrics would carry the wrong name "
                         f"(--allow-other-experiment evaluates them anyway)", file=weights,
                         field="experiment")
    LOGGER.warning("%s: weights of experiment %r evaluated as experiment %r "
                   "(--allow-other-experiment)", weights, trained_for, experiment)


def evaluation_tasks(resolved: Any, tasks: list[str] | None) -> list[str]:
    """The tasks ``uniav evaluate`` runs: the experiment's, or those of ``--tasks`` (in the
    experiment's order).

    Raises:
        ConfigError: a task the experiment does not train, or one named twice.
    """
    if not tasks:
        return list(resolved.tasks)
    for task in tasks:
        if task not in resolved.tasks:
            raise ConfigError(f"--tasks: experiment {resolved.name!r} has no task {task!r} (its "
                              f"tasks: {', '.join(resolved.tasks)})")
    if len(set(tasks)) != len(tasks):
        raise ConfigError("--tasks: a task is given twice")
    return [task for task in resolved.tasks if task in tasks]


def _task_vocabulary(model: torch.nn.Module, metadata: dict[str, Any], weights: str | Path,
                     task: str, dataset: Any, request: Any, prompts_dir: Path,
                     text_encoder: Any) -> Any:
    """The vocabulary a task is evaluated with: the request's; else, for weights trained with
    held-out classes, every class of the split (the seen ones and the held-out ones) with the
    prompt embeddings ``uniav prompts`` wrote for all of them (training took the seen rows of
    the same file); else None (the trained classes, which must be the split's)."""
    from uniav.engine.vocabulary import resolve_vocabulary, vocabulary_of

    if request is not None:
        return resolve_vocabulary(model, metadata, weights, task, request,
                                  text_encoder=text_encoder)
    trained = list(metadata["classes"][task])
    if dataset.classes == trained:
        return None
    held_out = set(((metadata.get("held_out_classes") or {}).get(task)) or [])
    if not held_out or trained != [c for c in dataset.classes if c not in held_out]:
        raise InputError(f"task {task!r}: the weights were trained with other classes",
                         file=weights, field="classes")
    from uniav.prepare.prompts import load_prompt_embeddings

    path = prompts_dir / f"{task}.npy"
    embeddings = load_prompt_embeddings(path, dataset.classes)
    return vocabulary_of(model, metadata, task, list(dataset.classes), embeddings,
                         {"source": "prompts", "file": str(path),
                          "held_out_classes": [c for c in dataset.classes if c in held_out]},
                         where=path, field="prompts")


def evaluate_experiment(config: Config, experiment: str, *, weights: str | Path,
                        predictions_dir: str | Path, metrics_path: str | Path,
                        split: str = "test", threads: int | None = None,
                        tracker: Tracker | None = None, progress: bool = True,
                        allow_other_experiment: bool = False, tasks: list[str] | None = None,
                        vocabulary: Any = None, prompts_dir: str | Path | None = None,
                        text_encoder: Any = None) -> dict[str, Any]:
    """``uniav evaluate``: run exported weights over a split of every task of the experiment
    (or of ``tasks``), write ``<predictions_dir>/<task>.json`` and the metrics JSON.

    Weights written by ``uniav train`` for another experiment are refused unless
    ``allow_other_experiment``; the metrics record the weights' own experiment
    (``weights_experiment``) and configuration hash (``weights_config_hash``).

    Vocabulary (:mod:`uniav.engine.vocabulary`): a
    :class:`~uniav.engine.vocabulary.VocabularyRequest` replaces every evaluated task's classes;
    without one, weights trained with held-out classes are scored over every class of the
    split, with the prompt embeddings of ``prompts_dir`` (default ``prompts.output_dir``).  Each
    task's metrics record the ``vocabulary`` used.

    Returns:
        The metrics summary that was written.
    """
    from uniav.engine.distributed import resolve_device
    from uniav.engine.training_data import open_dataset

    tracker = tracker or NullTracker()
    if threads:
        torch.set_num_threads(threads)
    resolved = config.experiment(experiment)
    tasks = evaluation_tasks(resolved, tasks)
    device = resolve_device(resolved.train.device)
    model, metadata = load_model_from_weights(weights, device)
    check_weights_experiment(metadata, experiment, weights, allow_other_experiment)
    prompts_dir = Path(prompts_dir if prompts_dir is not None else config.prompts.output_dir)
    summary: dict[str, Any] = {"experiment": experiment, "split": split,
                               "benchmark": config.benchmark, "protocol": config.protocol,
                               "weights": str(weights),
                               "weights_experiment": metadata.get("experiment"),
                               "weights_config_hash": metadata.get("config_hash"),
                               "eval": to_plain(config.eval), "tasks": {}, "data_report": {}}
    if metadata.get("held_out_classes"):
        summary["held_out_classes"] = metadata["held_out_classes"]
    predictions_dir = Path(predictions_dir)
    for task in tasks:
        spec = resolved.specs[task]
        if metadata.get("classes", {}).get(task) is None:
            raise InputError(f"the weights have no task {task!r}", file=weights, field="classes")
        dataset = open_dataset(config, spec, split)
        task_vocabulary = _task_vocabulary(model, metadata, weights, task, dataset, vocabulary,
                                           prompts_dir, text_encoder)
        if task_vocabulary is not None:
            task_vocabulary.install(model)
        metrics, predictions = evaluate_dataset(
            model, dataset, spec, config.eval, device, sed_extras=(task == "sed"),
            progress=progress, vocabulary=task_vocabulary)
        if task_vocabulary is None:
            from uniav.engine.vocabulary import trained_vocabulary

            metrics["vocabulary"] = trained_vocabulary(metadata, task)
        atomic_write_json(predictions_dir / f"{task}.json",
                          {"version": "uniav", "external_data": {}, "results": predictions})
        summary["tasks"][task] = metrics
        trained = (metadata.get("data_report") or {}).get(task) or {}
        summary["data_report"][task] = {**trained, split: dataset.report.to_dict()}
        flat = {f"{split}/{task}/average_mAP": metrics["average_mAP"]}
        flat.update({f"{split}/{task}/mAP_{t:.2f}": v
                     for t, v in zip(metrics["thresholds"], metrics["mAP"])})
        for key, value in (metrics.get("sed") or {}).items():
            if isinstance(value, (int, float)):
                flat[f"{split}/{task}/{key}"] = value
        for group, values in (metrics.get("class_groups") or {}).items():
            if values["average_mAP"] is not None:
                flat[f"{split}/{task}/{group}/average_mAP"] = values["average_mAP"]
        tracker.log_metrics(flat)
        LOGGER.info("%s %s: average mAP %.4f", experiment, task, metrics["average_mAP"])
    summary["config_hash"] = config_hash(summary["eval"])
    atomic_write_json(metrics_path, summary)
    tracker.log_artifact(metrics_path)
    return summary
