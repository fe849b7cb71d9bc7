"""``uniav predict VIDEO``: localize actions, sound events and audio-visual events in one's own
video with a trained model.

The exported weights carry, per task, the encoders and time grid the model was trained with;
the video is decoded and encoded the same way (resized to the task's fixed length when the task
does that, like ActivityNet), every task of the model runs, and the detections are written as
JSON plus a timeline figure.  ``--classes`` / ``--classes-file`` (with ``--class-embeddings``
where the model's text encoder is not available here) localize other classes than the trained
ones: :mod:`uniav.engine.vocabulary`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uniav.config import DatasetTaskConfig, EvalConfig, FeaturesConfig, TaskConfig, parse
from uniav.data.batching import VideoItem, collate, padded_length, task_inputs
from uniav.errors import InputError
from uniav.fileio import atomic_path, atomic_write_json, refuse_output_over_input
from uniav.grid import TimeGrid

LOGGER = logging.getLogger(__name__)


def predict_video(video: str | Path, weights: str | Path, *, output_dir: str | Path | None = None,
                  tasks: list[str] | None = None, min_score: float = 0.2, top_k: int = 20,
                  threads: int | None = None, vocabulary: Any = None,
                  text_encoder: Any = None) -> dict[str, Any]:
    """Run every (or the chosen) task of a trained model on one video.

    Args:
        video: the media file.
        weights: ``model.safetensors`` written by ``uniav train``.
        output_dir: where ``<video file name>.uniav.json`` and ``.png`` go (default: beside
            the video); see :func:`prediction_paths`.
        tasks: tasks to run (default: all the model has).
        min_score: drop detections below this score.
        top_k: keep at most this many detections per task.
        threads: torch CPU threads.
        vocabulary: a :class:`~uniav.engine.vocabulary.VocabularyRequest`: localize these
            classes instead of the trained ones (in every task run).
        text_encoder: the sentence encoder to embed the names with (default: the one the
            weights record, loaded once).

    Returns:
        ``{"json": path, "figure": path, "detections": {task: [...]}}``.
    """
    from uniav.prepare.extract import extract_video_features
    from uniav.engine.inference import detections_of_batch, load_model_from_weights

    if threads:
        torch.set_num_threads(threads)
    video = Path(video)
    if not video.exists():
        raise InputError("video not found", file=video)
    json_path, figure_path = prediction_paths(video, output_dir)
    refuse_output_over_input({"the JSON output": json_path, "the figure output": figure_path},
                             {"the video": video, "--weights": weights,
                              **(vocabulary.inputs() if vocabulary is not None else {})})
    model, metadata = load_model_from_weights(weights)
    eval_cfg = parse(EvalConfig, metadata.get("eval", {}), "eval")
    features_cfg = parse(FeaturesConfig, metadata.get("features_config", {}), "features")
    available = list(metadata["model_spec"]["tasks"])
    tasks = tasks or available
    for task in tasks:
        if task not in available:
            raise InputError(f"the model has no task {task!r} (it has {', '.join(available)})",
                             file=weights, field="tasks")
    vocabularies = {}
    if vocabulary is not None:  # every refusal before the video is decoded
        from uniav.engine.vocabulary import resolve_vocabulary

        for task in tasks:
            vocabularies[task] = resolve_vocabulary(model, metadata, weights, task, vocabulary,
                                                    text_encoder=text_encoder)
            vocabularies[task].install(model)
    features_cache: dict[tuple, tuple[np.ndarray, np.ndarray, float]] = {}
    detections: dict[str, list[dict[str, Any]]] = {}
    duration = 0.0
    for task in tasks:
        task_meta = metadata["tasks"][task]
        data_cfg = parse(DatasetTaskConfig, task_meta["data"], f"tasks.{task}.data")
        task_cfg = parse(TaskConfig, task_meta["task"], f"tasks.{task}.task")
        feature_meta = (metadata.get("features") or {}).get(task) or {}
        if "visual_encoder" not in feature_meta or "audio_encoder" not in feature_meta:
            raise InputError(f"task {task!r}: the weights do not record the feature encoders",
                             file=weights, field="features")
        key = (feature_meta["visual_encoder"], feature_meta["audio_encoder"], data_cfg.fps,
               data_cfg.feat_stride, data_cfg.window_frames)
        if key not in features_cache:
            features_cache[key] = extract_video_features(
                video, fps=data_cfg.fps, feat_stride=data_cfg.feat_stride,
                window_frames=data_cfg.window_frames, visual_encoder=feature_meta["visual_encoder"],
                audio_encoder=feature_meta["audio_encoder"], features_config=features_cfg)
        visual, audio, duration = features_cache[key]
        # the same input path as training and evaluation: task grid, resizing, padding
        visual_t, audio_t, grid = task_inputs(visual, audio, TimeGrid.of(data_cfg),
                                              data_cfg.resize_length)
        item = VideoItem(video_id=video.name, visual=visual_t, audio=audio_t,
                         segments=torch.zeros((0, 2)), labels=torch.zeros(0, dtype=torch.int64),
                         duration=duration, grid=grid)
        batch = collate([item], padded_length([item.length], max_seq_len=data_cfg.max_seq_len,
                                              max_stride=model.level_strides[-1], training=False))
        with torch.no_grad():
            output = model(batch.visual, batch.audio, batch.mask, task)
        classes = metadata["classes"][task]
        if task in vocabularies:
            output = vocabularies[task].adapt(output)
            classes = vocabularies[task].classes
        found = detections_of_batch(output, batch.videos, task_cfg, eval_cfg, classes,
                                    task_cfg.class_aware)[0]
        detections[task] = [d for d in found if d["score"] >= min_score][:top_k]
    record = {
        "video": str(video), "duration": round(duration, 3), "weights": str(weights),
        "experiment": metadata.get("experiment"), "min_score": min_score,
        "tasks": {task: [{"label": d["label"], "start": d["segment"][0], "end": d["segment"][1],
                          "score": d["score"]} for d in found]
                  for task, found in detections.items()}}
    if vocabularies:
        record["vocabulary"] = {task: v.record for task, v in vocabularies.items()}
    atomic_write_json(json_path, record)
    plot_timeline(figure_path, detections, duration, title=video.name)
    return {"json": json_path, "figure": figure_path, "detections": detections}


def prediction_paths(video: str | Path, output_dir: str | Path | None = None
                     ) -> tuple[Path, Path]:
    """Where ``uniav predict`` writes for ``video``: ``<output_dir>/<file name>.uniav.json`` and
    ``.uniav.png``, the whole file name kept (``x.mp4`` -> ``x.mp4.uniav.json``) so that ``x.mp4``
    and ``x.mkv`` predicted into one directory never overwrite each other's results."""
    video = Path(video)
    directory = Path(output_dir) if output_dir else video.parent
    return directory / f"{video.name}.uniav.json", directory / f"{video.name}.uniav.png"


