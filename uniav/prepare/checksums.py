"""The checksum policy of the manifest: expected SHA-256 values and the lock file of pins.

An entry's expected SHA-256 is the one in ``params.yaml`` if given, else the one pinned in the
lock file ``<root>/checksums.lock.json``, else unknown.  Entries with an unknown SHA-256 are
refused (:class:`UnknownChecksumError`, with a message explaining the two ways out) unless the
caller opts in to trust on first use, which records the observed hash with :meth:`ChecksumLock.pin`;
from then on the entry is verified against it like a pinned one.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any, Sequence

from uniav.config import ManifestEntry
from uniav.errors import ChecksumError, ConfigError, InputError
from uniav.fileio import atomic_write_json, exclusive_lock, parse_json_text

#: Name of the lock file (under the benchmark root) holding hashes pinned on first download.
LOCK_FILE_NAME = "checksums.lock.json"

_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class UnknownChecksumError(InputError):
    """A manifest entry has no SHA-256 (neither in the manifest nor in the lock file) and pinning
    on first use was not requested."""


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
        with exclusive_lock(self.path.with_name(self.path.name + ".lock")):
            entries = self._read()
            previous = entries.get(name)
            if previous is not None and previous["sha256"] != sha256:
                raise ChecksumError(f"manifest entry {name!r} is already pinned to "
                                    f"{previous['sha256']}, not {sha256}", file=self.path)
            entries[name] = {"sha256": sha256, "size": size, "url": url, "dest": dest,
                             "pinned_at": datetime.datetime.now(
                                 datetime.timezone.utc).isoformat(timespec="seconds")}
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


def normalised_sha256(entry: ManifestEntry) -> str | None:
    """The entry's ``sha256`` in lower case without a ``sha256:`` prefix, or ``None``.

    Raises:
        ConfigError: the value is not 64 hex digits.
    """
    if entry.sha256 is None:
        return None
    value = entry.sha256.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:"):]
    if not _SHA256_PATTERN.match(value):
        raise ConfigError(f"manifest entry {entry.name!r}: sha256 {entry.sha256!r} is not 64 hex "
                          "digits (use null when it is not known)")
    return value


def expected_sha256(entry: ManifestEntry, lock: ChecksumLock) -> str | None:
    """The manifest's hash if given, else the one pinned in the lock file, else ``None``."""
    from_manifest = normalised_sha256(entry)
    if from_manifest is not None:
        return from_manifest
    return lock.get(entry.name)


def unpinned_message(entries: Sequence[ManifestEntry], root: Path, lock_path: Path) -> str:
    """The refusal for entries without a known SHA-256: which ones, and the two ways out."""
    listed = "\n".join(f"  - {entry.name} -> {Path(root) / entry.dest}" for entry in entries)
    return (f"refusing to use files whose SHA-256 is not known ({len(entries)} manifest "
            f"entr{'y' if len(entries) == 1 else 'ies'} with sha256: null and no pin in "
            f"{lock_path}):\n{listed}\n"
            "Either write each file's SHA-256 (`sha256sum FILE`) into its entry of "
            "datasets.paper.manifest in params.yaml, or run `uniav download "
            "--pin-unknown-checksums` to trust the files on first download and record their "
            f"hashes in {lock_path}; later runs verify against those hashes.")
