"""``uniav download``: fetch, verify and unpack the files of the paper benchmark's manifest."""

from __future__ import annotations

import argparse
import logging

from uniav.config_cli import add_config_arguments, config_from_args

log = logging.getLogger(__name__)


def _download(args: argparse.Namespace) -> int:
    from uniav.data.download import LOCK_FILE_NAME, download_manifest

    config = config_from_args(args)
    paper = config.datasets.paper
    if not paper.manifest:
        print(f"{args.config}: datasets.paper.manifest is empty: nothing to download")
        return 0
    root = args.root if args.root is not None else paper.root
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Register ``download``."""
    parser = subparsers.add_parser(
        "download", help="fetch, verify and unpack the paper benchmark (datasets.paper.manifest)",
        description="Bring every file of datasets.paper.manifest into place under the benchmark "
                    "root: download (http, https, file://) or take hand-downloaded files (local "
                    "paths), resume partial downloads, verify SHA-256, unpack archives safely. "
                    "Files already present with the right checksum are not fetched again. "
                    "See docs/datasets.md.")
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
    parser.add_argument("--retries", type=int, default=5, metavar="N",
                        help="retries of a failed HTTP transfer, each resuming (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="socket timeout (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_download)
