"""Figures of a pipeline run, from ``training.json``, the metrics JSON and the predictions.

Everything goes under one output directory (``results/figures/``):

* ``curves/<experiment>.csv`` — the training curve as a flat table (one row per epoch, counted
  from 1: iterations done at its end - the MLflow step of its validation -, learning rate,
  training loss per task and their mean, validation average mAP per task and their mean);
* ``curves.csv`` — the same rows of every experiment in one table with an ``experiment`` column:
  DVC plots it (``dvc plots show``: validation mAP of all experiments in one plot, training loss
  in another);
* ``training_curves/<experiment>.png`` — loss and validation mAP per epoch;
* ``per_class_ap/<task>.png`` — AP per class (mean over the tIoU thresholds) of every main-table
  row that has the task;
* ``timelines/<task>.png`` — ground truth vs the top predictions of each main-table row for a few
  test videos (ground truth from the task's annotation file, predictions from
  ``results/predictions/<experiment>/<task>.json``).

With several seeds (``seeds:``): ``curves.csv`` has one series per run (the ``experiment``
column holds the run name), ``curves/<experiment>.csv`` and ``training_curves/<experiment>.png``
every seed's curve (:mod:`uniav.report.seed_figures`), the per-class AP bars are the means over
the seeds with the sample standard deviation as error bars, and the timelines show the first
seed's run.  With one seed nothing changes.

Matplotlib runs on its non-interactive ``Agg`` backend.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from uniav.config import Config, experiment_runs, run_seeds, to_plain
from uniav.errors import InputError
from uniav.fileio import atomic_path, atomic_write_text, load_json_file
from uniav.report.metrics import load_metrics
from uniav.report.table_data import TASK_TITLES, row_sources

#: Classes shown per task in the per-class AP chart before it is cut to the best and worst.
MAX_CLASSES_SHOWN = 40

#: The training curves of every experiment in one table (under the figures directory).
COMBINED_CURVES = "curves.csv"


def figures_settings(config: Config) -> dict[str, Any]:
    """Every setting ``uniav figures`` reads: the experiments and their tasks, the main-table
    rows and the test subsets of the tasks."""
    settings = {"experiments": {name: e.tasks for name, e in config.experiments.items()},
                "main": to_plain(config.tables.main),
                "subsets": {t: config.task_spec(t).data.subsets.test for t in config.tasks}}
    if len(run_seeds(config)) >= 2:
        settings["seeds"] = run_seeds(config)
    return settings


def figure_paths(config: Config, output_dir: str | Path) -> list[Path]:
    """The files :func:`write_figures` writes for this configuration (for the Snakefile)."""
    out = Path(output_dir)
    paths = [out / COMBINED_CURVES]
    for name in config.experiments:
        paths += [out / "curves" / f"{name}.csv", out / "training_curves" / f"{name}.png"]
    for task in main_table_tasks(config):
        paths += [out / "per_class_ap" / f"{task}.png", out / "timelines" / f"{task}.png"]
    return paths


def main_table_tasks(config: Config) -> list[str]:
    """Tasks that appear in the main table, in ``tasks:`` order."""
    found = {t for row in config.tables.main for t in row_sources(row, config, "main")}
    return [t for t in config.tasks if t in found]


def main_table_sources(config: Config, task: str) -> list[tuple[str, str]]:
    """``(row label, experiment)`` of each main-table row that has ``task`` (experiments once)."""
    pairs: list[tuple[str, str]] = []
    for row in config.tables.main:
        experiment = row_sources(row, config, "main").get(task)
        if experiment is not None and experiment not in [e for _, e in pairs]:
            pairs.append((row.label, experiment))
    return pairs


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=120, bbox_inches="tight",
                    metadata={"Software": None})


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------

def read_training(path: str | Path) -> dict[str, Any]:
    """Read a ``training.json`` written by ``uniav train``.

    Raises:
        InputError: naming the file when it is missing or has no ``history`` list.
    """
    path = Path(path)
    data = load_json_file(path, missing="training history not found (run `uniav train`)")
    if not isinstance(data, dict) or not isinstance(data.get("history"), list):
        raise InputError("expected an object with a 'history' list", file=path, field="history")
    return data


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def epoch_offset(training: dict[str, Any]) -> int:
    """What to add to a history's epoch numbers to count from 1: ``training.json`` counts from
    ``first_epoch`` (1; histories written before it existed counted from 0)."""
    first = training.get("first_epoch", 0)
    return 1 - first if isinstance(first, int) and not isinstance(first, bool) else 1


def curve_records(training: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flatten a training history into per-epoch records.

    Returns:
        ``(columns, records)``; columns are ``epoch`` (counted from 1), ``iteration`` (done at
        the epoch's end), ``lr``,
        ``train_loss`` (mean over the tasks' losses of that epoch), ``train_loss_<task>``,
        ``val_mean_average_mAP`` and ``val_average_mAP_<task>``; a value the epoch does not have
        (no validation that epoch) is ``None``.
    """
    tasks = list(training.get("tasks") or [])
    for entry in training["history"]:
        for task in list(entry.get("train_loss") or {}) + list(entry.get("val_average_mAP") or {}):
            if task not in tasks:
                tasks.append(task)
    columns = (["epoch", "iteration", "lr", "train_loss"] + [f"train_loss_{t}" for t in tasks]
               + ["val_mean_average_mAP"] + [f"val_average_mAP_{t}" for t in tasks])
    records, offset = [], epoch_offset(training)
    for entry in training["history"]:
        losses = entry.get("train_loss") or {}
        vals = entry.get("val_average_mAP") or {}
        task_losses = [v for v in (_finite(losses.get(t)) for t in tasks) if v is not None]
        record: dict[str, Any] = {
            "epoch": int(entry["epoch"]) + offset, "iteration": entry.get("iteration"),
            "lr": _finite(entry.get("lr")),
            "train_loss": float(np.mean(task_losses)) if task_losses else None,
            "val_mean_average_mAP": _finite(entry.get("val_mean_average_mAP"))}
        for task in tasks:
            record[f"train_loss_{task}"] = _finite(losses.get(task))
            record[f"val_average_mAP_{task}"] = _finite(vals.get(task))
        records.append(record)
    return columns, records


