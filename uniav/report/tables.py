"""The paper tables, built from the metrics JSON files written by ``uniav evaluate`` — only.

Tables (each as ``<name>.md``, ``<name>.csv`` with its sidecar ``<name>.csv-metadata.json``, and
``<name>.tex`` under ``results/tables/``):

* ``main`` — rows ``tables.main`` of ``params.yaml`` (single-task vs naive multi-task vs UniAV).
  A row names a label and the experiments that supply its task columns: the columns of task
  ``t`` come from the row's experiment whose ``tasks`` include ``t``.  Columns per task are the
  paper's: TAL mAP at tIoU 0.5 / 0.75 / 0.95 and the average over 0.50:0.05:0.95; SED and AVEL
  mAP at 0.1 … 0.9 and the average (Markdown, meant for reading, shows 0.5 / 0.7 / 0.9 / avg).
* ``ablation`` — rows ``tables.ablation``, same columns.
* ``open_set`` — rows ``tables.open_set`` (experiments with ``held_out_classes``): per task the
  average mAP of the seen classes, of the novel (held-out) ones and their mean, from the
  metrics' ``class_groups`` (:mod:`~uniav.report.beyond_main`).
* ``cross_task`` — rows ``tables.cross_task``: each task's test videos prompted with another
  task's names of the concepts they share, against the task's own names, from the runs'
  ``<run>.cross_task.json`` written by ``uniav cross-task`` (:mod:`~uniav.report.cross_task`).
* ``pretraining`` — rows ``tables.pretraining``, the main table's columns; the caption names
  the fine-tuned rows (``init_from``) and the schedules.
* ``sed_extras`` — PSDS1, PSDS2 and collar-based F1 of the SED column of every main and
  ablation row, labelled as extras (mAP stays the paper-comparable number).

A table whose rows are not configured (an empty list) is not written (``main`` always is).

With ``benchmark: paper`` and ``tables.published`` set, the published numbers of a cited data
file (:func:`load_published`) are shown below the measured rows of the main and ablation tables.

With ``seeds:`` (several runs per experiment, :mod:`uniav.report.seeds`) every cell is the mean
over the seeds' runs; Markdown and LaTeX show ``mean ± std`` (sample standard deviation, ddof 1),
the CSV has a ``<column> std`` column after each value column, and every caption ends with
``Mean ± sample standard deviation (ddof 1) over n = <k> seeds (<seeds>).``  With one seed
nothing of this appears.

Numbers are percentages with two decimals; a missing value is shown as ``–`` (Markdown), ``--``
(LaTeX) or left empty (CSV).  Each caption states the benchmark, the split, the tIoU thresholds
and the protocol; every metrics file of the tables must be under the configuration's protocol.

The parts: :mod:`~uniav.report.metrics` (reading the metrics files; the flat
``summary.json`` for DVC), :mod:`~uniav.report.table_data` (rows, columns, captions),
:mod:`~uniav.report.published` (the cited numbers), :mod:`~uniav.report.render` (pandas:
Markdown, CSV, LaTeX).  This module puts them together and re-exports what callers use.
"""

from __future__ import annotations

from pathlib import Path

from uniav.config import Config, run_seeds, to_plain
from uniav.fileio import atomic_write_text
from uniav.report.beyond_main import build_open_set_table, build_pretraining_table
from uniav.report.cross_task import build_cross_task_table, cross_task_path, load_cross_task
from uniav.report.metrics import load_metrics, write_summary
from uniav.report.seeds import load_experiment_metrics
from uniav.report.published import Published, load_published
from uniav.report.render import (format_percent, latex_escape, render_csv, render_csv_metadata,
                                 render_latex, render_markdown)
from uniav.report.table_data import (MISSING, PAPER_THRESHOLDS, TASK_TITLES, Column, ExtraColumn,
                                     GroupColumn, Row, Table, build_result_table,
                                     build_sed_extras_table, cross_task_experiments,
                                     describe_protocol, display_thresholds, row_sources,
                                     table_experiments, table_names)

__all__ = [
    "MISSING", "PAPER_THRESHOLDS", "TASK_TITLES", "Column", "ExtraColumn", "GroupColumn",
    "Published", "Row", "Table", "build_tables", "cross_task_experiments", "cross_task_path",
    "describe_protocol", "display_thresholds", "format_percent", "latex_escape",
    "load_cross_task", "load_metrics", "load_published", "render_csv", "render_csv_metadata",
    "render_latex", "render_markdown", "row_sources", "table_experiments", "table_names",
    "tables_settings", "write_summary", "write_tables",
]


