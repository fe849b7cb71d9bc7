"""The cross-task table, from the files ``uniav cross-task`` writes (not the metrics JSON).

Each run of a ``tables.cross_task`` experiment (:func:`~uniav.report.table_data.
cross_task_experiments`) has ``<metrics_dir>/<run>.cross_task.json`` (:func:`cross_task_path`;
:mod:`uniav.engine.cross_task`)::

    {"experiment", "split", "benchmark", "protocol", "weights", ...,
     "pairs": {"<task>.<names_from>": {"task", "names_from", "classes": {label: prompt},
                                       "own": <task metrics>, "cross": <task metrics>}}}

with a pair for every :class:`~uniav.data.concepts.CrossTaskPair` whose ``task`` the experiment
trains.  ``own``: the task's test videos scored over the shared concepts' classes prompted with
its own names; ``cross``: the same videos and ground truth, prompted with ``names_from``'s names.

The table has one column group per scored task and in it, per other task sharing concepts,
``own (<OTHER> concepts)`` and ``<OTHER> names`` (average mAP over the task's tIoU thresholds).
With several seeds each cell is the mean over the runs and its sample standard deviation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uniav.config import Config, experiment_runs, run_seeds
from uniav.data.concepts import CrossTaskPair, cross_task_pairs
from uniav.errors import InputError
from uniav.fileio import load_json_file
from uniav.report.metrics import _check_protocol, check_task_metrics, number_or_none
from uniav.report.seeds import Spread, _aggregate_task
from uniav.report.table_data import (GroupColumn, Row, Table, caption_setting, caption_thresholds,
                                     cross_task_experiments, describe_protocol, group_header,
                                     row_sources)

#: What a task's test items are called in the caption.
ITEMS = {"sed": "clips"}


def cross_task_path(metrics_dir: str | Path, run: str) -> Path:
    """``<metrics_dir>/<run>.cross_task.json``."""
    return Path(metrics_dir) / f"{run}.cross_task.json"


def _check_pair(path: Path, pair: CrossTaskPair, entry: Any) -> None:
    where = f"pairs.{pair.key}"
    if not isinstance(entry, dict):
        raise InputError("expected an object", file=path, field=where)
    for key, expected in (("task", pair.task), ("names_from", pair.names_from)):
        if entry.get(key) != expected:
            raise InputError(f"expected {expected!r}, got {entry.get(key)!r}", file=path,
                             field=f"{where}.{key}")
    if entry.get("classes") != pair.classes:
        raise InputError(f"scored over the classes {entry.get('classes')!r}, but the "
                         f"configuration's shared concepts are {pair.classes!r} (datasets."
                         f"<benchmark>.tasks.<task>.concepts changed?); re-run `uniav "
                         f"cross-task`", file=path, field=f"{where}.classes")
    if entry.get("no_ground_truth") is True and entry.get("own") is None \
            and entry.get("cross") is None:
        return   # the test split has no instance of the pair's classes: nothing was scored
    for kind in ("own", "cross"):
        check_task_metrics(path, f"{where}.{kind}", entry.get(kind))
        if number_or_none(entry[kind]["average_mAP"]) is None:   # unlike metrics: no NaN
            raise InputError("'average_mAP' must be a number", file=path,
                             field=f"{where}.{kind}.average_mAP")


def read_cross_task_file(config: Config, path: str | Path, experiment: str) -> dict[str, Any]:
    """One run's cross-task file, checked against the configuration.

    Raises:
        InputError: naming the file (and field) when it is missing or not strict JSON, was
            written for another experiment or under another protocol than ``config.protocol``,
            lacks a pair of the experiment's tasks (:func:`~uniav.data.concepts.
            cross_task_pairs`), or a pair's classes or metrics are not the expected ones.
    """
    path = Path(path)
    data = load_json_file(path, missing=f"cross-task metrics of experiment {experiment!r} not "
                                        f"found (run `uniav cross-task`)")
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), dict):
        raise InputError("expected an object with a 'pairs' mapping", file=path, field="pairs")
    if data.get("experiment", experiment) != experiment:
        raise InputError(f"written for experiment {data.get('experiment')!r}, expected "
                         f"{experiment!r}", file=path, field="experiment")
    _check_protocol(path, data, config.protocol)
    for pair in cross_task_pairs(config, config.experiments[experiment].tasks):
        if pair.key not in data["pairs"]:
            raise InputError(f"no pair {pair.key!r} ({group_header(pair.task)} test videos "
                             f"with {group_header(pair.names_from)} names); re-run `uniav "
                             f"cross-task`", file=path, field=f"pairs.{pair.key}")
        _check_pair(path, pair, data["pairs"][pair.key])
    return data


