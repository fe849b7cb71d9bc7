"""Manifest-driven download of the paper benchmark: sources and mirrors, SHA-256 verification,
safe unpacking.

Each :class:`~uniav.config.ManifestEntry` of ``datasets.paper.manifest`` names one file: where it
comes from (``url``, then each of ``mirrors``), where it goes (``dest``, relative to the benchmark
root), its SHA-256 and whether it is an archive to unpack.  :func:`download_manifest` brings every
entry into place; :func:`download_entry` does one.  The guarantees, in the order they apply:

* **Nothing is fetched twice.**  A file already at ``dest`` with the expected SHA-256 is used as is
  (no network access at all); an unpacked archive whose completion marker records the expected
  SHA-256, and whose files are all still there, is not fetched or unpacked again, even when the
  archive itself has been deleted to save space.
* **Sources** (:mod:`uniav.prepare.fetch`): ``http(s)://`` URLs (timeouts, retries with back-off;
  no resume, the module says why); ``file://`` URLs; plain local paths (relative ones are relative
  to the root) for files downloaded by hand from pages that cannot be scripted (the released
  features sit behind Baidu Pan share pages).  A local source is hard-linked to ``dest`` when both
  are on one file system (no extra space) and copied otherwise.
* **Mirrors.**  ``url`` is tried first, then each of ``mirrors`` in order: a missing local file or
  a failed download moves on to the next source, and the log says which source was used.  A file
  with the wrong SHA-256 does not: it is an error (a wrong file is not a transient failure).  When
  no source works, a missing hand-downloaded file is reported as such (with what the other sources
  answered), so :func:`download_manifest` goes on with the other entries.
* **Verification before use.**  A file is fetched into ``<dest>.part``, whose SHA-256 is checked
  before it is renamed onto ``dest``.  On a mismatch, or any failure, the ``.part`` is deleted;
  :class:`~uniav.errors.ChecksumError` names the entry, the source, the file and both hashes, and
  whatever was at ``dest`` before is left untouched.  No partial file ever sits under ``dest``.
* **Unknown checksums are refused** unless pinned on first use (:mod:`uniav.prepare.checksums`):
  ``pin_unknown=True`` (``uniav download --pin-unknown-checksums``) trusts the file and records
  its hash in ``<root>/checksums.lock.json``; later runs verify against it.
* **Safe unpacking** (:mod:`uniav.prepare.archives`): every member is validated before anything is
  written, extraction goes into a temp directory swapped into place, and a completion marker
  ``<dest>.unpacked.json`` is written last.

Unpack targets
    ``dest`` of an archive names the archive itself; it unpacks into the sibling directory named by
    ``dest``'s file name up to its first dot: ``desed/av_features.tar.gz`` and
    ``desed/av_features.audio.tar.gz`` both unpack into ``desed/av_features/``.  Several archives
    may share one target (e.g. one per modality); if every member of an archive lies under one
    top-level directory, that level is dropped.  (Design note: an explicit per-entry
    ``unpack_to`` field would be clearer; the name rule keeps the manifest schema smaller.)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from uniav.config import ManifestEntry
from uniav.errors import ChecksumError, ConfigError, InputError
from uniav.fileio import fsync_dir, fsync_file, sha256_file
from uniav.prepare.archives import (ARCHIVE_SUFFIXES, archive_format, is_unpack_complete,
                                    unpack_archive)
from uniav.prepare.checksums import (LOCK_FILE_NAME, ChecksumLock, UnknownChecksumError,
                                     expected_sha256, normalised_sha256, unpinned_message)
from uniav.prepare.fetch import (DownloadError, Source, TransferSettings, download_http,
                                 resolve_sources, take_local)

__all__ = ["LOCK_FILE_NAME", "PART_SUFFIX", "DownloadError", "DownloadResult",
           "MissingSourceError", "UnknownChecksumError", "download_entry", "download_manifest",
           "resolve_dest", "unpack_target"]

log = logging.getLogger(__name__)

#: Suffix of the temp file a source is fetched into before its SHA-256 is checked.
PART_SUFFIX = ".part"


class MissingSourceError(InputError):
    """A hand-downloaded file named by a manifest entry is not where the manifest says (and no
    mirror could provide it)."""


@dataclasses.dataclass(frozen=True)
class DownloadResult:
    """What :func:`download_entry` did for one manifest entry.

    Attributes:
        name: the entry's name.
        path: the verified file (``root/dest``).  For ``action == "unpacked earlier"`` it is
            neither read nor needed (it may have been deleted after the completed unpack).
        sha256: its SHA-256.
        action: ``"present"`` (already there and verified, nothing fetched), ``"downloaded"``
            (HTTP), ``"copied"`` (local source, hard-linked or copied) or ``"unpacked earlier"``
            (an archive whose completion marker matches: nothing read or fetched).
        pinned: whether this call recorded the hash in the lock file (trust on first use).
        unpacked_to: the directory the archive was unpacked into, for ``unpack: true`` entries.
        unpack_action: ``"unpacked"`` or ``"already unpacked"`` for archives, else ``None``.
        source: the ``url`` or mirror the file was taken from (``None`` when nothing was fetched).
    """

    name: str
    path: Path
    sha256: str
    action: str
    pinned: bool = False
    unpacked_to: Path | None = None
    unpack_action: str | None = None
    source: str | None = None


def download_manifest(entries: Sequence[ManifestEntry], root: str | Path, *,
                      only: Iterable[str] | None = None, pin_unknown: bool = False,
                      lock_file: str | Path | None = None, retries: int = 5,
                      timeout: float = 60.0, backoff: float = 1.0, max_backoff: float = 60.0,
                      progress: bool | None = None) -> list[DownloadResult]:
    """Bring every (selected) manifest entry into place under ``root``.

    The whole manifest is checked first (unique names and destinations, safe relative ``dest``,
    supported URL schemes, archive suffixes), then the selected entries without a known SHA-256
    are refused together, before any file is touched, unless ``pin_unknown``.  Entries are then
    processed in order; a failure stops the run, except that missing hand-downloaded files are
    collected and reported together at the end (after every other entry was processed).

    Args:
        entries: the manifest (``config.datasets.paper.manifest``).
        root: the benchmark root every ``dest`` is relative to (``datasets.paper.root``).
        only: entry names to process (default: all); an unknown name is a :class:`ConfigError`.
        pin_unknown: trust entries with ``sha256: null`` on first use and record their hash in
            the lock file (see the module docstring).
        lock_file: the lock file (default ``<root>/checksums.lock.json``).
        retries: retries of a failed HTTP transfer.
        timeout: connect and read timeout in seconds.
        backoff: back-off factor of the retries in seconds (delays double each time).
        max_backoff: cap of the delay (and of a server's ``Retry-After``).
        progress: show tqdm progress bars on stderr (``None``: only when stderr is a terminal).

    Returns:
        One :class:`DownloadResult` per processed entry, in manifest order.

    Raises:
        ConfigError: an invalid manifest or an unknown name in ``only``.
        UnknownChecksumError: entries without a known SHA-256 and ``pin_unknown`` is false.
        MissingSourceError: hand-downloaded files are missing (all of them are listed).
        ChecksumError: a file does not have its expected SHA-256.
        DownloadError: every source of an entry failed for good.
        InputError: an unsafe or corrupt archive.
    """
    root = Path(root)
    entries = list(entries)
    _check_manifest(entries)
    selected = entries
    if only is not None:
        wanted = list(dict.fromkeys(only))
        known = {entry.name for entry in entries}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise ConfigError(f"--only: unknown manifest entr{'y' if len(unknown) == 1 else 'ies'} "
                              f"{', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})")
        selected = [entry for entry in entries if entry.name in wanted]
    lock = ChecksumLock(lock_file if lock_file is not None else root / LOCK_FILE_NAME)
    unpinned = [entry for entry in selected if expected_sha256(entry, lock) is None]
    if unpinned and not pin_unknown:
        raise UnknownChecksumError(unpinned_message(unpinned, root, lock.path))
    results: list[DownloadResult] = []
    missing: list[MissingSourceError] = []
    for entry in selected:
        try:
            results.append(download_entry(
                entry, root, pin_unknown=pin_unknown, lock_file=lock.path, retries=retries,
                timeout=timeout, backoff=backoff, max_backoff=max_backoff, progress=progress))
        except MissingSourceError as exc:
            log.warning("%s: the hand-downloaded file is missing; going on with the other "
                        "entries", entry.name)
            missing.append(exc)
    if len(missing) == 1:
        raise missing[0]
    if missing:
        raise MissingSourceError(f"{len(missing)} hand-downloaded files are missing:\n"
                                 + "\n".join(f"  - {exc}" for exc in missing))
    return results


def download_entry(entry: ManifestEntry, root: str | Path, *, pin_unknown: bool = False,
                   lock_file: str | Path | None = None, retries: int = 5, timeout: float = 60.0,
                   backoff: float = 1.0, max_backoff: float = 60.0,
                   progress: bool | None = None) -> DownloadResult:
    """Fetch (or find), verify and, for archives, unpack one manifest entry.

    Args:
        entry: the manifest entry.
        root: the directory ``entry.dest`` (and relative local sources) are relative to.
        pin_unknown: if the entry has no known SHA-256, trust the file on first use and record
            its hash in the lock file; otherwise such an entry is refused.
        lock_file: the lock file (default ``<root>/checksums.lock.json``).
        retries: retries of a failed HTTP transfer.
        timeout: connect and read timeout in seconds.
        backoff: back-off factor of the retries in seconds.
        max_backoff: cap of the delay.
        progress: show progress bars (``None``: only when stderr is a terminal).

    Returns:
        A :class:`DownloadResult`.

    Raises:
        ConfigError: an invalid ``dest``/``url``/``mirrors``/``sha256``.
        UnknownChecksumError: no known SHA-256 and ``pin_unknown`` is false (nothing is fetched).
        MissingSourceError: the hand-downloaded file is missing and no other source provided it.
        ChecksumError: the file does not have its expected SHA-256 (the previous copy is kept).
        DownloadError: every source failed for good.
        InputError: an unsafe or corrupt archive.
    """
    root = Path(root)
    settings = TransferSettings(retries=retries, timeout=timeout, backoff=backoff,
                                max_backoff=max_backoff, progress=progress)
    dest = resolve_dest(entry, root)
    target = unpack_target(dest) if entry.unpack else None
    lock = ChecksumLock(lock_file if lock_file is not None else root / LOCK_FILE_NAME)
    expected = expected_sha256(entry, lock)
    if expected is None and not pin_unknown:
        raise UnknownChecksumError(unpinned_message([entry], root, lock.path), file=dest)
    sources = resolve_sources(entry, root)

    if target is not None and expected is not None and is_unpack_complete(dest, target, expected):
        log.info("%s: already unpacked into %s (archive SHA-256 %s)", entry.name, target, expected)
        return DownloadResult(entry.name, dest, expected, "unpacked earlier", unpacked_to=target,
                              unpack_action="already unpacked")

    sha256, action, source = _ensure_file(entry, dest, sources, expected, settings)
    pinned = False
    if expected is None:
        lock.pin(entry.name, sha256, url=source.url if source else entry.url, dest=entry.dest,
                 size=dest.stat().st_size)
        log.warning("%s: no SHA-256 in the manifest; trusted on first use and pinned %s in %s",
                    entry.name, sha256, lock.path)
        pinned = True

    unpack_action = None
    if target is not None:
        if is_unpack_complete(dest, target, sha256):
            unpack_action = "already unpacked"
        else:
            unpack_archive(dest, target, archive_sha256=sha256, progress=progress)
            unpack_action = "unpacked"
    return DownloadResult(entry.name, dest, sha256, action, pinned=pinned, unpacked_to=target,
                          unpack_action=unpack_action, source=source.url if source else None)


def resolve_dest(entry: ManifestEntry, root: str | Path) -> Path:
    """The absolute-or-root-joined destination of an entry, after checking it stays inside root.

    Args:
        entry: the manifest entry.
        root: the benchmark root.

    Returns:
        ``root / entry.dest``.

    Raises:
        ConfigError: ``dest`` is empty, absolute or has a ``..`` component.
    """
    dest = entry.dest.strip()
    pure = PurePosixPath(dest.replace("\\", "/"))
    if not dest or pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ConfigError(f"manifest entry {entry.name!r}: dest {entry.dest!r} must be a relative "
                          "path inside the root, without '..'")
    return Path(root) / Path(*pure.parts)


def unpack_target(dest: str | Path) -> Path:
    """The directory an archive at ``dest`` unpacks into: its file name up to the first dot.

    Args:
        dest: the archive path, e.g. ``desed/av_features.audio.tar.gz``.

    Returns:
        The sibling directory, e.g. ``desed/av_features``.

    Raises:
        ConfigError: the name has no known archive suffix or nothing before its first dot.
    """
    dest = Path(dest)
    if archive_format(dest) is None:
        raise ConfigError(f"{dest}: unpack: true needs an archive name ending in one of "
                          f"{', '.join(ARCHIVE_SUFFIXES)}")
    base = dest.name.split(".", 1)[0]
    if not base:
        raise ConfigError(f"{dest}: an archive name must not start with a dot "
                          "(the part before the first dot names the directory it unpacks into)")
    return dest.parent / base


def _check_manifest(entries: Sequence[ManifestEntry]) -> None:
    names: set[str] = set()
    dests: dict[str, str] = {}
    for entry in entries:
        if not entry.name:
            raise ConfigError(f"manifest entry with dest {entry.dest!r}: empty name")
        if entry.name in names:
            raise ConfigError(f"manifest entry {entry.name!r}: the name is used twice")
        names.add(entry.name)
        dest = resolve_dest(entry, Path(".")).as_posix()
        if dest in dests:
            raise ConfigError(f"manifest entry {entry.name!r}: dest {entry.dest!r} is also the "
                              f"dest of {dests[dest]!r}")
        dests[dest] = entry.name
        normalised_sha256(entry)
        resolve_sources(entry, Path("."))
        if entry.unpack:
            unpack_target(dest)


def _ensure_file(entry: ManifestEntry, dest: Path, sources: list[Source], expected: str | None,
                 settings: TransferSettings) -> tuple[str, str, Source | None]:
    """Make ``dest`` a verified copy of the entry's file; return ``(sha256, action, source)``.

    Sources are tried in order; a missing local file or a failed download moves on to the next,
    a checksum mismatch does not.
    """
    present = None
    if dest.is_file():
        present = sha256_file(dest)
        if expected is None or present == expected:
            log.info("%s: %s is present with SHA-256 %s: not fetched again", entry.name, dest,
                     present)
            return present, "present", None
        log.warning("%s: %s is present but its SHA-256 is %s, not %s: fetching it again (the "
                    "present copy stays until the new one is verified)", entry.name, dest,
                    present, expected)
    elif os.path.lexists(dest):
        raise InputError("exists but is not a regular file", file=dest)

    part = dest.with_name(dest.name + PART_SUFFIX)
    failures: list[tuple[Source, DownloadError | None]] = []  # None: a missing local file
    for source in sources:
        is_dest = source.kind == "local" and os.path.abspath(source.path) == os.path.abspath(dest)
        if source.kind == "local" and not source.path.is_file():
            failures.append((source, None))
            continue
        if is_dest:  # the file dropped at dest is the source, and its SHA-256 is wrong
            raise ChecksumError(f"SHA-256 mismatch for manifest entry {entry.name!r}: expected "
                                f"{expected}, got {present} (the file was left as it is)",
                                file=dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if source.kind == "local":
                log.info("%s: taking %s", entry.name, source.path)
                actual = take_local(source.path, part, label=entry.name,
                                    progress=settings.progress)
                action = "copied"
            else:
                log.info("%s: downloading %s", entry.name, source.url)
                actual = download_http(source.url, part, settings, label=entry.name, dest=dest)
                action = "downloaded"
        except DownloadError as exc:
            part.unlink(missing_ok=True)
            failures.append((source, exc))
            if source is not sources[-1]:
                log.warning("%s: %s: %s; trying the next source", entry.name, source.url,
                            exc.reason)
            continue
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        if expected is not None and actual != expected:
            part.unlink(missing_ok=True)
            kept = "; the previous copy at the destination was kept" if dest.exists() else ""
            rest = ("; the next sources were not tried (a wrong file is not a transient failure)"
                    if source is not sources[-1] else "")
            raise ChecksumError(f"SHA-256 mismatch for manifest entry {entry.name!r} from "
                                f"{source.url}: expected {expected}, got {actual}; the file was "
                                f"discarded{kept}{rest}", file=dest)
        fsync_file(part)
        os.replace(part, dest)
        fsync_dir(dest.parent)
        log.info("%s: %s -> %s (SHA-256 %s) from %s", entry.name, action, dest, actual,
                 source.url)
        return actual, action, source
    raise _no_source_error(entry, dest, failures)


def _no_source_error(entry: ManifestEntry, dest: Path,
                     failures: list[tuple[Source, DownloadError | None]]) -> InputError:
    """The error when no source worked: a missing hand-downloaded file if one was expected (the
    fix is the same: save it there), else the download error(s)."""
    missing = [source for source, error in failures if error is None]
    errors = [(source, error) for source, error in failures if error is not None]
    if not missing and len(errors) == 1:
        return errors[0][1]
    others = "".join(f"\n    {source.url}: {error.reason}" for source, error in errors)
    if not missing:
        return DownloadError(f"manifest entry {entry.name!r}: every source failed:{others}",
                             file=dest)
    path = missing[0].path
    where = ("" if os.path.abspath(path) == os.path.abspath(dest)
             else f" (or place it directly at {dest})")
    about = f" ({entry.description})" if entry.description else ""
    tried = f"; the other sources failed too:{others}" if others else ""
    return MissingSourceError(f"manifest entry {entry.name!r}{about}: the hand-downloaded file is "
                              f"missing; download it by hand and save it as {path}{where}{tried}")