def _csv_text(columns: list[str], records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if record.get(k) is None
                         else (f"{record[k]:.6g}" if isinstance(record[k], float) else record[k])
                         for k in columns})
    return buffer.getvalue()


def write_curve_csv(training: dict[str, Any], path: str | Path) -> Path:
    """Write the per-epoch curve of one experiment as CSV (empty cell = no value)."""
    columns, records = curve_records(training)
    atomic_write_text(path, _csv_text(columns, records))
    return Path(path)


def write_combined_curves_csv(trainings: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Write the per-epoch curves of several experiments as one CSV, first column
    ``experiment`` (the name), then the columns of :func:`curve_records` of all of them (a task
    an experiment does not train has empty cells), rows in ``trainings`` order."""
    tasks: list[str] = []
    rows: list[dict[str, Any]] = []
    for name, training in trainings.items():
        names, records = curve_records(training)
        tasks += [c[len("train_loss_"):] for c in names
                  if c.startswith("train_loss_") and c[len("train_loss_"):] not in tasks]
        rows += [{"experiment": name, **record} for record in records]
    columns = (["experiment", "epoch", "iteration", "lr", "train_loss"]
               + [f"train_loss_{t}" for t in tasks] + ["val_mean_average_mAP"]
               + [f"val_average_mAP_{t}" for t in tasks])
    atomic_write_text(path, _csv_text(columns, rows))
    return Path(path)


def plot_training_curves(training: dict[str, Any], path: str | Path) -> Path:
    """Two panels: training loss per task and validation average mAP per task, per epoch."""
    plt = _pyplot()
    columns, records = curve_records(training)
    tasks = [c[len("train_loss_"):] for c in columns if c.startswith("train_loss_")]
    epochs = [r["epoch"] for r in records]
    fig, (loss_ax, map_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for task in tasks:
        loss_ax.plot(epochs, [_nan(r[f"train_loss_{task}"]) for r in records], marker="o",
                     label=TASK_TITLES.get(task, task))
        map_ax.plot(epochs, [100 * _nan(r[f"val_average_mAP_{task}"]) for r in records],
                    marker="o", label=TASK_TITLES.get(task, task))
    if len(tasks) > 1:
        map_ax.plot(epochs, [100 * _nan(r["val_mean_average_mAP"]) for r in records], marker="s",
                    color="black", linestyle="--", label="mean")
    best = training.get("best_epoch")
    if isinstance(best, int) and best + epoch_offset(training) >= 1:
        map_ax.axvline(best + epoch_offset(training), color="grey", linestyle=":",
                       label="best epoch")
    loss_ax.set(xlabel="epoch", ylabel="training loss (epoch mean)", title="Training loss")
    map_ax.set(xlabel="epoch", ylabel="validation average mAP (%)", title="Validation mAP")
    for ax in (loss_ax, map_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(f"{training.get('experiment', '')}: training curves")
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


# --------------------------------------------------------------------------------------------
# Per-class AP
# --------------------------------------------------------------------------------------------

def per_class_average(task_metrics: dict[str, Any]) -> dict[str, float]:
    """AP per class averaged over the tIoU thresholds (classes without a number are skipped)."""
    out = {}
    for label, values in (task_metrics.get("per_class") or {}).items():
        numbers = [v for v in (_finite(x) for x in (values if isinstance(values, list) else [values]))
                   if v is not None]
        if numbers:
            out[label] = float(np.mean(numbers))
    return out


def plot_per_class_ap(task: str, series: list[tuple[str, dict[str, float]]], path: str | Path,
                      errors: list[dict[str, float | None]] | None = None) -> Path:
    """Horizontal grouped bars: one group per class, one bar per series (row label → AP); with
    ``errors`` (one mapping per series: the standard deviation over seeds) error bars."""
    plt = _pyplot()
    classes: list[str] = []
    for _, values in series:
        classes.extend(c for c in values if c not in classes)
    reference = series[-1][1] if series else {}
    classes.sort(key=lambda c: -reference.get(c, -1.0))
    note = ""
    if len(classes) > MAX_CLASSES_SHOWN:
        half = MAX_CLASSES_SHOWN // 2
        note = f" (best and worst {half} of {len(classes)} classes by {series[-1][0]})"
        classes = classes[:half] + classes[-half:]
    height = max(2.5, 0.22 * len(classes) * max(1, len(series)) ** 0.5 + 1.2)
    fig, ax = plt.subplots(figsize=(8, height))
    bar = 0.8 / max(1, len(series))
    positions = np.arange(len(classes))
    for i, (label, values) in enumerate(series):
        spread = None if errors is None else [100 * _nan(errors[i].get(c)) for c in classes]
        ax.barh(positions + i * bar, [100 * values.get(c, float("nan")) for c in classes],
                height=bar, label=label, xerr=spread, error_kw={"elinewidth": 0.8})
    ax.set_yticks(positions + bar * (len(series) - 1) / 2)
    ax.set_yticklabels(classes, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("AP (%), mean over tIoU thresholds"
                  + ("" if errors is None else "; mean ± std over seeds"))
    ax.set_title(f"{TASK_TITLES.get(task, task)}: per-class AP on the test split{note}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Timelines
# --------------------------------------------------------------------------------------------

def read_predictions(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The ``results`` mapping of an ActivityNet-format predictions file."""
    path = Path(path)
    data = load_json_file(path, missing="predictions not found (run `uniav evaluate`)")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise InputError("expected an object with a 'results' mapping", file=path, field="results")
    return data["results"]


def pick_videos(videos: list[Any], count: int) -> list[Any]:
    """The first ``count`` videos (by id) that have at least one ground-truth segment."""
    with_events = sorted((v for v in videos if len(v.labels)), key=lambda v: v.video_id)
    return with_events[:count]


def plot_timelines(task: str, videos: list[Any], classes: list[str],
                   predictions: list[tuple[str, dict[str, list[dict[str, Any]]]]],
                   path: str | Path) -> Path:
    """One panel per video: a ground-truth lane and one lane per prediction source.

    Predictions shown per video and source: the ``max(3, 2 × #ground truth)`` highest-scoring
    ones, with opacity proportional to the score.  Bar colour = class.

    Args:
        task: task name (title).
        videos: :class:`~uniav.data.annotations.VideoAnnotation` of the chosen test videos.
        classes: class list of the task (fixes the colours).
        predictions: ``(label, results mapping)`` per source.
        path: the PNG to write.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    cmap = plt.get_cmap("tab20")
    colour = {name: cmap(i % 20) for i, name in enumerate(classes)}
    lanes = ["ground truth"] + [label for label, _ in predictions]
    fig, axes = plt.subplots(len(videos), 1, figsize=(10, 0.5 + (0.45 * len(lanes) + 0.5) * len(videos)),
                             squeeze=False)
    used: list[str] = []
    for ax, video in zip(axes[:, 0], videos):
        for (start, end), label in zip(video.segments.tolist(), video.labels):
            ax.broken_barh([(start, end - start)], (len(lanes) - 1 - 0.4, 0.8),
                           facecolors=colour.get(label, "grey"), edgecolor="black", linewidth=0.5)
            used.append(label)
        keep = max(3, 2 * len(video.labels))
        for lane, (_, results) in enumerate(predictions, start=1):
            detections = sorted(results.get(video.video_id, []), key=lambda d: -float(d["score"]))
            for detection in detections[:keep]:
                start, end = (float(x) for x in detection["segment"])
                score = min(max(float(detection["score"]), 0.0), 1.0)
                ax.broken_barh([(start, end - start)], (len(lanes) - 1 - lane - 0.35, 0.7),
                               facecolors=colour.get(detection["label"], "grey"),
                               alpha=0.25 + 0.75 * score, edgecolor="none")
                used.append(detection["label"])
        ax.set_yticks(range(len(lanes)))
        ax.set_yticklabels(list(reversed(lanes)), fontsize=8)
        ax.set_xlim(0, video.duration)
        ax.set_ylim(-0.6, len(lanes) - 0.4)
        ax.set_title(f"{video.video_id} ({video.duration:.1f} s)", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    shown = [c for c in classes if c in set(used)]
    fig.legend(handles=[Patch(facecolor=colour[c], label=c) for c in shown],
               loc="upper center", ncol=min(4, max(1, len(shown))), fontsize=7,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"{TASK_TITLES.get(task, task)}: ground truth vs predictions (test videos; "
                 f"opacity = score)")
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def write_figures(config: Config, *, metrics_dir: str | Path, models_dir: str | Path,
                  predictions_dir: str | Path, output_dir: str | Path,
                  videos_per_task: int = 3) -> list[Path]:
    """Write every figure of :func:`figure_paths`.

    Args:
        config: the validated configuration.
        metrics_dir: ``<experiment>.json`` metrics files.
        models_dir: ``<experiment>/training.json`` training histories.
        predictions_dir: ``<experiment>/<task>.json`` predictions.
        output_dir: where the figures go.
        videos_per_task: test videos per timeline figure.

    Returns:
        The written paths.
    """
    from uniav.data.annotations import load_annotations_under
    from uniav.report.seed_figures import plot_seed_training_curves, write_seed_curves_csv
    from uniav.report.seeds import mean_std

    out = Path(output_dir)
    written: list[Path] = []
    runs = {name: experiment_runs(config, name) for name in config.experiments}
    several = len(run_seeds(config)) >= 2
    trainings = {run: read_training(Path(models_dir) / run / "training.json")
                 for pairs in runs.values() for run, _ in pairs}
    if several:
        written.append(write_combined_curves_csv(trainings, out / COMBINED_CURVES))
    else:
        trainings = {name: trainings[pairs[0][0]] for name, pairs in runs.items()}
        written.append(write_combined_curves_csv(trainings, out / COMBINED_CURVES))
    for name, pairs in runs.items():
        if several:
            by_seed = {seed: trainings[run] for run, seed in pairs}
            written.append(write_seed_curves_csv(by_seed, out / "curves" / f"{name}.csv"))
            written.append(plot_seed_training_curves(
                name, by_seed, out / "training_curves" / f"{name}.png"))
        else:
            written.append(write_curve_csv(trainings[name], out / "curves" / f"{name}.csv"))
            written.append(plot_training_curves(trainings[name],
                                                out / "training_curves" / f"{name}.png"))
    tasks = main_table_tasks(config)
    shown = sorted({e for t in tasks for _, e in main_table_sources(config, t)})
    metrics = load_metrics(metrics_dir, [run for e in shown for run, _ in runs[e]])
    for task in tasks:
        sources = main_table_sources(config, task)
        series, errors = [], []
        for label, e in sources:
            per_run = [per_class_average(metrics[run]["tasks"].get(task, {})) for run, _ in runs[e]]
            pairs = {c: mean_std([p.get(c) for p in per_run]) for c in per_run[0]}
            series.append((label, {c: m for c, (m, _) in pairs.items() if m is not None}))
            errors.append({c: s for c, (_, s) in pairs.items()})
        written.append(plot_per_class_ap(task, series, out / "per_class_ap" / f"{task}.png",
                                         errors if several else None))
        spec = config.task_spec(task)
        database = load_annotations_under(spec.data.annotations, config.data)
        videos = pick_videos(database.subset(spec.data.subsets.test), videos_per_task)
        predictions = [(label, read_predictions(Path(predictions_dir) / runs[e][0][0]
                                                / f"{task}.json")) for label, e in sources]
        written.append(plot_timelines(task, videos, database.classes, predictions,
                                      out / "timelines" / f"{task}.png"))
    return written
