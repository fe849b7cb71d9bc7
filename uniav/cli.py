"""The ``uniav`` console command.

Each area of the package contributes its sub-commands through a ``register(subparsers)``
function in its own ``cli`` module (listed in :data:`COMMAND_MODULES`).  Those modules import
nothing heavy at module level, so ``uniav score`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from uniav.errors import UniAVError

#: Modules that each define ``register(subparsers)``.
COMMAND_MODULES = (
    "uniav.config_cli",
    "uniav.evaluation.cli",
    "uniav.data.cli",
    "uniav.data.download_cli",
    "uniav.engine.cli",
    "uniav.pipeline.cli",
    "uniav.prepare.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="uniav",
        description="UniAV: localize visual actions, sound events and audio-visual events.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # an area not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``uniav`` command; returns the process exit status."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        status = args.handler(args)
    except UniAVError as exc:
        print(f"uniav {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uniav {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
