"""Points of the pyramid and their training targets (docs/architecture.md, "The network").

Level ``l`` has points at ``t = 0, s, 2s, ...`` (``s = stride_l``, feature-grid units) with a
regression range ``[lo_l, hi_l]``.  A point is positive for an instance when it lies strictly
inside it and the larger of its two boundary distances falls in the point's range (both ends
inclusive).  Class-agnostic tasks: the shortest such instance wins (instances within 1e-3 of
the shortest length all set their class).  Class-aware tasks: every such instance sets its class;
the regression target of a class is that of its shortest covering instance of that class.
Regression targets are divided by the stride.  Everything is vectorised over the batch, the
points and the instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PyramidPoints:
    """All points of all levels for a padded length, concatenated level after level.

    Attributes:
        positions: (P,) point times in grid units.
        ranges: (P, 2) regression range [lo, hi] of each point.
        strides: (P,) stride of each point's level.
        level_sizes: number of points per level.
    """

    positions: torch.Tensor
    ranges: torch.Tensor
    strides: torch.Tensor
    level_sizes: list[int]


def pyramid_points(length: int, level_strides: list[int],
                   regression_ranges: list[tuple[float, float]],
                   device: torch.device | str = "cpu") -> PyramidPoints:
    """Points of every level for a padded sequence of ``length`` steps.

    Args:
        length: padded length T (divisible by the largest stride).
        level_strides: stride of each level.
        regression_ranges: ``[lo, hi]`` of each level.

    Returns:
        :class:`PyramidPoints` with ``P = sum(T / stride_l)`` points.
    """
    if len(level_strides) != len(regression_ranges):
        raise ValueError("one regression range per pyramid level is needed")
    positions, ranges, strides, sizes = [], [], [], []
    for stride, (low, high) in zip(level_strides, regression_ranges):
        level = torch.arange(0, length, stride, dtype=torch.float32, device=device)
        positions.append(level)
        ranges.append(torch.tensor([low, high], dtype=torch.float32, device=device).expand(len(level), 2))
        strides.append(torch.full((len(level),), float(stride), device=device))
        sizes.append(len(level))
    return PyramidPoints(torch.cat(positions), torch.cat(ranges), torch.cat(strides), sizes)


def pad_instances(segments: list[torch.Tensor], labels: list[torch.Tensor],
                  device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack per-video instances into padded tensors.

    The padding is built on the CPU and moved to ``device`` in one copy per tensor (no
    per-video transfers).

    Args:
        segments, labels: per video (N_i, 2) and (N_i,).
        device: where the padded tensors go.

    Returns:
        segments (B, N, 2) float32, labels (B, N) int64 and a validity mask (B, N),
        N = the most instances of a video (at least 1).
    """
    batch = len(segments)
    max_instances = max([len(s) for s in segments] + [1])
    padded_segments = torch.zeros(batch, max_instances, 2)
    padded_labels = torch.zeros(batch, max_instances, dtype=torch.long)
    valid = torch.zeros(batch, max_instances, dtype=torch.bool)
    for i, (video_segments, video_labels) in enumerate(zip(segments, labels)):
        count = len(video_segments)
        padded_segments[i, :count] = video_segments.detach().to("cpu", torch.float32)
        padded_labels[i, :count] = video_labels.detach().to("cpu")
        valid[i, :count] = True
    if torch.device(device).type == "cpu":
        return padded_segments, padded_labels, valid
    return (padded_segments.to(device), padded_labels.to(device), valid.to(device))


def assign_targets(points: PyramidPoints, segments: torch.Tensor, labels: torch.Tensor,
                   valid: torch.Tensor, num_classes: int, class_aware: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Classification and regression targets of every point.

    Args:
        points: the pyramid points (P of them).
        segments: (B, N, 2) instance [start, end] in grid units (padded).
        labels: (B, N) class indices.
        valid: (B, N) which instances are real.
        num_classes: K.
        class_aware: per-class regression targets.

    Returns:
        cls_targets (B, P, K) in {0, 1}; reg_targets (B, P, 2), or (B, P, K, 2) when class-aware,
        divided by the point's stride (zero where the point is not positive).
    """
    position = points.positions[None, :, None]                          # (1, P, 1)
    left = position - segments[:, None, :, 0]                           # (B, P, N)
    right = segments[:, None, :, 1] - position                          # (B, P, N)
    distances = torch.stack((left, right), dim=-1)                      # (B, P, N, 2)
    inside = torch.minimum(left, right) > 0
    largest = torch.maximum(left, right)
    in_range = (largest >= points.ranges[None, :, None, 0]) & (largest <= points.ranges[None, :, None, 1])
    candidate = inside & in_range & valid[:, None, :]                    # (B, P, N)
    lengths = (segments[..., 1] - segments[..., 0])[:, None, :].expand_as(candidate)
    lengths = lengths.masked_fill(~candidate, float("inf"))             # (B, P, N)
    one_hot = F.one_hot(labels, num_classes).to(segments.dtype)         # (B, N, K)
    stride = points.strides[None, :, None]                              # (1, P, 1)
    if not class_aware:
        shortest, shortest_index = lengths.min(dim=2)                   # (B, P)
        winners = (lengths <= shortest[..., None] + 1e-3) & candidate    # (B, P, N)
        cls_targets = (winners.to(one_hot.dtype) @ one_hot).clamp_(0.0, 1.0)
        index = shortest_index[..., None, None].expand(-1, -1, 1, 2)    # (B, P, 1, 2)
        reg_targets = distances.gather(2, index).squeeze(2) / stride    # (B, P, 2)
        positive = torch.isfinite(shortest)
        return cls_targets, reg_targets * positive[..., None]
    cls_targets = (candidate.to(one_hot.dtype) @ one_hot).clamp_(0.0, 1.0)  # (B, P, K)
    # per class, the shortest covering instance of that class: (B, P, N, K) -> argmin over N
    per_class_lengths = torch.where(one_hot[:, None].bool(), lengths[..., None],
                                    torch.full_like(lengths[..., None], float("inf")))
    shortest_per_class, index = per_class_lengths.min(dim=2)             # (B, P, K)
    index = index[..., None].expand(-1, -1, -1, 2)                       # (B, P, K, 2)
    reg_targets = distances.gather(2, index) / stride[..., None]        # (B, P, K, 2)
    return cls_targets, reg_targets * torch.isfinite(shortest_per_class)[..., None]
