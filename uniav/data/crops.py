"""Pure helpers of the dataset: the validation hold-out and the training-time crop.

Both reproduce the released implementation (``anet.py``'s instance filter, ``truncate_feats``),
draw every random number from the generator they are given, and never touch a file - which is
what makes a resumed training run identical to an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

LOGGER = logging.getLogger(__name__)

#: Random crop starts tried until one keeps an instance (as the released ``truncate_feats``).
MAX_CROP_TRIALS = 200


def holdout_split(video_ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The videos held out of a training subset for validation.

    The videos are ranked by ``sha256(f"{seed}:{video_id}")`` and the first
    ``n = max(1, round_half_up(fraction · N))`` (at most ``N − 1``) are held out.  The choice
    depends only on the seed and the ids - not on their order in the file - and a video's rank
    does not depend on the other videos, so adding videos to the file moves few others.

    Args:
        video_ids: the training subset's ids (N >= 2).
        fraction: share to hold out, in (0, 1).
        seed: the run seed.

    Returns:
        The held-out ids.

    Raises:
        ValueError: fewer than 2 videos or ``fraction`` outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")
    unique_ids = sorted(set(video_ids))
    if len(unique_ids) < 2:
        raise ValueError(f"cannot hold out validation videos from {len(unique_ids)} video(s)")
    count = min(len(unique_ids) - 1, max(1, math.floor(fraction * len(unique_ids) + 0.5)))

    def rank(video_id: str) -> tuple[bytes, str]:
        return hashlib.sha256(f"{seed}:{video_id}".encode()).digest(), video_id

    return set(sorted(unique_ids, key=rank)[:count])


def filter_training_instances(segments: np.ndarray, labels: np.ndarray, num_steps: int,
                              offset: float, trunc_thresh: float
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Drop instances beyond the features (released ``anet.py`` training filter).

    The features end at ``end = num_steps + offset``.  An instance starting at or after ``end``
    is dropped; one with at least ``trunc_thresh`` of its length before ``end`` is kept with its
    end clamped to ``end``; the others are dropped.

    Args:
        segments: (N, 2) grid units.
        labels: (N,).
        num_steps: feature length T.
        offset: ``0.5·window / stride``.
        trunc_thresh: the task's threshold.

    Returns:
        ``(segments, labels)`` of the kept instances.
    """
    end = num_steps + offset
    lengths = segments[:, 1] - segments[:, 0]
    inside = np.minimum(segments[:, 1], end) - segments[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (segments[:, 0] < end) & (inside / lengths >= trunc_thresh)
    kept = segments[keep].copy()
    kept[:, 1] = np.minimum(kept[:, 1], end)
    return kept, labels[keep]


class IntegerSource(Protocol):
    """What the sampling needs of a random generator (``np.random.Generator`` has it)."""

    def integers(self, low: int, high: int, *, endpoint: bool) -> int: ...


@dataclass(frozen=True)
class Truncation:
    """A training crop: steps ``[start, start + length)`` and the instances it keeps (shifted)."""

    start: int
    length: int
    segments: np.ndarray
    labels: np.ndarray


def sample_truncation(num_steps: int, segments: np.ndarray, labels: np.ndarray,
                      rng: IntegerSource, *, max_seq_len: int, crop_ratio: tuple[float, float],
                      trunc_thresh: float, offset: float,
                      max_trials: int = MAX_CROP_TRIALS) -> Truncation:
    """Random crop / truncation of one training video (the released ``truncate_feats``).

    Draws, in this order: the crop length (only when ``num_steps <= max_seq_len``:
    ``rng.integers(max(round(r0·T), 1), min(round(r1·T), T), endpoint=True)`` with Python's
    ``round`` as in the released code; no crop when it equals ``T``), then per trial the start
    ``rng.integers(0, T − length, endpoint=True)``.  An instance is kept when its intersection
    with ``[start − offset, start + length + offset]`` covers at least ``trunc_thresh`` of it;
    kept instances are clipped to that extended window and shifted by ``−start``.  Trials stop at
    the first window that keeps an instance; after ``max_trials`` failures the last window is
    returned without instances.  A video without instances gets one window.

    Args:
        num_steps: feature length T.
        segments: (N, 2) grid units.
        labels: (N,).
        rng: the only source of randomness.
        max_seq_len: the task's training length.
        crop_ratio: ``(r0, r1)`` of the random crop of short videos.
        trunc_thresh: share of an instance that must stay inside.
        offset: ``0.5·window / stride`` (grid units).
        max_trials: windows tried.

    Returns:
        The :class:`Truncation`.
    """
    if num_steps <= max_seq_len:
        low = max(round(crop_ratio[0] * num_steps), 1)
        high = min(round(crop_ratio[1] * num_steps), num_steps)
        crop_length = int(rng.integers(low, high, endpoint=True))
        if crop_length == num_steps:
            return Truncation(0, num_steps, segments.copy(), labels.copy())
    else:
        crop_length = max_seq_len
    lengths = segments[:, 1] - segments[:, 0]
    trials = max(1, max_trials) if len(segments) else 1
    for _ in range(trials):
        start = int(rng.integers(0, num_steps - crop_length, endpoint=True))
        left = np.maximum(start - offset, segments[:, 0])
        right = np.minimum(start + crop_length + offset, segments[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            keep = np.clip(right - left, 0.0, None) / lengths >= trunc_thresh
        if keep.any():
            break
    kept = np.stack([left[keep], right[keep]], axis=1) - start  # (N_kept, 2)
    if len(segments) and not keep.any():
        LOGGER.debug("no crop of %d tried kept an instance; returning one without", trials)
    return Truncation(start, crop_length, kept, labels[keep])
