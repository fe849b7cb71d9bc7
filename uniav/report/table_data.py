"""The content of the paper tables: columns, rows, values and captions, before any rendering.

A :class:`Table` holds fractions in [0, 1] (``None``: missing); :mod:`uniav.report.render` turns
it into Markdown, CSV and LaTeX.  Every caption states the benchmark, the split, the tIoU
thresholds and the protocol in force (:func:`describe_protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from uniav.config import Config, TableRow
from uniav.errors import InputError
from uniav.report.metrics import (SED_EXTRAS, TOLERANCE, evaluated_thresholds, number_or_none,
                                  value_at)

if TYPE_CHECKING:
    from uniav.report.published import Published
    from uniav.report.seeds import Spread

#: Display names of the tasks (column group headers).
TASK_TITLES = {"tal": "TAL", "sed": "SED", "avel": "AVEL"}

#: The tIoU thresholds the paper's tables report per task: ``full`` for CSV and LaTeX,
#: ``compact`` for Markdown.  ``None`` means every threshold of the metrics file.  A task not
#: listed here (or whose listed thresholds were not evaluated) gets every threshold in ``full``
#: and the first, middle and last in ``compact``.
PAPER_THRESHOLDS: dict[str, dict[str, tuple[float, ...] | None]] = {
    "tal": {"full": (0.5, 0.75, 0.95), "compact": (0.5, 0.75, 0.95)},
    "sed": {"full": None, "compact": (0.5, 0.7, 0.9)},
    "avel": {"full": None, "compact": (0.5, 0.7, 0.9)},
}

#: What a protocol means, as the captions state it (docs/protocol.md has every setting).
PROTOCOL_TEXTS = {
    "clean": "validation on a held-out split; no test data in any decision",
    "released": ("the released code's protocol: the plateau gate reads test-split mAP of the raw "
                 "model, as the released implementation does; the last epoch's EMA weights are "
                 "evaluated"),
}

#: How a missing value is shown (Markdown; LaTeX shows ``--``, CSV leaves the cell empty).
MISSING = "–"


def group_header(task: str) -> str:
    """``TAL`` / ``SED`` / ``AVEL`` (upper case for other tasks)."""
    return TASK_TITLES.get(task, task.upper())


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    """One numeric column: a task and a tIoU threshold (``None``: the average over thresholds)."""

    task: str
    threshold: float | None

    @property
    def threshold_text(self) -> str:
        """``0.5`` / ``0.75`` / ``avg``."""
        return "avg" if self.threshold is None else f"{self.threshold:g}"

    @property
    def csv_header(self) -> str:
        """``tal mAP@0.5`` or ``tal avg mAP``."""
        if self.threshold is None:
            return f"{self.task} avg mAP"
        return f"{self.task} mAP@{self.threshold:g}"


@dataclass(frozen=True)
class ExtraColumn:
    """A non-mAP column of the SED extras table."""

    key: str
    header: str
    task: str = "sed"
    threshold: None = None

    @property
    def threshold_text(self) -> str:
        """The column header (``PSDS1`` ...)."""
        return self.header

    @property
    def csv_header(self) -> str:
        """``sed psds1`` ... (``<task> <key>``)."""
        return f"{self.task} {self.key}"


@dataclass(frozen=True)
class GroupColumn:
    """A named column in a task's column group: open-set ``seen`` / ``novel`` / ``mean``, the
    cross-task ``own (AVEL concepts)`` / ``AVEL names``.  Markdown heads it ``<TASK> <header>``,
    LaTeX puts ``header`` under the task's group, the CSV names it ``<task> <csv_key>``."""

    task: str
    key: str
    header: str
    csv_key: str
    threshold: None = None

    @property
    def threshold_text(self) -> str:
        """The sub-header (``seen``, ``AVEL names`` ...)."""
        return self.header

    @property
    def csv_header(self) -> str:
        """``tal seen avg mAP``, ``sed sed.avel cross avg mAP`` ..."""
        return f"{self.task} {self.csv_key}"


