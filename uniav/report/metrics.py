"""Reading the metrics JSON files written by ``uniav evaluate``, and the flat DVC summary.

A metrics file ``<metrics_dir>/<experiment>.json`` holds ``tasks: {task: {thresholds, mAP,
average_mAP, ...}}`` and, at the top level, the ``protocol`` (``released`` / ``clean``) the
experiment was trained and evaluated under.  The tables refuse a file whose protocol is not the
configuration's (a file without the key is taken to be under the configuration's protocol).

``results/metrics/summary.json`` (:func:`summary`, :func:`write_summary`) is the headline number
of each experiment and task for ``dvc metrics show``: ``{experiment: {task: average mAP}}``,
plain numbers only (fractions in [0, 1], as in the metrics files).  With several seeds
(``seeds:``) each number is an object ``{"mean", "std", "n"}`` over the experiment's runs
(sample standard deviation, ddof 1; ``dvc metrics show`` prints ``<experiment>.<task>.mean``...).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from uniav.config import Config
from uniav.errors import ConfigError, InputError
from uniav.fileio import atomic_write_json, load_json_file

#: Two thresholds closer than this are the same threshold.
TOLERANCE = 1e-6

#: SED extras of ``metrics["tasks"]["sed"]["sed"]``: (key, header in the SED extras table).
SED_EXTRAS = (("psds1", "PSDS1"), ("psds2", "PSDS2"), ("collar_f1_macro", "Collar F1 (macro)"))


def load_metrics(metrics_dir: str | Path, experiments: Iterable[str], *,
                 protocol: str | None = None) -> dict[str, dict[str, Any]]:
    """Read ``<metrics_dir>/<experiment>.json`` for each experiment.

    Args:
        metrics_dir: directory of the metrics files.
        experiments: the experiments to read.
        protocol: when given, every file's top-level ``protocol`` must equal it (a file without
            the key is taken to be under this protocol).

    Raises:
        InputError: naming the file when it is missing, not JSON, lacks ``tasks``, or was
            written under another protocol.
    """
    metrics: dict[str, dict[str, Any]] = {}
    for name in experiments:
        path = Path(metrics_dir) / f"{name}.json"
        data = load_json_file(path, missing=f"metrics of experiment {name!r} not found "
                                            f"(run `uniav evaluate`)")
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
            raise InputError("expected an object with a 'tasks' mapping", file=path, field="tasks")
        for task, task_metrics in data["tasks"].items():
            check_task_metrics(path, f"tasks.{task}", task_metrics)
        if protocol is not None:
            _check_protocol(path, data, protocol)
        metrics[name] = data
    return metrics


def _check_protocol(path: Path, data: dict[str, Any], protocol: str) -> None:
    found = data.get("protocol", protocol)
    if not isinstance(found, str):
        raise InputError(f"expected a protocol name, got {found!r}", file=path, field="protocol")
    if found != protocol:
        raise InputError(f"these metrics were computed under protocol {found!r}, but the "
                         f"configuration's protocol is {protocol!r}; one table never mixes "
                         f"protocols (re-run `uniav evaluate` under {protocol!r}, or set "
                         f"protocol: {found})", file=path, field="protocol")


def check_task_metrics(path: Path, where: str, task_metrics: Any) -> None:
    """Refuse task metrics (at field ``where`` of ``path``) without ``thresholds`` and ``mAP``
    lists of one length and a numeric ``average_mAP`` (NaN passes: a value the tables leave
    out) - a metrics file's ``tasks.<task>``, a cross-task file's ``pairs.<pair>.own`` /
    ``.cross``."""
    if not isinstance(task_metrics, dict):
        raise InputError("expected an object with 'thresholds', 'mAP' and 'average_mAP'",
                         file=path, field=where)
    thresholds, values = task_metrics.get("thresholds"), task_metrics.get("mAP")
    if not isinstance(thresholds, list) or not isinstance(values, list):
        raise InputError("needs 'thresholds' and 'mAP' lists", file=path, field=where)
    if len(thresholds) != len(values):
        raise InputError(f"{len(thresholds)} thresholds but {len(values)} mAP values",
                         file=path, field=f"{where}.mAP")
    if not isinstance(task_metrics.get("average_mAP"), (int, float)):   # NaN: "no value"
        raise InputError("'average_mAP' must be a number", file=path, field=f"{where}.average_mAP")


def value_at(task_metrics: dict[str, Any], threshold: float | None) -> float | None:
    """mAP at a threshold (or the average), or ``None`` if that threshold was not evaluated."""
    if threshold is None:
        return float(task_metrics["average_mAP"])
    for t, value in zip(task_metrics["thresholds"], task_metrics["mAP"]):
        if abs(float(t) - threshold) < TOLERANCE:
            return None if value is None else float(value)
    return None


def evaluated_thresholds(metrics: Iterable[dict[str, Any]]) -> list[float]:
    """Every threshold of the given task metrics, sorted, without near-duplicates."""
    found: list[float] = []
    for task_metrics in metrics:
        for t in task_metrics["thresholds"]:
            if not any(abs(float(t) - f) < TOLERANCE for f in found):
                found.append(float(t))
    return sorted(found)


def number_or_none(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is not a number (or is NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(float(value)) else float(value)


# --------------------------------------------------------------------------------------------
# The flat summary for DVC
# --------------------------------------------------------------------------------------------

def summary(metrics: dict[str, dict[str, Any]], tasks: Iterable[str]) -> dict[str, Any]:
    """``{experiment: {task: average mAP}}`` (fractions in [0, 1]).

    Only the average over the task's tIoU thresholds: ``dvc metrics show`` prints one column per
    number, so per-threshold values (10 per TAL task, 9 per SED/AVEL task) would make it hundreds
    of characters wide; they are in the tables and in the experiment's metrics file.  Only finite
    numbers (JSON has no NaN): a missing average is left out.  Tasks in ``tasks`` order (those
    an experiment has).
    """
    flat: dict[str, Any] = {}
    for experiment, data in metrics.items():
        per_task: dict[str, float] = {}
        for task in tasks:
            task_metrics = data["tasks"].get(task)
            if task_metrics is None:
                continue
            number = number_or_none(task_metrics.get("average_mAP"))
            if number is not None and math.isfinite(number):
                per_task[task] = number
        flat[experiment] = per_task
    return flat


def write_summary(config: Config, metrics_dir: str | Path, path: str | Path,
                  experiments: Iterable[str]) -> Path:
    """Write :func:`summary` of ``experiments`` (their metrics files, protocol-checked) to ``path``;
    with several seeds, of the means over every run of each experiment, with their standard
    deviations and count (``{experiment: {task: {"mean", "std", "n"}}}``).

    Raises:
        ConfigError: if ``path`` is the metrics file of an experiment.
        InputError: as :func:`load_metrics`.
    """
    from uniav.config import all_runs
    from uniav.report.seeds import load_experiment_metrics

    path = Path(path)
    experiments = list(experiments)
    for run, name, _ in all_runs(config):
        if path.resolve() == (Path(metrics_dir) / f"{run}.json").resolve():
            raise ConfigError(f"experiments.{name}: its metrics file {path} is where the "
                              f"summary goes; rename the experiment")
    metrics, spread = load_experiment_metrics(config, metrics_dir, experiments,
                                              protocol=config.protocol)
    flat = summary(metrics, config.task_names)
    if spread.n >= 2:
        flat = {name: {task: {"mean": mean, "n": spread.n,
                              "std": number_or_none(spread.std[name]["tasks"][task]["average_mAP"])}
                       for task, mean in per_task.items()}
                for name, per_task in flat.items()}
    atomic_write_json(path, flat)
    return path
