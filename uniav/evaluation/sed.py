"""SED extras for sound-event detection: PSDS1/PSDS2 and collar-based F1 (docs/evaluation.md).

These are *extras* for DCASE/DESED readers; the detection mAP stays the paper-comparable number.
Both are computed from the post-NMS segment list (docs/evaluation.md):

* **Score table** (threshold-independent; what PSDS needs): per clip, the timestamps are the
  sorted unique segment boundaries together with 0 and the clip duration (rounded to
  ``time_decimals``); on each interval the score of class k is the maximum score of the class-k
  segments covering it, 0 where none does.  Segments are clipped to ``[0, duration]`` first
  (those left empty are dropped and counted).
* **Operating point** (collar F1 at ``threshold``): an interval is active for class k when its
  score is ``> threshold`` (sed_scores_eval's convention), i.e. the union of the overlapping or
  touching class-k segments scoring above the threshold - overlapping duplicates become one event.
* **PSDS1** ``dtc=gtc=0.7, cttc=None, alpha_ct=0, alpha_st=1, max_efpr=100`` and **PSDS2**
  ``dtc=gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1, max_efpr=100`` (the DCASE 2023 baseline),
  exact (threshold-free) via ``sed_scores_eval.intersection_based.psds``.  With a single
  scored class there is nothing to cross-trigger, so PSDS2 is computed without the
  cross-trigger term (``cttc=None, alpha_ct=0``).
* **Collar-based F1** (event-based): onset collar 0.2 s, offset collar ``max(0.2 s, 20 % of the
  event length)``, one-to-one matching, via ``sed_scores_eval.collar_based.fscore``.  Per-class F1
  is ``2 TP / (2 TP + FP + FN)`` (0 without true positives); macro = mean over the classes with
  ground-truth events; micro from the summed counts.

Clips and classes:

* overlapping or touching ground-truth events of one class in one clip (duplicates included) are
  merged into one event (sed_scores_eval requires disjoint events; the count is reported);
* clips *without* ground-truth events are **dropped for PSDS**, as the DCASE baseline does, and
  **kept for the collar F1**, where their detections count as false positives (both counts are
  reported);
* sed_scores_eval needs every scored class to have ground-truth events, so detections of classes
  without events in the evaluated clips are left out (reported, as for the mAP); labels outside
  the class list and clips outside the evaluated set are left out and reported too.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import types
from typing import Any, Mapping, Sequence

import numpy as np

from uniav.data.annotations import VideoAnnotation
from uniav.errors import InputError
from uniav.evaluation.detection import GroundTruth, ground_truth_arrays, prepare_inputs
from uniav.evaluation.predictions import Predictions

LOGGER = logging.getLogger(__name__)

#: PSDS scenario parameters of the DCASE 2023 task-4 baseline (sed_scores_eval keywords).
PSDS_SCENARIOS: dict[str, dict[str, Any]] = {
    "psds1": {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": None,
              "alpha_ct": 0.0, "alpha_st": 1.0, "max_efpr": 100.0},
    "psds2": {"dtc_threshold": 0.1, "gtc_threshold": 0.1, "cttc_threshold": 0.3,
              "alpha_ct": 0.5, "alpha_st": 1.0, "max_efpr": 100.0},
}


def score_table(segments: np.ndarray, scores: np.ndarray, class_index: np.ndarray,
                num_classes: int, duration: float, *, time_decimals: int = 6
                ) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant score table of one clip.

    Args:
        segments: (N, 2) seconds, already within ``[0, duration]``.
        scores: (N,) scores (values <= 0 have no effect).
        class_index: (N,) class of each segment, in ``[0, num_classes)``.
        num_classes: number of table columns.
        duration: clip length in seconds.
        time_decimals: boundaries are rounded to this many decimals.

    Returns:
        ``(timestamps (M + 1,), table (M, num_classes))``: interval i is
        ``[timestamps[i], timestamps[i + 1])`` and ``table[i, k]`` is the maximum score of the
        class-k segments covering it (0 if none).
    """
    rounded = np.round(np.asarray(segments, dtype=np.float64).reshape(-1, 2), time_decimals)
    timestamps = np.unique(np.concatenate([[0.0, round(float(duration), time_decimals)],
                                           rounded.ravel()]))
    # (M intervals, N segments): segment n covers interval m
    covers = ((rounded[None, :, 0] <= timestamps[:-1, None])
              & (rounded[None, :, 1] >= timestamps[1:, None]))
    table = np.zeros((timestamps.size - 1, num_classes))
    interval, segment = np.nonzero(covers)
    np.maximum.at(table, (interval, np.asarray(class_index)[segment]),
                  np.asarray(scores, dtype=np.float64)[segment])
    return timestamps, table


