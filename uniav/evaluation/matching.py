"""Greedy ActivityNet matching and all-point interpolated AP, vectorised with numpy.

The protocol and its tie rules are described in :mod:`uniav.evaluation.detection`
(docs/evaluation.md); these are the two array steps of
:func:`~uniav.evaluation.detection.evaluate_detection`:

* :func:`match_detections` - the (M, T) true-positive matrix: tIoU of every prediction against the
  ground truth of its (video, class) group in one array operation, then the greedy matching,
  sequential only *within* a group, for all groups and all thresholds at once, one step per rank
  within a group, and only for predictions whose best tIoU reaches the lowest threshold (the
  others are false positives everywhere and lock nothing);
* :func:`average_precision` - AP per class and threshold, looping over classes (not
  predictions).
"""

from __future__ import annotations

import numpy as np

from uniav.evaluation.inputs import GroundTruthArrays


def segment_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise tIoU (official formula, no epsilon) of (P, 2) and (P, 2) positive-length pairs."""
    inter = np.clip(np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0]), 0, None)
    return inter / ((pred[:, 1] - pred[:, 0]) + (gt[:, 1] - gt[:, 0]) - inter)


def match_detections(gt: GroundTruthArrays, pred_video: np.ndarray, pred_class: np.ndarray,
           pred_segments: np.ndarray, pred_scores: np.ndarray, pred_order: np.ndarray,
           thresholds: np.ndarray, num_classes: int) -> np.ndarray:
    """Greedy per-threshold matching; returns the (M, T) true-positive matrix."""
    num_thresholds = thresholds.size
    true_positive = np.zeros((pred_scores.size, num_thresholds), dtype=bool)
    if pred_scores.size == 0 or gt.classes.size == 0:
        return true_positive
    # (video, class) groups of the ground truth; slots in annotation order
    gt_keys = gt.videos * num_classes + gt.classes
    gt_sorted = np.argsort(gt_keys, kind="stable")
    group_keys, group_start, group_size = np.unique(gt_keys[gt_sorted], return_index=True,
                                                    return_counts=True)
    grouped_gt_segments = gt.segments[gt_sorted]  # (G, 2), group after group

    # predictions that share a (video, class) group with some ground truth
    pred_keys = np.where(pred_video >= 0, pred_video * num_classes + pred_class, -1)
    group = np.searchsorted(group_keys, pred_keys)
    has_group = (pred_keys >= 0) & (group < group_keys.size)
    has_group[has_group] = group_keys[group[has_group]] == pred_keys[has_group]
    candidates = np.flatnonzero(has_group)
    if candidates.size == 0:
        return true_positive
    candidate_group = group[candidates]

    # tIoU of every (candidate, instance of its group) pair - no padding to the largest group
    pair_count = group_size[candidate_group]  # (C,)
    pair_first = np.cumsum(pair_count) - pair_count
    pair_candidate = np.repeat(np.arange(candidates.size), pair_count)  # (P,)
    pair_slot = np.arange(pair_candidate.size) - pair_first[pair_candidate]
    pair_iou = segment_iou(pred_segments[candidates[pair_candidate]],
                            grouped_gt_segments[group_start[candidate_group][pair_candidate]
                                                + pair_slot])
    # candidates whose best tIoU misses the lowest threshold are FP everywhere and lock nothing
    reachable = np.maximum.reduceat(pair_iou, pair_first) >= thresholds.min()
    if not reachable.any():
        return true_positive
    row_of_candidate = np.cumsum(reachable) - 1
    kept_pair = reachable[pair_candidate]
    iou = np.full((int(reachable.sum()), int(group_size.max())), -1.0)  # (R, S); -1: no slot
    iou[row_of_candidate[pair_candidate[kept_pair]], pair_slot[kept_pair]] = pair_iou[kept_pair]
    candidates, candidate_group = candidates[reachable], candidate_group[reachable]

    # rank of each candidate within its group: by descending score, ties in input order
    order = np.lexsort((pred_order[candidates], -pred_scores[candidates], candidate_group))
    sorted_group = candidate_group[order]
    first_of_group = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    group_first_position = np.maximum.accumulate(np.where(first_of_group,
                                                          np.arange(order.size), 0))
    rank = np.arange(order.size) - group_first_position
    by_rank = order[np.argsort(rank, kind="stable")]  # candidate positions, rank 0 first
    rank_sizes = np.bincount(rank)

    locked = np.zeros((group_keys.size, iou.shape[1], num_thresholds), dtype=bool)
    threshold_index = np.arange(num_thresholds)
    start = 0
    for size in rank_sizes:  # one step per rank; groups within a step are distinct
        step = by_rank[start:start + size]
        start += size
        step_groups = candidate_group[step]
        step_iou = iou[step]  # (n, S)
        free = (step_iou[:, :, None] >= thresholds) & ~locked[step_groups]  # (n, S, T)
        best_slot = np.argmax(np.where(free, step_iou[:, :, None], -np.inf), axis=1)  # (n, T)
        matched = free.any(axis=1)  # (n, T)
        row, column = np.nonzero(matched)
        locked[step_groups[row], best_slot[row, column], threshold_index[column]] = True
        true_positive[candidates[step]] = matched
    return true_positive


def average_precision(pred_class: np.ndarray, pred_scores: np.ndarray, pred_order: np.ndarray,
                       true_positive: np.ndarray, npos: np.ndarray,
                       num_thresholds: int) -> np.ndarray:
    """All-point interpolated AP per class and threshold, shape (K, T)."""
    ap = np.zeros((npos.size, num_thresholds))
    if pred_scores.size == 0:
        return ap
    order = np.lexsort((pred_order, -pred_scores, pred_class))
    ranked_class = pred_class[order]
    ranked_tp = true_positive[order].astype(np.float64)  # (M, T)
    class_bounds = np.searchsorted(ranked_class, np.arange(npos.size + 1))
    for k in np.flatnonzero(npos > 0):
        lo, hi = class_bounds[k], class_bounds[k + 1]
        if lo == hi:
            continue
        cum_tp = np.cumsum(ranked_tp[lo:hi], axis=0)  # (n, T)
        precision = cum_tp / np.arange(1, hi - lo + 1)[:, None]
        recall = cum_tp / npos[k]
        # precision made non-increasing from the right (interpolation)
        interpolated = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
        recall_step = np.diff(recall, axis=0, prepend=0.0)  # > 0 exactly at true positives
        ap[k] = np.sum(recall_step * interpolated, axis=0)
    return ap
