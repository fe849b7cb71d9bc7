"""Sub-commands of the workflow support: ``tracking-init`` and ``gpu-slot`` (mlflow imported inside)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from uniav.argtypes import non_negative_int
from uniav.config.cli import add_config_arguments, config_from_args
from uniav.errors import InputError

LOGGER = logging.getLogger(__name__)


def _tracking_init(args: argparse.Namespace) -> int:
    from uniav.tracking import init_store, resolve_tracking_uri

    config = config_from_args(args)
    if not config.tracking.enabled:
        print("tracking disabled (tracking.enabled: false): nothing to do")
        return 0
    uri = resolve_tracking_uri(config.tracking.uri)
    experiment_id = init_store(uri, config.tracking.experiment_name, upgrade=True)
    print(f"tracking store {uri}: experiment {config.tracking.experiment_name!r} "
          f"(id {experiment_id}) ready")
    return 0


def _gpu_slot(args: argparse.Namespace) -> int:
    from uniav.pipeline.gpu import exec_in_gpu_slot

    command = list(args.gpu_command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("uniav gpu-slot: error: no command given (uniav gpu-slot -- COMMAND ...)",
              file=sys.stderr)
        return 2
    try:
        Path(args.lock_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file there, no permission, ...
        raise InputError(f"cannot use it as the lock directory ({exc.strerror or exc})",
                         file=args.lock_dir, field="--lock-dir") from None
    try:
        exec_in_gpu_slot(command, lock_dir=args.lock_dir, gpus=args.gpus, count=args.count)
    except ValueError as exc:  # more GPUs asked than there are
        raise InputError(str(exc), field="--count") from None
    return 0  # pragma: no cover - exec does not return


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``tracking-init`` and ``gpu-slot``."""
    p = subparsers.add_parser("tracking-init", help="create or upgrade the MLflow store and "
                                                    "experiment (before parallel jobs start)")
    add_config_arguments(p)
    p.set_defaults(handler=_tracking_init)

    p = subparsers.add_parser("gpu-slot", help="run a command on a GPU no other gpu-slot job "
                                               "holds (local multi-GPU runs)")
    p.add_argument("--lock-dir", default=".snakemake/uniav/gpu-locks",
                   help="directory of the per-GPU lock files (default: %(default)s)")
    p.add_argument("--gpus", type=non_negative_int, default=None,
                   help="number of GPUs (default: count `nvidia-smi -L` lines)")
    # dest gpu_command: "command" is the top-level parser's dest for the sub-command's name
    p.add_argument("--count", type=non_negative_int, default=1,
                   help="GPUs the command needs, e.g. one per torchrun process; 0: none (the "
                        "command sees no GPU, e.g. a CPU job given `--set-resources "
                        "train:gpu=0`) (default: 1)")
    p.add_argument("gpu_command", metavar="command", nargs=argparse.REMAINDER,
                   help="-- COMMAND [ARGS...]")
    p.set_defaults(handler=_gpu_slot)