@dataclass
class Row:
    """A table row: its label, where its values came from, and the values (fractions in [0, 1];
    with several seeds the mean over them, and in ``spread`` their sample standard deviation)."""

    label: str
    values: dict[Any, float | None]
    source: str = "measured"
    experiments: dict[str, str] = field(default_factory=dict)
    spread: dict[Any, float | None] = field(default_factory=dict)


@dataclass
class Table:
    """A rendered-ready table: a caption, column groups and rows."""

    name: str
    title: str
    caption: str
    columns: list[Any]  # Column; ExtraColumn (SED extras); GroupColumn (beyond main)
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    #: the seeds the measured values are the mean over, when there are several (else empty)
    seeds: list[int] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Tasks of the column groups, in column order."""
        seen: list[str] = []
        for column in self.columns:
            if column.task not in seen:
                seen.append(column.task)
        return seen


# --------------------------------------------------------------------------------------------
# Rows, columns and captions
# --------------------------------------------------------------------------------------------

def display_thresholds(task: str, evaluated: list[float], style: str) -> list[float]:
    """The thresholds shown for a task: the paper's (:data:`PAPER_THRESHOLDS`) that were evaluated.

    Args:
        task: task name.
        evaluated: thresholds present in the metrics files (sorted).
        style: ``"full"`` (CSV, LaTeX) or ``"compact"`` (Markdown).
    """
    preferred = PAPER_THRESHOLDS.get(task, {}).get(style, ())
    if preferred is None:
        return list(evaluated)
    chosen = [t for t in evaluated if any(abs(t - p) < TOLERANCE for p in preferred)]
    if chosen:
        return chosen
    if style == "full" or len(evaluated) <= 3:
        return list(evaluated)
    return [evaluated[0], evaluated[len(evaluated) // 2], evaluated[-1]]


def row_sources(row: TableRow, config: Config, table: str = "main") -> dict[str, str]:
    """Map each task to the experiment of ``row`` that trained it.

    Raises:
        InputError: if two experiments of the row train the same task (the cell is ambiguous).
    """
    sources: dict[str, str] = {}
    for name in row.experiments:
        for task in config.experiments[name].tasks:
            if task in sources:
                raise InputError(f"row {row.label!r}: task {task!r} is trained by both "
                                 f"{sources[task]!r} and {name!r}", field=f"tables.{table}")
            sources[task] = name
    return sources


def table_experiments(config: Config) -> list[str]:
    """Experiments whose metrics JSON the tables read (main, ablation, open-set, then
    pre-training rows), no repeats.  The cross-task rows' files are others
    (:func:`cross_task_experiments`)."""
    names: list[str] = []
    tables = config.tables
    for row in [*tables.main, *tables.ablation, *tables.open_set, *tables.pretraining]:
        for name in row.experiments:
            if name not in names:
                names.append(name)
    return names


def cross_task_experiments(config: Config) -> list[str]:
    """Experiments of the ``tables.cross_task`` rows with a task that shares concepts with
    another task (:func:`~uniav.data.concepts.cross_task_pairs`), no repeats: the table reads
    each of their runs' ``<run>.cross_task.json`` (:mod:`uniav.report.cross_task`)."""
    from uniav.data.concepts import cross_task_pairs

    names: list[str] = []
    for row in config.tables.cross_task:
        for name in row.experiments:
            if name not in names and cross_task_pairs(config, config.experiments[name].tasks):
                names.append(name)
    return names


def table_names(config: Config) -> list[str]:
    """Names of the tables ``uniav tables`` writes for this configuration (without extension):
    ``main``, then those whose rows are configured: ``ablation``, ``open_set``, ``cross_task``,
    ``pretraining``, and ``sed_extras`` when a main or ablation row has a SED column."""
    names = ["main"]
    for name in ("ablation", "open_set", "cross_task", "pretraining"):
        if getattr(config.tables, name):
            names.append(name)
    if any("sed" in row_sources(row, config, table)
           for table, rows in (("main", config.tables.main), ("ablation", config.tables.ablation))
           for row in rows):
        names.append("sed_extras")
    return names


