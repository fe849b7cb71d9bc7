"""Atomic file writes (a crash never leaves a partial file under the final name), file hashes,
inter-process file locks and strict JSON/YAML readers.

Atomic-write recipe: write a temp file in the same directory, flush and fsync it, ``os.replace``
it onto the final name (atomic on POSIX), then fsync the directory so the rename itself is durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``final``; on success it is fsynced and renamed onto ``final``.

    On any exception the temp file is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        fsync_file(tmp)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_file(path: str | Path) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(directory: str | Path) -> None:
    """Flush a directory entry (a rename into it) to disk, where the platform allows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """The SHA-256 of a file, as 64 lower-case hex digits (read ``chunk_size`` bytes at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(lock_path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the ``with`` block.

    Serialises read-modify-write updates between processes (parallel pipeline jobs).  On platforms
    without ``fcntl`` it does nothing.
    """
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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write JSON (indented, keys in insertion order, trailing newline) atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when the file is missing, unreadable as JSON, or
    not an object (for optional records such as completion markers and sidecars)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def load_json_file(path: str | Path, *, missing: str = "file not found") -> Any:
    """Parse a JSON file that must exist, refusing duplicate keys and absurd nesting.

    A key repeated in one object (``{"v1": [...], "v1": [...]}``) would silently keep the last
    value; here it is an error naming the key.  Nesting deeper than the interpreter can decode is
    an error too (not a ``RecursionError`` traceback).

    Args:
        path: the file.
        missing: the message when it does not exist (e.g. which command makes it).

    Raises:
        InputError: naming the file when it is missing, not valid JSON, has a duplicate key or
            nests too deeply.
    """
    from uniav.errors import InputError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(missing, file=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", file=path) from None
    return parse_json_text(text, file=path)


def parse_json_text(text: str, *, file: str | Path | None = None) -> Any:
    """:func:`json.loads` with the checks of :func:`load_json_file` (errors name ``file``)."""
    from uniav.errors import InputError

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise InputError(f"duplicate key {key!r} in one JSON object (the file would "
                                 f"mean two values for it)", file=file, field=key)
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", file=file) from None
    except RecursionError:
        raise InputError("JSON nested too deeply to be read (nothing this project reads nests "
                         "more than a few levels)", file=file) from None


def load_yaml_file(path: str | Path, *, missing: str = "file not found") -> Any:
    """Parse a YAML file with ``yaml.safe_load`` semantics, refusing duplicate keys.

    Raises:
        ConfigError: naming the file, the line and the key of a duplicate, or a syntax error.
    """
    import yaml

    from uniav.errors import ConfigError

    path = Path(path)

    class UniqueKeyLoader(yaml.SafeLoader):
        """A safe loader whose mappings refuse a key given twice."""

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{path}: line {line}: duplicate key {key!r} (first at line "
                                  f"{seen[key]}); YAML would silently keep the last one")
            seen[key] = line
        return loader.construct_mapping(node, deep=True)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                    construct_mapping)
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
