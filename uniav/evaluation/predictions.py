"""Detections of many videos in one validated, columnar container.

The file format is the ActivityNet results JSON (docs/evaluation.md)::

    {"results": {"<video>": [{"segment": [t0, t1], "label": "<class name>", "score": s}, ...]},
     "version": "...", "external_data": {...}}          # extra top-level keys are ignored

Validation (each failure is an :class:`~uniav.errors.InputError` naming the file, the video and
the field, e.g. ``detections[3].segment``): every detection is an object with a ``segment`` of two
finite numbers with ``t1 > t0`` (reversed and zero-length segments are rejected - the official
script silently scores them as matches), a string ``label`` and a finite numeric ``score``.
Booleans are not numbers here (``"score": true`` is refused as ``"label": 3`` is), and a video id
given twice in ``results`` is refused when the file is read
(:func:`uniav.evaluation.results_file.load_predictions`).
Segments sticking out of their video are the evaluation's business (clipped or ignored, and
counted: :mod:`uniav.evaluation.detection`).
Labels are *not* checked against a class list here: unknown labels are counted and reported by
the evaluator, never remapped.

Checks run vectorised over all detections (the structure with C loops over the columns, the
values with numpy); only when one fails is the offending detection located one by one, so
validating an ActivityNet-sized file costs little next to reading it.  Files are read by
:func:`uniav.evaluation.results_file.load_predictions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from uniav.errors import InputError

#: video ids, detections per video, segments (N, 2), scores (N,), labels (N strings)
_Columns = tuple[list[str], list[int], np.ndarray, np.ndarray, list[str]]


@dataclass(frozen=True, eq=False)
class Predictions:
    """Detections of many videos, column by column (N detections in all).

    Attributes:
        video_ids: distinct video ids in input order (videos listed with no detection included).
        video_index: (N,) int64, the video of each detection (index into ``video_ids``).
        segments: (N, 2) float64 ``[t0, t1]`` in seconds, ``t1 > t0``, finite.
        scores: (N,) float64, finite.
        label_names: distinct labels in order of first appearance.
        label_index: (N,) int64, the label of each detection (index into ``label_names``).

    Detection order (video by video, then as listed) is the input order used to break score
    ties in the evaluation.
    """

    video_ids: tuple[str, ...]
    video_index: np.ndarray
    segments: np.ndarray
    scores: np.ndarray
    label_names: tuple[str, ...]
    label_index: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def labels(self) -> list[str]:
        """The label of every detection (N strings)."""
        return [self.label_names[i] for i in self.label_index.tolist()]

    def for_video(self, video_id: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Segments (M, 2), scores (M,) and labels of one video (empty if it has none)."""
        try:
            position = self.video_ids.index(video_id)
        except ValueError:
            return np.zeros((0, 2)), np.zeros(0), []
        rows = np.flatnonzero(self.video_index == position)
        return (self.segments[rows], self.scores[rows],
                [self.label_names[i] for i in self.label_index[rows].tolist()])

    def to_results(self) -> dict[str, list[dict[str, Any]]]:
        """The ActivityNet ``results`` mapping (every video, in input order)."""
        results: dict[str, list[dict[str, Any]]] = {video: [] for video in self.video_ids}
        for video, segment, score, label in zip(self.video_index.tolist(), self.segments.tolist(),
                                                self.scores.tolist(), self.labels):
            results[self.video_ids[video]].append(
                {"segment": segment, "label": label, "score": score})
        return results

    @classmethod
    def from_results(cls, results: Mapping[str, Any], *, file: str | Path | None = None
                     ) -> "Predictions":
        """Build from an ActivityNet ``results`` mapping ``{video: [detection, ...]}``.

        Args:
            results: the mapping (the value of the file's ``"results"`` key).
            file: the file it came from, named in error messages.

        Returns:
            The validated :class:`Predictions`.

        Raises:
            InputError: a malformed detection, naming video and field.
        """
        if not isinstance(results, Mapping):
            raise InputError(f"'results' must map video ids to lists of detections, got "
                             f"{type(results).__name__}", file=file, field="results")
        columns = _plain_columns(results)
        if columns is None:  # something unusual, maybe wrong: one by one, naming the first fault
            columns = _columns_one_by_one(results, file)
        video_ids, counts, segment_array, score_array, labels = columns
        video_index = np.repeat(np.arange(len(video_ids), dtype=np.int64), counts)
        label_names, label_index = index_labels(labels)
        return cls.from_columns(tuple(video_ids), video_index, segment_array, score_array,
                            label_names, label_index, file=file)

    @classmethod
    def from_arrays(cls, per_video: Mapping[str, tuple[Any, Any, Any]], *,
                    classes: Sequence[str] | None = None) -> "Predictions":
        """Build from per-video arrays ``{video: (segments (M, 2), scores (M,), labels (M,))}``.

        Args:
            per_video: per video, segments in seconds, scores, and labels - class names, or
                integer indices into ``classes``.  numpy arrays, torch tensors or lists.
            classes: the class list integer labels index into.

        Returns:
            The validated :class:`Predictions`.

        Raises:
            InputError: bad shapes, non-finite values, reversed or zero-length segments, integer
                labels outside ``classes``.
        """
        video_ids, counts = [], []
        segment_parts, score_parts, label_parts = [], [], []
        for video, (segments, scores, labels) in per_video.items():
            for name, values in (("segments", segments), ("scores", scores)):
                if np.asarray(values).dtype == bool:
                    raise InputError("booleans are not numbers", video=video, field=name)
            segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)
            labels = np.asarray(labels).reshape(-1)
            if not len(segments) == len(scores) == len(labels):
                raise InputError(f"{len(segments)} segments, {len(scores)} scores and "
                                 f"{len(labels)} labels", video=video, field="detections")
            if labels.dtype.kind in "iu":
                if classes is None:
                    raise InputError("integer labels need the class list", video=video,
                                     field="labels")
                bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
                if bad.size:
                    raise InputError(f"label index {int(labels[bad[0]])} is outside the "
                                     f"{len(classes)} classes", video=video,
                                     field=f"detections[{int(bad[0])}].label")
                labels = np.asarray(classes, dtype=object)[labels]
            elif len(labels) and labels.dtype.kind not in "UO":
                raise InputError(f"labels must be class names or indices, got dtype "
                                 f"{labels.dtype}", video=video, field="labels")
            video_ids.append(video)
            counts.append(len(scores))
            segment_parts.append(segments)
            score_parts.append(scores)
            label_parts.extend(str(label) for label in labels.tolist())
        label_names = tuple(dict.fromkeys(label_parts))
        lookup = {name: i for i, name in enumerate(label_names)}
        return cls.from_columns(
            tuple(video_ids), np.repeat(np.arange(len(video_ids), dtype=np.int64), counts),
            np.concatenate(segment_parts) if segment_parts else np.zeros((0, 2)),
            np.concatenate(score_parts) if score_parts else np.zeros(0), label_names,
            np.fromiter((lookup[label] for label in label_parts), dtype=np.int64,
                        count=len(label_parts)), file=None)

    @classmethod
    def from_columns(cls, video_ids: tuple[str, ...], video_index: np.ndarray,
                     segments: np.ndarray, scores: np.ndarray, label_names: tuple[str, ...],
                     label_index: np.ndarray, *, file: str | Path | None = None
                     ) -> "Predictions":
        """Build from the columns (the attributes, detections grouped video by video), checking
        the values vectorised: finite segments, not reversed, not zero-length, finite scores.

        Raises:
            InputError: the first failure, naming ``file``, the video and ``detections[i]``.
        """
        starts = np.zeros(len(video_ids), dtype=np.int64)
        np.cumsum(np.bincount(video_index, minlength=len(video_ids))[:-1], out=starts[1:])

        def fail(row: int, field: str, message: str) -> None:
            video = int(video_index[row])
            raise InputError(message, file=file, video=video_ids[video],
                             field=f"detections[{row - int(starts[video])}].{field}")

        finite = np.isfinite(segments).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            fail(row, "segment", f"segment bounds must be finite, got {segments[row].tolist()}")
        reversed_ = segments[:, 1] < segments[:, 0]
        if reversed_.any():
            row = int(np.argmax(reversed_))
            fail(row, "segment", f"reversed segment {segments[row].tolist()} (end before start)")
        empty = segments[:, 1] == segments[:, 0]
        if empty.any():
            row = int(np.argmax(empty))
            fail(row, "segment", f"zero-length segment {segments[row].tolist()}")
        finite_scores = np.isfinite(scores)
        if not finite_scores.all():
            row = int(np.argmin(finite_scores))
            fail(row, "score", f"score must be a finite number, got {scores[row]}")
        return cls(video_ids, video_index, segments, scores, label_names, label_index)


