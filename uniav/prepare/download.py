"""Manifest-driven download of the paper benchmark: resume, SHA-256 verification, safe unpacking.

Each :class:`~uniav.config.ManifestEntry` of ``datasets.paper.manifest`` names one file: where it
comes from (``url``), where it goes (``dest``, relative to the benchmark root), its SHA-256 and
whether it is an archive to unpack.  :func:`download_manifest` brings every entry into place;
:func:`download_entry` does one.  The guarantees, in the order they apply:

* **Nothing is fetched twice.**  A file already at ``dest`` with the expected SHA-256 is used as is
  (no network access at all); an unpacked archive whose completion marker records the expected
  SHA-256, and whose files are all still there, is not fetched or unpacked again, even when the
  archive itself has been deleted to save space.
* **Sources.**  ``http(s)://`` URLs; ``file://`` URLs; plain local paths (relative ones are
  relative to the root) for files downloaded by hand from pages that cannot be scripted (the
  released features sit behind Baidu Pan share pages).  A local source is hard-linked to ``dest``
  when both are on one file system (no extra space) and copied otherwise.
* **Resume.**  An HTTP download goes to ``<dest>.part``; an interrupted one is continued with
  ``Range: bytes=N-`` plus ``If-Range`` (the strong ETag, else the Last-Modified date, recorded in
  ``<dest>.part.json`` when the transfer started).  Only a ``206 Partial Content`` whose
  ``Content-Range`` starts at ``N`` is appended; a ``200`` means the server ignored the range or the
  file changed, and the transfer restarts from zero.  Connection errors, timeouts, short bodies,
  ``5xx``, ``408`` and ``429`` are retried with exponential back-off (``Retry-After`` honoured up
  to the back-off cap); other ``4xx`` fail at once.
* **Verification before use.**  The SHA-256 of the complete ``.part`` is checked before it is
  renamed onto ``dest``.  On a mismatch the ``.part`` is deleted, :class:`~uniav.errors.ChecksumError`
  names the file and both hashes, and whatever was at ``dest`` before is left untouched.
* **Unknown checksums are refused** (policy below).
* **Safe unpacking** (:func:`unpack_archive`): every member is validated before anything is
  written: regular files and directories only; no absolute names, ``..`` components, backslashes,
  symbolic or hard links, devices or FIFOs.  The archive is then extracted into a fresh temp
  directory next to the target (``tarfile`` filter ``"data"`` as a second line of defence), and the
  finished directory is renamed into place; a completion marker ``<dest>.unpacked.json`` holding
  the archive's SHA-256 and its file list is written last.  An interrupted unpack leaves the target
  as it was; its temp directory is removed by the next run.

Unknown checksums (``sha256: null``)
    Entries whose SHA-256 could not be known in advance are **refused** before any network access,
    with a message explaining the two ways out: write the hash into ``params.yaml``, or opt in with
    ``pin_unknown=True`` (``uniav download --pin-unknown-checksums``), which trusts the file on first
    use and records its hash in the lock file ``<root>/checksums.lock.json``.  From then on the
    entry is verified against the recorded hash exactly like a pinned one (a later mismatch is a
    :class:`~uniav.errors.ChecksumError`); to re-pin, delete the entry from the lock file.  A hash
    in ``params.yaml`` always wins over the lock file.  While pinning, a partial download is only
    resumed when the server gave a validator for ``If-Range`` (otherwise it restarts from zero), so
    that a spliced file can never be trusted.

Unpack targets
    ``dest`` of an archive names the archive itself; it unpacks into the sibling directory named by
    ``dest``'s file name up to its first dot: ``desed/av_features.tar.gz`` and
    ``desed/av_features.audio.tar.gz`` both unpack into ``desed/av_features/``.  Several archives
    may share one target (e.g. one per modality): the directory is rebuilt in the temp directory
    from hard links to the files already there plus the new archive's files, then swapped in, so
    the swap stays all-or-nothing.  If every member of an archive lies under one top-level
    directory, that level is dropped (``tar --strip-components=1``), so ``av_features.tar.gz``
    holding ``av_features/...`` and one holding the files directly land in the same place.
    (Design note: an explicit per-entry ``unpack_to`` field would be clearer; the name rule keeps
    the manifest schema of :class:`~uniav.config.ManifestEntry` unchanged.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gzip
import hashlib
import http.client
import logging
import lzma
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Sequence

from uniav.config import ManifestEntry
from uniav.errors import ChecksumError, ConfigError, InputError, UniAVError
from uniav.fileio import (atomic_write_json, fsync_dir, fsync_file, parse_json_text,
                          read_json_object)

log = logging.getLogger(__name__)

#: Name of the lock file (under the benchmark root) holding hashes pinned on first download.
LOCK_FILE_NAME = "checksums.lock.json"
#: Suffix of an in-progress download, and of the JSON sidecar holding its resume validators.
PART_SUFFIX = ".part"
PART_META_SUFFIX = ".part.json"
#: Suffix of the completion marker written next to an archive once it is unpacked.
MARKER_SUFFIX = ".unpacked.json"
#: Archive suffixes understood by ``unpack: true``, longest first.
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".tbz", ".txz", ".tar",
                    ".zip")

USER_AGENT = "uniav-download/0.1 (python-urllib)"
_CHUNK_SIZE = 1 << 20
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_ARCHIVE_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError,
                        zlib.error, lzma.LZMAError, gzip.BadGzipFile)


# --------------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------------

class UnknownChecksumError(InputError):
    """A manifest entry has no SHA-256 (neither in the manifest nor in the lock file) and pinning
    on first use was not requested."""


class MissingSourceError(InputError):
    """A hand-downloaded file named by a manifest entry is not where the manifest says."""


class DownloadError(UniAVError):
    """A transfer failed for good (a client error, or retries exhausted)."""


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
    """

    name: str
    path: Path
    sha256: str
    action: str
    pinned: bool = False
    unpacked_to: Path | None = None
    unpack_action: str | None = None


