"""Detection mAP under the ActivityNet protocol, vectorised with numpy (docs/evaluation.md).

Protocol (the official ``eval_detection.py``; docs/evaluation.md):

* ``tIoU(p, g) = max(0, min(p1, g1) - max(p0, g0)) / ((p1 - p0) + (g1 - g0) - inter)``;
* per class, predictions ranked by descending score; for **each threshold independently** a
  prediction is a true positive when some not-yet-matched ground truth instance of the same class
  in the same video has ``tIoU >= threshold``; it takes the one with the highest tIoU (so a
  prediction whose best instance is taken falls back to a lower-tIoU free one); otherwise it is a
  false positive.  Each instance matches at most one prediction;
* ``recall = cumTP / npos``, ``precision = cumTP / (cumTP + cumFP)``; AP is the all-point
  interpolated area (VOC 2011: precision made non-increasing from the right, summed over the
  recall steps);
* mAP at a threshold = mean AP over the classes that have ground truth in the evaluated videos
  (a class with ground truth and no prediction has AP 0); average mAP = mean over thresholds.

Documented rules where the official script is undefined or wrong:

* **Score ties** rank in input order: the detection that comes first in the
  :class:`~uniav.evaluation.predictions.Predictions` (video by video as listed, then as listed
  within the video) ranks first.  (The official ``argsort()[::-1]`` puts, for two tied rows, the
  later one first; its order is not specified in general.)
* **tIoU ties** between free ground-truth instances go to the instance listed first.
* **Degenerate predictions** (reversed, zero-length, non-finite, NaN/inf scores) are rejected when
  the predictions are built (:mod:`uniav.evaluation.predictions`); degenerate ground truth raises
  :class:`~uniav.errors.InputError` here.
* **Labels not in the class list** are ignored, counted by label and reported
  (``ignored_predictions["unknown_label"]``) - never folded into another class.  Predictions of a
  listed class with no ground truth in the evaluated videos cannot change any AP and are reported
  as ``ignored_predictions["class_without_ground_truth"]``.
* **Videos without ground truth**: a prediction on a video outside the evaluated set (or on one
  with no instance of its class) is a false positive, as in the official script; the count is
  reported.  If *no* video with detections is among the evaluated videos the input is rejected
  (almost always a wrong subset or a ``v_`` id-prefix mismatch).
* **Segments outside the video** follow one rule for ground truth and predictions alike
  (:func:`~uniav.data.annotations.fit_to_video`): clipped to ``[0, duration]`` (counted,
  ``outside_video["ground_truth_clipped"]`` - including the clamping done when the annotation
  file was read - and ``["predictions_clipped"]``); a segment with nothing left inside its video
  is ignored (``["ground_truth_ignored"]``, ``["predictions_ignored"]``).  Predictions on videos
  outside the evaluated set have no duration and are left as they are (false positives).  Valid
  input (every segment inside its video) is scored exactly as by the official script.
* **Duplicate ground truth** (same label, both bounds within ``duplicate_tolerance``) is removed
  only when asked (``remove_duplicate_gt=True``, UniAV/ActionFormer parity); the number removed
  is reported.
* Thresholds are used exactly as given (``np.linspace(0.1, 0.9, 9)[2]`` is
  0.30000000000000004, so a tIoU of exactly 0.3 fails it) and must lie in (0, 1].

Vectorisation: tIoU of every prediction against the ground truth of its (video, class) group is
one array operation; the greedy matching, which is sequential only *within* a (video, class)
group, runs for all groups and all thresholds at once, one step per rank within a group (groups
of one instance in closed form), and only for predictions whose best tIoU reaches the lowest
threshold (the others are false positives everywhere and lock nothing).  The AP step loops over
classes (not predictions) and sums in rank order, so the numbers are those of the loop-by-loop
protocol to the last bit.

Modules: this one holds the protocol, :class:`DetectionResult` and :func:`evaluate_detection`;
:mod:`uniav.evaluation.inputs` prepares the inputs (evaluated videos, ground-truth arrays, the
video-overlap check) and :mod:`uniav.evaluation.matching` does the matching and the AP;
predictions are held by :mod:`uniav.evaluation.predictions` and read from files by
:mod:`uniav.evaluation.results_file`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from uniav.data.annotations import fit_to_video
from uniav.errors import InputError
from uniav.evaluation.inputs import (GroundTruth, GroundTruthArrays, check_video_overlap,
                                     ground_truth_arrays, prepare_inputs, resolve_ground_truth)
from uniav.evaluation.matching import average_precision, match_detections, score_order
from uniav.evaluation.predictions import Predictions

__all__ = ["ACTIVITYNET_THRESHOLDS", "DetectionResult", "GroundTruth", "evaluate_detection",
           "resolve_ground_truth", "validate_thresholds"]

#: The ActivityNet thresholds 0.50:0.05:0.95.
ACTIVITYNET_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))


@dataclass(frozen=True)
class DetectionResult:
    """Detection mAP and the bookkeeping needed to trust it.

    Attributes:
        thresholds: the tIoU thresholds, as given.
        map_per_threshold: mAP at each threshold (fractions in [0, 1]).
        average_map: mean of ``map_per_threshold``.
        per_class: AP per threshold of every class with ground truth, in class-list order.
        num_predictions: detections in the input.
        num_scored_predictions: detections that entered the AP computation.
        ignored_predictions: detections left out, by reason (``unknown_label``,
            ``class_without_ground_truth``).
        unknown_labels: count of each label not in the class list.
        predictions_on_videos_without_gt: scored detections on videos with no ground truth at
            all (outside the evaluated set, or evaluated but without instances) - all false
            positives.
        prediction_videos_outside_gt: distinct videos with detections that are not evaluated.
        num_ground_truth: ground-truth instances used (after duplicate removal).
        duplicates_removed: ground-truth instances removed as duplicates.
        remove_duplicate_gt: whether duplicate removal was on.
        video_ids: the evaluated videos.
        classes_without_gt: listed classes with no ground truth in the evaluated videos (not
            part of the mean).
        outside_video: segments sticking out of their video (see the module docs):
            ``ground_truth_clipped``, ``ground_truth_ignored``, ``predictions_clipped``,
            ``predictions_ignored``.
    """

    thresholds: tuple[float, ...]
    map_per_threshold: tuple[float, ...]
    average_map: float
    per_class: dict[str, tuple[float, ...]]
    num_predictions: int
    num_scored_predictions: int
    ignored_predictions: dict[str, int]
    unknown_labels: dict[str, int]
    predictions_on_videos_without_gt: int
    prediction_videos_outside_gt: int
    num_ground_truth: int
    duplicates_removed: int
    remove_duplicate_gt: bool
    video_ids: tuple[str, ...] = field(repr=False)
    classes_without_gt: tuple[str, ...] = ()
    outside_video: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The metrics JSON (plain types; AP values are fractions in [0, 1])."""
        return {
            "thresholds": list(self.thresholds),
            "mAP": list(self.map_per_threshold),
            "average_mAP": self.average_map,
            "per_class": {label: list(values) for label, values in self.per_class.items()},
            "num_predictions": self.num_predictions,
            "num_scored_predictions": self.num_scored_predictions,
            "ignored_predictions": dict(self.ignored_predictions),
            "unknown_labels": dict(self.unknown_labels),
            "predictions_on_videos_without_gt": self.predictions_on_videos_without_gt,
            "prediction_videos_outside_gt": self.prediction_videos_outside_gt,
            "num_ground_truth": self.num_ground_truth,
            "duplicates_removed": self.duplicates_removed,
            "remove_duplicate_gt": self.remove_duplicate_gt,
            "videos_evaluated": len(self.video_ids),
            "classes_without_gt": list(self.classes_without_gt),
            "outside_video": dict(self.outside_video),
            "evaluated_video_ids": list(self.video_ids),
            "protocol": ("ActivityNet detection: per-threshold greedy matching with fallback, "
                         "tIoU >= threshold, all-point interpolated AP, mean over classes with "
                         "ground truth; score ties in input order"),
        }