def build_tables(config: Config, metrics_dir: str | Path,
                 published_path: str | Path | None = None) -> dict[str, dict[str, Table]]:
    """Every table of the configuration, per name, in both column styles.

    Args:
        config: the validated configuration.
        metrics_dir: the directory of ``<run>.json`` metrics files (and of the cross-task
            rows' ``<run>.cross_task.json``).
        published_path: the published-numbers file; by default ``tables.published`` when the
            benchmark is ``paper`` (published numbers are not comparable on the synthetic one).

    Returns:
        ``{name: {"full": Table, "compact": Table}}``.

    Raises:
        InputError: naming the file, when a metrics (or cross-task) file is missing or
            malformed or was written under another protocol than ``config.protocol``, an
            open-set experiment's metrics have no ``class_groups``; or the published file is bad.
    """
    names = table_names(config)
    metrics, spread = load_experiment_metrics(config, metrics_dir, table_experiments(config),
                                              protocol=config.protocol)
    if published_path is None and config.benchmark == "paper" and config.tables.published:
        published_path = config.tables.published
    published = load_published(published_path) if published_path else None
    tables: dict[str, dict[str, Table]] = {}
    for name in names:
        table: Table | None = None
        if name == "sed_extras":
            table = build_sed_extras_table(config, metrics, spread)
        elif name == "open_set":
            table = build_open_set_table(config, metrics, spread, metrics_dir)
        elif name == "cross_task":
            cross, cross_spread = load_cross_task(config, metrics_dir)
            table = build_cross_task_table(config, cross, cross_spread)
        if table is not None:  # one column style
            tables[name] = {"full": table, "compact": table}
        elif name == "pretraining":
            tables[name] = {style: build_pretraining_table(config, metrics, style, published,
                                                           spread)
                            for style in ("full", "compact")}
        else:
            rows = config.tables.main if name == "main" else config.tables.ablation
            title = "Main results" if name == "main" else "Ablation"
            tables[name] = {style: build_result_table(name, title, rows, config, metrics,
                                                      style, published, spread)
                            for style in ("full", "compact")}
    return tables


def write_tables(config: Config, metrics_dir: str | Path, output_dir: str | Path,
                 published_path: str | Path | None = None) -> list[Path]:
    """Write ``<name>.md`` (compact columns), ``<name>.csv`` with its caption sidecar
    ``<name>.csv-metadata.json``, and ``<name>.tex`` (full columns).

    Returns:
        The written paths.
    """
    output_dir = Path(output_dir)
    written = []
    for name, styles in build_tables(config, metrics_dir, published_path).items():
        full = styles["full"]
        for file_name, text in (
                (f"{name}.md", render_markdown(styles["compact"])),
                (f"{name}.csv", render_csv(full)),
                (f"{name}.csv-metadata.json", render_csv_metadata(full, f"{name}.csv")),
                (f"{name}.tex", render_latex(full))):
            path = output_dir / file_name
            atomic_write_text(path, text)
            written.append(path)
    return written


def tables_settings(config: Config) -> dict:
    """Every setting ``uniav tables`` reads: the table rows, the experiments' task sets, the
    tasks and their test subsets (captions), benchmark, scale, protocol (and what the protocol's
    caption says about validation), the published-numbers file, and the seeds when there are
    several (absent otherwise: one seed's settings are those without ``seeds``).

    With rows beyond main and ablation (each list only when configured, so that a configuration
    without them keeps its settings): ``beyond`` holds what their captions state — the
    experiments' ``held_out_classes`` (open set), ``init_from`` (pre-training), epochs and
    warm-up epochs, the main training's — and, with cross-task rows, the task pairs and their
    shared classes (``cross_task_pairs``: key -> {class: other task's name})."""
    from uniav.data.concepts import cross_task_pairs

    published = (config.tables.published if config.benchmark == "paper" else None)
    tables = {"main": to_plain(config.tables.main), "ablation": to_plain(config.tables.ablation)}
    for name in ("open_set", "cross_task", "pretraining"):
        if getattr(config.tables, name):
            tables[name] = to_plain(getattr(config.tables, name))
    settings = {"tables": tables,
                "experiments": {name: e.tasks for name, e in config.experiments.items()},
                "tasks": list(config.tasks),
                "subsets": {t: config.task_spec(t).data.subsets.test for t in config.tasks},
                "benchmark": config.benchmark, "scale": config.scale, "protocol": config.protocol,
                "validation": {"split": config.train.validation_split,
                               "gate": to_plain(config.train.plateau_gate)},
                "published": published}
    if len(run_seeds(config)) >= 2:
        settings["seeds"] = run_seeds(config)
    experiments = [name for table in ("open_set", "pretraining")
                   for row in getattr(config.tables, table) for name in row.experiments]
    if experiments:
        settings["beyond"] = {
            "main_schedule": [config.train.epochs, config.train.warmup_epochs],
            "experiments": {name: {
                "held_out_classes": to_plain(config.experiments[name].held_out_classes),
                "init_from": to_plain(config.experiments[name].init_from),
                "schedule": [config.experiment(name).train.epochs,
                             config.experiment(name).train.warmup_epochs]}
                for name in dict.fromkeys(experiments)}}
    if config.tables.cross_task:
        settings["cross_task_pairs"] = {pair.key: pair.classes
                                        for pair in cross_task_pairs(config)}
    return settings