@dataclasses.dataclass(frozen=True)
class ArchiveMember:
    """One validated archive member: its stored name, its path components, kind and size."""

    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int


@dataclasses.dataclass(frozen=True)
class _TransferSettings:
    retries: int
    timeout: float
    backoff: float
    max_backoff: float
    progress: bool | None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def download_manifest(entries: Sequence[ManifestEntry], root: str | Path, *,
                      only: Iterable[str] | None = None, pin_unknown: bool = False,
                      lock_file: str | Path | None = None, retries: int = 5,
                      timeout: float = 60.0, backoff: float = 1.0, max_backoff: float = 60.0,
                      progress: bool | None = None) -> list[DownloadResult]:
    """Bring every (selected) manifest entry into place under ``root``.

    The whole manifest is checked first (unique names and destinations, safe relative ``dest``,
    archive suffixes), then the selected entries without a known SHA-256 are refused together,
    before any file is touched, unless ``pin_unknown``.  Entries are then processed in order; a
    failure stops the run, except that missing hand-downloaded files are collected and reported
    together at the end (after every other entry was processed).

    Args:
        entries: the manifest (``config.datasets.paper.manifest``).
        root: the benchmark root every ``dest`` is relative to (``datasets.paper.root``).
        only: entry names to process (default: all); an unknown name is a :class:`ConfigError`.
        pin_unknown: trust entries with ``sha256: null`` on first use and record their hash in
            the lock file (see the module docstring).
        lock_file: the lock file (default ``<root>/checksums.lock.json``).
        retries: retries of a failed HTTP transfer (each resumes where the last one stopped).
        timeout: socket timeout in seconds (connect and each read).
        backoff: delay before the first retry in seconds; doubled for each further retry.
        max_backoff: cap of the delay (and of a server's ``Retry-After``).
        progress: show tqdm progress bars on stderr (``None``: only when stderr is a terminal).

    Returns:
        One :class:`DownloadResult` per processed entry, in manifest order.

    Raises:
        ConfigError: an invalid manifest or an unknown name in ``only``.
        UnknownChecksumError: entries without a known SHA-256 and ``pin_unknown`` is false.
        MissingSourceError: hand-downloaded files are missing (all of them are listed).
        ChecksumError: a file does not have its expected SHA-256.
        DownloadError: a transfer failed for good.
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
    unpinned = [entry for entry in selected if _expected_sha256(entry, lock) is None]
    if unpinned and not pin_unknown:
        raise UnknownChecksumError(_unpinned_message(unpinned, root, lock.path))
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
        root: the directory ``entry.dest`` (and a relative local ``entry.url``) is relative to.
        pin_unknown: if the entry has no known SHA-256, trust the file on first use and record
            its hash in the lock file; otherwise such an entry is refused.
        lock_file: the lock file (default ``<root>/checksums.lock.json``).
        retries: retries of a failed HTTP transfer.
        timeout: socket timeout in seconds.
        backoff: delay before the first retry in seconds, doubled for each further one.
        max_backoff: cap of the delay.
        progress: show progress bars (``None``: only when stderr is a terminal).

    Returns:
        A :class:`DownloadResult`.

    Raises:
        ConfigError: an invalid ``dest``/``url``/``sha256``.
        UnknownChecksumError: no known SHA-256 and ``pin_unknown`` is false (nothing is fetched).
        MissingSourceError: the hand-downloaded file is not at the local path of ``url``.
        ChecksumError: the file does not have its expected SHA-256 (the previous copy is kept).
        DownloadError: the transfer failed for good.
        InputError: an unsafe or corrupt archive.
    """
    root = Path(root)
    settings = _TransferSettings(retries=retries, timeout=timeout, backoff=backoff,
                                 max_backoff=max_backoff, progress=progress)
    dest = resolve_dest(entry, root)
    target = unpack_target(dest) if entry.unpack else None
    lock = ChecksumLock(lock_file if lock_file is not None else root / LOCK_FILE_NAME)
    expected = _expected_sha256(entry, lock)
    if expected is None and not pin_unknown:
        raise UnknownChecksumError(_unpinned_message([entry], root, lock.path), file=dest)
    source = _resolve_source(entry, root)

    if target is not None and expected is not None and is_unpack_complete(dest, target, expected):
        log.info("%s: already unpacked into %s (archive SHA-256 %s)", entry.name, target, expected)
        return DownloadResult(entry.name, dest, expected, "unpacked earlier", unpacked_to=target,
                              unpack_action="already unpacked")

    sha256, action = _ensure_file(entry, dest, source, expected, settings)
    pinned = False
    if expected is None:
        lock.pin(entry.name, sha256, url=entry.url, dest=entry.dest, size=dest.stat().st_size)
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
                          unpack_action=unpack_action)


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


