"""Sub-commands about the configuration, and the config arguments every sub-command shares."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uniav.config import Config, json_schema, load_config, to_plain


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH`` and repeatable ``--set KEY=VALUE`` to a sub-command."""
    parser.add_argument("--config", default="params.yaml", metavar="PATH",
                        help="the params.yaml to read (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config value, e.g. --set scale=tiny (repeatable)")


def config_from_args(args: argparse.Namespace) -> Config:
    """The validated configuration named by ``--config`` with ``--set`` overrides applied."""
    return load_config(args.config, args.overrides)


def primary_seed(args: argparse.Namespace, config: Config) -> int:
    """The top-level ``seed`` without the command's own ``--set seed=...`` (the pipeline's runs
    pass their seed so): the seed whose run of an experiment bears the experiment's name
    (:mod:`uniav.config.runs`)."""
    kept = [item for item in args.overrides if item.partition("=")[0].strip() != "seed"]
    return config.seed if len(kept) == len(args.overrides) else load_config(args.config, kept).seed


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.path, args.overrides)
    experiments = ", ".join(config.experiments)
    print(f"{args.path}: OK (benchmark={config.benchmark}, protocol={config.protocol}, "
          f"scale={config.scale}, "
          f"tasks={', '.join(config.task_names)}; experiments: {experiments})")
    if args.show:
        print(json.dumps(to_plain(config), indent=2))
    return 0


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output is None:
        print(text, end="")
        return 0
    out = Path(args.output)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != text:
            print(f"{out} is out of date: run `uniav schema --output {out}`")
            return 1
        print(f"{out}: up to date")
        return 0
    from uniav.fileio import atomic_write_text

    atomic_write_text(out, text)
    print(f"wrote {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``check-config`` and ``schema``."""
    p = subparsers.add_parser("check-config", help="validate params.yaml and print a summary")
    p.add_argument("path", nargs="?", default="params.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--show", action="store_true", help="print the resolved configuration")
    p.set_defaults(handler=_check_config)

    p = subparsers.add_parser("schema", help="write the JSON schema of params.yaml (for Snakemake)")
    p.add_argument("--output", default=None, help="file to write (default: stdout)")
    p.add_argument("--check", action="store_true", help="only check that --output is up to date")
    p.set_defaults(handler=_schema)
