"""Greedy ActivityNet matching and all-point interpolated AP, vectorised with numpy.

The protocol and its tie rules are described in :mod:`uniav.evaluation.detection`
(docs/evaluation.md); these are the two array steps of
:func:`~uniav.evaluation.detection.evaluate_detection`:

* :func:`match_detections` - the (M, T) true-positive matrix: tIoU of every prediction against the
  ground truth of its (video, class) group in one array operation; predictions whose best tIoU
  misses the lowest threshold are false positives everywhere and lock nothing, the others are
  matched per group size: groups of one instance in closed form (the instance goes to the first
  prediction reaching the threshold), larger groups by the greedy loop - sequential only
  *within* a group - for all groups and all thresholds at once, one step per rank within a
  group, with the groups of 2, 3-4, 5-8, ... instances apart so that little is padded;
* :func:`average_precision` - AP per class and threshold, computed on the rows that are a true
  positive somewhere (the interpolated precision only matters there), looping over classes (not
  predictions).

Both take the ranking by score made once (:func:`score_order`: one stable sort; the orders they
need then come from integer sorts), and give bit for bit what the loop-by-loop protocol gives -
the AP summed in rank order whatever the number of thresholds.
"""

from __future__ import annotations

import numpy as np

from uniav.evaluation.inputs import GroundTruthArrays


def segment_iou(pred_start: np.ndarray, pred_end: np.ndarray, gt_start: np.ndarray,
                gt_end: np.ndarray) -> np.ndarray:
    """Element-wise tIoU (official formula, no epsilon) of positive-length segments given by their
    bounds."""
    inter = np.clip(np.minimum(pred_end, gt_end) - np.maximum(pred_start, gt_start), 0, None)
    return inter / ((pred_end - pred_start) + (gt_end - gt_start) - inter)


def score_order(scores: np.ndarray) -> np.ndarray:
    """Positions of ``scores`` by descending score, ties in input order.

    A quicksort when no two scores are equal (then any sort gives the one order), else a stable
    sort.
    """
    order = np.argsort(-scores)
    ranked = scores[order]
    if (ranked[1:] == ranked[:-1]).any():
        return np.argsort(-scores, kind="stable")
    return order


def match_detections(gt: GroundTruthArrays, pred_video: np.ndarray, pred_class: np.ndarray,
                     pred_segments: np.ndarray, by_score: np.ndarray, thresholds: np.ndarray,
                     num_classes: int) -> np.ndarray:
    """Greedy per-threshold matching; returns the (M, T) true-positive matrix.

    Args:
        gt: the ground truth.
        pred_video, pred_class: (M,) video (-1: not evaluated) and class of each prediction.
        pred_segments: (M, 2) their segments.
        by_score: (M,) :func:`score_order` of their scores (the rank order, ties included).
        thresholds: (T,) tIoU thresholds.
        num_classes: K.
    """
    num_thresholds = thresholds.size
    true_positive = np.zeros((by_score.size, num_thresholds), dtype=bool)
    if by_score.size == 0 or gt.classes.size == 0:
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
    pair_pred = candidates[pair_candidate]
    pair_gt = group_start[candidate_group][pair_candidate] + pair_slot
    pred_start, pred_end = pred_segments.T
    gt_start, gt_end = grouped_gt_segments.T
    pair_iou = segment_iou(pred_start[pair_pred], pred_end[pair_pred], gt_start[pair_gt],
                           gt_end[pair_gt])
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
    score_rank = np.empty(by_score.size, dtype=np.int64)
    score_rank[by_score] = np.arange(by_score.size)
    order = np.argsort(candidate_group * np.int64(by_score.size) + score_rank[candidates])
    sorted_group = candidate_group[order]
    first_of_group = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    group_first_position = np.maximum.accumulate(np.where(first_of_group,
                                                          np.arange(order.size), 0))
    rank = np.arange(order.size) - group_first_position

    # groups by their number of slots: 1, 2, 3-4, 5-8, ... (each padded to its bucket's width)
    bucket = np.frexp(group_size[sorted_group] - 1)[1]
    locked = np.zeros((group_keys.size, iou.shape[1], num_thresholds), dtype=bool)
    for b in np.unique(bucket).tolist():
        in_bucket = bucket == b
        if b == 0:
            true_positive[candidates[order[in_bucket]]] = _match_single_slot(
                iou[order[in_bucket], 0], first_of_group[in_bucket], thresholds)
        else:
            positions = np.flatnonzero(in_bucket)
            by_rank = order[positions[np.argsort(rank[positions], kind="stable")]]
            _match_by_rank(iou[:, :min(1 << b, iou.shape[1])], by_rank,
                           np.bincount(rank[positions]), candidate_group, candidates, locked,
                           thresholds, true_positive)
    return true_positive


