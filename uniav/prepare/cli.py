"""Sub-commands of offline preparation: ``synthesize``, ``paper-replica``, ``download``,
``extract``, ``prompts`` and ``probe``.

Heavy modules (PyAV, torch, sentence-transformers, scikit-learn) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from uniav.argtypes import non_negative_int, positive_float, positive_int
from uniav.config.cli import add_config_arguments, config_from_args
from uniav.errors import ConfigError, InputError


def _tasks(args: argparse.Namespace, known: list[str], what: str) -> list[str]:
    tasks = args.task or list(known)
    for task in tasks:
        if task not in known:
            raise ConfigError(f"--task {task}: unknown {what} task (known: {', '.join(known)})")
    return tasks


def _report(step: str, written: dict, start: float) -> None:
    """Print what a step wrote (task: path) and how long it took."""
    for task, path in written.items():
        print(f"{task}: {path}")
    print(f"{step}: {time.perf_counter() - start:.1f} s")


def _add_task_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--task", action="append", default=[], metavar="TASK",
                        help=f"{what} (repeatable; default: all)")


def _synthesize(args: argparse.Namespace) -> int:
    from uniav.prepare.synthetic import synthesize

    config = config_from_args(args)
    known = [t for t in config.task_names if t in config.datasets.synthetic.tasks]
    tasks = _tasks(args, known, "synthetic")
    start = time.perf_counter()
    _report("synthesize", synthesize(config, tasks, force=args.force,
                                     progress=not args.no_progress, jobs=args.jobs), start)
    return 0


def _extract(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.list_encoders:
        from uniav.prepare.encoders import list_encoders

        rows = list_encoders(config.features)
        width = max(len(row["name"]) for row in rows)
        for row in rows:
            chosen = " (selected)" if row["name"] in (config.features.visual_encoder,
                                                      config.features.audio_encoder) else ""
            print(f"{row['name']:<{width}}  {row['modality']:<6}  dim {row['dim']:<5}  "
                  f"{row['input']}; {row['description']}{chosen}")
        return 0
    from uniav.prepare.extract import extract

    tasks = _tasks(args, config.task_names, "")
    start = time.perf_counter()
    _report("extract", extract(config, tasks, force=args.force, progress=not args.no_progress,
                               jobs=args.jobs), start)
    return 0


def _prompts(args: argparse.Namespace) -> int:
    from uniav.prepare.prompts import build_all_prompts

    config = config_from_args(args)
    tasks = _tasks(args, config.task_names, "")
    start = time.perf_counter()
    _report("prompts", build_all_prompts(config, tasks, force=args.force), start)
    return 0


def _probe(args: argparse.Namespace) -> int:
    from uniav.prepare.probe import format_table, plot_probe, run_probes

    from uniav.fileio import refuse_output_over_input

    config = config_from_args(args)
    tasks = _tasks(args, config.task_names, "")
    inputs = {"--config": args.config,
              **{f"annotations of task {task}": config.task_spec(task).data.annotations
                 for task in tasks}}
    refuse_output_over_input({"--json": args.json}, {**inputs, "--figure": args.figure})
    refuse_output_over_input({"--figure": args.figure}, inputs)
    results = run_probes(config, tasks)
    print(format_table(results))
    if args.figure:
        plot_probe(results, args.figure)
        print(f"wrote {args.figure}")
    if args.json:
        from uniav.fileio import atomic_write_json

        atomic_write_json(args.json, results)
        print(f"wrote {args.json}")
    else:
        print(json.dumps(results, indent=2))
    return 0


def _download(args: argparse.Namespace) -> int:
    from uniav.prepare.download import LOCK_FILE_NAME, download_manifest

    config = config_from_args(args)
    paper = config.datasets.paper
    if not paper.manifest:
        print(f"{args.config}: datasets.paper.manifest is empty: nothing to download")
        return 0
    root = args.root if args.root is not None else paper.root
    if Path(root).exists() and not Path(root).is_dir():
        raise InputError("the benchmark root is not a directory", file=root,
                         field="--root" if args.root is not None else "datasets.paper.root")
    results = download_manifest(
        paper.manifest, root, only=args.only, pin_unknown=args.pin_unknown_checksums,
        retries=args.retries, timeout=args.timeout,
        progress=False if args.no_progress else None)
    width = max(len(result.name) for result in results) if results else 0
    for result in results:
        line = f"{result.name:<{width}}  {result.action:<16}  {result.path}"
        if result.unpacked_to is not None:
            line += f"  [{result.unpack_action}: {result.unpacked_to}]"
        if result.pinned:
            line += f"  [SHA-256 pinned in {root}/{LOCK_FILE_NAME}]"
        print(line)
    print(f"{len(results)} manifest entr{'y' if len(results) == 1 else 'ies'} in place under {root}")
    return 0


def _paper_replica(args: argparse.Namespace) -> int:
    from uniav.prepare.paper_replica import write_paper_replica

    start = time.perf_counter()
    summary = write_paper_replica(args.directory, seed=args.seed, size=args.size,
                                  layout=args.layout, feature_pool=args.feature_pool,
                                  force=args.force)
    for task, counts in summary["counts"].items():
        dataset = summary["datasets"][task]["dataset"]
        subsets = ", ".join(f"{subset} {numbers['videos']} videos / {numbers['annotations']} "
                            f"annotations" for subset, numbers in counts.items())
        print(f"{task} ({dataset}, {summary['classes'][task]} classes): {subsets}")
    print(f"wrote the {args.size} replica (seed {args.seed}, {args.layout}) under "
          f"{args.directory} in {time.perf_counter() - start:.1f} s; planted quirks: "
          f"{args.directory}/replica.json")
    if args.layout == "archives":
        print("next: uniav download --set benchmark=paper "
              f"--set datasets.paper.root={args.directory} --pin-unknown-checksums")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``synthesize``, ``paper-replica``, ``download``, ``extract``, ``prompts`` and
    ``probe``.

    Args:
        subparsers: the ``uniav`` command's sub-parsers.
    """
    p = subparsers.add_parser("synthesize", help="generate the synthetic benchmark (media + "
                              "annotations) from datasets.synthetic")
    add_config_arguments(p)
    _add_task_argument(p, "task to generate")
    p.add_argument("--force", action="store_true", help="regenerate complete outputs too")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="worker processes (default: %(default)s; a rule passes its threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_synthesize)

    p = subparsers.add_parser("extract", help="decode media and write the feature stores")
    add_config_arguments(p)
    _add_task_argument(p, "task to extract")
    p.add_argument("--force", action="store_true", help="re-extract videos already stored")
    p.add_argument("--list-encoders", action="store_true",
                   help="print the encoder registry and exit")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="worker processes (default: %(default)s; a rule passes its threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=_extract)

    p = subparsers.add_parser("prompts", help="compute the class-prompt embeddings")
    add_config_arguments(p)
    _add_task_argument(p, "task")
    p.add_argument("--force", action="store_true", help="rewrite up-to-date outputs too")
    p.set_defaults(handler=_prompts)

    p = subparsers.add_parser("probe", help="linear probe of the extracted features "
                              "(A+V, audio-only, visual-only accuracy per task)")
    add_config_arguments(p)
    _add_task_argument(p, "task")
    p.add_argument("--figure", default=None, metavar="PNG", help="write a bar chart")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    p.set_defaults(handler=_probe)

    parser = subparsers.add_parser(
        "download", help="fetch, verify and unpack the paper benchmark (datasets.paper.manifest)",
        description="Bring every file of datasets.paper.manifest into place under the benchmark "
                    "root: take hand-downloaded files (local paths, file://) or download them "
                    "(http, https), trying each entry's url and then its mirrors, verify SHA-256, "
                    "unpack archives safely. Files already present with the right checksum are "
                    "not fetched again. See docs/datasets.md.")
    add_config_arguments(parser)
    parser.add_argument("--only", nargs="+", action="extend", metavar="NAME", default=None,
                        help="process only these manifest entries (by name)")
    parser.add_argument("--root", default=None, metavar="DIR",
                        help="benchmark root the manifest's dest paths are relative to "
                             "(default: datasets.paper.root)")
    parser.add_argument("--pin-unknown-checksums", action="store_true",
                        help="accept entries whose sha256 is null: trust each file on first "
                             "download and record its SHA-256 in <root>/checksums.lock.json, "
                             "against which later runs verify it")
    parser.add_argument("--retries", type=non_negative_int, default=5, metavar="N",
                        help="retries of a failed HTTP transfer (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                        help="HTTP connect and read timeout (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_download)

    parser = subparsers.add_parser(
        "paper-replica",
        help="write a seeded miniature of the paper benchmark's hand-downloaded files",
        description="Write under DIR a replica of the released ActivityNet 1.3, DESED and "
                    "UnAV-100 files (annotation JSON, ONE-PEACE feature archives, prompt "
                    "embeddings) under the manifest's file names in DIR/downloads/<dataset>/, "
                    "with random but learnable features and the quirks of the real files planted "
                    "in known numbers (DIR/replica.json). Then `uniav download --set "
                    "benchmark=paper --set datasets.paper.root=DIR --pin-unknown-checksums` "
                    "takes, verifies and unpacks them offline with the shipped params.yaml. "
                    "Same seed and size: byte-identical files.")
    parser.add_argument("directory", metavar="DIR",
                        help="where to write (created; must be empty unless --force)")
    parser.add_argument("--seed", type=non_negative_int, default=0, metavar="N",
                        help="seed of every random draw (default: %(default)s)")
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny",
                        help="tiny: tens of videos per dataset; real: the released video "
                             "counts and lengths (tens of GB unless --feature-pool) "
                             "(default: %(default)s)")
    parser.add_argument("--layout", choices=("archives", "unpacked"), default="archives",
                        help="archives: the hand-downloaded files under DIR/downloads/; "
                             "unpacked: the layout `uniav download` leaves (no archives) "
                             "(default: %(default)s)")
    parser.add_argument("--feature-pool", type=positive_int, default=None, metavar="K",
                        help="write only K distinct feature files per dataset, modality and "
                             "length and repeat them (hard links with --layout unpacked)")
    parser.add_argument("--force", action="store_true",
                        help="allow a non-empty DIR: remove a previous replica's files there "
                             "(downloads/<dataset>/, <dataset>/, checksums.lock.json, "
                             "replica.json) first")
    parser.set_defaults(handler=_paper_replica)
