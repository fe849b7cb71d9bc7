"""Sub-commands of the pipeline: tables, figures, tracking-init, gpu-slot.

Heavy modules (matplotlib, mlflow) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from uniav.config_cli import add_config_arguments, config_from_args

LOGGER = logging.getLogger(__name__)


def _tables(args: argparse.Namespace) -> int:
    from uniav.pipeline.tables import write_tables

    config = config_from_args(args)
    for path in write_tables(config, args.metrics_dir, args.output_dir, args.published):
        print(f"wrote {path}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from uniav.pipeline.figures import write_figures

    config = config_from_args(args)
    written = write_figures(config, metrics_dir=args.metrics_dir, models_dir=args.models_dir,
                            predictions_dir=args.predictions_dir, output_dir=args.output_dir,
                            videos_per_task=args.videos)
    for path in written:
        print(f"wrote {path}")
    return 0


def _tracking_init(args: argparse.Namespace) -> int:
    from uniav.tracking import init_store, resolve_tracking_uri

    config = config_from_args(args)
    if not config.tracking.enabled:
        print("tracking disabled (tracking.enabled: false): nothing to do")
        return 0
    uri = resolve_tracking_uri(config.tracking.uri)
    try:
        experiment_id = init_store(uri, config.tracking.experiment_name)
    except Exception as exc:  # mlflow raises MlflowException for an old schema
        if "out-of-date database schema" not in str(exc).lower():
            raise
        LOGGER.info("upgrading the tracking store schema of %s", uri)
        subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", uri], check=True)
        experiment_id = init_store(uri, config.tracking.experiment_name)
    print(f"tracking store {uri}: experiment {config.tracking.experiment_name!r} "
          f"(id {experiment_id}) ready")
    return 0


def _gpu_slot(args: argparse.Namespace) -> int:
    from uniav.pipeline.gpu import exec_in_gpu_slot

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("uniav gpu-slot: error: no command given (uniav gpu-slot -- COMMAND ...)",
              file=sys.stderr)
        return 2
    exec_in_gpu_slot(command, lock_dir=args.lock_dir, gpus=args.gpus)
    return 0  # pragma: no cover - exec does not return


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``tables``, ``figures``, ``tracking-init`` and ``gpu-slot``."""
    p = subparsers.add_parser("tables", help="write the paper tables (Markdown, CSV, LaTeX) "
                                             "from the metrics JSON files")
    add_config_arguments(p)
    p.add_argument("--metrics-dir", default="results/metrics",
                   help="directory of <experiment>.json (default: %(default)s)")
    p.add_argument("--output-dir", default="results/tables", help="default: %(default)s")
    p.add_argument("--published", default=None, metavar="PATH",
                   help="published-numbers file to show alongside (default: tables.published "
                        "when benchmark is paper)")
    p.set_defaults(handler=_tables)

    p = subparsers.add_parser("figures", help="training curves, per-class AP and prediction "
                                              "timelines")
    add_config_arguments(p)
    p.add_argument("--metrics-dir", default="results/metrics", help="default: %(default)s")
    p.add_argument("--models-dir", default="results/models",
                   help="directory of <experiment>/training.json (default: %(default)s)")
    p.add_argument("--predictions-dir", default="results/predictions",
                   help="directory of <experiment>/<task>.json (default: %(default)s)")
    p.add_argument("--output-dir", default="results/figures", help="default: %(default)s")
    p.add_argument("--videos", type=int, default=3, help="test videos per timeline figure")
    p.set_defaults(handler=_figures)

    p = subparsers.add_parser("tracking-init", help="create or upgrade the MLflow store and "
                                                    "experiment (before parallel jobs start)")
    add_config_arguments(p)
    p.set_defaults(handler=_tracking_init)

    p = subparsers.add_parser("gpu-slot", help="run a command on a GPU no other gpu-slot job "
                                               "holds (local multi-GPU runs)")
    p.add_argument("--lock-dir", default=".snakemake/uniav/gpu-locks",
                   help="directory of the per-GPU lock files (default: %(default)s)")
    p.add_argument("--gpus", type=int, default=None,
                   help="number of GPUs (default: count `nvidia-smi -L` lines)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(handler=_gpu_slot)