def load_cross_task(config: Config, metrics_dir: str | Path,
                    experiments: list[str] | None = None
                    ) -> tuple[dict[str, dict[str, Any]], Spread]:
    """Every run's cross-task file of each experiment (default:
    :func:`~uniav.report.table_data.cross_task_experiments`), aggregated over the seeds.

    Returns:
        ``({experiment: {"split", ..., "pairs": {key: {"task", "names_from", "classes", "own",
        "cross"}}}}, Spread)``: ``own`` / ``cross`` the mean task metrics over the runs; the
        spread's ``std[experiment]["pairs"][key]["own" | "cross"]`` their sample standard
        deviations (with several seeds).

    Raises:
        InputError: as :func:`read_cross_task_file`; or the runs' thresholds differ.
    """
    names = cross_task_experiments(config) if experiments is None else list(experiments)
    means: dict[str, dict[str, Any]] = {}
    spread = Spread(run_seeds(config))
    for name in names:
        runs = [(cross_task_path(metrics_dir, run), read_cross_task_file(
            config, cross_task_path(metrics_dir, run), name))
            for run, _ in experiment_runs(config, name)]
        first = runs[0][1]
        mean = {key: value for key, value in first.items() if key != "pairs"}
        mean["pairs"], std = {}, {"pairs": {}}
        for pair in cross_task_pairs(config, config.experiments[name].tasks):
            entry = {k: v for k, v in first["pairs"][pair.key].items() if k not in ("own", "cross")}
            std_entry: dict[str, Any] = {}
            for kind in ("own", "cross"):
                if len(runs) == 1:
                    entry[kind] = first["pairs"][pair.key][kind]
                    continue
                if any(data["pairs"][pair.key][kind] is None for _, data in runs):
                    entry[kind] = std_entry[kind] = None   # unscored in some run: missing
                    continue
                entry[kind], std_entry[kind] = _aggregate_task(
                    [data["pairs"][pair.key][kind] for _, data in runs],
                    f"pairs.{pair.key}.{kind}.thresholds")
            mean["pairs"][pair.key], std["pairs"][pair.key] = entry, std_entry
        means[name] = mean
        if spread.n >= 2:
            spread.std[name] = std
    return means, spread


def _items(task: str) -> str:
    return ITEMS.get(task, "videos")


def build_cross_task_table(config: Config, data: dict[str, dict[str, Any]],
                           spread: Spread | None = None) -> Table:
    """Own-name and other-task-name average mAP of each ``tables.cross_task`` row.

    Args:
        config: the configuration (rows, concepts, task order).
        data: :func:`load_cross_task`'s means per experiment.
        spread: its seeds and standard deviations.
    """
    rows = config.tables.cross_task
    sources = [row_sources(row, config, "cross_task") for row in rows]
    pairs = [p for p in cross_task_pairs(config) if any(p.task in s for s in sources)]
    tasks = [t for t in config.tasks if any(p.task == t for p in pairs)]
    columns: list[GroupColumn] = []
    for task in tasks:
        for pair in (p for p in pairs if p.task == task):
            other = group_header(pair.names_from)
            columns.append(GroupColumn(task, f"{pair.key}.own", f"own ({other} concepts)",
                                       f"{pair.key} own avg mAP"))
            columns.append(GroupColumn(task, f"{pair.key}.cross", f"{other} names",
                                       f"{pair.key} cross avg mAP"))
    several = spread is not None and spread.n >= 2
    table_rows = []
    for row, source in zip(rows, sources):
        values: dict[Any, float | None] = {}
        spreads: dict[Any, float | None] = {}
        for column in columns:
            key, kind = column.key.rsplit(".", 1)
            experiment = source.get(column.task)
            entry = data[experiment]["pairs"].get(key) if experiment in data else None
            scored = None if entry is None else entry.get(kind)
            values[column] = None if scored is None else number_or_none(scored["average_mAP"])
            if several and entry is not None:
                std = spread.std.get(experiment, {}).get("pairs", {}).get(key, {})  # type: ignore[union-attr]
                spreads[column] = number_or_none((std.get(kind) or {}).get("average_mAP"))
        table_rows.append(Row(row.label, values, "measured",
                              {t: e for t, e in source.items() if t in tasks}, spreads))
    used = {e: data[e] for s in sources for t, e in s.items() if t in tasks and e in data}
    thresholds = caption_thresholds({t: [m["pairs"][p.key]["own"] for m in used.values()
                                         for p in pairs if p.task == t and p.key in m["pairs"]
                                         and m["pairs"][p.key].get("own") is not None]
                                     for t in tasks})
    listed = "; ".join(
        f"{group_header(p.task)} {_items(p.task)} with {group_header(p.names_from)} names: "
        + ", ".join(f"{label}→{prompt}" for label, prompt in p.classes.items()) for p in pairs)
    example = ""
    if pairs:
        task, other = group_header(pairs[0].task), group_header(pairs[0].names_from)
        items = _items(pairs[0].task)
        example = (f' E.g. "{other} names" under {task}: the {task} test {items} scored over '
                   f"the {task} classes whose concepts {other} names too, prompted with "
                   f'{other}\'s names of them; "own ({other} concepts)": the same {items}, '
                   f"classes and ground truth prompted with {task}'s own names.")
    caption = (
        "Cross-task localization (evaluation only, no training): each task's test videos "
        "prompted with another task's names of the concepts both name, against the task's "
        f"own names.{example} Average mAP (%) over tIoU {thresholds}. Classes compared "
        f"(the task's class→the other task's name): {listed}. "
        + caption_setting(config, [str(m.get("split", "test")) for m in used.values()], tasks)
        + f" Protocol: {describe_protocol(config, tasks)}.")
    if any(value is None for row in table_rows for value in row.values.values()):
        caption += (" A missing value: the test split has no instance of the pair's classes "
                    "(or the model does not have the task).")
    seeds = list(spread.seeds) if several else []  # type: ignore[union-attr]
    if seeds:
        caption += spread.caption()  # type: ignore[union-attr]
    return Table("cross_task", "Cross-task localization", caption, columns, table_rows,
                 seeds=seeds)