def archive_format(path: str | Path) -> str | None:
    """``"zip"``, ``"tar"`` or ``None``, from the file name's suffix."""
    name = Path(path).name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return "zip" if suffix == ".zip" else "tar"
    return None


def marker_path(archive: str | Path) -> Path:
    """The completion marker written next to ``archive`` once it is unpacked."""
    archive = Path(archive)
    return archive.with_name(archive.name + MARKER_SUFFIX)


def sha256_file(path: str | Path, *, chunk_size: int = _CHUNK_SIZE) -> str:
    """The SHA-256 of a file, as 64 lower-case hex digits.

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Checksum policy and the lock file
# --------------------------------------------------------------------------------------------

class ChecksumLock:
    """SHA-256 values trusted on first download for entries whose manifest ``sha256`` is null.

    The file is JSON: ``{"about": ..., "entries": {name: {"sha256", "size", "url", "dest",
    "pinned_at"}}}``.  Updates are read-modify-write under an exclusive ``flock`` and written
    atomically, so parallel ``uniav download`` jobs do not lose each other's pins.

    Args:
        path: the lock file (it need not exist yet).
    """

    ABOUT = ("SHA-256 values trusted on first download (uniav download --pin-unknown-checksums) "
             "for manifest entries whose sha256 is null. Later runs verify against them. Copy a "
             "value into params.yaml (datasets.paper.manifest[].sha256) to pin it for everyone; "
             "delete an entry here to pin it again.")

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def get(self, name: str) -> str | None:
        """The pinned SHA-256 of entry ``name``, or ``None``."""
        record = self._read().get(name)
        return None if record is None else record["sha256"]

    def pin(self, name: str, sha256: str, *, url: str, dest: str, size: int) -> None:
        """Record ``sha256`` for entry ``name`` (an existing pin is never overwritten silently).

        Args:
            name: the entry's name.
            sha256: the observed hash.
            url: where the file came from (recorded for the reader).
            dest: the entry's ``dest`` (recorded for the reader).
            size: the file's size in bytes.

        Raises:
            ChecksumError: the entry is already pinned to a different hash.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(self.path.with_name(self.path.name + ".lock")):
            entries = self._read()
            previous = entries.get(name)
            if previous is not None and previous["sha256"] != sha256:
                raise ChecksumError(f"manifest entry {name!r} is already pinned to "
                                    f"{previous['sha256']}, not {sha256}", file=self.path)
            entries[name] = {"sha256": sha256, "size": size, "url": url, "dest": dest,
                             "pinned_at": _now()}
            atomic_write_json(self.path, {"about": self.ABOUT,
                                          "entries": dict(sorted(entries.items()))})

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        data = parse_json_text(text, file=self.path)  # a name pinned twice is refused
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise InputError("expected an object with an 'entries' mapping", file=self.path)
        for name, record in entries.items():
            sha = record.get("sha256") if isinstance(record, dict) else None
            if not isinstance(sha, str) or not _SHA256_PATTERN.match(sha):
                raise InputError("expected 64 lower-case hex digits", file=self.path,
                                 field=f"entries.{name}.sha256")
        return entries


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX platforms: no inter-process lock
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _normalised_sha256(entry: ManifestEntry) -> str | None:
    if entry.sha256 is None:
        return None
    value = entry.sha256.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:"):]
    if not _SHA256_PATTERN.match(value):
        raise ConfigError(f"manifest entry {entry.name!r}: sha256 {entry.sha256!r} is not 64 hex "
                          "digits (use null when it is not known)")
    return value


