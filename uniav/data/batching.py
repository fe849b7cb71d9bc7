"""Model inputs: one video as a :class:`VideoItem`, several as a padded :class:`Batch`.

:func:`task_inputs` is the one path from a video's stored features (T x C) to what the model
reads on a task's grid - training, evaluation and ``uniav predict`` all go through it, so they
cannot drift apart.  :func:`padded_length` and :func:`collate` pad and stack items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uniav.grid import TimeGrid


@dataclass
class VideoItem:
    """One video (or, in training, one random crop of it) on the feature grid.

    Attributes:
        video_id: the video id of the annotation file.
        visual: (C_visual, T) float32 features.
        audio: (C_audio, T) float32 features.
        segments: (N, 2) float32 instances ``[start, end]`` in grid units of this item (a crop's
            instances are shifted by ``crop_start``).
        labels: (N,) int64 class indices into the dataset's ``classes``.
        duration: video length in seconds.
        grid: the effective grid of the video (after any resizing).
        crop_start: the step of the whole video where this item starts (0 without a crop).
    """

    video_id: str
    visual: torch.Tensor
    audio: torch.Tensor
    segments: torch.Tensor
    labels: torch.Tensor
    duration: float
    grid: TimeGrid
    crop_start: int = 0

    @property
    def length(self) -> int:
        """Number of feature steps T."""
        return int(self.visual.shape[-1])


@dataclass(frozen=True)
class VideoMeta:
    """What post-processing needs of one video of a batch (grid -> seconds, clamping)."""

    video_id: str
    duration: float
    grid: TimeGrid
    length: int


@dataclass
class Batch:
    """Padded model inputs of several videos.

    Attributes:
        visual: (B, C_visual, T) float32, zero beyond each video's length.
        audio: (B, C_audio, T) float32, zero beyond each video's length.
        mask: (B, T) bool, True on valid steps.
        segments: per video an (N_i, 2) float32 tensor in grid units.
        labels: per video an (N_i,) int64 tensor.
        videos: per video its :class:`VideoMeta`.
    """

    visual: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor
    segments: list[torch.Tensor]
    labels: list[torch.Tensor]
    videos: list[VideoMeta]

    def __len__(self) -> int:
        return int(self.visual.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """A copy of the batch with every tensor on ``device`` (``videos`` is shared)."""
        def move(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(device, non_blocking=non_blocking)

        return Batch(visual=move(self.visual), audio=move(self.audio), mask=move(self.mask),
                     segments=[move(s) for s in self.segments],
                     labels=[move(lab) for lab in self.labels], videos=list(self.videos))

    def pin_memory(self) -> "Batch":
        """A copy in page-locked host memory (for asynchronous copies to a GPU)."""
        return Batch(visual=self.visual.pin_memory(), audio=self.audio.pin_memory(),
                     mask=self.mask.pin_memory(), segments=[s.pin_memory() for s in self.segments],
                     labels=[lab.pin_memory() for lab in self.labels], videos=list(self.videos))


def task_inputs(visual: np.ndarray, audio: np.ndarray, grid: TimeGrid,
                resize_length: int | None) -> tuple[torch.Tensor, torch.Tensor, TimeGrid]:
    """A video's stored features as model inputs on the task's grid.

    Args:
        visual: (T, C_visual) stored features; audio: (T, C_audio), same T.
        grid: the task's stored grid (:meth:`TimeGrid.of`).
        resize_length: the fixed length the task resizes to (linear interpolation), or None.

    Returns:
        ``(visual (C_visual, T'), audio (C_audio, T'), effective grid)``, contiguous float32.
    """
    visual_t = torch.from_numpy(np.ascontiguousarray(visual.T))  # (T, Cv) -> (Cv, T)
    audio_t = torch.from_numpy(np.ascontiguousarray(audio.T))    # (T, Ca) -> (Ca, T)
    effective = grid.for_video(visual_t.shape[-1], resize_length)
    if resize_length:
        # (C, T) -> (1, C, T) -> (1, C, L) -> (C, L)
        visual_t = F.interpolate(visual_t[None], size=resize_length, mode="linear",
                                 align_corners=False)[0]
        audio_t = F.interpolate(audio_t[None], size=resize_length, mode="linear",
                                align_corners=False)[0]
    return visual_t.contiguous(), audio_t.contiguous(), effective


def padded_length(lengths: Sequence[int], *, max_seq_len: int, max_stride: int,
                  training: bool) -> int:
    """The padded length T of a batch.

    Args:
        lengths: the items' lengths.
        max_seq_len: the task's training length.
        max_stride: the largest pyramid stride (the padded length must be a multiple of it).
        training: training batches always have ``max_seq_len`` steps.

    Returns:
        ``max_seq_len`` in training; at inference the larger of ``max_seq_len`` and the longest
        item rounded up to a multiple of ``max_stride``.

    Raises:
        ValueError: no lengths, or (training) an item longer than ``max_seq_len``.
    """
    if not lengths:
        raise ValueError("padded_length: no items")
    longest = max(int(n) for n in lengths)
    if training:
        if longest > max_seq_len:
            raise ValueError(f"a training item has {longest} steps > max_seq_len {max_seq_len} "
                             f"(training items must be cropped first)")
        return max_seq_len
    rounded = -(-longest // max_stride) * max_stride  # ceil to a multiple of max_stride
    return max(max_seq_len, rounded)


def collate(items: Sequence[VideoItem], length: int) -> Batch:
    """Pad items to ``length`` steps and stack them.

    Args:
        items: the videos (same channel counts).
        length: the padded length (see :func:`padded_length`).

    Returns:
        The :class:`Batch`; padding is zero and masked out.

    Raises:
        ValueError: no items, an item longer than ``length``, or mismatched channel counts.
    """
    if not items:
        raise ValueError("collate: no items")
    visual_dim, audio_dim = items[0].visual.shape[0], items[0].audio.shape[0]
    visual = torch.zeros((len(items), visual_dim, length), dtype=torch.float32)
    audio = torch.zeros((len(items), audio_dim, length), dtype=torch.float32)
    mask = torch.zeros((len(items), length), dtype=torch.bool)
    videos = []
    for row, item in enumerate(items):
        steps = item.length
        if item.visual.shape[0] != visual_dim or item.audio.shape[0] != audio_dim:
            raise ValueError(f"collate: video {item.video_id!r} has dims "
                             f"({item.visual.shape[0]}, {item.audio.shape[0]}), the batch has "
                             f"({visual_dim}, {audio_dim})")
        if item.audio.shape[-1] != steps:
            raise ValueError(f"collate: video {item.video_id!r}: audio has {item.audio.shape[-1]} "
                             f"steps, visual {steps}")
        if steps > length:
            raise ValueError(f"collate: video {item.video_id!r} has {steps} steps > padded "
                             f"length {length}")
        visual[row, :, :steps] = item.visual
        audio[row, :, :steps] = item.audio
        mask[row, :steps] = True
        videos.append(VideoMeta(video_id=item.video_id, duration=item.duration, grid=item.grid,
                                length=steps))
    return Batch(visual=visual, audio=audio, mask=mask,
                 segments=[item.segments for item in items],
                 labels=[item.labels for item in items], videos=videos)
