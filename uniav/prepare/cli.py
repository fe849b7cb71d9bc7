"""``uniav paper-replica``: write a miniature of the paper's released files, from a seed."""

from __future__ import annotations

import argparse
import time


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
              f"--set datasets.paper.root={args.directory} --pin-unknown-checksums "
              "(with the manifest's prompt entries pointed at downloads/<dataset>/<prompt>.npy)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``paper-replica``."""
    parser = subparsers.add_parser(
        "paper-replica",
        help="write a seeded miniature of the paper benchmark's hand-downloaded files",
        description="Write under DIR a replica of the released ActivityNet 1.3, DESED and "
                    "UnAV-100 files (annotation JSON, ONE-PEACE feature archives, prompt "
                    "embeddings) under the manifest's file names in DIR/downloads/<dataset>/, "
                    "with random but learnable features and the quirks of the real files planted "
                    "in known numbers (DIR/replica.json). Then `uniav download --set "
                    "benchmark=paper --set datasets.paper.root=DIR --pin-unknown-checksums` "
                    "takes, verifies and unpacks them offline (with the manifest's prompt "
                    "entries pointed at downloads/<dataset>/<prompt>.npy). Same seed and size: "
                    "byte-identical files.")
    parser.add_argument("directory", metavar="DIR",
                        help="where to write (created; must be empty unless --force)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of every random draw (default: %(default)s)")
    parser.add_argument("--size", choices=("tiny", "real"), default="tiny",
                        help="tiny: tens of videos per dataset; real: the released video "
                             "counts and lengths (tens of GB unless --feature-pool) "
                             "(default: %(default)s)")
    parser.add_argument("--layout", choices=("archives", "unpacked"), default="archives",
                        help="archives: the hand-downloaded files under DIR/downloads/; "
                             "unpacked: the layout `uniav download` leaves (no archives) "
                             "(default: %(default)s)")
    parser.add_argument("--feature-pool", type=int, default=None, metavar="K",
                        help="write only K distinct feature files per dataset, modality and "
                             "length and repeat them (hard links with --layout unpacked)")
    parser.add_argument("--force", action="store_true",
                        help="allow a non-empty DIR: remove a previous replica's files there "
                             "(downloads/<dataset>/, <dataset>/, checksums.lock.json, "
                             "replica.json) first")
    parser.set_defaults(handler=_paper_replica)