def validate_thresholds(thresholds: Iterable[float]) -> np.ndarray:
    """Thresholds as a float64 array; each must be finite and in (0, 1].

    Raises:
        ValueError: empty or out of range.
    """
    values = np.asarray(list(thresholds), dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("need at least one tIoU threshold")
    bad = values[~((values > 0) & (values <= 1))]
    if bad.size:
        raise ValueError(f"tIoU thresholds must lie in (0, 1], got {bad.tolist()}")
    return values


def evaluate_detection(ground_truth: GroundTruth, predictions: Predictions | Mapping[str, Any],
                       *, thresholds: Iterable[float] = ACTIVITYNET_THRESHOLDS,
                       classes: Sequence[str] | None = None, subset: str | None = None,
                       remove_duplicate_gt: bool = False, duplicate_tolerance: float = 1e-3,
                       allow_zero_length_gt: bool = False, fit_ground_truth: bool = True
                       ) -> DetectionResult:
    """ActivityNet-protocol detection mAP of predictions against ground truth.

    Args:
        ground_truth: the evaluated videos: an :class:`AnnotationDB` with ``subset``, a mapping
            ``video id -> VideoAnnotation`` or a sequence of :class:`VideoAnnotation`.
        predictions: a :class:`Predictions` or a parsed results file ``{"results": {...}}``.
        thresholds: tIoU thresholds in (0, 1], used exactly as given.
        classes: the class list; default: the AnnotationDB's, else the sorted ground-truth
            labels.  Ground-truth labels must be in it.
        subset: the subset to evaluate when ``ground_truth`` is an AnnotationDB.
        remove_duplicate_gt: drop ground-truth instances repeating an earlier one of the same
            video and label (bounds within ``duplicate_tolerance`` seconds).
        duplicate_tolerance: see ``remove_duplicate_gt``.
        allow_zero_length_gt: accept zero-length ground-truth instances as instances no
            prediction can match (their tIoU with any positive-length segment is 0) - what the
            released evaluator does with the zero-length segments of the real ActivityNet file;
            by default they are an error.
        fit_ground_truth: apply the rule for segments outside their video to the ground truth
            too (clip; ignore when nothing is left inside); ``False`` keeps it as read (the
            released evaluator, with ``data.segments_past_duration: keep``).

    Returns:
        The :class:`DetectionResult`.

    Raises:
        InputError: degenerate ground truth, ground-truth labels outside ``classes``, no
            ground-truth instance at all, no evaluated video among the videos with
            detections, unknown subset.
        ValueError: thresholds outside (0, 1].
    """
    thresholds_array = validate_thresholds(thresholds)
    videos, predictions, classes = prepare_inputs(ground_truth, predictions, classes, subset)
    class_position = {name: i for i, name in enumerate(classes)}
    if len(class_position) != len(classes):
        raise ValueError("the class list has repeated names")
    gt = ground_truth_arrays(videos, class_position, remove_duplicate_gt, duplicate_tolerance,
                             allow_zero_length_gt)
    durations = np.asarray([video.duration for video in videos], dtype=np.float64)
    if fit_ground_truth:
        gt_segments, gt_clipped, gt_outside = fit_to_video(gt.segments, durations[gt.videos])
        if allow_zero_length_gt:  # a zero-length instance inside the video stays (unmatchable)
            inside = (gt.segments[:, 0] >= 0) & (gt.segments[:, 1] <= durations[gt.videos])
            gt_outside &= ~((gt.segments[:, 1] == gt.segments[:, 0]) & inside)
    else:  # kept as the annotation file has them (the released evaluator does not clip)
        gt_segments = gt.segments
        gt_clipped = gt_outside = np.zeros(len(gt.segments), dtype=bool)
    gt = GroundTruthArrays(videos=gt.videos[~gt_outside], classes=gt.classes[~gt_outside],
                           segments=gt_segments[~gt_outside],
                           duplicates_removed=gt.duplicates_removed)
    if gt.classes.size == 0:
        raise InputError(f"the {len(videos)} evaluated videos have no ground-truth instance; "
                         f"mAP is undefined", field="annotations")
    num_classes = len(classes)

    # --- map predictions onto evaluated videos and classes --------------------------------
    video_position = {video.video_id: i for i, video in enumerate(videos)}
    pred_video_of_id = np.asarray([video_position.get(v, -1) for v in predictions.video_ids],
                                  dtype=np.int64)
    pred_class_of_label = np.asarray([class_position.get(n, -1) for n in predictions.label_names],
                                     dtype=np.int64)
    pred_video = pred_video_of_id[predictions.video_index]  # (N,) -1: not evaluated
    pred_class = pred_class_of_label[predictions.label_index]  # (N,) -1: unknown label
    check_video_overlap(predictions, pred_video_of_id)
    evaluated_video = pred_video >= 0
    pred_segments = predictions.segments.copy()
    fitted, pred_clipped, pred_outside = fit_to_video(pred_segments[evaluated_video],
                                                      durations[pred_video[evaluated_video]])
    pred_segments[evaluated_video] = fitted
    outside_video = np.zeros(len(predictions), dtype=bool)
    outside_video[evaluated_video] = pred_outside
    clipped = np.zeros(len(predictions), dtype=bool)
    clipped[evaluated_video] = pred_clipped

    npos = np.bincount(gt.classes, minlength=num_classes)  # (K,) instances per class
    known = pred_class >= 0
    with_gt_class = known & (npos[np.maximum(pred_class, 0)] > 0)
    scored = with_gt_class & ~outside_video
    unknown_counts = np.bincount(predictions.label_index[~known],
                                 minlength=len(predictions.label_names))
    unknown_labels = {predictions.label_names[i]: int(c) for i, c in enumerate(unknown_counts)
                      if c}
    videos_with_gt = np.zeros(len(videos) + 1, dtype=bool)  # last slot: "not evaluated"
    videos_with_gt[gt.videos] = True
    on_videos_without_gt = int(np.count_nonzero(scored & ~videos_with_gt[pred_video]))
    outside = np.flatnonzero((pred_video_of_id < 0)
                             & (np.bincount(predictions.video_index,
                                            minlength=len(predictions.video_ids)) > 0))

    rows = np.flatnonzero(scored)
    by_score = score_order(predictions.scores[rows])  # ties in input order: rows is increasing
    true_positive = match_detections(gt, pred_video[rows], pred_class[rows], pred_segments[rows],
                                     by_score, thresholds_array, num_classes)
    ap = average_precision(pred_class[rows], by_score, true_positive, npos)  # (K, T)

    evaluated = np.flatnonzero(npos > 0)
    map_per_threshold = ap[evaluated].mean(axis=0)
    return DetectionResult(
        thresholds=tuple(float(t) for t in thresholds_array),
        map_per_threshold=tuple(float(v) for v in map_per_threshold),
        average_map=float(map_per_threshold.mean()),
        per_class={classes[k]: tuple(float(v) for v in ap[k]) for k in evaluated},
        num_predictions=len(predictions),
        num_scored_predictions=int(rows.size),
        ignored_predictions={"unknown_label": int(np.count_nonzero(~known)),
                             "class_without_ground_truth": int(np.count_nonzero(
                                 known & ~with_gt_class))},
        unknown_labels=unknown_labels,
        predictions_on_videos_without_gt=on_videos_without_gt,
        prediction_videos_outside_gt=int(outside.size),
        num_ground_truth=int(gt.classes.size),
        duplicates_removed=gt.duplicates_removed,
        remove_duplicate_gt=remove_duplicate_gt,
        video_ids=tuple(video.video_id for video in videos),
        classes_without_gt=tuple(classes[k] for k in np.flatnonzero(npos == 0)),
        outside_video={
            "ground_truth_clipped": int(np.count_nonzero(gt_clipped))
                                    + sum(video.clipped for video in videos),
            "ground_truth_ignored": int(np.count_nonzero(gt_outside)),
            "predictions_clipped": int(np.count_nonzero(clipped & with_gt_class)),
            "predictions_ignored": int(np.count_nonzero(outside_video & with_gt_class))},
    )

