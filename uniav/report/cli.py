"""Sub-commands of the report area: ``tables`` and ``figures`` (matplotlib imported inside)."""

from __future__ import annotations

import argparse

from uniav.argtypes import positive_int
from uniav.config.cli import add_config_arguments, config_from_args

def _tables(args: argparse.Namespace) -> int:
    from uniav.report.tables import table_experiments, write_summary, write_tables

    config = config_from_args(args)
    for path in write_tables(config, args.metrics_dir, args.output_dir, args.published):
        print(f"wrote {path}")
    print(f"wrote {write_summary(config, args.metrics_dir, args.summary, table_experiments(config))}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from uniav.report.figures import write_figures

    config = config_from_args(args)
    written = write_figures(config, metrics_dir=args.metrics_dir, models_dir=args.models_dir,
                            predictions_dir=args.predictions_dir, output_dir=args.output_dir,
                            videos_per_task=args.videos)
    for path in written:
        print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``tables`` and ``figures``."""
    p = subparsers.add_parser("tables", help="write the paper tables (Markdown, CSV, LaTeX) "
                                             "and the flat summary.json from the metrics JSON "
                                             "files")
    add_config_arguments(p)
    p.add_argument("--metrics-dir", default="results/metrics/experiments",
                   help="directory of <experiment>.json (default: %(default)s)")
    p.add_argument("--output-dir", default="results/tables", help="default: %(default)s")
    p.add_argument("--published", default=None, metavar="PATH",
                   help="published-numbers file to show alongside (default: tables.published "
                        "when benchmark is paper)")
    p.add_argument("--summary", default="results/metrics/summary.json", metavar="PATH",
                   help="the flat DVC metrics file: {experiment: {task: average mAP}} of the "
                        "table experiments (default: %(default)s)")
    p.set_defaults(handler=_tables)

    p = subparsers.add_parser("figures", help="training curves, per-class AP and prediction "
                                              "timelines")
    add_config_arguments(p)
    p.add_argument("--metrics-dir", default="results/metrics/experiments",
                   help="directory of <experiment>.json (default: %(default)s)")
    p.add_argument("--models-dir", default="results/models",
                   help="directory of <experiment>/training.json (default: %(default)s)")
    p.add_argument("--predictions-dir", default="results/predictions",
                   help="directory of <experiment>/<task>.json (default: %(default)s)")
    p.add_argument("--output-dir", default="results/figures", help="default: %(default)s")
    p.add_argument("--videos", type=positive_int, default=3, help="test videos per timeline figure")
    p.set_defaults(handler=_figures)
