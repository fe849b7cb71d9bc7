"""The tables of the paper's claims beyond the main table, from the metrics JSON files:

* ``open_set`` — rows ``tables.open_set``: experiments trained without their
  ``held_out_classes`` and evaluated prompting for every class; per task the average mAP of the
  ``seen`` classes, of the ``novel`` (held-out) ones and the mean of the two (the metrics'
  ``class_groups``, written by ``uniav evaluate``).
* ``pretraining`` — rows ``tables.pretraining``: the main table's columns, for models trained
  from scratch and fine-tuned from another experiment's weights (``init_from``).

The cross-task table reads other files (:mod:`uniav.report.cross_task`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from uniav.config import Config, experiment_runs
from uniav.errors import InputError
from uniav.report.metrics import number_or_none
from uniav.report.seeds import seen_novel_mean
from uniav.report.table_data import (GroupColumn, Row, Table, build_result_table,
                                     caption_setting, caption_thresholds, describe_protocol,
                                     group_header, row_sources)

if TYPE_CHECKING:
    from uniav.report.published import Published
    from uniav.report.seeds import Spread

#: The open-set columns of each task: (key in ``class_groups`` or ``mean``, header).
OPEN_SET_COLUMNS = (("seen", "seen"), ("novel", "novel"), ("mean", "mean"))


def _seeds(spread: Spread | None) -> list[int]:
    return list(spread.seeds) if spread is not None and spread.n >= 2 else []


def _task_std(spread: Spread | None, experiment: str, task: str) -> dict[str, Any] | None:
    if spread is None or spread.n < 2:
        return None
    return spread.std.get(experiment, {}).get("tasks", {}).get(task)


def _class_groups(config: Config, metrics_dir: str | Path | None, experiment: str, task: str,
                  task_metrics: dict[str, Any]) -> dict[str, Any]:
    """The task's ``class_groups`` with ``seen`` and ``novel`` objects, or an InputError naming
    the experiment's (first run's) metrics file."""
    groups = task_metrics.get("class_groups")
    run = experiment_runs(config, experiment)[0][0]
    path = None if metrics_dir is None else Path(metrics_dir) / f"{run}.json"
    if not (isinstance(groups, dict) and all(isinstance(groups.get(g), dict)
                                             for g in ("seen", "novel"))):
        raise InputError(f"experiment {experiment!r} is in tables.open_set but its {task!r} "
                         f"metrics have no class_groups with 'seen' and 'novel' (evaluated "
                         f"without its held-out classes?); re-run `uniav evaluate`",
                         file=path, field=f"tasks.{task}.class_groups")
    for name in ("seen", "novel"):
        value = groups[name].get("average_mAP")
        if value is not None and number_or_none(value) is None:
            raise InputError(f"expected a number or null, got {value!r}", file=path,
                             field=f"tasks.{task}.class_groups.{name}.average_mAP")
    return groups


def _listing(per_experiment: dict[str, Any], text) -> str:
    """``text(value)`` when every experiment has the same value, else ``text(v) (e1, e2); ...``."""
    by_value: dict[str, list[str]] = {}
    for experiment, value in per_experiment.items():
        by_value.setdefault(text(value), []).append(experiment)
    if len(by_value) == 1:
        return next(iter(by_value))
    return "; ".join(f"{value} ({', '.join(names)})" for value, names in by_value.items())


def _held_out_text(config: Config, sources: list[dict[str, str]], tasks: list[str]) -> str:
    parts = []
    for task in tasks:
        per_experiment = {s[task]: config.experiments[s[task]].held_out_classes.get(task, [])
                          for s in sources if task in s}
        parts.append(f"{group_header(task)}: "
                     + _listing(per_experiment, lambda v: ", ".join(v) if v else "none"))
    return "; ".join(parts)


def _epochs_text(config: Config, experiments: list[str]) -> str:
    """The epochs of ``experiments`` when some differ from ``train.epochs`` (else empty)."""
    epochs = {e: config.experiment(e).train.epochs for e in experiments}
    if all(value == config.train.epochs for value in epochs.values()):
        return ""
    return (f" Trained for {_listing(epochs, lambda v: f'{v} epochs')} (the main training: "
            f"{config.train.epochs} epochs).")


def build_open_set_table(config: Config, metrics: dict[str, dict[str, Any]],
                         spread: Spread | None = None,
                         metrics_dir: str | Path | None = None) -> Table:
    """Seen / novel / mean average mAP per task of each ``tables.open_set`` row.

    Args:
        config: the configuration (rows, held-out classes, epochs, task order).
        metrics: metrics per experiment (means over the seeds).
        spread: the seeds and standard deviations, if several.
        metrics_dir: where the metrics files are (named in errors).

    Raises:
        InputError: an experiment's task metrics have no ``class_groups`` (naming the file).
    """
    rows = config.tables.open_set
    sources = [row_sources(row, config, "open_set") for row in rows]
    tasks = [t for t in config.tasks if any(t in s for s in sources)]
    columns = [GroupColumn(task, key, header, f"{key} avg mAP")
               for task in tasks for key, header in OPEN_SET_COLUMNS]
    table_rows = []
    for row, source in zip(rows, sources):
        values: dict[Any, float | None] = {}
        spreads: dict[Any, float | None] = {}
        for column in columns:
            experiment = source.get(column.task)
            task_metrics = metrics[experiment]["tasks"].get(column.task) if experiment else None
            if task_metrics is None:
                values[column] = None
                continue
            groups = _class_groups(config, metrics_dir, experiment, column.task,  # type: ignore[arg-type]
                                   task_metrics)
            std = _task_std(spread, experiment, column.task)  # type: ignore[arg-type]
            if column.key == "mean":
                values[column] = seen_novel_mean(groups)
                if std is not None:
                    spreads[column] = number_or_none(std.get("seen_novel_mean"))
            else:
                values[column] = number_or_none(groups[column.key].get("average_mAP"))
                if std is not None:
                    group_std = (std.get("class_groups") or {}).get(column.key) or {}
                    spreads[column] = number_or_none(group_std.get("average_mAP"))
        table_rows.append(Row(row.label, values, "measured", dict(source), spreads))
    used = {e: metrics[e] for s in sources for e in s.values()}
    thresholds = caption_thresholds({t: [m["tasks"][t] for m in used.values() if t in m["tasks"]]
                                     for t in tasks})
    caption = (
        "Open set: models trained without the held-out classes (their instances removed from "
        "the training and validation data, not relabelled), evaluated on the test split "
        "prompting for every class of each task. seen = average mAP (%) over the classes "
        "trained on, novel = over the held-out classes (those with test instances), mean = the "
        f"average of seen and novel; each averaged over tIoU {thresholds}. "
        f"Held out: {_held_out_text(config, sources, tasks)}."
        + _epochs_text(config, list(used)) + " "
        + caption_setting(config, [str(m.get("split", "test")) for m in used.values()], tasks)
        + f" Protocol: {describe_protocol(config, tasks)}.")
    if any(value is None for row in table_rows for value in row.values.values()):
        caption += (" A missing value: no class of the group has a test instance (or the "
                    "task was not evaluated).")
    seeds = _seeds(spread)
    if seeds:
        caption += spread.caption()  # type: ignore[union-attr]
    return Table("open_set", "Open set", caption, columns, table_rows, seeds=seeds)


def _schedule(config: Config, experiment: str) -> tuple[int, int]:
    train = config.experiment(experiment).train
    return train.epochs, train.warmup_epochs


def _schedule_text(value: tuple[int, int]) -> str:
    epochs, warmup = value
    return (f"{epochs} epoch{'s' if epochs != 1 else ''}, {warmup} warm-up "
            f"epoch{'s' if warmup != 1 else ''}")


def build_pretraining_table(config: Config, metrics: dict[str, dict[str, Any]], style: str,
                            published: Published | None = None, spread: Spread | None = None
                            ) -> Table:
    """The main table's columns for the ``tables.pretraining`` rows; the caption says which
    rows are fine-tuned (``init_from``) and the schedules of fine-tuned and scratch models."""
    rows = config.tables.pretraining
    table = build_result_table("pretraining", "Pre-training", rows, config, metrics, style,
                               published, spread)
    tail = spread.caption() if table.seeds and spread is not None else ""
    head = table.caption[:len(table.caption) - len(tail)]
    fine_tuned: dict[str, str] = {}
    scratch: list[str] = []
    for row in rows:
        for name in row.experiments:
            init = config.experiments[name].init_from
            if init is not None:
                fine_tuned[name] = init.experiment
            elif name not in scratch:
                scratch.append(name)
    sentences = []
    if fine_tuned:
        labels = [f'"{row.label}"' for row in rows
                  if any(name in fine_tuned for name in row.experiments)]
        starts = _listing(fine_tuned, lambda v: f"from {v}'s exported weights")
        schedules = _listing({e: _schedule(config, e) for e in fine_tuned}, _schedule_text)
        sentences.append(f"Fine-tuned (row{'s' if len(labels) > 1 else ''} "
                         f"{', '.join(labels)}): {', '.join(fine_tuned)}, {starts} (fresh "
                         f"optimizer, schedule and EMA), {schedules}.")
    if scratch:
        schedules = _listing({e: _schedule(config, e) for e in scratch}, _schedule_text)
        sentences.append(f"Trained from scratch: {', '.join(scratch)}, {schedules}.")
    what = ("Pre-training: models trained from scratch against models fine-tuned from another "
            "experiment's weights.")
    head = what + head[len("Pre-training."):]
    table.caption = head + "".join(f" {s}" for s in sentences) + tail
    return table