def merge_events(segments: np.ndarray, labels: Sequence[str], *, time_decimals: int = 6
                 ) -> tuple[list[tuple[float, float, str]], int]:
    """Ground-truth events of one clip with overlapping or touching same-class events merged.

    sed_scores_eval requires the events of a class in a clip to be disjoint; as in SED
    annotations, overlapping same-class events (duplicates included) describe one event.

    Args:
        segments: (N, 2) onsets and offsets in seconds.
        labels: N class names.
        time_decimals: times are rounded to this many decimals first.

    Returns:
        ``([(onset, offset, label), ...] by label then onset, number of events merged away)``.
    """
    rounded = np.round(np.asarray(segments, dtype=np.float64).reshape(-1, 2), time_decimals)
    events: list[tuple[float, float, str]] = []
    for label in sorted(set(labels)):
        rows = sorted(rounded[i].tolist() for i, name in enumerate(labels) if name == label)
        merged = [rows[0]]
        for onset, offset in rows[1:]:
            if onset <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], offset)
            else:
                merged.append([onset, offset])
        events.extend((onset, offset, label) for onset, offset in merged)
    return events, len(labels) - len(events)


def events_at_threshold(timestamps: np.ndarray, table: np.ndarray, classes: Sequence[str],
                        threshold: float) -> list[tuple[float, float, str]]:
    """Events of a score table at an operating point: maximal runs with score ``> threshold``.

    Args:
        timestamps: (M + 1,) interval boundaries.
        table: (M, K) scores.
        classes: the K class names.
        threshold: the decision threshold.

    Returns:
        ``(onset, offset, label)`` tuples, by class then time.
    """
    events = []
    for k, label in enumerate(classes):
        active = np.concatenate([[0], (table[:, k] > threshold).astype(np.int8), [0]])
        change = np.diff(active)  # +1 at a run's first interval, -1 after its last
        for first, after_last in zip(np.flatnonzero(change == 1), np.flatnonzero(change == -1)):
            events.append((float(timestamps[first]), float(timestamps[after_last]), label))
    return events


