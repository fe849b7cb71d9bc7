"""The feature time grid: the one place that converts between seconds, frames and feature steps.

Feature step ``x`` covers frames ``[x·stride, x·stride + window)`` of a video decoded at ``fps``;
its time in seconds is ``t = (x·stride + 0.5·window) / fps`` and conversely
``x = (t·fps − 0.5·window) / stride``.  A video of ``N`` frames has
``T = 1 + floor((N − window) / stride)`` steps (one when it is shorter than a window).  When a
task resizes its features to a fixed length ``L`` (ActivityNet), the effective grid of a video of
``T`` stored steps has ``stride = window = ((T − 1)·stride + window) / L`` (fractional) and the
same formulas hold (:meth:`TimeGrid.resized`).

Extraction, the dataset, post-processing and ``uniav predict`` all go through :class:`TimeGrid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

ArrayT = TypeVar("ArrayT")


@dataclass(frozen=True)
class TimeGrid:
    """A feature grid.

    Attributes:
        fps: frames per second of the decoded video.
        stride: frames between consecutive steps (effective value; fractional after resizing).
        window: frames one step covers (effective value).
    """

    fps: float
    stride: float
    window: float

    def __post_init__(self) -> None:
        if not (self.fps > 0 and self.stride > 0 and self.window > 0):
            raise ValueError(f"a time grid needs fps, stride and window > 0, got {self}")

    @classmethod
    def of(cls, data: Any) -> "TimeGrid":
        """The stored grid of a task (anything with ``fps``, ``feat_stride``, ``window_frames``,
        e.g. a :class:`~uniav.config.DatasetTaskConfig`)."""
        return cls(float(data.fps), float(data.feat_stride), float(data.window_frames))

    # ---- resizing --------------------------------------------------------------------------

    def resized(self, stored_steps: int, length: int) -> "TimeGrid":
        """The effective grid after linearly resizing ``stored_steps`` steps to ``length``."""
        effective = ((stored_steps - 1) * self.stride + self.window) / length
        return TimeGrid(self.fps, effective, effective)

    def for_video(self, stored_steps: int, resize_length: int | None) -> "TimeGrid":
        """The grid the model sees for a video: :meth:`resized` when the task resizes."""
        return self.resized(stored_steps, resize_length) if resize_length else self

    # ---- conversions -----------------------------------------------------------------------

    @property
    def offset(self) -> float:
        """Half a window in steps: the grid position of a step's start relative to its centre."""
        return 0.5 * self.window / self.stride

    def to_steps(self, seconds: ArrayT) -> ArrayT:
        """Seconds to grid positions, ``x = (t·fps − 0.5·window) / stride`` (any shape; numpy
        arrays come back as float64, tensors keep their type)."""
        if isinstance(seconds, (list, tuple, float, int)):
            seconds = np.asarray(seconds, dtype=np.float64)
        elif isinstance(seconds, np.ndarray):
            seconds = seconds.astype(np.float64, copy=False)
        return (seconds * self.fps - 0.5 * self.window) / self.stride

    def to_seconds(self, steps: ArrayT, duration: float | None = None) -> ArrayT:
        """Grid positions to seconds, ``t = (x·stride + 0.5·window) / fps``, clamped to
        ``[0, duration]`` when ``duration`` is given."""
        seconds = (steps * self.stride + 0.5 * self.window) / self.fps
        if duration is None:
            return seconds
        if isinstance(seconds, np.ndarray):
            return np.clip(seconds, 0.0, duration)
        return seconds.clamp(min=0.0, max=float(duration))  # a torch tensor

    # ---- lengths ---------------------------------------------------------------------------

    def steps_of_frames(self, num_frames: int) -> int:
        """Steps of a video of ``num_frames`` frames: ``1 + floor((N − window) / stride)``, at
        least 1 (a video shorter than one window gets one step)."""
        if num_frames < self.window:
            return 1
        return 1 + int((num_frames - self.window) // self.stride)

    def step_centres(self, steps: int) -> np.ndarray:
        """(T,) seconds at the centre of each step."""
        return (np.arange(steps) * self.stride + 0.5 * self.window) / self.fps

    def expected_steps(self, duration: float) -> float:
        """Steps a video of ``duration`` seconds should have: ``(duration·fps − window) /
        stride + 1``, at least 1."""
        return max(1.0, (duration * self.fps - self.window) / self.stride + 1.0)

    def covered_seconds(self, steps: int) -> float:
        """Seconds of video that ``steps`` steps cover: ``((T − 1)·stride + window) / fps``."""
        return ((steps - 1) * self.stride + self.window) / self.fps


#: ``|T - expected T|`` (:meth:`TimeGrid.expected_steps`) above this many steps is counted by the
#: dataset's checks (features short / long).
LENGTH_WARN_STEPS = 3
#: Relative part of the hard limit on ``|T - expected T|`` (see :func:`length_limit`).
LENGTH_LIMIT_FRACTION = 0.25
#: Absolute part (steps) of the hard limit on ``|T - expected T|``.
LENGTH_LIMIT_STEPS = 4


def length_limit(expected: float) -> float:
    """Largest tolerated ``|T − expected|`` (steps): 25 % of the expected length plus 4 steps.

    Tolerant on purpose: ActivityNet has videos with missing frames (a comment in the released
    ``anet.py``), whose features are shorter than the duration says."""
    return LENGTH_LIMIT_FRACTION * expected + LENGTH_LIMIT_STEPS