def describe_protocol(config: Config, tasks: list[str]) -> str:
    """``clean (validation on ...)`` / ``released (the released code's protocol: ...)``.

    ``clean`` never validates on test data (the configuration is refused otherwise) and
    ``released`` always evaluates the last epoch's EMA weights; where a ``released`` run changed
    what the plateau gate reads, the text says so instead of claiming the released behaviour.
    """
    if config.protocol != "released":
        return f"{config.protocol} ({PROTOCOL_TEXTS.get(config.protocol, 'see docs/protocol.md')})"
    gate = config.train.plateau_gate
    changes = []
    if config.train.validation_split != "test":
        changes.append("validation reads the validation split, not the test split")
    if not gate.enabled:
        changes.append("the plateau gate is off")
    elif gate.model != "raw":
        changes.append("the plateau gate reads the EMA model")
    if not changes:
        return f"released ({PROTOCOL_TEXTS['released']})"
    return (f"released (the released code's protocol, changed: {'; '.join(changes)}; the last "
            f"epoch's EMA weights are evaluated)")


def _describe_thresholds(thresholds: list[float]) -> str:
    """``0.50:0.05:0.95`` for an even grid, else a comma list."""
    if len(thresholds) >= 3:
        steps = {round(b - a, 6) for a, b in zip(thresholds, thresholds[1:])}
        if len(steps) == 1:
            step = steps.pop()
            digits = max(_decimals(t) for t in [*thresholds, step])
            return f"{thresholds[0]:.{digits}f}:{step:.{digits}f}:{thresholds[-1]:.{digits}f}"
    return ", ".join(f"{t:g}" for t in thresholds)


def _decimals(value: float) -> int:
    text = f"{value:.6f}".rstrip("0")
    return max(1, len(text.split(".")[1]) if "." in text else 1)


def caption_setting(config: Config, splits: list[str], tasks: list[str]) -> str:
    """``Benchmark: synthetic. Split: test (annotation subsets TAL: testing, ...).``"""
    benchmark = config.benchmark + (f" (scale {config.scale})" if config.scale != "default" else "")
    subsets = ", ".join(f"{group_header(t)}: {config.task_spec(t).data.subsets.test}"
                        for t in tasks)
    return (f"Benchmark: {benchmark}. Split: {'/'.join(sorted(set(splits)) or ['test'])} "
            f"(annotation subsets {subsets}).")


def caption_thresholds(task_metrics: dict[str, list[dict[str, Any]]]) -> str:
    """``TAL 0.50:0.05:0.95; SED 0.1:0.1:0.9`` from task -> the task metrics shown."""
    averages = []
    for task, metrics in task_metrics.items():
        evaluated = evaluated_thresholds(metrics)
        if evaluated:
            averages.append(f"{group_header(task)} {_describe_thresholds(evaluated)}")
    return "; ".join(averages)


def _header_caption(config: Config, metrics: dict[str, dict[str, Any]], tasks: list[str],
                    what: str) -> str:
    splits = [str(m.get("split", "test")) for m in metrics.values()]
    averages = caption_thresholds({task: [m["tasks"][task] for m in metrics.values()
                                          if task in m["tasks"]] for task in tasks})
    return (f"{what} {caption_setting(config, splits, tasks)} Detection mAP (%) at the tIoU "
            f"thresholds shown; avg = mean mAP over tIoU {averages}. "
            f"Protocol: {describe_protocol(config, tasks)}.")


# --------------------------------------------------------------------------------------------
# Building tables
# --------------------------------------------------------------------------------------------

def _std_of(spread: Spread | None, experiment: str | None, task: str) -> dict[str, Any] | None:
    """The standard deviations of an experiment's task (None: one seed, or no such task)."""
    if spread is None or spread.n < 2 or experiment is None:
        return None
    return spread.std.get(experiment, {}).get("tasks", {}).get(task)