def _expected_sha256(entry: ManifestEntry, lock: ChecksumLock) -> str | None:
    """The manifest's hash if given, else the one pinned in the lock file, else ``None``."""
    from_manifest = _normalised_sha256(entry)
    if from_manifest is not None:
        return from_manifest
    return lock.get(entry.name)


def _unpinned_message(entries: Sequence[ManifestEntry], root: Path, lock_path: Path) -> str:
    listed = "\n".join(f"  - {entry.name} -> {Path(root) / entry.dest}" for entry in entries)
    return (f"refusing to use files whose SHA-256 is not known ({len(entries)} manifest "
            f"entr{'y' if len(entries) == 1 else 'ies'} with sha256: null and no pin in "
            f"{lock_path}):\n{listed}\n"
            "Either write each file's SHA-256 (`sha256sum FILE`) into its entry of "
            "datasets.paper.manifest in params.yaml, or run `uniav download "
            "--pin-unknown-checksums` to trust the files on first download and record their "
            f"hashes in {lock_path}; later runs verify against those hashes.")


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
        _normalised_sha256(entry)
        if entry.unpack:
            unpack_target(dest)


# --------------------------------------------------------------------------------------------
# Getting one file into place
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Source:
    kind: str            # "http" or "local"
    url: str
    path: Path | None    # for "local"


def _resolve_source(entry: ManifestEntry, root: Path) -> _Source:
    url = entry.url.strip()
    if not url:
        raise ConfigError(f"manifest entry {entry.name!r}: empty url")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return _Source("http", url, None)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"manifest entry {entry.name!r}: file URL {url!r} names a remote "
                              "host; only local files are supported")
        path = Path(urllib.request.url2pathname(parts.path))
        if not path.is_absolute():
            raise ConfigError(f"manifest entry {entry.name!r}: file URL {url!r} must hold an "
                              "absolute path (file:///abs/path)")
        return _Source("local", url, path)
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a plain path (C:\ on Windows)
        path = Path(url).expanduser()
        return _Source("local", url, path if path.is_absolute() else root / path)
    raise ConfigError(f"manifest entry {entry.name!r}: unsupported URL scheme {parts.scheme!r} "
                      "(use http, https, file or a local path)")


def _ensure_file(entry: ManifestEntry, dest: Path, source: _Source, expected: str | None,
                 settings: _TransferSettings) -> tuple[str, str]:
    """Make ``dest`` a verified copy of the entry's file; return ``(sha256, action)``."""
    source_is_dest = (source.kind == "local"
                      and os.path.abspath(source.path) == os.path.abspath(dest))
    if dest.is_file():
        present = sha256_file(dest)
        if expected is None or present == expected:
            log.info("%s: %s is present with SHA-256 %s: not fetched again", entry.name, dest,
                     present)
            return present, "present"
        if source_is_dest:
            raise ChecksumError(f"SHA-256 mismatch for manifest entry {entry.name!r}: expected "
                                f"{expected}, got {present} (the file was left as it is)",
                                file=dest)
        log.warning("%s: %s is present but its SHA-256 is %s, not %s: fetching it again (the "
                    "present copy stays until the new one is verified)", entry.name, dest,
                    present, expected)
    elif os.path.lexists(dest):
        raise InputError("exists but is not a regular file", file=dest)

    part = dest.with_name(dest.name + PART_SUFFIX)
    if source.kind == "local" and not source.path.is_file():
        where = "" if source_is_dest else f" (or place it directly at {dest})"
        about = f" ({entry.description})" if entry.description else ""
        raise MissingSourceError(
            f"manifest entry {entry.name!r}{about}: the hand-downloaded file is missing; "
            f"download it by hand and save it as {source.path}{where}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "local":
        log.info("%s: taking %s", entry.name, source.path)
        actual = _link_or_copy_into(source.path, part, settings.progress, entry.name)
        action = "copied"
    else:
        log.info("%s: downloading %s", entry.name, source.url)
        actual = _HttpTransfer(source.url, part, settings, label=entry.name,
                               allow_unvalidated_resume=expected is not None).run()
        action = "downloaded"

    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        _part_meta_path(dest).unlink(missing_ok=True)
        kept = "; the previous copy at the destination was kept" if dest.exists() else ""
        raise ChecksumError(f"SHA-256 mismatch for manifest entry {entry.name!r} from "
                            f"{source.url}: expected {expected}, got {actual}; the download was "
                            f"discarded{kept}", file=dest)
    fsync_file(part)
    os.replace(part, dest)
    fsync_dir(dest.parent)
    _part_meta_path(dest).unlink(missing_ok=True)
    log.info("%s: %s -> %s (SHA-256 %s)", entry.name, action, dest, actual)
    return actual, action


def _link_or_copy_into(source: Path, part: Path, progress: bool | None, label: str) -> str:
    """Hard-link ``source`` to ``part`` (copy when linking is impossible); return its SHA-256."""
    part.unlink(missing_ok=True)
    try:
        os.link(source, part)
    except OSError:
        digest = hashlib.sha256()
        with open(source, "rb") as reader, open(part, "wb") as writer, \
                _progress_bar(label, source.stat().st_size, 0, progress) as bar:
            while chunk := reader.read(_CHUNK_SIZE):
                writer.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        return digest.hexdigest()
    return sha256_file(part)


def _part_meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_META_SUFFIX)