def _match_single_slot(iou: np.ndarray, first_of_group: np.ndarray, thresholds: np.ndarray
                       ) -> np.ndarray:
    """Greedy matching in groups of one ground-truth instance, in closed form.

    ``iou`` (n,) of candidates group by group, each group by rank; ``first_of_group`` (n,)
    marks where a group starts.  The instance goes, at each threshold, to the first candidate
    that reaches it - what the greedy loop does when there is one slot.  Returns (n, T).
    """
    meets = iou[:, None] >= thresholds  # (n, T)
    count = np.cumsum(meets, axis=0, dtype=np.int64)
    starts = np.flatnonzero(first_of_group)
    before = count[starts] - meets[starts]  # (groups, T) reached before the group
    return meets & (count - before[np.cumsum(first_of_group) - 1] == 1)


def _match_by_rank(iou: np.ndarray, by_rank: np.ndarray, rank_sizes: np.ndarray,
                   candidate_group: np.ndarray, candidates: np.ndarray, locked: np.ndarray,
                   thresholds: np.ndarray, true_positive: np.ndarray) -> None:
    """The greedy matching of candidates ``by_rank`` (rank 0 of every group first, then rank 1,
    ...; ``rank_sizes`` per rank), all thresholds at once; fills ``locked`` (G, S, T) and
    ``true_positive``.  ``iou`` (R, W) has a column per slot (-1: no slot)."""
    width = iou.shape[1]
    ranked_iou = iou[by_rank][:, :, None]  # (n, W, 1), rank after rank: each step is a slice
    groups = candidate_group[by_rank]
    matched = np.empty((by_rank.size, thresholds.size), dtype=bool)
    threshold_index = np.arange(thresholds.size)
    start = 0
    for size in rank_sizes.tolist():  # one step per rank; groups within a step are distinct
        stop = start + size
        step_groups, step_iou = groups[start:stop], ranked_iou[start:stop]
        free = (step_iou >= thresholds) & ~locked[step_groups, :width]  # (n, W, T)
        best_slot = np.argmax(np.where(free, step_iou, -np.inf), axis=1)  # (n, T)
        step_matched = matched[start:stop]
        np.any(free, axis=1, out=step_matched)  # (n, T)
        row, column = np.nonzero(step_matched)
        locked[step_groups[row], best_slot[row, column], threshold_index[column]] = True
        start = stop
    true_positive[candidates[by_rank]] = matched


def average_precision(pred_class: np.ndarray, by_score: np.ndarray, true_positive: np.ndarray,
                      npos: np.ndarray) -> np.ndarray:
    """All-point interpolated AP per class and threshold, shape (K, T).

    Args:
        pred_class: (M,) class of each prediction.
        by_score: (M,) :func:`score_order` of their scores.
        true_positive: (M, T) from :func:`match_detections`.
        npos: (K,) ground-truth instances per class.

    Per class, in rank order: ``precision = cumTP / rank``, ``recall = cumTP / npos``, AP = the
    sum over rows of ``(recall - previous recall) * max(precision from this row on)``, summed in
    rank order.  The recall step is 0 except where the row is a true positive, and there the
    precision from this row on peaks at true positives; so the sum runs over the rows that are
    a true positive at some threshold only, with the same terms in the same order (the skipped
    ones are exact zeros) - the same bits as the loop-by-loop protocol.
    """
    num_classes, num_thresholds = npos.size, true_positive.shape[1]
    ap = np.zeros((num_classes, num_thresholds))
    if by_score.size == 0:
        return ap
    class_type = np.int16 if num_classes <= np.iinfo(np.int16).max else np.int64
    order = by_score[np.argsort(pred_class[by_score].astype(class_type), kind="stable")]
    ranked_class = pred_class[order]
    hits = np.flatnonzero(true_positive.any(axis=1)[order])  # rank positions, class by class
    if hits.size == 0:
        return ap
    hit_tp = true_positive[order[hits]]  # (H, T)
    hit_class = ranked_class[hits]
    class_first_row = np.searchsorted(ranked_class, np.arange(num_classes + 1))
    class_first_hit = np.searchsorted(hit_class, np.arange(num_classes + 1))
    cumulative = np.cumsum(hit_tp, axis=0, dtype=np.int64)
    before_class = np.zeros((num_classes, num_thresholds), dtype=np.int64)
    starts = class_first_hit[:-1]
    has_hits = class_first_hit[1:] > starts
    before_class[has_hits] = cumulative[starts[has_hits]] - hit_tp[starts[has_hits]]
    cum_tp = (cumulative - before_class[hit_class]).astype(np.float64)  # (H, T) per class
    rank = (hits - class_first_row[hit_class] + 1).astype(np.float64)[:, None]
    precision = cum_tp / rank
    positives = npos[hit_class].astype(np.float64)[:, None]
    recall_step = cum_tp / positives - (cum_tp - hit_tp) / positives
    for k in np.flatnonzero(has_hits & (npos > 0)):
        lo, hi = class_first_hit[k], class_first_hit[k + 1]
        # precision made non-increasing from the right (interpolation)
        interpolated = np.maximum.accumulate(precision[lo:hi][::-1], axis=0)[::-1]
        # summed in rank order, as the protocol's loop does (cumsum is sequential for any T;
        # np.sum would add a single column pairwise)
        ap[k] = np.cumsum(recall_step[lo:hi] * interpolated, axis=0)[-1]
    return ap
