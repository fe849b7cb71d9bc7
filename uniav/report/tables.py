"""The paper tables, built from the metrics JSON files written by ``uniav evaluate`` — only.

Tables (each as ``<name>.md``, ``<name>.csv`` and ``<name>.tex`` under ``results/tables/``):

* ``main`` — rows ``tables.main`` of ``params.yaml`` (single-task vs naive multi-task vs UniAV).
  A row names a label and the experiments that supply its task columns: the columns of task
  ``t`` come from the row's experiment whose ``tasks`` include ``t``.  Columns per task are the
  paper's: TAL mAP at tIoU 0.5 / 0.75 / 0.95 and the average over 0.50:0.05:0.95; SED and AVEL
  mAP at 0.1 … 0.9 and the average (Markdown, meant for reading, shows 0.5 / 0.7 / 0.9 / avg).
* ``ablation`` — rows ``tables.ablation``, same columns.
* ``sed_extras`` — PSDS1, PSDS2 and collar-based F1 of the SED column of every row, labelled as
  extras (mAP stays the paper-comparable number).

With ``benchmark: paper`` and ``tables.published`` set, the published numbers of a cited data
file (:func:`load_published`) are shown below the measured rows of the main and ablation tables.

Numbers are percentages with two decimals; a missing value is shown as ``–`` (Markdown, LaTeX)
or left empty (CSV).  Each table states the benchmark, the split and the tIoU thresholds.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from uniav.config import Config, TableRow
from uniav.errors import InputError
from uniav.fileio import atomic_write_text, load_json_file, load_yaml_file

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

#: SED extras shown in the ``sed_extras`` table: (key in ``metrics["tasks"]["sed"]["sed"]``, header).
SED_EXTRAS = (("psds1", "PSDS1"), ("psds2", "PSDS2"), ("collar_f1_macro", "Collar F1 (macro)"))

MISSING = "–"
_TOLERANCE = 1e-6


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


@dataclass
class Row:
    """A table row: its label, where its values came from, and the values (fractions in [0, 1])."""

    label: str
    values: dict[Column, float | None]
    source: str = "measured"
    experiments: dict[str, str] = field(default_factory=dict)


@dataclass
class Table:
    """A rendered-ready table: a caption, column groups and rows."""

    name: str
    title: str
    caption: str
    columns: list[Any]  # Column, or ExtraColumn in the SED extras table
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Tasks of the column groups, in column order."""
        seen: list[str] = []
        for column in self.columns:
            if column.task not in seen:
                seen.append(column.task)
        return seen


# --------------------------------------------------------------------------------------------
# Reading metrics
# --------------------------------------------------------------------------------------------