class _Retry(Exception):
    """A transient failure: the transfer is attempted again (after a delay unless ``immediate``)."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 immediate: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.immediate = immediate


class _HttpTransfer:
    """One HTTP(S) download into ``part``, resumed and retried as the module docstring says."""

    def __init__(self, url: str, part: Path, settings: _TransferSettings, *, label: str,
                 allow_unvalidated_resume: bool):
        self.url = url
        self.part = part
        self.meta_path = part.with_name(part.name + ".json")
        self.settings = settings
        self.label = label
        self.allow_unvalidated_resume = allow_unvalidated_resume
        self.opener = urllib.request.build_opener()

    def run(self) -> str:
        """Download until complete; return the SHA-256 of the complete ``part``."""
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt()
            except _Retry as exc:
                if attempt == attempts:
                    raise DownloadError(f"manifest entry {self.label!r}: giving up on {self.url} "
                                        f"after {attempts} attempts: {exc}") from None
                delay = 0.0 if exc.immediate else min(
                    exc.retry_after if exc.retry_after is not None
                    else self.settings.backoff * 2 ** (attempt - 1),
                    self.settings.max_backoff)
                log.warning("%s: attempt %d of %d failed (%s); retrying in %.1f s", self.label,
                            attempt, attempts, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- one attempt ---------------------------------------------------------------------------

    def _attempt(self) -> str:
        offset = self.part.stat().st_size if self.part.is_file() else 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset > 0:
            meta = self._read_meta()
            validator = _if_range_validator(meta)
            if meta is not None and meta.get("url") != self.url:
                log.info("%s: the partial file came from another URL: starting again", self.label)
                offset = self._discard_part()
            elif validator is None and not self.allow_unvalidated_resume:
                log.info("%s: no ETag/Last-Modified to check the partial file against while "
                         "pinning: starting again", self.label)
                offset = self._discard_part()
            else:
                headers["Range"] = f"bytes={offset}-"
                if validator is not None:
                    headers["If-Range"] = validator
                log.info("%s: resuming at byte %d", self.label, offset)
        request = urllib.request.Request(self.url, headers=headers)
        try:
            response = self.opener.open(request, timeout=self.settings.timeout)
        except urllib.error.HTTPError as exc:
            return self._http_error(exc, offset)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _Retry(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from None
        with response:
            return self._receive(response, offset)

    def _http_error(self, exc: urllib.error.HTTPError, offset: int) -> str:
        with contextlib.closing(exc):
            status = exc.code
            if status == 416 and offset > 0:
                total = _parse_content_range(exc.headers.get("Content-Range", ""))[2]
                if total == offset:
                    log.info("%s: the partial file is already complete", self.label)
                    return sha256_file(self.part)
                self._discard_part()
                raise _Retry("the server cannot serve the requested range", immediate=True)
            if status >= 500 or status in (408, 429):
                raise _Retry(f"HTTP {status} {exc.reason}",
                             retry_after=_retry_after_seconds(exc.headers.get("Retry-After")))
            raise DownloadError(f"manifest entry {self.label!r}: HTTP {status} {exc.reason} for "
                                f"{self.url}")

    def _receive(self, response: http.client.HTTPResponse, offset: int) -> str:
        status = response.status
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if status == 206:
            if offset == 0:
                raise _Retry("partial content although no range was requested")
            start, _, total = _parse_content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                self._discard_part()
                raise _Retry(f"the server answered the range request from byte {start}, not "
                             f"{offset}", immediate=True)
            digest = hashlib.sha256()
            with open(self.part, "rb") as existing:
                while chunk := existing.read(_CHUNK_SIZE):
                    digest.update(chunk)
            expected_total = total if total is not None else (
                offset + length if length is not None else None)
            mode = "ab"
        elif 200 <= status < 300:
            if offset > 0:
                log.info("%s: the server sent the whole file (range ignored, or the file "
                         "changed): restarting from zero", self.label)
            offset = 0
            digest = hashlib.sha256()
            expected_total = length
            mode = "wb"
            atomic_write_json(self.meta_path, {
                "url": self.url, "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified")})
        else:  # pragma: no cover - urllib raises HTTPError for anything else
            raise _Retry(f"unexpected HTTP status {status}")

        received = offset
        with open(self.part, mode) as handle, \
                _progress_bar(self.label, expected_total, offset, self.settings.progress) as bar:
            try:
                while chunk := response.read(_CHUNK_SIZE):
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry(f"connection lost after {received} bytes "
                             f"({type(exc).__name__}: {exc})") from None
            handle.flush()
            os.fsync(handle.fileno())
        if expected_total is not None and received < expected_total:
            raise _Retry(f"connection closed after {received} of {expected_total} bytes")
        if expected_total is not None and received > expected_total:
            self._discard_part()
            raise _Retry(f"received {received} bytes, more than the announced {expected_total}")
        return digest.hexdigest()

    def _read_meta(self) -> dict[str, Any] | None:
        return read_json_object(self.meta_path)

    def _discard_part(self) -> int:
        self.part.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)
        return 0


def _if_range_validator(meta: dict[str, Any] | None) -> str | None:
    """A strong ETag, else a Last-Modified date (weak ETags are not allowed in If-Range)."""
    if meta is None:
        return None
    etag = meta.get("etag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    last_modified = meta.get("last_modified")
    return last_modified if isinstance(last_modified, str) and last_modified else None


def _parse_content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """``bytes 10-99/100`` -> (10, 99, 100); ``bytes */100`` -> (None, None, 100)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", value or "")
    if match is None:
        return None, None, None
    start, end, total = match.groups()
    return (int(start) if start is not None else None, int(end) if end is not None else None,
            int(total) if total not in (None, "*") else None)


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, initial: int, progress: bool | None):
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=label, unit="B", unit_scale=True,
               unit_divisor=1024, file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    try:
        yield bar
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------
# Safe unpacking
# --------------------------------------------------------------------------------------------

