"""A miniature of the paper's released files (ActivityNet 1.3, DESED, UnAV-100), from a seed.

:func:`write_paper_replica` writes, under a root, the files a user saves by hand from the authors'
download pages, under the names of the manifest ``datasets.paper.manifest`` (``params.yaml``)::

    downloads/activitynet13/  anet1.3_all.json  av_features.tar.gz  anet_prompt.npy
    downloads/desed/          dcase_all.json  desed_onepeace_{audio,visual}_features.tar.gz
                              dcase_prompt.npy
    downloads/unav100/        unav100_all.json  av_features.tar.gz  unav100_prompt.npy
    replica.json              seed, size, counts, planted quirks (written last)

so that ``uniav download --set datasets.paper.root=<root> --pin-unknown-checksums`` takes,
verifies and unpacks them offline with the shipped manifest (its prompt entries take
``downloads/<dataset>/<prompt>.npy`` first and fall back to their HTTP mirror).  Archive
members land in ``<dataset>/av_features/``: ActivityNet's sit under one top-level folder
``av_features/`` and DESED's under ``onepeace_finetune_features_025s/`` (both dropped when
unpacking), UnAV-100's at the archive's top level.  With ``layout="unpacked"`` it writes
instead what ``uniav download`` leaves behind (``<dataset>/annotations/``,
``<dataset>/av_features/``, ``<dataset>/<prompt>.npy``), without archives.

**Contents.**  Annotation files in the released schema (``version``, ``database`` of ``subset``,
``duration``, ``annotations`` of ``segment`` / ``label`` / ``label_id``; ActivityNet also has
``taxonomy``, ``resolution`` and ``url``), class ids 0..K-1 all used.  Features are T x 1536
float32 on the released grid (:mod:`uniav.prepare.replica_plan`): Gaussian noise plus a
per-video offset, plus, over each event's steps and in the modalities of the task (TAL visual,
SED audio, AVEL both), a fixed random direction of its class; values are multiples of 1/16 so
that the archives compress.  The prompt of a class is a unit vector close to its direction.
Quirks of the real files are planted on their own videos and counted in ``replica.json``.

**Determinism.**  The output is a pure function of seed and size (and ``feature_pool``): fixed
archive member order, mtimes, owners and modes; gzip without name and with mtime 0.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from uniav.errors import ConfigError, InputError
from uniav.fileio import atomic_path, atomic_write_json, atomic_write_text
from uniav.prepare.replica_plan import (
    DATASETS, FEATURE_DIM, FPS, MODALITY_SUFFIXES, QUIRKS, SIZES, WINDOW_FRAMES, DatasetSpec,
    VideoPlan, event_step_range, plan_dataset, quirk_role)

log = logging.getLogger(__name__)

REPLICA_FORMAT_VERSION = 1
LAYOUTS = ("archives", "unpacked")
#: Modification time of every archive member (2023-01-01 00:00 UTC), fixed for byte-identity.
ARCHIVE_MTIME = 1_672_531_200
_MODALITY_CODES = {"visual": 1, "audio": 2}
_QUANTUM = 16.0  # feature values are multiples of 1/16


# --------------------------------------------------------------------------------------------
# Features and prompts
# --------------------------------------------------------------------------------------------

def class_directions(seed: int, spec: DatasetSpec) -> np.ndarray:
    """(K, 1536) float32: the direction of each class (entries of variance 1)."""
    rng = np.random.default_rng([seed, spec.task_code, 1])
    return rng.standard_normal((len(spec.classes), FEATURE_DIM), dtype=np.float32)


def prompt_embeddings(seed: int, spec: DatasetSpec, directions: np.ndarray) -> np.ndarray:
    """(K, 1536) float32 unit rows in label_id order, each close to its class direction."""
    rng = np.random.default_rng([seed, spec.task_code, 2])
    noise = rng.standard_normal(directions.shape, dtype=np.float32)
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    mixed = 0.8 * unit + 0.6 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)


def video_features(seed: int, spec: DatasetSpec, video: VideoPlan, modality: str,
                   directions: np.ndarray) -> np.ndarray:
    """The (T, 1536) float32 features of one modality of one video (its own random stream)."""
    steps = video.steps[modality]
    rng = np.random.default_rng([seed, spec.task_code, 3, video.number, _MODALITY_CODES[modality]])
    features = rng.standard_normal((steps, FEATURE_DIM), dtype=np.float32)
    features += 0.5 * rng.standard_normal(FEATURE_DIM, dtype=np.float32)
    if modality in spec.event_modalities:
        for start, end, label_id in dict.fromkeys(video.annotations):  # a duplicate counts once
            strength = np.float32(rng.uniform(0.5, 1.0))
            if end > start:
                first, last = event_step_range(start, end, spec.feat_stride, steps)
                features[first:last] += strength * directions[label_id]
    return np.round(features * _QUANTUM) / np.float32(_QUANTUM)


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` file content of a float32 array."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


class FeaturePool:
    """Which video's features each file holds: its own, or with a pool of ``size``, those of one
    of the first ``size`` videos of the same modality and length, in turn."""

    def __init__(self, size: int | None):
        self.size = size
        self._sources: dict[tuple[str, int], list[VideoPlan]] = {}
        self._turns: dict[tuple[str, int], int] = {}

    def source(self, video: VideoPlan, modality: str) -> VideoPlan:
        """The video whose features the file of ``video`` and ``modality`` holds."""
        if self.size is None:
            return video
        key = (modality, video.steps[modality])
        sources = self._sources.setdefault(key, [])
        if len(sources) < self.size:
            sources.append(video)
            return video
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return sources[turn % self.size]


def feature_file_name(spec: DatasetSpec, video: VideoPlan, modality: str) -> str:
    """The released file name of one modality of one video."""
    return f"{spec.id_prefix}{video.video_id}{MODALITY_SUFFIXES[modality]}.npy"


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def annotation_document(spec: DatasetSpec, videos: list[VideoPlan]) -> dict[str, Any]:
    """The annotation file's content, in the released schema."""
    document: dict[str, Any] = {"version": spec.version}
    if spec.task == "tal":
        document["taxonomy"] = [{"nodeId": 0, "nodeName": "Root", "parentId": None,
                                 "parentName": None}] + [
            {"nodeId": i + 1, "nodeName": name, "parentId": 0, "parentName": "Root"}
            for i, name in enumerate(spec.classes)]
    database = {}
    for video in videos:
        fields = {"subset": video.subset, "duration": video.duration,
                  "resolution": video.resolution,
                  "url": f"https://www.youtube.com/watch?v={video.video_id}",
                  "annotations": [{"segment": [start, end], "label": spec.classes[label_id],
                                   "label_id": label_id}
                                  for start, end, label_id in video.annotations]}
        database[video.video_id] = {key: fields[key] for key in spec.entry_keys}
    document["database"] = database
    return document


