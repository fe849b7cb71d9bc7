"""From raw per-level model outputs to scored segments in seconds (docs/architecture.md).

:func:`decode_video` reproduces the released UniAV ``inference_single_video`` step by step;
:func:`postprocess_video` chains it with :func:`~uniav.postprocess.nms.batched_nms` and the
grid-to-seconds conversion (:meth:`uniav.grid.TimeGrid.to_seconds`), as the released
``postprocessing`` does.  :func:`decode_batch` / :func:`postprocess_batch` do the same for a
whole batch at once: decoding runs where the outputs are (one pass per level for all videos,
one copy to the host at the end instead of a host synchronisation per video and level); NMS -
a sequential greedy loop of at most ``max_segments`` picks per video - runs on the CPU.  Same
results as the per-video functions, to the bit on CUDA; on the CPU torch's vectorised
sigmoid and its scalar path for a tensor's tail can differ in the last bit, so a batch's
probabilities can differ from a video's by one ulp there (inference decodes per video on the
CPU).  No model import.

Grid convention (``docs/architecture.md``): feature step ``x`` covers frames
``[x * stride, x * stride + window)``, so its time is ``(x * stride + 0.5 * window) / fps``.

Documented choices where the released code is silent or unstable:

* candidates with equal probability are ranked by their flat index ``t * K + k`` (stable sort;
  the released ``torch.sort`` is not stable, which only matters for the top-k cut-off);
* ``pre_nms_topk <= 0`` means no cap;
* :func:`postprocess_video` drops segments that are empty once clamped to ``[0, duration]`` (they
  lie wholly outside the video; the released code returned them as zero-length segments).
"""

from __future__ import annotations

from typing import Sequence

import torch

from uniav.grid import TimeGrid
from uniav.postprocess.nms import NMSMethod, batched_nms