def list_archive(archive: str | Path) -> list[ArchiveMember]:
    """Read and validate every member of a tar or zip archive, extracting nothing.

    Args:
        archive: the archive (format from its suffix, else sniffed).

    Returns:
        The members, in archive order.

    Raises:
        InputError: naming the archive and the member, for the first unsafe member (absolute
            name, ``..``, backslash, link, device, FIFO, encrypted zip member, a file where a
            directory is needed), or for an unreadable archive.
    """
    archive = Path(archive)
    fmt = _detect_format(archive)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as handle:
                return [summary for _, summary in _validated_zip_members(handle, archive)]
        with tarfile.open(archive, "r:*") as handle:
            return [summary for _, summary in _validated_tar_members(handle, archive)]
    except _ARCHIVE_READ_ERRORS as exc:
        raise InputError(f"cannot read the archive: {type(exc).__name__}: {exc}",
                         file=archive) from None


def is_unpack_complete(archive: str | Path, target: str | Path, archive_sha256: str) -> bool:
    """Whether ``archive`` (with this SHA-256) was completely unpacked into ``target``.

    True when the completion marker next to the archive records this SHA-256 and this target, and
    every file it lists still exists; the archive itself need not exist any more.
    """
    marker = read_json_object(marker_path(archive))
    if marker is None or marker.get("archive_sha256") != archive_sha256:
        return False
    target = Path(target)
    if marker.get("target") != os.path.relpath(target, Path(archive).parent) or not target.is_dir():
        return False
    files = marker.get("files")
    return isinstance(files, list) and all((target / name).is_file() for name in files)


