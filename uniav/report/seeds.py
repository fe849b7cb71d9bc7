"""Several seeds per experiment (``seeds:``): reading every run's metrics, mean and spread.

Every run of an experiment writes its own metrics file (``<run>.json``; run names in
:mod:`uniav.config.runs`).  :func:`load_experiment_metrics` reads all of them and returns, per
experiment, one metrics mapping of the same shape holding the **mean** over the runs, and one
holding the **sample standard deviation** (ddof = 1) when there are at least two runs.  The
tables are built from the means exactly as from a single run's file, the spread alongside
(:class:`Spread`); with one seed the mean is the run's own file, unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from uniav.config import Config, experiment_runs, run_seeds
from uniav.errors import InputError
from uniav.report.metrics import TOLERANCE, load_metrics, number_or_none


@dataclass
class Spread:
    """The seeds of the runs and the per-experiment standard deviations (empty: one seed)."""

    seeds: list[int]
    std: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of seeds (runs per experiment)."""
        return len(self.seeds)

    def caption(self) -> str:
        """The caption's sentence about seeds (empty with one seed)."""
        if self.n < 2:
            return ""
        listed = ", ".join(str(seed) for seed in self.seeds)
        return (f" Mean ± sample standard deviation (ddof 1) over n = {self.n} seeds "
                f"({listed}).")


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; None with one value); None if any value
    is missing."""
    numbers = [number_or_none(v) for v in values]
    if not numbers or any(v is None for v in numbers):
        return None, None
    mean = sum(numbers) / len(numbers)  # type: ignore[arg-type]
    if len(numbers) < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1)  # type: ignore[operator]
    return mean, math.sqrt(variance)


def mean_std_lists(rows: list[list[Any]], length: int
                   ) -> tuple[list[float | None], list[float | None]]:
    """Position by position over ``length`` positions, the mean and sample standard deviation
    of the runs' lists (:func:`mean_std`; a run's list too short counts as missing there)."""
    pairs = [mean_std([row[i] if i < len(row) else None for row in rows])
             for i in range(length)]
    return [m for m, _ in pairs], [s for _, s in pairs]


def _aggregate_task(runs: list[dict[str, Any]], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    first = runs[0]
    thresholds = [float(t) for t in first["thresholds"]]
    for other in runs[1:]:
        theirs = [float(t) for t in other["thresholds"]]
        if len(theirs) != len(thresholds) or any(abs(a - b) > TOLERANCE
                                                 for a, b in zip(theirs, thresholds)):
            raise InputError(f"the seeds' runs were evaluated at different tIoU thresholds "
                             f"({thresholds} vs {theirs})", field=where)
    mean: dict[str, Any] = {"thresholds": thresholds}
    std: dict[str, Any] = {"thresholds": thresholds}
    pairs = [mean_std([r["mAP"][i] for r in runs]) for i in range(len(thresholds))]
    mean["mAP"], std["mAP"] = [m for m, _ in pairs], [s for _, s in pairs]
    mean["average_mAP"], std["average_mAP"] = mean_std([r["average_mAP"] for r in runs])
    extras = [r.get("sed") or {} for r in runs]
    if any(extras):
        keys = [k for k in extras[0] if isinstance(extras[0][k], (int, float))]
        pairs = {k: mean_std([e.get(k) for e in extras]) for k in keys}
        mean["sed"] = {k: m for k, (m, _) in pairs.items()}
        std["sed"] = {k: s for k, (_, s) in pairs.items()}
    groups = [r.get("class_groups") or {} for r in runs]
    if any(groups):
        mean["class_groups"], std["class_groups"] = _aggregate_groups(groups)
        # the spread of the open-set "mean" column: of each run's mean of seen and novel
        std["seen_novel_mean"] = mean_std([seen_novel_mean(g) for g in groups])[1]
    classes = [r.get("per_class") or {} for r in runs]
    if any(classes):
        mean["per_class"], std["per_class"] = {}, {}
        for label, values in classes[0].items():
            length = len(values) if isinstance(values, list) else 1
            rows = [(c.get(label) if isinstance(c.get(label), list) else [c.get(label)])
                    for c in classes]
            mean["per_class"][label], std["per_class"][label] = mean_std_lists(rows, length)
    return mean, std


def seen_novel_mean(class_groups: dict[str, Any] | None) -> float | None:
    """The average of the ``seen`` and the ``novel`` groups' average mAP (open set); None when
    either is missing."""
    groups = class_groups or {}
    values = [number_or_none((groups.get(name) or {}).get("average_mAP"))
              for name in ("seen", "novel")]
    if any(v is None for v in values):
        return None
    return (values[0] + values[1]) / 2  # type: ignore[operator]


def _aggregate_groups(groups: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and std of each class group's ``average_mAP`` and ``mAP`` (None where a run has
    none); its ``classes`` and ``thresholds`` from the first run."""
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for name, first in groups[0].items():
        runs = [g.get(name) or {} for g in groups]
        kept = {k: v for k, v in first.items() if k not in ("mAP", "average_mAP")}
        mean[name], std[name] = dict(kept), dict(kept)
        mean[name]["average_mAP"], std[name]["average_mAP"] = mean_std(
            [r.get("average_mAP") for r in runs])
        lists = [r.get("mAP") for r in runs]
        if all(isinstance(values, list) for values in lists):
            mean[name]["mAP"], std[name]["mAP"] = mean_std_lists(
                lists, len(lists[0]))  # type: ignore[arg-type]
        else:
            mean[name]["mAP"], std[name]["mAP"] = None, None
    return mean, std


def aggregate_runs(runs: list[dict[str, Any]], experiment: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mean and the standard deviation of several runs' metrics of one experiment, each in
    the shape of a metrics file (top-level keys but ``tasks`` from the first run; a task every
    run has).  One run: the run itself and an empty spread."""
    if len(runs) == 1:
        return runs[0], {"tasks": {}}
    mean = {key: value for key, value in runs[0].items() if key != "tasks"}
    mean["tasks"], std = {}, {"tasks": {}}
    for task in runs[0]["tasks"]:
        if not all(task in r["tasks"] for r in runs):
            raise InputError(f"experiment {experiment!r}: task {task!r} is missing from some "
                             f"seeds' metrics", field=f"tasks.{task}")
        mean["tasks"][task], std["tasks"][task] = _aggregate_task(
            [r["tasks"][task] for r in runs], f"tasks.{task}.thresholds")
    return mean, std


def load_experiment_metrics(config: Config, metrics_dir: str | Path, experiments: Iterable[str],
                            *, protocol: str | None = None
                            ) -> tuple[dict[str, dict[str, Any]], Spread]:
    """Every run's metrics of each experiment (:func:`~uniav.report.metrics.load_metrics`),
    aggregated: ``({experiment: mean metrics}, Spread)``."""
    experiments = list(experiments)
    runs = {name: [run for run, _ in experiment_runs(config, name)] for name in experiments}
    loaded = load_metrics(metrics_dir, [run for names in runs.values() for run in names],
                          protocol=protocol)
    means: dict[str, dict[str, Any]] = {}
    spread = Spread(run_seeds(config))
    for name in experiments:
        means[name], std = aggregate_runs([loaded[run] for run in runs[name]], name)
        if spread.n >= 2:
            spread.std[name] = std
    return means, spread
