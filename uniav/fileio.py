"""Atomic file writes (a crash never leaves a partial file under the final name), file hashes,
inter-process file locks and strict JSON/YAML readers.

Atomic-write recipe: write a temp file in the same directory, flush and fsync it, ``os.replace``
it onto the final name (atomic on POSIX), then fsync the directory so the rename itself is durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

LOGGER = logging.getLogger(__name__)

#: The temp-file names :func:`atomic_path` makes: ``.<final name>.<8 random characters>.tmp``
#: (``tempfile.mkstemp`` with that prefix and suffix).  Only names of this shape are ever
#: removed as stale temporaries.
TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp$")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``final``; on success it is fsynced and renamed onto ``final``.

    On any exception the temp file is removed and ``final`` is left as it was.

    Raises:
        InputError: ``final`` is a directory, or its directory cannot be created or written
            (naming the path), before anything is written.
    """
    from uniav.errors import InputError

    final = Path(final)
    if final.is_dir():
        raise InputError("the output path is a directory", file=final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.",
                                        suffix=".tmp")
    except OSError as exc:  # a file where a directory should be, no permission, ...
        raise InputError(f"cannot write the output here ({exc.strerror or exc})",
                         file=final) from None
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
    except (OSError, ValueError, RecursionError):  # missing, not JSON/UTF-8, absurdly nested
        return None
    return data if isinstance(data, dict) else None


def load_json_file(path: str | Path, *, missing: str = "file not found") -> Any:
    """Parse a JSON file that must exist, refusing duplicate keys and absurd nesting.

    A key repeated in one object (``{"v1": [...], "v1": [...]}``) would silently keep the last
    value; here it is an error naming the key.  Nesting deeper than the interpreter can decode is
    an error too (not a ``RecursionError`` traceback).

    The result and every error are those of the strict reader (:func:`parse_json_text`); large
    files are read faster through :class:`uniav.jsondoc.JsonDocument` (a C decoder, then a proof that its
    result is the strict reader's).

    Args:
        path: the file.
        missing: the message when it does not exist (e.g. which command makes it).

    Raises:
        InputError: naming the file when it is missing, not valid JSON, has a duplicate key or
            nests too deeply.
    """
    from uniav.jsondoc import json_census, read_json_document

    document = read_json_document(path, missing=missing)
    if document.parsed and document.faithful(json_census(document.value)):
        return document.value
    return document.strict()


def parse_json_text(text: str, *, file: str | Path | None = None) -> Any:
    """:func:`json.loads` with the checks of :func:`load_json_file` (errors name ``file``)."""
    from uniav.errors import InputError

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):  # name the first key given a second time
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise InputError(f"duplicate key {key!r} in one JSON object (the file would "
                                     f"mean two values for it)", file=file, field=key)
                seen.add(key)
        return out

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", file=file) from None
    except RecursionError:
        raise InputError("JSON nested too deeply to be read (nothing this project reads nests "
                         "more than a few levels)", file=file) from None


def load_yaml_file(path: str | Path, *, missing: str = "file not found",
                   error: Callable[[str], Exception] | None = None) -> Any:
    """Parse a YAML file with ``yaml.safe_load`` semantics, refusing duplicate keys.

    Args:
        path: the file.
        missing: the message when it does not exist.
        error: builds the exception from a message (default: ``ConfigError("<path>: ...")``;
            input files pass e.g. ``lambda m: InputError(m, file=path)``).

    Raises:
        ConfigError (or what ``error`` builds): naming the file, the line and the key of a
            duplicate, or a syntax error.
    """
    path = Path(path)
    error = error or _config_error(str(path))
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise error(missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read the file ({exc})") from None
    return parse_yaml_text(text, error=error)


def parse_yaml_text(text: str, *, error: Callable[[str], Exception] | None = None) -> Any:
    """:func:`load_yaml_file` on a string (e.g. a ``--set key=VALUE`` value)."""
    import yaml

    error = error or _config_error("YAML")

    class UniqueKeyLoader(yaml.SafeLoader):
        """A safe loader whose mappings refuse a key given twice."""

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: construct_mapping reports it
                continue
            if repeated:
                raise error(f"line {line}: duplicate key {key!r} (first at line "
                            f"{seen[key]}); YAML would silently keep the last one")
            seen[key] = line
        return loader.construct_mapping(node, deep=True)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                    construct_mapping)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {exc}") from None
    except RecursionError:
        raise error("YAML nested too deeply to be read") from None


def _config_error(source: str) -> Callable[[str], Exception]:
    from uniav.errors import ConfigError

    return lambda message: ConfigError(f"{source}: {message}")

def stale_temporaries(directory: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Temp files :func:`atomic_path` left in ``directory`` (not in sub-directories) when the
    process writing them was killed: files named ``.<name>.XXXXXXXX.tmp``.

    Args:
        directory: the directory to look in (missing: nothing found).
        names: only temporaries of these final names (default: of any name).
    """
    directory = Path(directory)
    wanted = None if names is None else set(names)
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if (match and entry.is_file(follow_symlinks=False)
                and (wanted is None or match.group("final") in wanted)):
            found.append(Path(entry.path))
    return sorted(found)


def remove_stale_temporaries(directory: str | Path, names: Iterable[str] | None = None
                             ) -> list[Path]:
    """Delete the :func:`stale_temporaries` of ``directory`` and log what was removed.

    Call it only where no other process can be writing at the same time (e.g. when a training
    job starts in its own work directory): a live writer's temp file has the same name shape.

    Returns:
        The removed paths.
    """
    removed = []
    for path in stale_temporaries(directory, names):
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
        LOGGER.info("removed %s (%d bytes), a temporary file left by an interrupted write",
                    path, size)
    return removed


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file: the same inode when both exist (hard and symbolic
    links included), else the same absolute path once links are resolved."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def refuse_output_over_input(outputs: Mapping[str, str | Path | None],
                             inputs: Mapping[str, str | Path | None]) -> None:
    """Refuse to run when an output would replace one of the command's inputs.

    Args:
        outputs: what the command writes, by the option (or description) that names it, e.g.
            ``{"--output": path}``; ``None`` values are skipped.
        inputs: what it reads, likewise (``{"--ground-truth": path, ...}``).

    Raises:
        InputError: naming the output file and the option of the input it would overwrite.
    """
    from uniav.errors import InputError

    for out_name, out_path in outputs.items():
        if out_path is None:
            continue
        for in_name, in_path in inputs.items():
            if in_path is not None and same_file(out_path, in_path):
                raise InputError(f"{out_name} is the same file as {in_name} ({in_path}): "
                                 f"writing it would destroy an input; choose another path",
                                 file=out_path, field=out_name)
