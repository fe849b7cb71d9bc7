"""1-D non-maximum suppression for temporal segments: Gaussian soft-NMS, hard NMS, none.

Pure PyTorch/NumPy replacement for the compiled ``nms_1d_cpu`` op that the released UniAV
imports but does not ship (docs/evaluation.md has the behaviour, quirks included).

Arithmetic follows the compiled op: float32 throughout, segment length ``t1 - t0 + 1e-6`` in the
IoU (so two identical segments have an IoU slightly below 1 and a zero-length segment has IoU 0
with everything), Gaussian decay ``w = exp(-IoU**2 / sigma)`` applied to every remaining segment
of the picked segment's class whatever ``iou_threshold`` is.

Rules where this module deliberately differs from the compiled op (its quirks are not copied):

* **min_score**: a segment is kept only while its (decayed) score is ``>= min_score`` - the first
  pick of a class included (the op always returned it); hard NMS uses the same ``>=`` (the op's
  wrapper used ``>``).
* **max_segments <= 0** means "no cap" (the op's wrapper silently dropped one segment).
* **Ties**: among equal scores the segment that comes first in the input is emitted first (the
  op's choice depended on its internal swap buffer; hard NMS on an unstable sort).
* **Degenerate input**: NaN or infinite scores raise :class:`ValueError` naming the first bad
  index; segments with a non-finite bound or with ``t1 < t0`` are dropped before NMS;
  zero-length segments (``t1 == t0``) are kept - their IoU with anything is 0, so they neither
  suppress nor get suppressed.  float64 (or other floating) input is cast to float32; empty input
  gives empty float32 / int64 outputs.
* **Voting** (``voting_threshold > 0``; class-agnostic path only, as in the released code): each
  kept segment becomes the score-weighted mean of the input segments whose IoU with it is
  ``>= voting_threshold`` (weights ``max(score, 0)``, same IoU as the suppression).  A neighbourhood
  with zero total weight leaves the segment unchanged, so voting never produces NaN.  With
  ``multiclass=True`` a positive ``voting_threshold`` raises :class:`ValueError` (the released
  code silently ignored it).

Algorithm: all classes run at once.  Each step emits the highest remaining score of any class and
decays (soft) or removes (hard) the remaining segments *of the same class*, vectorised over them;
because scores only ever decrease, the emission order is already sorted by descending score, it
equals the per-class runs merged by score, and the loop can stop after ``max_segments`` picks.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

#: Added to every segment length in the IoU (as in the compiled op).
LENGTH_EPS = np.float32(1e-6)

NMSMethod = Literal["soft", "hard", "none"]
NMS_METHODS = ("soft", "hard", "none")


def segment_iou(segment: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one segment with many, float32, lengths ``t1 - t0 + 1e-6``.

    Args:
        segment: (2,) float32 ``[t0, t1]``.
        others: (M, 2) float32.

    Returns:
        (M,) float32 IoU values in [0, 1).
    """
    start, end = segment[0], segment[1]
    inter = np.maximum(np.minimum(others[:, 1], end) - np.maximum(others[:, 0], start),
                       np.float32(0.0))
    length = end - start + LENGTH_EPS
    other_lengths = others[:, 1] - others[:, 0] + LENGTH_EPS
    return inter / (length + other_lengths - inter)