def unpack_archive(archive: str | Path, target: str | Path, *, archive_sha256: str | None = None,
                   progress: bool | None = None) -> list[str]:
    """Safely unpack a tar (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) or zip archive into ``target``.

    Every member is validated first (:func:`list_archive`); nothing is written before the whole
    archive passed.  Extraction goes into a fresh temp directory next to ``target``; a lone
    top-level directory is dropped; files already in ``target`` (e.g. from another archive of the
    same directory) are hard-linked in unless this archive provides them or a previous version of
    this archive did; the result is renamed onto ``target``.  The completion marker
    (:func:`marker_path`) is written last.

    Args:
        archive: the archive.
        target: the directory to unpack into (created; may already exist).
        archive_sha256: the archive's SHA-256 for the marker (computed when not given).
        progress: show a progress bar (``None``: only when stderr is a terminal).

    Returns:
        The files unpacked from this archive, as POSIX paths relative to ``target``.

    Raises:
        InputError: an unsafe member (naming archive and member), a corrupt archive, not enough
            free space, or a ``target`` that is not a directory.  ``target`` is then unchanged.
    """
    archive = Path(archive)
    target = Path(target)
    archive_sha256 = archive_sha256 or sha256_file(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    # one unpack per target at a time (parallel jobs may unpack several archives into one target)
    with _exclusive_lock(target.parent / f".{target.name}.unpack.lock"):
        return _unpack_locked(archive, target, archive_sha256, progress)


def _unpack_locked(archive: Path, target: Path, archive_sha256: str,
                   progress: bool | None) -> list[str]:
    if os.path.lexists(target) and (target.is_symlink() or not target.is_dir()):
        raise InputError("exists and is not a directory: cannot unpack into it", file=target)
    marker = marker_path(archive)
    fmt = _detect_format(archive)
    _clean_stale_work_dirs(target)
    previous_marker = read_json_object(marker) or {}
    previous_files = set(previous_marker.get("files") or [])

    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.unpack-"))
    try:
        extracted = work / "extracted"
        extracted.mkdir()
        try:
            if fmt == "zip":
                with zipfile.ZipFile(archive) as handle:
                    members = _validated_zip_members(handle, archive)
                    _check_free_space(archive, members, work)
                    with _unpack_bar(archive, len(members), progress) as bar:
                        for info, summary in members:
                            if summary.parts:
                                handle.extract(info, extracted)
                            bar.update(1)
            else:
                if not hasattr(tarfile, "data_filter"):  # PEP 706: Python 3.11.4 and later
                    raise UniAVError("unpacking tar archives needs Python >= 3.11.4 "
                                     "(tarfile extraction filters)")
                with tarfile.open(archive, "r:*") as handle:
                    members = _validated_tar_members(handle, archive)
                    _check_free_space(archive, members, work)
                    with _unpack_bar(archive, len(members), progress) as bar:
                        handle.extractall(extracted, members=_counted(
                            [info for info, summary in members if summary.parts], bar),
                            filter="data")
        except _ARCHIVE_READ_ERRORS as exc:
            raise InputError(f"cannot unpack: {type(exc).__name__}: {exc}; {target} was left "
                             "unchanged", file=archive) from None
        content, stripped = _content_root(extracted)
        files = sorted(path.relative_to(content).as_posix()
                       for path in content.rglob("*") if path.is_file())
        if os.path.lexists(target):
            _merge_existing(target, content, skip=previous_files)
        marker.unlink(missing_ok=True)  # from here until the new marker, the unpack is incomplete
        _swap_into_place(content, target, work)
        atomic_write_json(marker, {
            "archive": archive.name, "archive_sha256": archive_sha256,
            "target": os.path.relpath(target, archive.parent), "stripped_top_directory": stripped,
            "files": files, "unpacked_at": _now()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("unpacked %d files from %s into %s%s", len(files), archive, target,
             f" (top-level directory {stripped!r} dropped)" if stripped else "")
    return files


def _detect_format(archive: Path) -> str:
    fmt = archive_format(archive)
    if fmt is not None:
        return fmt
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise InputError("not a tar or zip archive", file=archive)


def _member_parts(name: str, archive: Path, is_dir: bool) -> tuple[str, ...]:
    """Validated path components of a member name (rejects absolute, ``..``, ``\\``, NUL)."""
    def reject(why: str) -> InputError:
        return InputError(f"unsafe archive member rejected before extraction: {why}",
                          file=archive, field=name)

    if "\x00" in name:
        raise reject("NUL character in the name")
    if "\\" in name:
        raise reject("backslash in the name")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise reject("absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise reject("'..' path component")
    if not parts and not is_dir:
        raise reject("empty file name")
    return parts


def _validated_tar_members(handle: tarfile.TarFile, archive: Path
                           ) -> list[tuple[tarfile.TarInfo, ArchiveMember]]:
    members = []
    for info in handle.getmembers():
        if info.issym():
            kind = f"symbolic link (to {info.linkname!r})"
        elif info.islnk():
            kind = f"hard link (to {info.linkname!r})"
        elif info.ischr() or info.isblk():
            kind = "device file"
        elif info.isfifo():
            kind = "FIFO"
        elif info.isreg() or info.isdir():
            kind = None
        else:
            kind = f"unsupported member type {info.type!r}"
        if kind is not None:
            raise InputError(f"unsafe archive member rejected before extraction: {kind}; only "
                             "regular files and directories are allowed", file=archive,
                             field=info.name)
        parts = _member_parts(info.name, archive, info.isdir())
        members.append((info, ArchiveMember(info.name, parts, info.isdir(),
                                            0 if info.isdir() else info.size)))
    _check_no_conflicts([summary for _, summary in members], archive)
    return members


def _validated_zip_members(handle: zipfile.ZipFile, archive: Path
                           ) -> list[tuple[zipfile.ZipInfo, ArchiveMember]]:
    members = []
    for info in handle.infolist():
        mode = info.external_attr >> 16
        file_type = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            kind = "symbolic link"
        elif file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "special file (device, FIFO or socket)"
        elif info.flag_bits & 0x1:
            kind = "encrypted member"
        else:
            kind = None
        if kind is not None:
            raise InputError(f"unsafe archive member rejected before extraction: {kind}; only "
                             "regular files and directories are allowed", file=archive,
                             field=info.filename)
        parts = _member_parts(info.filename, archive, info.is_dir())
        members.append((info, ArchiveMember(info.filename, parts, info.is_dir(),
                                            0 if info.is_dir() else info.file_size)))
    _check_no_conflicts([summary for _, summary in members], archive)
    return members


def _check_no_conflicts(members: list[ArchiveMember], archive: Path) -> None:
    """Reject a file whose path another member needs as a directory (or the reverse)."""
    files = {member.parts: member for member in members if not member.is_dir and member.parts}
    for member in members:
        for depth in range(1, len(member.parts)):
            ancestor = files.get(member.parts[:depth])
            if ancestor is not None:
                raise InputError(f"archive member {ancestor.name!r} is a file but {member.name!r} "
                                 "needs it to be a directory", file=archive, field=member.name)
        if member.is_dir and member.parts in files:
            raise InputError(f"archive member {member.name!r} is both a file and a directory",
                             file=archive, field=member.name)


def _check_free_space(archive: Path, members: Sequence[tuple[Any, ArchiveMember]],
                      work: Path) -> None:
    needed = sum(summary.size for _, summary in members)
    free = shutil.disk_usage(work).free
    if needed > free:
        raise InputError(f"unpacking needs {needed / 2**30:.2f} GiB but only "
                         f"{free / 2**30:.2f} GiB are free under {work.parent}", file=archive)


def _counted(items: list[tarfile.TarInfo], bar) -> Iterator[tarfile.TarInfo]:
    for item in items:
        yield item
        bar.update(1)


@contextlib.contextmanager
def _unpack_bar(archive: Path, total: int, progress: bool | None):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"unpack {archive.name}", unit="file", file=sys.stderr,
               leave=False, disable=None if progress is None else not progress)
    try:
        yield bar
    finally:
        bar.close()


def _content_root(extracted: Path) -> tuple[Path, str | None]:
    """``extracted`` itself, or its only child when that is a directory (one level dropped)."""
    children = list(extracted.iterdir())
    if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
        return children[0], children[0].name
    return extracted, None


def _merge_existing(target: Path, content: Path, skip: set[str]) -> None:
    """Hard-link (or copy) what ``target`` holds into ``content`` where ``content`` has nothing.

    Files in ``skip`` (those of a previous version of the same archive) are left out, so a changed
    archive does not leave stale files behind.
    """
    for dirpath, dirnames, filenames in os.walk(target):
        here = Path(dirpath)
        relative_dir = here.relative_to(target)
        for name in list(dirnames):
            if (here / name).is_symlink():  # keep links to directories as links
                dirnames.remove(name)
                filenames.append(name)
                continue
            destination = content / relative_dir / name
            if os.path.lexists(destination) and not destination.is_dir():
                dirnames.remove(name)  # the new archive put a file there: it wins
                continue
            try:
                destination.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                dirnames.remove(name)
        for name in filenames:
            relative = (relative_dir / name).as_posix()
            destination = content / relative
            if relative in skip or os.path.lexists(destination):
                continue
            try:
                destination.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                continue  # the new archive has a file where this one needs a directory
            source = here / name
            if source.is_symlink():
                os.symlink(os.readlink(source), destination)
                continue
            try:
                os.link(source, destination)
            except OSError:
                shutil.copy2(source, destination)


def _swap_into_place(content: Path, target: Path, work: Path) -> None:
    if not os.path.lexists(target):
        os.replace(content, target)
        fsync_dir(target.parent)
        return
    previous = work / "previous"
    os.rename(target, previous)
    try:
        os.replace(content, target)
    except BaseException:
        os.rename(previous, target)
        raise
    fsync_dir(target.parent)


def _clean_stale_work_dirs(target: Path) -> None:
    """Remove temp directories left by an interrupted unpack into ``target``.

    If the interruption fell between moving the old target aside and moving the new one in, the
    old target is restored first.
    """
    prefix = f".{target.name}.unpack-"
    for stale in target.parent.iterdir():
        if not (stale.name.startswith(prefix) and stale.is_dir()):
            continue
        previous = stale / "previous"
        if previous.is_dir() and not os.path.lexists(target):
            os.rename(previous, target)
            log.warning("restored %s from an interrupted unpack", target)
        log.info("removing %s, left by an interrupted unpack", stale)
        shutil.rmtree(stale, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
