"""What a detection evaluation works on: the evaluated videos, the validated predictions, the
class list, and the ground truth as flat arrays (docs/evaluation.md).

* :func:`prepare_inputs` - the evaluated videos (:func:`resolve_ground_truth`), the
  :class:`~uniav.evaluation.predictions.Predictions` (:func:`as_predictions`) and the class list;
* :func:`ground_truth_arrays` - validated ground truth, video by video, as
  :class:`GroundTruthArrays` (degenerate segments and labels outside the class list refused,
  duplicates optionally removed);
* :func:`check_video_overlap` - detections none of which lies on an evaluated video are refused
  (a wrong subset or ``v_`` id prefix).

Used by :func:`uniav.evaluation.detection.evaluate_detection` and
:func:`uniav.evaluation.sed.sed_extras`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from uniav.data.annotations import AnnotationDB, VideoAnnotation, duplicate_mask
from uniav.errors import InputError
from uniav.evaluation.predictions import Predictions

#: What an evaluation accepts as ground truth.
GroundTruth = AnnotationDB | Mapping[str, VideoAnnotation] | Sequence[VideoAnnotation]


def resolve_ground_truth(ground_truth: GroundTruth, subset: str | None = None
                         ) -> list[VideoAnnotation]:
    """The evaluated videos as a list.

    Args:
        ground_truth: an :class:`AnnotationDB` (then ``subset`` names the videos to use), a
            mapping ``video id -> VideoAnnotation`` or a sequence of them.
        subset: required with an :class:`AnnotationDB`; must not be given otherwise.

    Returns:
        The :class:`VideoAnnotation` list, in input order.

    Raises:
        InputError: unknown or empty subset, no videos, repeated video ids.
    """
    if isinstance(ground_truth, AnnotationDB):
        if subset is None:
            raise ValueError("an AnnotationDB needs the subset to evaluate")
        videos = ground_truth.subset(subset)
    else:
        if subset is not None:
            raise ValueError("subset is only meaningful with an AnnotationDB")
        videos = list(ground_truth.values() if isinstance(ground_truth, Mapping)
                      else ground_truth)
    if not videos:
        raise InputError("no ground-truth videos to evaluate", field="ground_truth")
    seen: set[str] = set()
    for video in videos:
        if not isinstance(video, VideoAnnotation):
            raise TypeError(f"expected VideoAnnotation, got {type(video).__name__}")
        if video.video_id in seen:
            raise InputError("video listed twice in the ground truth", video=video.video_id)
        seen.add(video.video_id)
    return videos


def as_predictions(predictions: Predictions | Mapping[str, Any]) -> Predictions:
    """Accept a :class:`Predictions` or a parsed results file ``{"results": {...}}``."""
    if isinstance(predictions, Predictions):
        return predictions
    if isinstance(predictions, Mapping) and "results" in predictions:
        return Predictions.from_results(predictions["results"])
    raise TypeError("predictions must be a Predictions or a mapping with a 'results' key")


def prepare_inputs(ground_truth: GroundTruth, predictions: Predictions | Mapping[str, Any],
                   classes: Sequence[str] | None, subset: str | None
                   ) -> tuple[list[VideoAnnotation], Predictions, list[str]]:
    """The evaluated videos, the validated predictions and the class list of an evaluation.

    The class list is ``classes`` when given, else the AnnotationDB's, else the sorted labels
    of the ground truth.
    """
    if classes is None and isinstance(ground_truth, AnnotationDB):
        classes = ground_truth.classes
    videos = resolve_ground_truth(ground_truth, subset)
    if classes is None:
        classes = sorted({label for video in videos for label in video.labels})
    return videos, as_predictions(predictions), list(classes)


@dataclass(frozen=True)
class GroundTruthArrays:
    """Ground-truth instances of the evaluated videos as flat arrays (video by video, in
    annotation order)."""

    videos: np.ndarray     # (G,) int64 index of the evaluated video
    classes: np.ndarray    # (G,) int64 class index
    segments: np.ndarray   # (G, 2) float64 seconds
    duplicates_removed: int


def ground_truth_arrays(videos: list[VideoAnnotation], class_position: dict[str, int],
                         remove_duplicates: bool, tolerance: float,
                         allow_zero_length: bool = False) -> GroundTruthArrays:
    """Validated ground truth as flat arrays (video by video, in annotation order).

    Raises:
        InputError: segments/labels count mismatch, a degenerate segment (reversed,
            zero-length, non-finite), a label not in ``class_position``.
    """
    counts, segment_parts, labels = [], [], []
    removed = 0
    for video in videos:
        segments = np.asarray(video.segments, dtype=np.float64).reshape(-1, 2)
        if len(segments) != len(video.labels):
            raise InputError(f"{len(segments)} segments but {len(video.labels)} labels",
                             video=video.video_id, field="annotations")
        video_labels = list(video.labels)
        if remove_duplicates and len(video_labels) > 1:
            keep = ~duplicate_mask(segments, video_labels, tolerance)
            removed += int(np.count_nonzero(~keep))
            segments = segments[keep]
            video_labels = [label for label, kept in zip(video_labels, keep) if kept]
        counts.append(len(video_labels))
        segment_parts.append(segments)
        labels.extend(video_labels)
    video_index = np.repeat(np.arange(len(videos), dtype=np.int64), counts)
    all_segments = np.concatenate(segment_parts).reshape(-1, 2)
    longer = all_segments[:, 1] >= all_segments[:, 0] if allow_zero_length else \
        all_segments[:, 1] > all_segments[:, 0]
    ok = np.isfinite(all_segments).all(axis=1) & longer
    if not ok.all():
        row = int(np.argmin(ok))
        video = videos[int(video_index[row])]
        i = next(j for j, segment in enumerate(np.asarray(video.segments).reshape(-1, 2).tolist())
                 if segment == all_segments[row].tolist())
        raise InputError(f"degenerate ground-truth segment {all_segments[row].tolist()} "
                         f"(reversed, zero-length or not finite)", video=video.video_id,
                         field=f"annotations[{i}].segment")
    try:
        class_index = np.fromiter((class_position[label] for label in labels), dtype=np.int64,
                                  count=len(labels))
    except KeyError as exc:
        row = labels.index(exc.args[0])
        raise InputError(f"ground-truth label {exc.args[0]!r} is not in the class list",
                         video=videos[int(video_index[row])].video_id,
                         field="annotations.label") from None
    return GroundTruthArrays(videos=video_index, classes=class_index, segments=all_segments,
                              duplicates_removed=removed)


def check_video_overlap(predictions: Predictions, pred_video_of_id: np.ndarray) -> None:
    """Reject detections none of which lies on an evaluated video (wrong subset or id prefix)."""
    has_detections = np.bincount(predictions.video_index,
                                 minlength=len(predictions.video_ids)) > 0
    if has_detections.any() and not (has_detections & (pred_video_of_id >= 0)).any():
        examples = [predictions.video_ids[i] for i in np.flatnonzero(has_detections)[:3]]
        raise InputError(f"none of the {int(has_detections.sum())} videos with detections is "
                         f"among the evaluated videos (e.g. {examples}); wrong subset or video-id "
                         f"prefix (such as 'v_')?", field="results")

