"""The built-in feature encoders: ``colour_motion`` (visual) and ``logmel`` (audio).

Neither needs downloaded weights; both follow the window conventions of
:mod:`uniav.prepare.encoder_base` and are registered by name in :mod:`uniav.prepare.encoders`
(docs/synthetic.md, "Feature grid and encoders", describes them for readers of the benchmark).

:class:`ColourMotionEncoder` - ``colour_motion`` (visual, 119-d)
    per frame: mean colour on a 4x4 grid, a soft hue histogram of saturated pixels (12 bins) plus
    the fraction of white pixels, area/centroid/spread of the chromatic pixels and their mean
    colour; per window: the means of those, the standard deviations of the histogram and of the
    shape statistics, frame-difference energy on the grid, centroid velocity, area change and
    the power of the area, centroid and motion signals in the 1-2 / 3-4 / 5-8 cycles-per-window
    bands (Hz for 16-frame windows at 16 fps).
:class:`LogMelEncoder` - ``logmel`` (audio, 91-d)
    log-mel spectrogram (25 ms Hann frames, 10 ms hop, 40 bands 50-7800 Hz, filters from
    :func:`mel_filterbank`) of the 1 s window; per band mean and standard deviation, spectral
    flux, modulation power of the frame energy (1-3, 3-6, 6-12, 12-25 Hz), spectral centroid
    mean/std/slope, flatness and peakiness.

Both override :meth:`~uniav.prepare.encoder_base.Encoder.encode_clip` to compute the per-frame
work once per clip and gather the windows from it.
"""

from __future__ import annotations

import numpy as np

from uniav.prepare.encoder_base import DEFAULT_FRAME_SIZE, DEFAULT_SAMPLE_RATE, Encoder

# =============================================================================================
# colour_motion
# =============================================================================================

_GRID = 4
_HUE_BINS = 12


