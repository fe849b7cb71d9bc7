"""Annotation files: ActivityNet-style JSON (all three datasets) and DESED's TSV.

JSON layout (the layout of the real datasets' files; ``classes``, ``fps`` and ``label_id`` are
optional)::

    {"classes": ["Dog", "Speech", ...],
     "database": {"<video>": {"subset": "training", "duration": 42.5, "fps": 16.0,
                              "annotations": [{"segment": [t0, t1], "label": "Dog",
                                               "label_id": 0}, ...]}}}

The class list is, in order of preference: the top-level ``classes``; the ``label_id``
numbering of the annotations; the sorted set of labels.  It does not depend on the subset, so
every split of a dataset sees the same class indices.

Validation (each failure is an :class:`~uniav.errors.InputError` naming file, video and field):
missing keys, non-numeric (booleans included) or NaN segment bounds, reversed segments,
zero-length segments (unless ``zero_length="keep"``: real ActivityNet has some), segments outside
``[0, duration]`` beyond ``range_tolerance`` seconds (within it they are clamped, or kept as they
are with ``past_duration="keep"``; ``VideoAnnotation.clipped`` counts those sticking out by more
than 1 ms), labels not in the class list, inconsistent ``label_id``.

Segments outside their video, the one rule (:func:`fit_to_video`, used for ground truth and for
predictions alike by the evaluation): a segment is clipped to ``[0, duration]`` and counted as
clipped; a segment with nothing left inside the video is ignored and counted as ignored.  An
annotation *file* is stricter: a segment sticking out by more than ``range_tolerance`` is an
error there, since it means a wrong duration or a broken annotation.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from uniav.errors import InputError
from uniav.fileio import load_json_file

#: Segments shorter than this (seconds) are degenerate.
MIN_SEGMENT_LENGTH = 1e-3


@dataclass(frozen=True)
class VideoAnnotation:
    """The ground truth of one video.

    Attributes:
        video_id: the video id (as in the annotation file).
        subset: the ``subset`` it belongs to.
        duration: length in seconds.
        fps: frame rate recorded in the file, if any.
        segments: (N, 2) float64 array of [start, end] in seconds.
        labels: N class names.
        clipped: how many segments stuck out of ``[0, duration]`` by more than 1 ms when the
            file was read (clamped into it, or kept as they are, see :func:`load_annotations`).
    """

    video_id: str
    subset: str
    duration: float
    fps: float | None
    segments: np.ndarray
    labels: tuple[str, ...]
    clipped: int = field(default=0, compare=False)

    def label_ids(self, classes: list[str]) -> np.ndarray:
        """Class indices of the labels, shape (N,), int64."""
        index = {name: i for i, name in enumerate(classes)}
        return np.asarray([index[label] for label in self.labels], dtype=np.int64)


@dataclass(frozen=True)
class AnnotationDB:
    """All videos of one annotation file."""

    path: Path
    classes: list[str]
    videos: dict[str, VideoAnnotation] = field(repr=False)

    @property
    def subsets(self) -> set[str]:
        return {v.subset for v in self.videos.values()}

    def subset(self, name: str) -> list[VideoAnnotation]:
        """Videos of one subset, in file order.

        Raises:
            InputError: if no video belongs to ``name``.
        """
        videos = [v for v in self.videos.values() if v.subset == name]
        if not videos:
            known = ", ".join(sorted(self.subsets)) or "none"
            raise InputError(f"subset {name!r} has no videos (subsets in the file: {known})",
                             file=self.path, field="subset")
        return videos


def load_annotations(path: str | Path, *, classes: list[str] | None = None,
                     range_tolerance: float = 1.0, zero_length: str = "error",
                     past_duration: str = "clamp") -> AnnotationDB:
    """Read and validate an ActivityNet-style annotation JSON.

    Args:
        path: the JSON file.
        classes: the class list to use; by default it comes from the file (see module docs).
        range_tolerance: seconds a segment may stick out of ``[0, duration]`` before it is an
            error.
        zero_length: ``error`` or ``keep`` zero-length segments.
        past_duration: ``clamp`` segments sticking out of ``[0, duration]`` (within the
            tolerance) into it, or ``keep`` them as they are.

    Returns:
        The :class:`AnnotationDB`.
    """
    path = Path(path)
    data = load_json_file(path, missing="annotation file not found")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise InputError("expected a JSON object with a 'database' mapping", file=path,
                         field="database")
    database: dict[str, Any] = data["database"]
    label_ids, labels = _label_ids(path, data)
    if classes is None:
        classes = _class_list(path, data, label_ids, labels)
    class_set = set(classes)
    videos = {}
    for video_id, entry in database.items():
        videos[video_id] = _parse_video(path, video_id, entry, class_set, range_tolerance,
                                        zero_length, past_duration)
    return AnnotationDB(path=path, classes=list(classes), videos=videos)


def load_annotations_under(path: str | Path, policy: Any) -> AnnotationDB:
    """:func:`load_annotations` as the data policy (``config.data``) says: what it accepts of
    zero-length segments and segments sticking out of the video."""
    return load_annotations(path, range_tolerance=policy.segment_tolerance,
                            zero_length="error" if policy.zero_length_segments == "error"
                            else "keep", past_duration=policy.segments_past_duration)


def _label_ids(path: Path, data: dict[str, Any]) -> tuple[dict[str, int], set[str]]:
    """The ``label_id`` of each label that has one, and every label string of the file.

    Checked whether or not the file has a ``classes`` list: one label has one ``label_id``,
    ``label_id`` values are non-negative integers and two labels never share one."""
    ids: dict[str, int] = {}
    labels: set[str] = set()
    for video_id, entry in data["database"].items():
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        if not isinstance(annotations, list):
            continue  # reported with its location by _parse_video
        for i, ann in enumerate(annotations):
            if not isinstance(ann, dict) or not isinstance(ann.get("label"), str):
                continue  # reported with its location by _parse_video
            labels.add(ann["label"])
            if "label_id" in ann:
                label_id = ann["label_id"]
                if ann["label"] in ids and ids[ann["label"]] != label_id:
                    raise InputError(f"label {ann['label']!r} has label_id {label_id} here but "
                                     f"{ids[ann['label']]} elsewhere", file=path, video=video_id,
                                     field=f"annotations[{i}].label_id")
                ids[ann["label"]] = label_id
    by_id: dict[int, str] = {}
    for label, label_id in ids.items():
        if not isinstance(label_id, int) or isinstance(label_id, bool) or label_id < 0:
            raise InputError(f"label_id of {label!r} must be a non-negative integer",
                             file=path, field="label_id")
        if label_id in by_id:
            raise InputError(f"labels {by_id[label_id]!r} and {label!r} share label_id "
                             f"{label_id}", file=path, field="label_id")
        by_id[label_id] = label
    return ids, labels


def _class_list(path: Path, data: dict[str, Any], ids: dict[str, int],
                labels: set[str]) -> list[str]:
    if "classes" in data:
        classes = data["classes"]
        if (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
                or len(set(classes)) != len(classes)):
            raise InputError("'classes' must be a list of distinct strings", file=path,
                             field="classes")
        return classes
    if ids and len(ids) == len(labels):
        by_id = {label_id: label for label, label_id in ids.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise InputError("label_id values are not 0..K-1 without gaps; add a 'classes' list",
                             file=path, field="label_id")
        return [by_id[i] for i in range(len(by_id))]
    return sorted(labels)


def _number(value: Any, *, path: Path, video: str, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value!r}", file=path, video=video,
                         field=field_name)
    return float(value)


def _parse_video(path: Path, video_id: str, entry: Any, classes: set[str],
                 range_tolerance: float, zero_length: str = "error",
                 past_duration: str = "clamp") -> VideoAnnotation:
    if not isinstance(entry, dict):
        raise InputError("expected an object", file=path, video=video_id)
    for key in ("subset", "duration"):
        if key not in entry:
            raise InputError(f"missing '{key}'", file=path, video=video_id, field=key)
    subset = entry["subset"]
    if not isinstance(subset, str):
        raise InputError(f"expected a string, got {subset!r}", file=path, video=video_id,
                         field="subset")
    duration = _number(entry["duration"], path=path, video=video_id, field_name="duration")
    if duration <= 0:
        raise InputError(f"duration must be positive, got {duration}", file=path, video=video_id,
                         field="duration")
    fps = entry.get("fps")
    if fps is not None:
        fps = _number(fps, path=path, video=video_id, field_name="fps")
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        raise InputError("expected a list", file=path, video=video_id, field="annotations")
    segments = np.zeros((len(annotations), 2), dtype=np.float64)
    labels = []
    clipped = 0
    for i, ann in enumerate(annotations):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise InputError("expected an object", file=path, video=video_id, field=where)
        for key in ("segment", "label"):
            if key not in ann:
                raise InputError(f"missing '{key}'", file=path, video=video_id,
                                 field=f"{where}.{key}")
        segment = ann["segment"]
        if not isinstance(segment, (list, tuple)) or len(segment) != 2:
            raise InputError(f"expected [start, end], got {segment!r}", file=path, video=video_id,
                             field=f"{where}.segment")
        start, end = (_number(v, path=path, video=video_id, field_name=f"{where}.segment")
                      for v in segment)
        if end < start:
            raise InputError(f"reversed segment [{start}, {end}]", file=path, video=video_id,
                             field=f"{where}.segment")
        degenerate = end - start < MIN_SEGMENT_LENGTH
        if degenerate and zero_length != "keep":
            raise InputError(f"zero-length segment [{start}, {end}] (data.zero_length_segments: "
                             f"error; the released protocol accepts them)", file=path,
                             video=video_id, field=f"{where}.segment")
        clamped_start, clamped_end = max(start, 0.0), min(end, duration)
        # the clamped check also catches segments wholly before 0 (e.g. [-0.5, -0.2]) that the
        # tolerance would otherwise "clamp" into reversed ones
        if (start < -range_tolerance or end > duration + range_tolerance or start > duration
                or (start == duration and not degenerate)
                or (not degenerate and clamped_end - clamped_start < MIN_SEGMENT_LENGTH)):
            raise InputError(f"segment [{start}, {end}] lies outside the video [0, {duration}]",
                             file=path, video=video_id, field=f"{where}.segment")
        segments[i] = (start, end) if past_duration == "keep" else (clamped_start, clamped_end)
        clipped += max(clamped_start - start, end - clamped_end) > MIN_SEGMENT_LENGTH
        label = ann["label"]
        if not isinstance(label, str):
            raise InputError(f"expected a class name, got {label!r}", file=path, video=video_id,
                             field=f"{where}.label")
        if label not in classes:
            raise InputError(f"unknown label {label!r} (not in the class list)", file=path,
                             video=video_id, field=f"{where}.label")
        labels.append(label)
    return VideoAnnotation(video_id=video_id, subset=subset, duration=duration, fps=fps,
                           segments=segments, labels=tuple(labels), clipped=clipped)


def fit_to_video(segments: np.ndarray, durations: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one rule for segments outside their video (ground truth and predictions alike).

    Each segment is clipped to ``[0, duration]`` of its video; a segment with no positive
    length left inside the video (wholly before 0 or after the end) is to be ignored.  An
    overhang of at most :data:`MIN_SEGMENT_LENGTH` (1 ms: rounding of a segment that ends at the
    video's end) is clipped without being counted as clipped.

    Args:
        segments: (N, 2) seconds.
        durations: (N,) the duration of each segment's video.

    Returns:
        ``(fitted (N, 2), clipped (N,) bool, outside (N,) bool)``: the clipped segments, which
        of them were changed by clipping (and remain inside), and which lie wholly outside.
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    durations = np.asarray(durations, dtype=np.float64).reshape(-1)
    fitted = np.stack([np.clip(segments[:, 0], 0.0, durations),
                       np.clip(segments[:, 1], 0.0, durations)], axis=1)
    outside = ~(fitted[:, 1] > fitted[:, 0])
    overhang = np.maximum(fitted[:, 0] - segments[:, 0], segments[:, 1] - fitted[:, 1])
    clipped = ~outside & (overhang > MIN_SEGMENT_LENGTH)
    return fitted, clipped, outside


def duplicate_mask(segments: np.ndarray, labels: Iterable[Any], tol: float = 1e-3) -> np.ndarray:
    """Boolean mask of annotations that repeat an earlier one (same label, both bounds within
    ``tol``).  ActivityNet 1.3 has such duplicates; removing them is an explicit option."""
    labels = list(labels)
    keep_first = np.zeros(len(labels), dtype=bool)
    for i in range(len(labels)):
        for j in range(i):
            if (not keep_first[j] and labels[i] == labels[j]
                    and abs(segments[i, 0] - segments[j, 0]) <= tol
                    and abs(segments[i, 1] - segments[j, 1]) <= tol):
                keep_first[i] = True
                break
    return keep_first


def read_desed_tsv(path: str | Path, durations: dict[str, float], subset: str,
                   classes: list[str], range_tolerance: float = 1.0) -> AnnotationDB:
    """Read a DESED ground-truth TSV (``filename onset offset event_label``, header line).

    Args:
        path: the TSV.
        durations: clip duration in seconds by file name (with or without ``.wav``).
        subset: subset name given to every clip.
        classes: the class list.
        range_tolerance: as in :func:`load_annotations`.

    Returns:
        An :class:`AnnotationDB`; clip ids are file names without the extension.
    """
    path = Path(path)
    database: dict[str, dict[str, Any]] = {}
    durations = {Path(k).stem: float(v) for k, v in durations.items()}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
    except FileNotFoundError:
        raise InputError("annotation file not found", file=path) from None
    if not rows or [c.strip() for c in rows[0][:4]] != ["filename", "onset", "offset", "event_label"]:
        raise InputError("expected a header 'filename onset offset event_label'", file=path,
                         field="header")
    for line, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        clip = Path(row[0].strip()).stem
        if clip not in durations:
            raise InputError("no duration known for this clip", file=path, video=clip,
                             field="filename")
        entry = database.setdefault(clip, {"subset": subset, "duration": durations[clip],
                                           "annotations": []})
        if len(row) < 4 or not row[1].strip():  # a clip without events
            continue
        try:
            onset, offset = float(row[1]), float(row[2])
        except ValueError:
            raise InputError(f"line {line}: onset/offset are not numbers: {row[1:3]}", file=path,
                             video=clip, field="onset") from None
        entry["annotations"].append({"segment": [onset, offset], "label": row[3].strip()})
    class_set = set(classes)
    videos = {clip: _parse_video(path, clip, entry, class_set, range_tolerance)
              for clip, entry in database.items()}
    return AnnotationDB(path=path, classes=list(classes), videos=videos)


def seen_classes(classes: list[str], held_out: Iterable[str], task: str,
                 file: str | Path) -> list[str]:
    """The classes of an annotation file that an open-set experiment trains on: ``classes``
    without ``held_out``, in file order.

    Raises:
        ConfigError: a held-out name that is not a class of ``file``, or every class held out.
    """
    from uniav.errors import ConfigError

    held_out = list(held_out)
    unknown = [name for name in held_out if name not in classes]
    if unknown:
        raise ConfigError(f"held-out class {unknown[0]!r} of task {task!r} is not a class of "
                          f"{file} (its classes: {', '.join(classes)})")
    seen = [name for name in classes if name not in held_out]
    if not seen:
        raise ConfigError(f"task {task!r}: every class of {file} is held out; nothing is left "
                          f"to train on")
    return seen
