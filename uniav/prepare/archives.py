"""Safe unpacking of tar and zip archives, all-or-nothing, with a completion marker.

Every member is validated before anything is written (:func:`list_archive`): regular files and
directories only; no absolute names, ``..`` components, backslashes, symbolic or hard links,
devices, FIFOs or encrypted zip members.  :func:`unpack_archive` then extracts into a fresh temp
directory next to the target (``tarfile`` filter ``"data"`` as a second line of defence), drops a
lone top-level directory (``tar --strip-components=1``), hard-links in the files the target
already holds from other archives of the same directory, and renames the finished directory into
place; the marker ``<archive>.unpacked.json`` (the archive's SHA-256 and its file list) is written
last, so :func:`is_unpack_complete` can tell a completed unpack even after the archive was
deleted.  An interrupted unpack leaves the target as it was; its temp directory is removed (and a
target moved aside restored) by the next unpack into the same directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gzip
import logging
import lzma
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from uniav.errors import InputError, UniAVError
from uniav.fileio import (atomic_write_json, exclusive_lock, fsync_dir, read_json_object,
                          sha256_file)

log = logging.getLogger(__name__)

#: Suffix of the completion marker written next to an archive once it is unpacked.
MARKER_SUFFIX = ".unpacked.json"
#: Archive suffixes understood by ``unpack: true``, longest first.
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".tbz", ".txz", ".tar",
                    ".zip")

_ARCHIVE_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError,
                        zlib.error, lzma.LZMAError, gzip.BadGzipFile)


@dataclasses.dataclass(frozen=True)
class ArchiveMember:
    """One validated archive member: its stored name, its path components, kind and size."""

    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int


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
    with exclusive_lock(target.parent / f".{target.name}.unpack.lock"):
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


def _accepted_member(name: str, unsafe_kind: str | None, is_dir: bool, size: int,
                     archive: Path) -> ArchiveMember:
    """The summary of a member of a tar or zip archive, or the error naming why it is refused
    (``unsafe_kind``: links, devices, ...; then its name, via :func:`_member_parts`)."""
    if unsafe_kind is not None:
        raise InputError(f"unsafe archive member rejected before extraction: {unsafe_kind}; "
                         "only regular files and directories are allowed", file=archive,
                         field=name)
    return ArchiveMember(name, _member_parts(name, archive, is_dir), is_dir,
                         0 if is_dir else size)


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
        members.append((info, _accepted_member(info.name, kind, info.isdir(), info.size,
                                               archive)))
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
        members.append((info, _accepted_member(info.filename, kind, info.is_dir(),
                                               info.file_size, archive)))
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


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