def _tar_info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar_gz(path: Path, members: Iterable[tuple[str, bytes]], top_folder: str = "") -> int:
    """Write a byte-reproducible ``.tar.gz`` atomically; returns the number of files.

    Members are written in the order given, under ``top_folder/`` when it is not empty.
    """
    count = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                              compresslevel=1) as gz, \
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            if top_folder:
                tar.addfile(_tar_info(f"{top_folder}/", directory=True))
            for name, data in members:
                tar.addfile(_tar_info(f"{top_folder}/{name}" if top_folder else name, len(data)),
                            io.BytesIO(data))
                count += 1
    return count


class _FeatureWriter:
    """Writes the feature files of one dataset, as archives or as the unpacked directory."""

    def __init__(self, seed: int, spec: DatasetSpec, videos: list[VideoPlan],
                 feature_pool: int | None):
        self.seed, self.spec = seed, spec
        self.videos = sorted((video for video in videos if video.steps), key=lambda v: v.video_id)
        self.directions = class_directions(seed, spec)
        self.pool = FeaturePool(feature_pool)

    def _features(self, video: VideoPlan, modality: str) -> np.ndarray:
        return video_features(self.seed, self.spec, video, modality, self.directions)

    def _members(self, modalities: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
        for video in self.videos:
            for modality in modalities:
                source = self.pool.source(video, modality)
                yield (feature_file_name(self.spec, video, modality),
                       npy_bytes(self._features(source, modality)))

    def write_archives(self, folder: Path) -> list[str]:
        """Write the dataset's archives into ``folder``; returns their file names."""
        for archive in self.spec.archives:
            log.info("writing %s (%d videos)", folder / archive.file_name, len(self.videos))
            write_tar_gz(folder / archive.file_name, self._members(archive.modalities),
                         archive.top_folder)
        return [archive.file_name for archive in self.spec.archives]

    def write_directory(self, directory: Path) -> None:
        """Write the feature files into a temp sibling of ``directory``, then rename it into
        place; pooled files are hard links."""
        log.info("writing %s (%d videos)", directory, len(self.videos))
        directory.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.partial-"))
        try:
            for video in self.videos:
                for modality in ("visual", "audio"):
                    path = work / feature_file_name(self.spec, video, modality)
                    source = self.pool.source(video, modality)
                    if source is not video:
                        os.link(work / feature_file_name(self.spec, source, modality), path)
                        continue
                    with open(path, "wb") as handle:
                        np.save(handle, self._features(video, modality), allow_pickle=False)
            os.rename(work, directory)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise


# --------------------------------------------------------------------------------------------
# replica.json
# --------------------------------------------------------------------------------------------

#: Per quirk, the numbers recorded besides its videos.  "annotations": the annotations it
#: concerns (all those of a video without features; otherwise the one planted annotation, or
#: the one repeated copy); the lists follow the order of "video_ids".
_QUIRK_NUMBERS = {
    "missing_features": ("annotations",),
    "zero_length": ("annotations",),
    "duplicate": ("annotations",),
    "av_length_mismatch": ("audio_minus_visual_steps",),
    "features_short": ("fraction_missing",),
    "past_features": ("annotations", "fraction_missing"),
    "past_duration": ("annotations", "seconds_past_duration"),
}


def _planted(videos: list[VideoPlan]) -> dict[str, Any]:
    """Per quirk: its videos (in listing order) and the numbers that describe them."""
    record: dict[str, Any] = {
        quirk: {"videos": 0, "video_ids": [],
                **{key: 0 if key == "annotations" else [] for key in _QUIRK_NUMBERS[quirk]}}
        for quirk in QUIRKS}
    for video in videos:
        if video.quirk is None:
            continue
        entry = record[video.quirk]
        entry["videos"] += 1
        entry["video_ids"].append(video.video_id)
        for key in _QUIRK_NUMBERS[video.quirk]:
            if key != "annotations":
                entry[key].append(video.details[key])
            elif video.quirk == "missing_features":
                entry[key] += len(video.annotations)
            else:
                entry[key] += 1
    return record


def _dataset_summary(spec: DatasetSpec, videos: list[VideoPlan]) -> dict[str, Any]:
    counts, planted = {}, {}
    for subset in spec.subsets:
        members = [video for video in videos if video.subset == subset]
        counts[subset] = {
            "videos": len(members),
            "annotations": sum(len(video.annotations) for video in members),
            "videos_with_features": sum(bool(video.steps) for video in members),
            "quirk_role": quirk_role(spec, subset)}
        planted[subset] = _planted(members)
    return {"counts": counts, "planted": planted}


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------

def _owned_paths(root: Path) -> list[Path]:
    """What a replica consists of under ``root`` (removed first by ``force``)."""
    paths = [root / "replica.json", root / "checksums.lock.json"]
    for spec in DATASETS:
        paths += [root / "downloads" / spec.folder, root / spec.folder]
    return paths


def _check_arguments(seed: Any, size: str, layout: str, feature_pool: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed (--seed) must be a non-negative integer, got {seed!r}")
    if size not in SIZES:
        raise ConfigError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if feature_pool is not None and (isinstance(feature_pool, bool)
                                     or not isinstance(feature_pool, int) or feature_pool < 1):
        raise ConfigError("feature_pool (--feature-pool) must be a positive integer (distinct "
                          f"files per dataset, modality and length) or None, got {feature_pool!r}")


def _prepare_root(root: Path, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise InputError("exists and is not a directory", file=root)
    if root.is_dir() and any(root.iterdir()):
        if not force:
            raise InputError("the directory is not empty; choose a new one or pass --force "
                             "(force=True) to replace a replica there", file=root)
        for path in _owned_paths(root):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif os.path.lexists(path):
                path.unlink()
    root.mkdir(parents=True, exist_ok=True)


def write_paper_replica(root: str | Path, *, seed: int = 0, size: str = "tiny",
                        layout: str = "archives", feature_pool: int | None = None,
                        force: bool = False) -> dict[str, Any]:
    """Write a replica of the paper's released files under ``root`` (see the module docstring).

    Args:
        root: the directory to write (created; must be empty unless ``force``).
        seed: every random draw derives from it (same seed and size: byte-identical files).
        size: ``"tiny"`` (tens of videos per dataset) or ``"real"`` (the released video counts
            and lengths).
        layout: ``"archives"`` (the hand-downloaded files under ``downloads/``) or ``"unpacked"``
            (the layout after ``uniav download``, no archives).
        feature_pool: if set, only this many distinct feature contents per dataset, modality and
            length; the other files repeat them (hard links with ``unpacked``, repeated members
            in archives).
        force: allow a non-empty ``root``: the parts of a previous replica there
            (``downloads/<dataset>/``, ``<dataset>/``, ``checksums.lock.json``,
            ``replica.json``) are removed first; other files are kept.

    Returns:
        The content of ``replica.json``: seed, size, layout, classes, grid, per task the
        counts per subset and the planted quirks per subset.

    Raises:
        ConfigError: a bad seed, size, layout or feature pool.
        InputError: ``root`` is a file, or not empty without ``force``.
    """
    _check_arguments(seed, size, layout, feature_pool)
    root = Path(root)
    _prepare_root(root, force)
    summary: dict[str, Any] = {
        "generator": "uniav paper-replica", "format_version": REPLICA_FORMAT_VERSION,
        "seed": seed, "size": size, "layout": layout, "feature_pool": feature_pool,
        "feature_dim": FEATURE_DIM,
        "classes": {spec.task: len(spec.classes) for spec in DATASETS},
        "grid": {"fps": FPS, "window_frames": WINDOW_FRAMES,
                 "nominal_steps": "(floor(duration * fps) - window_frames) // stride + 1",
                 "feature_end_seconds": "((steps - 1) * stride + window_frames) / fps"},
        "datasets": {}, "counts": {}, "planted": {}}
    for spec in DATASETS:
        videos = plan_dataset(spec, SIZES[size][spec.task], seed)
        writer = _FeatureWriter(seed, spec, videos, feature_pool)
        if layout == "archives":
            folder = root / "downloads" / spec.folder
            files = [spec.annotation_file, *writer.write_archives(folder), spec.prompt_file]
            annotation_path = folder / spec.annotation_file
        else:
            folder = root / spec.folder
            writer.write_directory(folder / "av_features")
            annotation_path = folder / "annotations" / spec.annotation_file
            files = [f"annotations/{spec.annotation_file}", "av_features/", spec.prompt_file]
        atomic_write_text(annotation_path, json.dumps(annotation_document(spec, videos)))
        with atomic_path(folder / spec.prompt_file) as tmp:
            tmp.write_bytes(npy_bytes(prompt_embeddings(seed, spec, writer.directions)))
        summary["datasets"][spec.task] = {
            "dataset": spec.folder, "directory": folder.relative_to(root).as_posix(),
            "files": files, "feat_stride": spec.feat_stride, "id_prefix": spec.id_prefix,
            "event_modalities": list(spec.event_modalities),
            "train_subset": spec.train_subset, "test_subset": spec.test_subset}
        described = _dataset_summary(spec, videos)
        summary["counts"][spec.task] = described["counts"]
        summary["planted"][spec.task] = described["planted"]
    atomic_write_json(root / "replica.json", summary)
    return summary