def build_result_table(name: str, title: str, rows: list[TableRow], config: Config,
                       metrics: dict[str, dict[str, Any]], style: str,
                       published: Published | None = None, spread: Spread | None = None
                       ) -> Table:
    """A mAP table (main or ablation) in the given column style.

    Args:
        name: ``main`` or ``ablation`` (also the key in the published-numbers file).
        title: heading of the table.
        rows: the configured rows.
        config: the configuration (experiments' task sets, task order, subsets, protocol).
        metrics: metrics JSON per experiment (:func:`~uniav.report.metrics.load_metrics`).
        style: ``"full"`` or ``"compact"`` (see :data:`PAPER_THRESHOLDS`).
        published: published numbers to show below the measured rows, if any.
        spread: the seeds and standard deviations (``metrics`` then holds the means).
    """
    sources = [row_sources(row, config, name) for row in rows]
    tasks = [t for t in config.tasks if any(t in s for s in sources)]
    columns: list[Column] = []
    for task in tasks:
        evaluated = evaluated_thresholds(
            metrics[s[task]]["tasks"][task] for s in sources
            if task in s and task in metrics[s[task]]["tasks"])
        columns.extend(Column(task, t) for t in display_thresholds(task, evaluated, style))
        columns.append(Column(task, None))
    table_rows = []
    for row, source in zip(rows, sources):
        values: dict[Any, float | None] = {}
        spreads: dict[Any, float | None] = {}
        for column in columns:
            experiment = source.get(column.task)
            task_metrics = metrics[experiment]["tasks"].get(column.task) if experiment else None
            values[column] = None if task_metrics is None else value_at(task_metrics, column.threshold)
            std = _std_of(spread, experiment, column.task)
            if std is not None:
                spreads[column] = value_at(std, column.threshold)
        table_rows.append(Row(row.label, values, "measured", dict(source), spreads))
    used = {e: metrics[e] for s in sources for e in s.values()}
    caption = _header_caption(config, used, tasks, f"{title}.")
    seeds = list(spread.seeds) if spread is not None and spread.n >= 2 else []
    table = Table(name, title, caption + (spread.caption() if seeds else ""), columns,
                  table_rows, seeds=seeds)
    if published is not None:
        published.extend(table)
    return table


def build_sed_extras_table(config: Config, metrics: dict[str, dict[str, Any]],
                           spread: Spread | None = None) -> Table:
    """PSDS1, PSDS2 and collar F1 of the SED column of each main and ablation row (with several
    seeds: means, and their standard deviations from ``spread``).

    Rows whose SED experiment already appeared are not repeated.
    """
    rows: list[Row] = []
    seen: set[str] = set()
    extra_columns = [ExtraColumn(key, header) for key, header in SED_EXTRAS]
    average = Column("sed", None)
    for table_name, configured in (("main", config.tables.main), ("ablation", config.tables.ablation)):
        for row in configured:
            experiment = row_sources(row, config, table_name).get("sed")
            if experiment is None or experiment in seen:
                continue
            seen.add(experiment)
            sed_metrics = metrics[experiment]["tasks"].get("sed")
            extras = (sed_metrics or {}).get("sed") or {}
            values: dict[Any, float | None] = {
                column: number_or_none(extras.get(column.key)) for column in extra_columns}
            values[average] = None if sed_metrics is None else value_at(sed_metrics, None)
            spreads: dict[Any, float | None] = {}
            std = _std_of(spread, experiment, "sed")
            if std is not None:
                spreads = {c: number_or_none((std.get("sed") or {}).get(c.key))
                           for c in extra_columns}
                spreads[average] = value_at(std, None)
            rows.append(Row(row.label, values, "measured", {"sed": experiment}, spreads))
    used = {e: metrics[e] for e in seen}
    seeds = list(spread.seeds) if spread is not None and spread.n >= 2 else []
    caption = _header_caption(config, used, ["sed"],
                              "SED extras (not paper-comparable; mAP remains the paper's metric). "
                              "PSDS1/PSDS2 (sed_scores_eval) and collar-based F1 (0.2 s collar, "
                              "20 % offset tolerance), macro over classes, in %.")
    if seeds:
        caption += spread.caption()  # type: ignore[union-attr]
    return Table("sed_extras", "SED extras", caption, [*extra_columns, average], rows,
                 seeds=seeds)