def load_predictions(path: str | Path) -> Predictions:
    """Read and validate an ActivityNet results file: see
    :func:`uniav.evaluation.results_file.load_predictions` (kept here for existing imports)."""
    from uniav.evaluation.results_file import load_predictions as read_results_file

    return read_results_file(path)


def index_labels(labels: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct labels in order of first appearance, and the index of each label into them."""
    label_names = tuple(dict.fromkeys(labels))
    lookup = {name: i for i, name in enumerate(label_names)}
    return label_names, np.fromiter(map(lookup.__getitem__, labels), dtype=np.int64,
                                    count=len(labels))


def _plain_columns(results: Mapping[str, Any]) -> _Columns | None:
    """The columns of results in the plain layout, checked by C loops; None for anything else.

    Plain: string video ids, lists of dict detections holding ``segment`` (a list of two int or
    float numbers), ``label`` (a string) and ``score`` (an int or float).  Whatever passes here
    gives exactly what :func:`_columns_one_by_one` gives.
    """
    video_ids = list(results)
    per_video = list(results.values())
    if set(map(type, video_ids)) - {str} or set(map(type, per_video)) - {list}:
        return None
    detections = list(chain.from_iterable(per_video))
    if not detections or set(map(type, detections)) != {dict}:
        return None
    try:
        segments = list(map(itemgetter("segment"), detections))
        labels = list(map(itemgetter("label"), detections))
        scores = list(map(itemgetter("score"), detections))
    except KeyError:
        return None
    if (set(map(type, segments)) != {list} or set(map(len, segments)) != {2}
            or set(map(type, labels)) != {str}):
        return None
    bound_types = set(map(type, chain.from_iterable(segments)))
    score_types = set(map(type, scores))
    if not (bound_types <= {float, int} and score_types <= {float, int}):
        return None  # booleans, strings, null, ...: one by one
    n = len(detections)
    segment_array = (np.array(list(chain.from_iterable(segments)), dtype=np.float64)
                     .reshape(n, 2) if bound_types == {float}
                     else _numeric(segments, (n, 2)))
    score_array = (np.array(scores, dtype=np.float64) if score_types == {float}
                   else _numeric(scores, (n,)))
    if segment_array is None or score_array is None:
        return None
    return video_ids, list(map(len, per_video)), segment_array, score_array, labels


def _columns_one_by_one(results: Mapping[str, Any], file: str | Path | None) -> _Columns:
    """The columns of results, detection by detection; raises for the first malformed one."""
    video_ids, counts = [], []
    segments: list[Any] = []
    scores: list[Any] = []
    labels: list[Any] = []
    for video, detections in results.items():
        if not isinstance(video, str):
            raise InputError(f"video ids must be strings, got {video!r}", file=file,
                             field="results")
        if not isinstance(detections, list):
            raise InputError(f"expected a list of detections, got "
                             f"{type(detections).__name__}", file=file, video=video,
                             field="detections")
        try:
            segments.extend([d["segment"] for d in detections])
            scores.extend([d["score"] for d in detections])
            labels.extend([d["label"] for d in detections])
        except (KeyError, TypeError):
            _locate_malformed(video, detections, file)
            raise  # pragma: no cover - _locate_malformed always raises here
        video_ids.append(video)
        counts.append(len(detections))
    segment_array = _numeric(segments, (len(segments), 2))
    score_array = _numeric(scores, (len(scores),))
    if (segment_array is None or score_array is None or _any_bool(scores)
            or _any_bool(chain.from_iterable(segments))):
        _locate_from_flat(results, video_ids, counts, file)
    if set(map(type, labels)) - {str}:
        _locate_from_flat(results, video_ids, counts, file)
    return video_ids, counts, segment_array, score_array, labels


def _numeric(values: list[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """``values`` as a float64 array of ``shape``, or None if they are not all plain numbers."""
    try:
        array = np.asarray(values) if values else np.zeros(shape)
    except (ValueError, TypeError):
        return None
    if array.shape != shape or array.dtype.kind not in "iuf":
        return None
    return array.astype(np.float64)


def _locate_from_flat(results: Mapping[str, Any], video_ids: list[str], counts: list[int],
                      file: str | Path | None) -> None:
    for video, count in zip(video_ids, counts):
        if count:
            _locate_malformed(video, results[video], file)
    raise InputError("malformed detections", file=file, field="results")  # pragma: no cover


def _locate_malformed(video: str, detections: list[Any], file: str | Path | None) -> None:
    """Raise the InputError for the first malformed detection of one video."""
    for i, detection in enumerate(detections):
        where = f"detections[{i}]"
        if not isinstance(detection, dict):
            raise InputError(f"expected an object, got {detection!r}", file=file, video=video,
                             field=where)
        for key in ("segment", "label", "score"):
            if key not in detection:
                raise InputError(f"missing '{key}'", file=file, video=video,
                                 field=f"{where}.{key}")
        segment = detection["segment"]
        if (not isinstance(segment, (list, tuple)) or len(segment) != 2
                or not all(_is_number(v) for v in segment)):
            raise InputError(f"expected [start, end] as two numbers, got {segment!r}", file=file,
                             video=video, field=f"{where}.segment")
        if not _is_number(detection["score"]):
            raise InputError(f"expected a number, got {detection['score']!r}", file=file,
                             video=video, field=f"{where}.score")
        if not isinstance(detection["label"], str):
            raise InputError(f"expected a class name (string), got {detection['label']!r}",
                             file=file, video=video, field=f"{where}.label")


def _any_bool(values: Iterable[Any]) -> bool:
    """Whether any of ``values`` is a boolean (numpy would take ``True`` for 1.0)."""
    return bool in set(map(type, values))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