def load_metrics(metrics_dir: str | Path, experiments: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Read ``<metrics_dir>/<experiment>.json`` for each experiment.

    Raises:
        InputError: naming the file when it is missing, not JSON, or lacks ``tasks``.
    """
    metrics: dict[str, dict[str, Any]] = {}
    for name in experiments:
        path = Path(metrics_dir) / f"{name}.json"
        data = load_json_file(path, missing=f"metrics of experiment {name!r} not found "
                                            f"(run `uniav evaluate`)")
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
            raise InputError("expected an object with a 'tasks' mapping", file=path, field="tasks")
        for task, task_metrics in data["tasks"].items():
            _check_task_metrics(path, task, task_metrics)
        metrics[name] = data
    return metrics


def _check_task_metrics(path: Path, task: str, task_metrics: Any) -> None:
    where = f"tasks.{task}"
    if not isinstance(task_metrics, dict):
        raise InputError("expected an object", file=path, field=where)
    thresholds, values = task_metrics.get("thresholds"), task_metrics.get("mAP")
    if not isinstance(thresholds, list) or not isinstance(values, list):
        raise InputError("needs 'thresholds' and 'mAP' lists", file=path, field=where)
    if len(thresholds) != len(values):
        raise InputError(f"{len(thresholds)} thresholds but {len(values)} mAP values",
                         file=path, field=f"{where}.mAP")
    if not isinstance(task_metrics.get("average_mAP"), (int, float)):
        raise InputError("'average_mAP' must be a number", file=path, field=f"{where}.average_mAP")


def _value_at(task_metrics: dict[str, Any], threshold: float | None) -> float | None:
    """mAP at a threshold (or the average), or ``None`` if that threshold was not evaluated."""
    if threshold is None:
        return float(task_metrics["average_mAP"])
    for t, value in zip(task_metrics["thresholds"], task_metrics["mAP"]):
        if abs(float(t) - threshold) < _TOLERANCE:
            return None if value is None else float(value)
    return None


def _evaluated_thresholds(metrics: Iterable[dict[str, Any]]) -> list[float]:
    found: list[float] = []
    for task_metrics in metrics:
        for t in task_metrics["thresholds"]:
            if not any(abs(float(t) - f) < _TOLERANCE for f in found):
                found.append(float(t))
    return sorted(found)


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
    chosen = [t for t in evaluated if any(abs(t - p) < _TOLERANCE for p in preferred)]
    if chosen:
        return chosen
    if style == "full" or len(evaluated) <= 3:
        return list(evaluated)
    return [evaluated[0], evaluated[len(evaluated) // 2], evaluated[-1]]


# --------------------------------------------------------------------------------------------
# Building tables
# --------------------------------------------------------------------------------------------

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
    """Experiments whose metrics the tables read (main rows, then ablation rows), no repeats."""
    names: list[str] = []
    for row in [*config.tables.main, *config.tables.ablation]:
        for name in row.experiments:
            if name not in names:
                names.append(name)
    return names


def table_names(config: Config) -> list[str]:
    """Names of the tables ``uniav tables`` writes for this configuration (without extension)."""
    names = ["main"]
    if config.tables.ablation:
        names.append("ablation")
    if any("sed" in row_sources(row, config, table)
           for table, rows in (("main", config.tables.main), ("ablation", config.tables.ablation))
           for row in rows):
        names.append("sed_extras")
    return names


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


def _header_caption(config: Config, metrics: dict[str, dict[str, Any]], tasks: list[str],
                    what: str) -> str:
    benchmark = config.benchmark + (f" (scale {config.scale})" if config.scale != "default" else "")
    splits = sorted({str(m.get("split", "test")) for m in metrics.values()}) or ["test"]
    subsets = ", ".join(f"{_group_header(t)}: {config.task_spec(t).data.subsets.test}"
                        for t in tasks)
    averages = []
    for task in tasks:
        evaluated = _evaluated_thresholds(m["tasks"][task] for m in metrics.values()
                                          if task in m["tasks"])
        if evaluated:
            averages.append(f"{_group_header(task)} {_describe_thresholds(evaluated)}")
    return (f"{what} Benchmark: {benchmark}. Split: {'/'.join(splits)} "
            f"(annotation subsets {subsets}). Detection mAP (%) at the tIoU thresholds shown; "
            f"avg = mean mAP over tIoU {'; '.join(averages)}.")


def build_result_table(name: str, title: str, rows: list[TableRow], config: Config,
                       metrics: dict[str, dict[str, Any]], style: str,
                       published: "Published | None" = None) -> Table:
    """A mAP table (main or ablation) in the given column style.

    Args:
        name: ``main`` or ``ablation`` (also the key in the published-numbers file).
        title: heading of the table.
        rows: the configured rows.
        config: the configuration (experiments' task sets, task order, subsets).
        metrics: metrics JSON per experiment (:func:`load_metrics`).
        style: ``"full"`` or ``"compact"`` (see :data:`PAPER_THRESHOLDS`).
        published: published numbers to show below the measured rows, if any.
    """
    sources = [row_sources(row, config, name) for row in rows]
    tasks = [t for t in config.tasks if any(t in s for s in sources)]
    columns: list[Column] = []
    for task in tasks:
        evaluated = _evaluated_thresholds(
            metrics[s[task]]["tasks"][task] for s in sources
            if task in s and task in metrics[s[task]]["tasks"])
        columns.extend(Column(task, t) for t in display_thresholds(task, evaluated, style))
        columns.append(Column(task, None))
    table_rows = []
    for row, source in zip(rows, sources):
        values: dict[Column, float | None] = {}
        for column in columns:
            experiment = source.get(column.task)
            task_metrics = metrics[experiment]["tasks"].get(column.task) if experiment else None
            values[column] = None if task_metrics is None else _value_at(task_metrics, column.threshold)
        table_rows.append(Row(row.label, values, "measured", dict(source)))
    used = {e: metrics[e] for s in sources for e in s.values()}
    caption = _header_caption(config, used, tasks, f"{title}.")
    table = Table(name, title, caption, columns, table_rows)
    if published is not None:
        published.extend(table)
    return table


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
        """``sed psds1`` ..."""
        return f"sed {self.key}"


def build_sed_extras_table(config: Config, metrics: dict[str, dict[str, Any]]) -> Table:
    """PSDS1, PSDS2 and collar F1 of the SED column of each main and ablation row.

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
                column: _number_or_none(extras.get(column.key)) for column in extra_columns}
            values[average] = None if sed_metrics is None else _value_at(sed_metrics, None)
            rows.append(Row(row.label, values, "measured", {"sed": experiment}))
    used = {e: metrics[e] for e in seen}
    caption = _header_caption(config, used, ["sed"],
                              "SED extras (not paper-comparable; mAP remains the paper's metric). "
                              "PSDS1/PSDS2 (sed_scores_eval) and collar-based F1 (0.2 s collar, "
                              "20 % offset tolerance), macro over classes, in %.")
    return Table("sed_extras", "SED extras", caption, [*extra_columns, average], rows)


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(float(value)) else float(value)


# --------------------------------------------------------------------------------------------
# Published numbers
# --------------------------------------------------------------------------------------------

@dataclass
class Published:
    """Published numbers of a cited source (see ``workflow/published/``).

    File layout (YAML)::

        source:
          citation: "T. Geng et al., ... arXiv:2404.03179"
          url: https://arxiv.org/abs/2404.03179
          location: "Table 2"          # where in the source
          transcribed_by: "..."         # who copied the numbers, and from which version
        unit: percent                   # values as printed in the paper
        tables:
          main:
            - label: "UniAV"
              values:
                tal: {0.5: 12.3, 0.75: ..., 0.95: ..., avg: ...}
                sed: {...}
          ablation: [...]

    A ``null`` value means "not transcribed" and is shown as missing.
    """

    path: Path
    citation: str
    url: str
    location: str
    tables: dict[str, list[dict[str, Any]]]

    def extend(self, table: Table) -> None:
        """Append this source's rows of ``table.name`` (matching its columns) and a citation note."""
        entries = self.tables.get(table.name) or []
        if not entries:
            return
        for entry in entries:
            values: dict[Column, float | None] = {}
            for column in table.columns:
                task_values = entry["values"].get(column.task) or {}
                values[column] = _published_value(task_values, column.threshold)
            table.rows.append(Row(f"{entry['label']} (published)", values, "published"))
        missing = sum(v is None for row in table.rows if row.source == "published"
                      for v in row.values.values())
        note = f"Published: {self.citation}"
        if self.location:
            note += f", {self.location}"
        if self.url:
            note += f" ({self.url})"
        note += f"; transcribed in {self.path}."
        if missing:
            note += (f" {missing} published value(s) are not transcribed yet and are shown as "
                     f"{MISSING}.")
        table.notes.append(note)


def _published_value(task_values: dict[Any, Any], threshold: float | None) -> float | None:
    """A published percentage as a fraction, or ``None`` when not given."""
    for key, value in task_values.items():
        if threshold is None:
            matches = str(key) == "avg"
        else:
            try:
                matches = str(key) != "avg" and abs(float(key) - threshold) < _TOLERANCE
            except ValueError:
                matches = False
        if matches:
            return None if value is None else float(value) / 100.0
    return None


def load_published(path: str | Path) -> Published:
    """Read and validate a published-numbers file (layout in :class:`Published`).

    Raises:
        InputError: naming the file and field on any problem.
    """
    path = Path(path)
    data = load_yaml_file(path, missing="published-numbers file not found (tables.published)",
                          error=lambda message: InputError(message, file=path))
    if not isinstance(data, dict):
        raise InputError("expected a mapping", file=path)
    unknown = set(data) - {"source", "unit", "tables"}
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)}", file=path)
    source = data.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("citation"), str):
        raise InputError("source.citation is required (a string)", file=path, field="source")
    if data.get("unit", "percent") != "percent":
        raise InputError("only unit: percent is supported", file=path, field="unit")
    tables = data.get("tables") or {}
    if not isinstance(tables, dict):
        raise InputError("expected a mapping of table name to rows", file=path, field="tables")
    for name, entries in tables.items():
        if not isinstance(entries, list):
            raise InputError("expected a list of rows", file=path, field=f"tables.{name}")
        for i, entry in enumerate(entries):
            where = f"tables.{name}[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("label"), str) \
                    or not isinstance(entry.get("values"), dict):
                raise InputError("each row needs 'label' (string) and 'values' (mapping)",
                                 file=path, field=where)
            for task, task_values in entry["values"].items():
                if not isinstance(task_values, dict):
                    raise InputError("expected a mapping of threshold (or avg) to value",
                                     file=path, field=f"{where}.values.{task}")
                for key, value in task_values.items():
                    if value is not None and (isinstance(value, bool)
                                              or not isinstance(value, (int, float))):
                        raise InputError(f"expected a number or null, got {value!r}", file=path,
                                         field=f"{where}.values.{task}.{key}")
    return Published(path=path, citation=source["citation"], url=str(source.get("url") or ""),
                     location=str(source.get("location") or ""), tables=tables)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def format_percent(value: float | None, decimals: int = 2) -> str:
    """A fraction as a percentage with ``decimals`` decimals, or ``–`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{100.0 * value:.{decimals}f}"


def _group_header(task: str) -> str:
    return TASK_TITLES.get(task, task.upper())


def render_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown: heading, caption, one header row, one row per table row."""
    headers = ["Method"] + [
        column.threshold_text if isinstance(column, ExtraColumn)
        else f"{_group_header(column.task)} {column.threshold_text}"
        for column in table.columns]
    lines = [f"## {table.title}", "", table.caption, "",
             "| " + " | ".join(headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|"]
    for row in table.rows:
        cells = [_markdown_escape(row.label)] + [format_percent(row.values.get(c)) for c in table.columns]
        lines.append("| " + " | ".join(cells) + " |")
    if not table.rows:
        lines.append("| (no rows configured) |" + " |" * len(table.columns))
    lines.append("")
    sources = [f"{row.label}: " + ", ".join(f"{_group_header(t)} from `{e}`"
                                            for t, e in row.experiments.items())
               for row in table.rows if row.experiments]
    if sources:
        lines.append("Experiments: " + "; ".join(sources) + ".")
        lines.append("")
    for note in table.notes:
        lines.extend([note, ""])
    return "\n".join(lines)


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_csv(table: Table) -> str:
    """CSV: ``label``, one column per value (percent, two decimals; empty when missing),
    ``source`` (measured / published) and ``experiments`` (``task=experiment;...``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["label", *[c.csv_header for c in table.columns], "source", "experiments"])
    for row in table.rows:
        cells = [format_percent(row.values.get(c)) for c in table.columns]
        writer.writerow([row.label, *["" if cell == MISSING else cell for cell in cells],
                         row.source, ";".join(f"{t}={e}" for t, e in row.experiments.items())])
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(table: Table) -> str:
    """A booktabs ``table`` with one column group per task (needs ``\\usepackage{booktabs}``)."""
    groups: list[tuple[str, int]] = []
    for column in table.columns:
        title = "SED extras" if isinstance(column, ExtraColumn) else _group_header(column.task)
        if groups and groups[-1][0] == title:
            groups[-1] = (title, groups[-1][1] + 1)
        else:
            groups.append((title, 1))
    spec = "l" + "".join(" " + "c" * width for _, width in groups)
    group_cells, rules, start = [], [], 2
    for title, width in groups:
        group_cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(title)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    sub_headers = [latex_escape(c.threshold_text if c.threshold is not None or isinstance(c, ExtraColumn)
                                else "Avg") for c in table.columns]
    lines = ["% Generated by `uniav tables` from the metrics JSON files; do not edit.",
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(table.caption)}}}",
             rf"\label{{tab:{table.name}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & " + " & ".join(group_cells) + r" \\",
             " ".join(rules),
             "Method & " + " & ".join(sub_headers) + r" \\", r"\midrule"]
    previous_source = None
    for row in table.rows:
        if previous_source == "measured" and row.source == "published":
            lines.append(r"\midrule")
        previous_source = row.source
        cells = [latex_escape(row.label)] + [
            "--" if format_percent(row.values.get(c)) == MISSING else format_percent(row.values.get(c))
            for c in table.columns]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.notes:
        lines.append(rf"\par\smallskip\footnotesize {latex_escape(note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def build_tables(config: Config, metrics_dir: str | Path,
                 published_path: str | Path | None = None) -> dict[str, dict[str, Table]]:
    """Every table of the configuration, per name, in both column styles.

    Args:
        config: the validated configuration.
        metrics_dir: the directory of ``<experiment>.json`` metrics files.
        published_path: the published-numbers file; by default ``tables.published`` when the
            benchmark is ``paper`` (published numbers are not comparable on the synthetic one).

    Returns:
        ``{name: {"full": Table, "compact": Table}}``.
    """
    metrics = load_metrics(metrics_dir, table_experiments(config))
    if published_path is None and config.benchmark == "paper" and config.tables.published:
        published_path = config.tables.published
    published = load_published(published_path) if published_path else None
    tables: dict[str, dict[str, Table]] = {}
    for name in table_names(config):
        if name == "sed_extras":
            table = build_sed_extras_table(config, metrics)
            tables[name] = {"full": table, "compact": table}
            continue
        rows = config.tables.main if name == "main" else config.tables.ablation
        title = "Main results" if name == "main" else "Ablation"
        tables[name] = {style: build_result_table(name, title, rows, config, metrics, style,
                                                  published)
                        for style in ("full", "compact")}
    return tables


def write_tables(config: Config, metrics_dir: str | Path, output_dir: str | Path,
                 published_path: str | Path | None = None) -> list[Path]:
    """Write ``<name>.md`` (compact columns), ``<name>.csv`` and ``<name>.tex`` (full columns).

    Returns:
        The written paths.
    """
    output_dir = Path(output_dir)
    written = []
    for name, styles in build_tables(config, metrics_dir, published_path).items():
        for suffix, text in ((".md", render_markdown(styles["compact"])),
                             (".csv", render_csv(styles["full"])),
                             (".tex", render_latex(styles["full"]))):
            path = output_dir / f"{name}{suffix}"
            atomic_write_text(path, text)
            written.append(path)
    return written