TASK_TITLES = {"tal": "visual actions (TAL)", "sed": "sound events (SED)",
               "avel": "audio-visual events (AVEL)"}


def plot_timeline(path: Path, detections: dict[str, list[dict[str, Any]]], duration: float,
                  title: str = "") -> None:
    """A PNG with one row per task and one bar per detection (opacity = score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(detections)
    figure, axes = plt.subplots(len(tasks), 1, figsize=(10, 1.4 * len(tasks) + 0.6), squeeze=False,
                                sharex=True)
    palette = plt.get_cmap("tab20")
    for axis, task in zip(axes[:, 0], tasks):
        labels = sorted({d["label"] for d in detections[task]})
        rows = {label: i for i, label in enumerate(labels)}
        for d in detections[task]:
            start, end = d["segment"]
            axis.barh(rows[d["label"]], end - start, left=start, height=0.8,
                      color=palette(rows[d["label"]] % 20), alpha=0.35 + 0.65 * d["score"])
            axis.text(start, rows[d["label"]], f" {d['score']:.2f}", va="center", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.set_ylim(-0.6, max(len(labels), 1) - 0.4)
        axis.set_title(TASK_TITLES.get(task, task), fontsize=9, loc="left")
        axis.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlim(0, max(duration, 1e-3))
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