class ColourMotionEncoder(Encoder):
    """Visual statistics of a window: colour layout, hue histogram, chromatic blob shape and
    motion (see module docs).  Needs no weights."""

    name = "colour_motion"
    modality = "visual"
    frame_size = DEFAULT_FRAME_SIZE
    description = ("grid colour means, hue histogram, chromatic area/centroid/colour, "
                   "frame-difference energy, centroid velocity, temporal frequency bands")
    #: per-frame descriptor: 48 grid colours + 12 hue bins + white + 4 shape + 3 colour
    _FRAME_DIM = _GRID * _GRID * 3 + _HUE_BINS + 1 + 4 + 3
    #: per frame pair: 16 grid motion energies + the global one
    _PAIR_DIM = _GRID * _GRID + 1
    dim = _FRAME_DIM + (_HUE_BINS + 1 + 4) + _PAIR_DIM + 4 + 1 + 12

    def _check(self, frames: np.ndarray) -> None:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % _GRID \
                or frames.shape[2] % _GRID:
            raise ValueError(f"{self.name}: expected (N, H, W, 3) frames with H and W divisible "
                             f"by {_GRID}, got {frames.shape}")

    def frame_descriptors(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame and per-consecutive-pair descriptors.

        Args:
            frames: (N, H, W, 3) uint8.

        Returns:
            ``(per_frame (N, F), per_pair (N - 1, P))`` float32.
        """
        self._check(frames)
        count, height, width, _ = frames.shape
        rgb = frames.astype(np.float32) * np.float32(1 / 255)
        red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        # reductions over the 3 colour values and the grid cells are written as element-wise
        # operations and matrix products: numpy reduces short inner axes slowly
        row_pool = _pooling_matrix(height)  # (4, H)
        col_pool = _pooling_matrix(width)  # (4, W)
        # (N, H, W, 3) -> (N, 3, H, W) -> (N, 3, 4, 4) -> (N, 4, 4, 3) -> (N, 48)
        grid_means = (row_pool @ rgb.transpose(0, 3, 1, 2) @ col_pool.T).transpose(0, 2, 3, 1)
        grid_means = grid_means.reshape(count, -1)
        value = np.maximum(np.maximum(red, green), blue)
        chroma = value - np.minimum(np.minimum(red, green), blue)
        saturation = chroma / (value + 1e-6)
        chromatic = np.clip((saturation - 0.3) / 0.2, 0, 1) * np.clip((value - 0.25) / 0.2, 0, 1)
        white = ((saturation < 0.15) & (value > 0.85)).astype(np.float32)
        hue = np.arctan2(np.sqrt(3.0, dtype=np.float32) * (green - blue), 2 * red - green - blue)
        position = (hue * np.float32(1 / (2 * np.pi)) % 1.0) * _HUE_BINS  # (N, H, W) in [0, 12)
        lower = np.floor(position)
        upper_weight = (position - lower).reshape(count, -1)
        lower = lower.astype(np.int64).reshape(count, -1) % _HUE_BINS
        weight = chromatic.reshape(count, -1)
        offsets = _HUE_BINS * np.arange(count)[:, None]
        pixels = height * width
        histogram = np.bincount((lower + offsets).ravel(),
                                weights=(weight * (1 - upper_weight)).ravel(),
                                minlength=count * _HUE_BINS)
        histogram += np.bincount(((lower + 1) % _HUE_BINS + offsets).ravel(),
                                 weights=(weight * upper_weight).ravel(),
                                 minlength=count * _HUE_BINS)
        histogram = histogram.reshape(count, _HUE_BINS) / pixels
        white_fraction = white.reshape(count, -1).mean(axis=1, keepdims=True)
        salient = chromatic + white  # (N, H, W): class primitives are saturated or white
        column_mass = salient.sum(axis=1)  # (N, W)
        row_mass = salient.sum(axis=2)  # (N, H)
        # a phantom weight of 1e-3 at the centre keeps the centroid defined on empty frames
        mass = column_mass.sum(axis=1) + 1e-3
        ys = (np.arange(height, dtype=np.float32) + 0.5) / height
        xs = (np.arange(width, dtype=np.float32) + 0.5) / width
        cx = (column_mass @ xs + 0.5e-3) / mass
        cy = (row_mass @ ys + 0.5e-3) / mass
        spread_x = (column_mass * (xs[None, :] - cx[:, None]) ** 2).sum(axis=1) / mass
        spread_y = (row_mass * (ys[None, :] - cy[:, None]) ** 2).sum(axis=1) / mass
        spread = np.sqrt(spread_x + spread_y)
        area = mass / pixels
        # (N, 1, H*W) @ (N, H*W, 3) -> (N, 3)
        blob_colour = (salient.reshape(count, 1, -1) @ rgb.reshape(count, -1, 3))[:, 0]
        blob_colour = blob_colour / mass[:, None]
        per_frame = np.concatenate(
            [grid_means, histogram, white_fraction,
             np.stack([area, cx, cy, spread], axis=1), blob_colour], axis=1)
        if count > 1:
            # (N-1, H, W, 3) absolute change -> mean over colours (N-1, H, W)
            delta = np.abs(rgb[1:] - rgb[:-1])
            change = (delta[..., 0] + delta[..., 1] + delta[..., 2]) * np.float32(1 / 3)
            cell_energy = (row_pool @ change @ col_pool.T).reshape(count - 1, -1)  # (N-1, 16)
            per_pair = np.concatenate([cell_energy, cell_energy.mean(axis=1, keepdims=True)],
                                      axis=1)
        else:
            per_pair = np.zeros((0, self._PAIR_DIM), dtype=np.float32)
        return per_frame.astype(np.float32), per_pair.astype(np.float32)

    def window_features(self, per_frame: np.ndarray, per_pair: np.ndarray) -> np.ndarray:
        """Aggregate descriptors of windows.

        Args:
            per_frame: (B, W, F) descriptors of the frames of each window.
            per_pair: (B, W - 1, P) descriptors of consecutive frame pairs inside each window.

        Returns:
            (B, dim) float32.
        """
        batch, length, _ = per_frame.shape
        hist_end = _GRID * _GRID * 3 + _HUE_BINS + 1
        shape_stats = per_frame[:, :, hist_end:hist_end + 4]  # area, cx, cy, spread
        means = per_frame.mean(axis=1)
        spreads = np.concatenate([per_frame[:, :, _GRID * _GRID * 3:hist_end].std(axis=1),
                                  shape_stats.std(axis=1)], axis=1)
        if length > 1:
            motion = per_pair.mean(axis=1)
            velocity = np.diff(shape_stats[:, :, 1:3], axis=1)  # (B, W-1, 2)
            area_change = np.abs(np.diff(shape_stats[:, :, 0], axis=1)).mean(axis=1)
            velocity_stats = np.concatenate([np.abs(velocity).mean(axis=1),
                                             velocity.mean(axis=1)], axis=1)
            global_motion = np.concatenate([per_pair[:, :, -1], per_pair[:, -1:, -1]], axis=1)
            signals = np.stack([shape_stats[:, :, 0], shape_stats[:, :, 1], shape_stats[:, :, 2],
                                global_motion], axis=1)  # (B, 4, W)
            # frequencies in cycles per window (= Hz for 16-frame windows at 16 fps)
            bands = _band_powers(signals, sample_rate=float(length),
                                 edges=((1, 2), (3, 4), (5, 8)))  # (B, 4, 3)
            bands = np.log1p(1e3 * bands).reshape(batch, -1)
        else:
            motion = np.zeros((batch, self._PAIR_DIM), dtype=np.float32)
            velocity_stats = np.zeros((batch, 4), dtype=np.float32)
            area_change = np.zeros(batch, dtype=np.float32)
            bands = np.zeros((batch, 12), dtype=np.float32)
        features = np.concatenate([means, spreads, motion, velocity_stats, area_change[:, None],
                                   bands], axis=1)
        return features.astype(np.float32)

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        batch, length = windows.shape[:2]
        per_frame, per_pair = self.frame_descriptors(windows.reshape(-1, *windows.shape[2:]))
        per_frame = per_frame.reshape(batch, length, -1)  # (B*W, F) -> (B, W, F)
        # pairs that straddle two windows are dropped: (B*W-1, P) -> (B, W-1, P)
        padded = np.concatenate([per_pair, np.zeros((1, per_pair.shape[1]), np.float32)])
        per_pair = padded.reshape(batch, length, -1)[:, :-1]
        return self.window_features(per_frame, per_pair)

    def encode_clip(self, signal: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        index = np.clip(starts[:, None] + np.arange(length)[None, :], 0, len(signal) - 1)
        if (np.diff(index, axis=1) != 1).any():  # edge padding repeats frames: exact fallback
            return super().encode_clip(signal, starts, length)
        per_frame, per_pair = self.frame_descriptors(signal)
        # (T, W) frame indices -> (T, W, F); pairs (T, W-1) -> (T, W-1, P)
        return self.window_features(per_frame[index], per_pair[index[:, :-1]])


def _pooling_matrix(size: int) -> np.ndarray:
    """(4, size) matrix averaging ``size`` pixels into 4 equal cells."""
    pool = np.zeros((_GRID, size), dtype=np.float32)
    cell = size // _GRID
    for i in range(_GRID):
        pool[i, i * cell:(i + 1) * cell] = 1.0 / cell
    return pool


def _band_powers(signals: np.ndarray, sample_rate: float,
                 edges: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Mean power of the de-meaned signals (..., L) in frequency bands [low, high] Hz."""
    length = signals.shape[-1]
    centred = signals - signals.mean(axis=-1, keepdims=True)
    power = np.abs(np.fft.rfft(centred, axis=-1)) ** 2 / length
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    out = [power[..., (freqs >= low) & (freqs <= high)].mean(axis=-1)
           if ((freqs >= low) & (freqs <= high)).any() else np.zeros(power.shape[:-1])
           for low, high in edges]
    return np.stack(out, axis=-1)


# =============================================================================================
# logmel
# =============================================================================================


def mel_filterbank(sample_rate: int, n_fft: int, bands: int, low: float,
                   high: float) -> np.ndarray:
    """Triangular mel filters on the HTK mel scale.

    Args:
        sample_rate: audio rate in Hz.
        n_fft: FFT size.
        bands: number of mel bands.
        low: lowest band edge in Hz.
        high: highest band edge in Hz.

    Returns:
        (n_fft // 2 + 1, bands) float32 weights (power spectrum @ weights = band energies).
    """
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def to_hz(mel):
        return 700.0 * (10 ** (np.asarray(mel) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(low), to_mel(high), bands + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (bands, bins)
    return weights.T.astype(np.float32)


class LogMelEncoder(Encoder):
    """Statistics of the log-mel spectrogram of a 1 s window (see module docs).  No weights."""

    name = "logmel"
    modality = "audio"
    sample_rate = DEFAULT_SAMPLE_RATE
    description = ("log-mel band means and stds, spectral flux, energy modulation bands, "
                   "spectral centroid mean/std/slope, flatness, peakiness")
    bands = 40
    frame_length = 400  # 25 ms at 16 kHz
    hop = 160  # 10 ms
    n_fft = 512
    dim = 2 * bands + 2 + 4 + 3 + 1 + 1
    batch_size = 32

    def __init__(self):
        self._filters = mel_filterbank(self.sample_rate, self.n_fft, self.bands, 50.0, 7800.0)
        self._window = np.hanning(self.frame_length + 2)[1:-1].astype(np.float32)

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel frames of signals.

        Args:
            samples: (..., S) float audio.

        Returns:
            (..., F, bands) float32 with F = 1 + (S - 400) // 160 frames.
        """
        count = 1 + (samples.shape[-1] - self.frame_length) // self.hop
        index = np.arange(count)[:, None] * self.hop + np.arange(self.frame_length)[None, :]
        frames = samples[..., index] * self._window  # (..., F, 400)
        power = np.abs(np.fft.rfft(frames, n=self.n_fft, axis=-1)) ** 2  # (..., F, 257)
        return np.log(power.astype(np.float32) @ self._filters + 1e-6)

    def window_features(self, log_mel: np.ndarray) -> np.ndarray:
        """Aggregate the log-mel frames of windows.

        Args:
            log_mel: (B, F, bands) log-mel frames of each window.

        Returns:
            (B, dim) float32.
        """
        frames = log_mel.shape[1]
        band_means = log_mel.mean(axis=1)
        band_stds = log_mel.std(axis=1)
        flux = np.maximum(np.diff(log_mel, axis=1), 0).sum(axis=2) / self.bands  # (B, F-1)
        linear = np.exp(log_mel)  # (B, F, bands)
        energy = np.log(linear.sum(axis=2) + 1e-6)  # (B, F)
        modulation = np.log1p(_band_powers(energy, sample_rate=self.sample_rate / self.hop,
                                           edges=((1, 3), (3, 6), (6, 12), (12, 25))))
        weights = linear / (linear.sum(axis=2, keepdims=True) + 1e-9)
        centroid = (weights * np.arange(self.bands)).sum(axis=2) / self.bands  # (B, F)
        time = np.linspace(-1.0, 1.0, frames)
        slope = ((centroid - centroid.mean(axis=1, keepdims=True)) * time).sum(axis=1) \
            / (time ** 2).sum()
        flatness = np.exp(log_mel.mean(axis=2)) / (linear.mean(axis=2) + 1e-9)
        peakiness = energy.max(axis=1) - energy.mean(axis=1)
        features = np.concatenate([
            band_means, band_stds, np.stack([flux.mean(axis=1), flux.std(axis=1)], axis=1),
            modulation, np.stack([centroid.mean(axis=1), centroid.std(axis=1), slope,
                                  flatness.mean(axis=1), peakiness], axis=1)], axis=1)
        return features.astype(np.float32)

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2:
            raise ValueError(f"{self.name}: expected (B, samples) windows, got {windows.shape}")
        return self.window_features(self.log_mel(windows))

    def encode_clip(self, signal: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        starts = np.asarray(starts, dtype=np.int64)
        if len(starts) == 0 or (starts % self.hop).any() or length < self.frame_length:
            return super().encode_clip(signal, starts, length)
        # one spectrogram for the whole clip, zero-padded so every window lies inside it
        before = max(0, -int(starts.min()))
        before += (-before) % self.hop
        after = max(0, int(starts.max()) + length - len(signal))
        padded = np.concatenate([np.zeros(before, np.float32), signal.astype(np.float32),
                                 np.zeros(after, np.float32)])
        log_mel = self.log_mel(padded)  # (F_clip, bands)
        per_window = 1 + (length - self.frame_length) // self.hop
        first = (starts + before) // self.hop
        index = first[:, None] + np.arange(per_window)[None, :]  # (T, F)
        return self.window_features(log_mel[index])  # (T, F, bands) -> (T, dim)