def decode_video(cls_logits: Sequence[torch.Tensor], offsets: Sequence[torch.Tensor],
                 masks: Sequence[torch.Tensor], level_strides: Sequence[int], *,
                 pre_nms_threshold: float = 0.001, pre_nms_topk: int = 2000,
                 duration_threshold: float = 0.05
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidate segments of one video from its per-level classification logits and offsets.

    Per level ``l`` (stride ``s``): ``probs = sigmoid(logits) * mask``, flattened point-major
    (index ``t * K + k``); keep ``probs > pre_nms_threshold``; keep the ``pre_nms_topk`` highest;
    point ``t = index // K``, class ``k = index % K``; offsets (left, right) are taken at the point
    (class-agnostic, ``(T_l, 2)``) or at ``(point, class)`` (class-aware, ``(T_l, K, 2)``); the
    segment is ``[t*s - left*s, t*s + right*s]``; keep it if ``right - left > duration_threshold``
    in grid units (the released code's test on the de-normalised extent).

    Args:
        cls_logits: per level, (T_l, K) classification logits.
        offsets: per level, (T_l, 2) or (T_l, K, 2) non-negative distances in units of the
            level's stride.
        masks: per level, (T_l,) validity of each point (bool or 0/1).
        level_strides: per level, the stride in feature-grid steps (1, 2, 4, ...).
        pre_nms_threshold: minimum probability of a candidate (strict ``>``).
        pre_nms_topk: candidates kept per level; ``<= 0`` keeps all.
        duration_threshold: minimum segment extent in grid units (strict ``>``).

    Returns:
        ``(segments (N, 2) float32 grid units, scores (N,) float32, labels (N,) int64)``,
        levels concatenated in order, within a level by descending score.
    """
    if not (len(cls_logits) == len(offsets) == len(masks) == len(level_strides)):
        raise ValueError(f"need one logits/offsets/mask/stride per level, got {len(cls_logits)}, "
                         f"{len(offsets)}, {len(masks)}, {len(level_strides)}")
    all_segments, all_scores, all_labels = [], [], []
    for level, (logits, level_offsets, mask, stride) in enumerate(
            zip(cls_logits, offsets, masks, level_strides)):
        logits = logits.float()
        level_offsets = level_offsets.float()
        num_points, num_classes = _check_level(level, logits, level_offsets, mask)
        probs = torch.sigmoid(logits) * mask.to(logits.dtype).unsqueeze(-1)  # (T, K)
        flat_probs = probs.flatten()  # (T, K) -> (T*K,), index t*K + k
        candidates = torch.nonzero(flat_probs > pre_nms_threshold, as_tuple=True)[0]
        candidate_probs, order = torch.sort(flat_probs[candidates], descending=True, stable=True)
        num_keep = len(order) if pre_nms_topk <= 0 else min(pre_nms_topk, len(order))
        candidate_probs = candidate_probs[:num_keep]
        flat_index = candidates[order[:num_keep]]
        point_index = torch.div(flat_index, num_classes, rounding_mode="floor")
        class_index = torch.remainder(flat_index, num_classes)
        if level_offsets.dim() == 3:
            picked_offsets = level_offsets.reshape(-1, 2)[flat_index]  # (T, K, 2) -> (T*K, 2)
        else:
            picked_offsets = level_offsets[point_index]
        point_time = point_index.to(torch.float32) * stride
        left = point_time - picked_offsets[:, 0] * stride
        right = point_time + picked_offsets[:, 1] * stride
        keep = (right - left) > duration_threshold
        all_segments.append(torch.stack((left, right), dim=-1)[keep])
        all_scores.append(candidate_probs[keep])
        all_labels.append(class_index[keep].to(torch.int64))
    if not all_segments:
        return (torch.zeros((0, 2), dtype=torch.float32), torch.zeros(0, dtype=torch.float32),
                torch.zeros(0, dtype=torch.int64))
    return torch.cat(all_segments), torch.cat(all_scores), torch.cat(all_labels)


def decode_batch(cls_logits: Sequence[torch.Tensor], offsets: Sequence[torch.Tensor],
                 masks: Sequence[torch.Tensor], level_strides: Sequence[int], *,
                 pre_nms_threshold: float = 0.001, pre_nms_topk: int = 2000,
                 duration_threshold: float = 0.05
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`decode_video` of every video of a batch at once: the same candidates in the same
    order, to the bit where the probabilities are (always on CUDA; see module docs for the CPU).

    Per level, the candidates of all videos are found together (one ``nonzero``), ranked by two
    stable sorts (by probability, descending, then by video - so within a video the order is
    :func:`decode_video`'s: descending probability, ties by flat index) and capped at
    ``pre_nms_topk`` per video by their rank within the video.  Only candidates are sorted;
    everything is copied to the host once, at the end.

    Args:
        cls_logits: per level, (B, T_l, K) logits.
        offsets: per level, (B, T_l, 2) or (B, T_l, K, 2).
        masks: per level, (B, T_l) validity.
        level_strides, pre_nms_threshold, pre_nms_topk, duration_threshold: as
            :func:`decode_video`.

    Returns:
        Per video ``(segments (N, 2), scores (N,), labels (N,))`` on the CPU, as
        :func:`decode_video` returns them.
    """
    if not (len(cls_logits) == len(offsets) == len(masks) == len(level_strides)):
        raise ValueError(f"need one logits/offsets/mask/stride per level, got {len(cls_logits)}, "
                         f"{len(offsets)}, {len(masks)}, {len(level_strides)}")
    if not cls_logits:
        raise ValueError("decode_batch: no levels")
    batch = cls_logits[0].shape[0]
    parts: list[tuple[torch.Tensor, ...]] = []
    for level, (logits, level_offsets, mask, stride) in enumerate(
            zip(cls_logits, offsets, masks, level_strides)):
        if logits.dim() != 3 or logits.shape[0] != batch:
            raise ValueError(f"level {level}: cls_logits must be ({batch}, T, K), got "
                             f"{tuple(logits.shape)}")
        _, num_points, num_classes = logits.shape
        if level_offsets.shape not in ((batch, num_points, 2),
                                       (batch, num_points, num_classes, 2)):
            raise ValueError(f"level {level}: offsets must be ({batch}, {num_points}, 2) or "
                             f"({batch}, {num_points}, {num_classes}, 2), got "
                             f"{tuple(level_offsets.shape)}")
        if mask.shape != (batch, num_points):
            raise ValueError(f"level {level}: mask must be ({batch}, {num_points}), got "
                             f"{tuple(mask.shape)}")
        logits = logits.float()
        level_offsets = level_offsets.float()
        probs = torch.sigmoid(logits) * mask.to(logits.dtype).unsqueeze(-1)   # (B, T, K)
        flat_probs = probs.reshape(batch, num_points * num_classes)          # index t*K + k
        video, flat_index = torch.nonzero(flat_probs > pre_nms_threshold, as_tuple=True)
        values = flat_probs[video, flat_index]
        # nonzero lists (video, index) in row-major order; two stable sorts give, per video,
        # descending probability with ties in index order
        order = torch.sort(values, descending=True, stable=True).indices
        order = order[torch.sort(video[order], stable=True).indices]
        video, flat_index, values = video[order], flat_index[order], values[order]
        if pre_nms_topk > 0:
            counts = torch.bincount(video, minlength=batch)
            starts = torch.cumsum(counts, 0) - counts
            rank = torch.arange(len(video), device=video.device) - starts[video]
            top = rank < pre_nms_topk
            video, flat_index, values = video[top], flat_index[top], values[top]
        point_index = torch.div(flat_index, num_classes, rounding_mode="floor")
        class_index = torch.remainder(flat_index, num_classes)
        if level_offsets.dim() == 4:   # (B, T, K, 2) -> (B, T*K, 2)
            picked = level_offsets.reshape(batch, -1, 2)[video, flat_index]
        else:
            picked = level_offsets[video, point_index]
        point_time = point_index.to(torch.float32) * stride
        left = point_time - picked[:, 0] * stride
        right = point_time + picked[:, 1] * stride
        keep = (right - left) > duration_threshold
        parts.append((video[keep], torch.stack((left, right), dim=-1)[keep], values[keep],
                      class_index[keep].to(torch.int64)))
    # levels one after the other, then grouped by video (stable: level order kept within a video)
    video, segments, scores, labels = (torch.cat(column) for column in zip(*parts))
    order = torch.sort(video, stable=True).indices
    video, segments, scores, labels = (t[order].cpu() for t in (video, segments, scores, labels))
    sizes = torch.bincount(video, minlength=batch).tolist()
    return list(zip(segments.split(sizes), scores.split(sizes), labels.split(sizes)))


def _check_level(level: int, logits: torch.Tensor, offsets: torch.Tensor,
                 mask: torch.Tensor) -> tuple[int, int]:
    if logits.dim() != 2:
        raise ValueError(f"level {level}: cls_logits must be (T, K), got {tuple(logits.shape)}")
    num_points, num_classes = logits.shape
    if offsets.shape not in ((num_points, 2), (num_points, num_classes, 2)):
        raise ValueError(f"level {level}: offsets must be ({num_points}, 2) or "
                         f"({num_points}, {num_classes}, 2), got {tuple(offsets.shape)}")
    if mask.shape != (num_points,):
        raise ValueError(f"level {level}: mask must be ({num_points},), got {tuple(mask.shape)}")
    return num_points, num_classes


def postprocess_video(cls_logits: Sequence[torch.Tensor], offsets: Sequence[torch.Tensor],
                      masks: Sequence[torch.Tensor], level_strides: Sequence[int], *,
                      grid: TimeGrid, duration: float,
                      pre_nms_threshold: float = 0.001, pre_nms_topk: int = 2000,
                      duration_threshold: float = 0.05, nms_method: NMSMethod = "soft",
                      iou_threshold: float = 0.7, sigma: float = 0.5, min_score: float = 0.001,
                      max_segments: int = 100, multiclass: bool = True,
                      voting_threshold: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Final detections of one video: decode, NMS, grid -> seconds.

    Args:
        cls_logits, offsets, masks, level_strides: the video's raw outputs, as for
            :func:`decode_video`.
        grid: the video's effective :class:`~uniav.grid.TimeGrid`.
        duration: the video's length in seconds (segments are clamped to it).
        pre_nms_threshold, pre_nms_topk, duration_threshold: see :func:`decode_video`.
        nms_method, iou_threshold, sigma, min_score, max_segments, multiclass,
            voting_threshold: see :func:`~uniav.postprocess.nms.batched_nms` (``sigma`` is
            per task: tal 0.75, sed 0.4, avel 0.4 in the paper).

    Returns:
        ``(segments (N, 2) float32 seconds within [0, duration], scores (N,) float32,
        labels (N,) int64)`` on the CPU, sorted by descending score.
    """
    segments, scores, labels = decode_video(
        cls_logits, offsets, masks, level_strides, pre_nms_threshold=pre_nms_threshold,
        pre_nms_topk=pre_nms_topk, duration_threshold=duration_threshold)
    return _nms_and_seconds(segments, scores, labels, grid=grid, duration=duration,
                            nms_method=nms_method, iou_threshold=iou_threshold, sigma=sigma,
                            min_score=min_score, max_segments=max_segments,
                            multiclass=multiclass, voting_threshold=voting_threshold)


def _nms_and_seconds(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *,
                     grid: TimeGrid, duration: float, nms_method: NMSMethod,
                     iou_threshold: float, sigma: float, min_score: float, max_segments: int,
                     multiclass: bool, voting_threshold: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    segments, scores, labels = batched_nms(
        segments.cpu(), scores.cpu(), labels.cpu(), method=nms_method,
        iou_threshold=iou_threshold, sigma=sigma, min_score=min_score,
        max_segments=max_segments, multiclass=multiclass, voting_threshold=voting_threshold)
    seconds = grid.to_seconds(segments, duration)
    inside = seconds[:, 1] > seconds[:, 0]
    return seconds[inside], scores[inside], labels[inside]


def postprocess_batch(cls_logits: Sequence[torch.Tensor], offsets: Sequence[torch.Tensor],
                      masks: Sequence[torch.Tensor], level_strides: Sequence[int], *,
                      grids: Sequence[TimeGrid], durations: Sequence[float],
                      pre_nms_threshold: float = 0.001, pre_nms_topk: int = 2000,
                      duration_threshold: float = 0.05, nms_method: NMSMethod = "soft",
                      iou_threshold: float = 0.7, sigma: float = 0.5, min_score: float = 0.001,
                      max_segments: int = 100, multiclass: bool = True,
                      voting_threshold: float = 0.0
                      ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`postprocess_video` of every video of a batch: :func:`decode_batch` where the
    outputs are, then NMS and seconds per video on the CPU (the same results).

    Args:
        cls_logits, offsets, masks: per level (B, ...) as for :func:`decode_batch`.
        grids, durations: per video its grid and length in seconds.
        the rest: as :func:`postprocess_video`.

    Returns:
        Per video ``(segments (N, 2) seconds, scores (N,), labels (N,))``.
    """
    decoded = decode_batch(cls_logits, offsets, masks, level_strides,
                           pre_nms_threshold=pre_nms_threshold, pre_nms_topk=pre_nms_topk,
                           duration_threshold=duration_threshold)
    if not len(decoded) == len(grids) == len(durations):
        raise ValueError(f"{len(decoded)} videos in the outputs, {len(grids)} grids and "
                         f"{len(durations)} durations")
    return [_nms_and_seconds(segments, scores, labels, grid=grid, duration=duration,
                             nms_method=nms_method, iou_threshold=iou_threshold, sigma=sigma,
                             min_score=min_score, max_segments=max_segments,
                             multiclass=multiclass, voting_threshold=voting_threshold)
            for (segments, scores, labels), grid, duration in zip(decoded, grids, durations)]
