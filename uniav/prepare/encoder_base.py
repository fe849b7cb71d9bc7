"""The feature-encoder contract: the :class:`Encoder` base class and the window conventions.

An encoder maps windows of one modality to fixed-size feature vectors:

* **visual** windows are ``window_frames`` RGB frames, ``(B, W, H, W, 3)`` uint8, at the frame
  size the encoder declares (``frame_size``; the decoder resizes to it);
* **audio** windows are 1 s of mono audio, ``(B, sample_rate)`` float32 in [-1, 1]
  (:func:`audio_window_samples` samples).

Each encoder has a ``name``, a ``modality``, a declared output ``dim`` and two entry points:
:meth:`Encoder.encode_windows` (a batch of windows -> ``(B, dim)``) and
:meth:`Encoder.encode_clip` (a whole clip plus window start positions -> ``(T, dim)``).  The
default ``encode_clip`` cuts the windows out with :func:`gather_windows` (padding past the ends:
visual windows repeat the edge frame, audio windows are padded with silence) and calls
``encode_windows`` in batches; the built-in encoders (:mod:`uniav.prepare.encoder_builtins`)
override it to compute per-frame work once for overlapping windows, giving the same numbers (the
tests check that both paths agree).  :mod:`uniav.prepare.encoders` looks encoders up by name.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MODALITIES = ("visual", "audio")
#: Square frame size of visual windows unless an encoder declares another.
DEFAULT_FRAME_SIZE = 32
#: Sample rate of audio windows unless an encoder declares another.
DEFAULT_SAMPLE_RATE = 16000
#: Length of an audio window (centred on the feature step's time).
AUDIO_WINDOW_SECONDS = 1.0


class Encoder:
    """Base class: a named encoder of one modality with a declared output dimension.

    Attributes:
        name: registry name.
        modality: ``visual`` or ``audio``.
        dim: length of the feature vector of one window.
        frame_size: (visual) square frame size the windows must have.
        sample_rate: (audio) sample rate of the windows; a window is one second long.
        batch_size: windows per call of :meth:`encode_windows` in the default clip path.
    """

    name: str = ""
    modality: str = ""
    dim: int = 0
    frame_size: int = DEFAULT_FRAME_SIZE
    sample_rate: int = DEFAULT_SAMPLE_RATE
    batch_size: int = 64
    description: str = ""

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        """Encode a batch of windows.

        Args:
            windows: visual (B, W, H, W, 3) uint8 or audio (B, S) float32.

        Returns:
            (B, dim) float32.
        """
        raise NotImplementedError

    def encode_clip(self, signal: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """Encode the windows ``signal[start:start + length]`` of one clip.

        Args:
            signal: the clip along its first axis: frames (N, H, W, 3) or samples (S,).
            starts: (T,) window start positions (may be negative or run past the end).
            length: window length in frames or samples.

        Returns:
            (T, dim) float32.
        """
        outputs = []
        for first in range(0, len(starts), self.batch_size):
            batch = gather_windows(signal, starts[first:first + self.batch_size], length,
                                   pad="edge" if self.modality == "visual" else "zeros")
            outputs.append(self.encode_windows(batch))
        if not outputs:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32, copy=False)

    def info(self) -> dict[str, Any]:
        """Plain description for listings."""
        return {"name": self.name, "modality": self.modality, "dim": self.dim,
                "input": (f"{self.frame_size}x{self.frame_size} RGB frames"
                          if self.modality == "visual"
                          else f"1 s of mono audio at {self.sample_rate} Hz"),
                "description": self.description}


def gather_windows(signal: np.ndarray, starts: np.ndarray, length: int,
                   pad: str = "zeros") -> np.ndarray:
    """Cut windows out of a clip, padding beyond its ends.

    Args:
        signal: (N, ...) clip.
        starts: (B,) start positions, possibly < 0 or with ``start + length > N``.
        length: window length.
        pad: ``edge`` repeats the first/last element, ``zeros`` pads with zeros.

    Returns:
        (B, length, ...) windows.
    """
    starts = np.asarray(starts, dtype=np.int64)
    index = starts[:, None] + np.arange(length)[None, :]  # (B, length)
    if pad == "edge":
        return signal[np.clip(index, 0, len(signal) - 1)]
    inside = (index >= 0) & (index < len(signal))
    windows = signal[np.clip(index, 0, max(len(signal) - 1, 0))] if len(signal) else \
        np.zeros(index.shape + signal.shape[1:], dtype=signal.dtype)
    windows = np.where(inside.reshape(inside.shape + (1,) * (signal.ndim - 1)), windows, 0)
    return windows.astype(signal.dtype, copy=False)


def audio_window_samples(encoder: Encoder) -> int:
    """Samples in one audio window.

    Args:
        encoder: an audio encoder.

    Returns:
        1 s worth of samples at the encoder's ``sample_rate``.
    """
    return int(math.floor(AUDIO_WINDOW_SECONDS * encoder.sample_rate + 0.5))