def sed_extras(ground_truth: GroundTruth, predictions: Predictions | Mapping[str, Any],
               classes: Sequence[str] | None = None, *, subset: str | None = None,
               threshold: float = 0.5, collar: float = 0.2, offset_collar_rate: float = 0.2,
               time_decimals: int = 6) -> dict[str, Any]:
    """PSDS1, PSDS2 and collar-based F1 of a segment list (extras next to the detection mAP).

    Args:
        ground_truth: the evaluated clips (as for
            :func:`~uniav.evaluation.detection.evaluate_detection`).
        predictions: a :class:`Predictions` or a parsed results file ``{"results": {...}}``.
        classes: the class list; default: the AnnotationDB's, else the sorted labels.
        subset: the subset when ``ground_truth`` is an AnnotationDB.
        threshold: decision threshold of the collar F1 (active when score ``> threshold``).
        collar: onset collar and minimum offset collar in seconds.
        offset_collar_rate: offset collar as a fraction of the event length (if larger).
        time_decimals: rounding of all times.

    Returns:
        A JSON-ready dict: ``psds1``, ``psds2``, ``collar_f1_macro``, ``collar_f1_micro``,
        ``collar_f1_per_class``, the parameters used, clip/detection counts, and
        ``"kind": "extras"``.

    Raises:
        InputError: degenerate ground truth or ground-truth labels outside ``classes``; no
            evaluated clip has a ground-truth event (the metrics are undefined).
    """
    clips, predictions, classes = prepare_inputs(ground_truth, predictions, classes, subset)
    clips, zero_length_events = _without_zero_length(clips)
    ground_truth_arrays(clips, {name: i for i, name in enumerate(classes)},
                        remove_duplicates=False, tolerance=0.0)  # validation only
    scored_classes = [name for name in classes if any(name in clip.labels for clip in clips)]
    if not scored_classes:
        raise InputError("no evaluated clip has a ground-truth event; SED metrics are undefined",
                         field="annotations")
    column = {name: i for i, name in enumerate(scored_classes)}

    # detections -> (clip position, column), dropping what cannot be scored
    clip_position = {clip.video_id: i for i, clip in enumerate(clips)}
    clip_of_video = np.asarray([clip_position.get(v, -1) for v in predictions.video_ids],
                               dtype=np.int64)
    column_of_label = np.asarray([column.get(n, -1) for n in predictions.label_names],
                                 dtype=np.int64)
    listed = np.asarray([n in classes for n in predictions.label_names], dtype=bool)
    det_clip = clip_of_video[predictions.video_index]  # (N,) -1: clip not evaluated
    det_column = column_of_label[predictions.label_index]  # (N,) -1: class not scored
    det_listed = listed[predictions.label_index]  # (N,) label in the class list
    durations = np.asarray([clip.duration for clip in clips])
    limit = durations[np.maximum(det_clip, 0)]  # (N,) duration of each detection's clip
    clipped = np.stack([np.clip(predictions.segments[:, 0], 0, limit),
                        np.clip(predictions.segments[:, 1], 0, limit)], axis=1)  # (N, 2)
    usable = (det_clip >= 0) & (det_column >= 0) & (clipped[:, 1] > clipped[:, 0])
    ignored = {
        "unknown_label": int(np.count_nonzero(~det_listed)),
        "class_without_gt_events": int(np.count_nonzero(det_listed & (det_column < 0))),
        "clip_not_evaluated": int(np.count_nonzero((det_clip < 0) & (det_column >= 0))),
        "outside_clip": int(np.count_nonzero((det_clip >= 0) & (det_column >= 0)
                                             & ~(clipped[:, 1] > clipped[:, 0]))),
    }

    sed_scores_eval = import_sed_scores_eval()
    create_score_dataframe = sed_scores_eval.base_modules.scores.create_score_dataframe
    rows = np.flatnonzero(usable)
    rows = rows[np.argsort(det_clip[rows], kind="stable")]
    bounds = np.searchsorted(det_clip[rows], np.arange(len(clips) + 1))
    tables, events, clip_durations = {}, {}, {}
    gt_events_merged = 0
    for i, clip in enumerate(clips):
        clip_rows = rows[bounds[i]:bounds[i + 1]]
        timestamps, table = score_table(clipped[clip_rows], predictions.scores[clip_rows],
                                        det_column[clip_rows], len(scored_classes),
                                        clip.duration, time_decimals=time_decimals)
        tables[clip.video_id] = create_score_dataframe(table, timestamps, scored_classes)
        events[clip.video_id], merged = merge_events(clip.segments, clip.labels,
                                                     time_decimals=time_decimals)
        gt_events_merged += merged
        clip_durations[clip.video_id] = float(clip.duration)

    _, _, _, stats = sed_scores_eval.collar_based.fscore(
        tables, events, threshold, onset_collar=collar, offset_collar=collar,
        offset_collar_rate=offset_collar_rate, time_decimals=time_decimals)
    counts = {name: (int(stats[name]["tps"]), int(stats[name]["fps"]), int(stats[name]["n_ref"]))
              for name in scored_classes}
    per_class_f1 = {name: _f1(tp, fp, n_ref - tp) for name, (tp, fp, n_ref) in counts.items()}
    total_tp, total_fp, total_ref = (sum(c[i] for c in counts.values()) for i in range(3))

    with_events = [clip.video_id for clip in clips if clip.labels]
    psds = {}
    for name, params in PSDS_SCENARIOS.items():
        if len(scored_classes) == 1:
            # no other class to cross-trigger: the cross-trigger term is empty (and
            # sed_scores_eval 0.0.4 fails on it), so PSDS2 reduces to cttc=None, alpha_ct=0
            params = {**params, "cttc_threshold": None, "alpha_ct": 0.0}
        psds[name] = float(sed_scores_eval.intersection_based.psds(
            {c: tables[c] for c in with_events}, {c: events[c] for c in with_events},
            {c: clip_durations[c] for c in with_events}, time_decimals=time_decimals,
            **params)[0])

    return {
        "kind": "extras",
        "note": ("SED extras from the post-NMS segment list (DCASE-style); detection mAP remains "
                 "the paper-comparable number"),
        "psds1": psds["psds1"],
        "psds2": psds["psds2"],
        "collar_f1_macro": float(np.mean(list(per_class_f1.values()))),
        "collar_f1_micro": _f1(total_tp, total_fp, total_ref - total_tp),
        "collar_f1_per_class": per_class_f1,
        "decision_threshold": threshold,
        "collar_seconds": collar,
        "offset_collar_rate": offset_collar_rate,
        "psds_scenarios": {name: dict(params) for name, params in PSDS_SCENARIOS.items()},
        "clips_evaluated": len(clips),
        "clips_without_gt_events": len(clips) - len(with_events),
        "psds_clips": len(with_events),
        "gt_events_merged": gt_events_merged,
        "gt_zero_length_events_dropped": zero_length_events,
        "classes_scored": scored_classes,
        "detections_scored": int(rows.size),
        "ignored_predictions": ignored,
        "library": f"sed_scores_eval {_version('sed_scores_eval')}",
    }


def _without_zero_length(clips: list[VideoAnnotation]) -> tuple[list[VideoAnnotation], int]:
    """The clips without zero-length events (kept as ground truth by the released data policy;
    an event of no duration cannot be detected, and sed_scores_eval refuses it), and how many
    were left out."""
    out, dropped = [], 0
    for clip in clips:
        segments = np.asarray(clip.segments, dtype=np.float64).reshape(-1, 2)
        keep = segments[:, 1] - segments[:, 0] > 0
        dropped += int(np.count_nonzero(~keep))
        out.append(clip if keep.all() else dataclasses.replace(
            clip, segments=segments[keep],
            labels=tuple(label for label, kept in zip(clip.labels, keep) if kept)))
    return out, dropped


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def import_sed_scores_eval() -> types.ModuleType:
    """Import ``sed_scores_eval`` (with its ``collar_based`` and ``intersection_based`` parts).

    It imports sed_eval -> dcase_util -> ``pkg_resources``, which is why the environment pins
    ``setuptools<81`` (requirements.lock).

    Returns:
        The ``sed_scores_eval`` module.
    """
    module = importlib.import_module("sed_scores_eval")
    importlib.import_module("sed_scores_eval.base_modules.scores")
    return module