def batched_nms(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *,
                method: NMSMethod = "soft", iou_threshold: float = 0.7, sigma: float = 0.5,
                min_score: float = 0.001, max_segments: int = 100, multiclass: bool = True,
                voting_threshold: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class (or class-agnostic) 1-D NMS of one video's segments.

    Args:
        segments: (N, 2) ``[t0, t1]`` (any floating dtype; computed in float32).
        scores: (N,) confidence scores; NaN or infinite values raise ``ValueError``.
        labels: (N,) integer class indices.
        method: ``"soft"`` (Gaussian soft-NMS), ``"hard"`` (suppress IoU ``>= iou_threshold``)
            or ``"none"`` (no suppression: filter by ``min_score``, sort, cap).
        iou_threshold: hard-NMS suppression threshold (unused by Gaussian soft-NMS).
        sigma: Gaussian soft-NMS width, ``w = exp(-IoU**2 / sigma)``; must be > 0.
        min_score: segments whose (decayed) score falls below this are dropped.
        max_segments: at most this many segments are returned; ``<= 0`` means no cap.
        multiclass: suppress only within a class (True) or across classes (False).
        voting_threshold: if > 0 (requires ``multiclass=False``), refine every kept segment by
            score-weighted voting over the input segments with IoU ``>= voting_threshold``.

    Returns:
        ``(segments (K, 2) float32, scores (K,) float32, labels (K,) int64)`` on the CPU, sorted
        by descending score (ties: input order); every score is ``>= min_score``.

    Raises:
        ValueError: bad shapes, unknown method, bad parameters, NaN/inf scores.
    """
    if method not in NMS_METHODS:
        raise ValueError(f"method must be one of {NMS_METHODS}, got {method!r}")
    if method == "soft" and not sigma > 0:
        raise ValueError(f"sigma must be > 0 for soft-NMS, got {sigma}")
    if not 0.0 <= voting_threshold <= 1.0:
        raise ValueError(f"voting_threshold must be in [0, 1], got {voting_threshold}")
    if voting_threshold > 0 and multiclass:
        raise ValueError("score voting is defined for class-agnostic NMS only: set "
                         "multiclass=False or voting_threshold=0")
    starts, ends, score_values, label_values = _validated_arrays(segments, scores, labels)

    valid = np.isfinite(starts) & np.isfinite(ends) & (ends >= starts)
    valid_index = np.flatnonzero(valid)
    starts, ends = starts[valid_index], ends[valid_index]
    score_values, label_values = score_values[valid_index], label_values[valid_index]
    groups = label_values if multiclass else np.zeros_like(label_values)
    cap = max_segments if max_segments > 0 else len(score_values)

    if method == "none":
        kept = np.flatnonzero(score_values >= np.float32(min_score))
        order = np.argsort(-score_values[kept], kind="stable")
        picked = kept[order][:cap]
        picked_scores = score_values[picked]
    else:
        picked, picked_scores = _greedy_nms(
            starts, ends, score_values, groups, soft=(method == "soft"),
            iou_threshold=np.float32(iou_threshold), sigma=np.float32(sigma),
            min_score=np.float32(min_score), max_picks=cap)

    out_segments = np.stack([starts[picked], ends[picked]], axis=1).astype(np.float32)
    if voting_threshold > 0 and len(picked):
        all_segments = np.stack([starts, ends], axis=1)
        out_segments = _vote(out_segments, all_segments, score_values,
                             np.float32(voting_threshold))
    return (torch.from_numpy(out_segments.reshape(-1, 2)),
            torch.from_numpy(np.asarray(picked_scores, dtype=np.float32)),
            torch.from_numpy(label_values[picked].astype(np.int64)))


def _validated_arrays(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and scores; return float32 starts, ends, scores and int64 labels."""
    segments, scores, labels = (torch.as_tensor(x).detach().cpu()
                                for x in (segments, scores, labels))
    num = scores.shape[0] if scores.dim() == 1 else -1
    if num < 0 or segments.shape != (num, 2) or labels.shape != (num,):
        raise ValueError(f"expected segments (N, 2), scores (N,), labels (N,); got "
                         f"{tuple(segments.shape)}, {tuple(scores.shape)}, {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    segment_values = segments.to(torch.float32).numpy()
    score_values = scores.to(torch.float32).numpy().copy()
    bad = np.flatnonzero(~np.isfinite(score_values))
    if bad.size:
        raise ValueError(f"scores[{int(bad[0])}] is {float(score_values[bad[0]])}; scores must be "
                         f"finite ({bad.size} bad value(s))")
    return (segment_values[:, 0].copy(), segment_values[:, 1].copy(), score_values,
            labels.to(torch.int64).numpy().copy())


def _greedy_nms(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, groups: np.ndarray, *,
                soft: bool, iou_threshold: np.float32, sigma: np.float32, min_score: np.float32,
                max_picks: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy NMS over all groups at once; returns picked indices and their scores in order."""
    current = scores.copy()
    active = current >= min_score
    remaining = np.where(active, current, -np.inf).astype(np.float32)  # -inf = gone
    # per group, the indices of its members (input order)
    by_group = np.argsort(groups, kind="stable")
    group_values, group_starts = np.unique(groups[by_group], return_index=True)
    group_ends = np.append(group_starts[1:], len(groups))
    members = {int(g): by_group[a:b] for g, a, b in zip(group_values, group_starts, group_ends)}
    segments = np.stack([starts, ends], axis=1)

    picked: list[int] = []
    picked_scores: list[np.float32] = []
    while len(picked) < min(max_picks, remaining.size):
        pick = int(np.argmax(remaining))  # first maximum = earliest input among ties
        if remaining[pick] == -np.inf:
            break
        picked.append(pick)
        picked_scores.append(current[pick])
        remaining[pick] = -np.inf
        active[pick] = False
        others = members[int(groups[pick])]
        others = others[active[others]]
        if others.size == 0:
            continue
        iou = segment_iou(segments[pick], segments[others])
        if soft:
            current[others] *= np.exp(-(iou * iou) / sigma)
            dropped = current[others] < min_score
        else:
            dropped = iou >= iou_threshold
        active[others[dropped]] = False
        remaining[others] = np.where(active[others], current[others], np.float32(-np.inf))
    return np.asarray(picked, dtype=np.int64), np.asarray(picked_scores, dtype=np.float32)


def _vote(kept: np.ndarray, all_segments: np.ndarray, all_scores: np.ndarray,
          voting_threshold: np.float32) -> np.ndarray:
    """Score-weighted mean of the neighbours (IoU >= threshold) of every kept segment."""
    # (K, M) IoU of kept segments against every input segment
    inter = np.maximum(np.minimum(kept[:, None, 1], all_segments[None, :, 1])
                       - np.maximum(kept[:, None, 0], all_segments[None, :, 0]), np.float32(0))
    kept_lengths = kept[:, 1] - kept[:, 0] + LENGTH_EPS
    all_lengths = all_segments[:, 1] - all_segments[:, 0] + LENGTH_EPS
    iou = inter / (kept_lengths[:, None] + all_lengths[None, :] - inter)
    weights = np.where(iou >= voting_threshold, np.maximum(all_scores, 0)[None, :],
                       np.float32(0)).astype(np.float32)
    totals = weights.sum(axis=1)
    voted = (weights @ all_segments) / np.where(totals > 0, totals, 1)[:, None]
    return np.where((totals > 0)[:, None], voted, kept).astype(np.float32)
