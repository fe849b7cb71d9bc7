"""The synthetic world's primitives: what each concept looks like and sounds like.

Used by :mod:`uniav.prepare.synthetic` to render the videos planned by
:mod:`uniav.prepare.synthetic_plan` (see docs/synthetic.md for the table of concepts).  It holds:

* drawing helpers - :class:`Canvas` (pixel-centre coordinates of a square frame),
  :func:`per_frame` (per-frame parameters broadcast against the frame), the anti-aliased shapes
  :func:`disc`, :func:`ring` and :func:`box`, and :func:`bounce` (trajectories kept inside the
  frame);
* the visual primitives, one per concept: per-frame opacity of one coloured shape in motion;
* sound helpers - :func:`band_noise`, :func:`harmonics`, :func:`tone_phase`, :func:`bursts`
  (repeated sounds) and :func:`decay` (exponential envelope);
* the audio primitives, one per concept: tones, chirps, noise bands, modulation;
* :class:`Concept` and :data:`CONCEPTS`, which tie each concept name to its colour and its two
  primitives (either may be missing: ``chopping`` is silent, ``blender`` is invisible).

Every primitive draws its jitter (position, speed, pitch, ...) from the generator it is given, so
the output depends only on that generator's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# =============================================================================================
# Drawing helpers.  Coordinates are fractions of the frame (x to the right, y downwards).
# =============================================================================================


@dataclass(frozen=True)
class Canvas:
    """Pixel-centre coordinates of a square frame."""

    size: int

    @property
    def pixel(self) -> float:
        """The width of one pixel as a fraction of the frame."""
        return 1.0 / self.size

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y), each (1, S, S), broadcastable against per-frame (L, 1, 1) parameters."""
        axis = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size
        return axis[None, None, :], axis[None, :, None]


def per_frame(values: np.ndarray | float) -> np.ndarray:
    """Per-frame parameter (L,) -> (L, 1, 1) for broadcasting against the grid."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


def _soft(distance_inside: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (positive inside), about one pixel wide."""
    return np.clip(distance_inside / canvas.pixel + 0.5, 0.0, 1.0)


def disc(canvas: Canvas, cx, cy, radius) -> np.ndarray:
    """Opacity (L, S, S) of a disc; centre and radius are per-frame (L,) values or scalars."""
    x, y = canvas.grid()
    distance = np.sqrt((x - per_frame(cx)) ** 2 + (y - per_frame(cy)) ** 2)
    return _soft(per_frame(radius) - distance, canvas)


def ring(canvas: Canvas, cx, cy, radius, thickness) -> np.ndarray:
    """Opacity (L, S, S) of a ring of the given thickness around ``radius``."""
    x, y = canvas.grid()
    distance = np.sqrt((x - per_frame(cx)) ** 2 + (y - per_frame(cy)) ** 2)
    return _soft(per_frame(thickness) / 2 - np.abs(distance - per_frame(radius)), canvas)


def box(canvas: Canvas, cx, cy, half_w, half_h, angle=0.0) -> np.ndarray:
    """Opacity (L, S, S) of a rectangle of half-sizes (half_w, half_h), rotated by ``angle``."""
    x, y = canvas.grid()
    dx, dy = x - per_frame(cx), y - per_frame(cy)
    cos, sin = np.cos(per_frame(angle)), np.sin(per_frame(angle))
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    inside = np.minimum(per_frame(half_w) - np.abs(along), per_frame(half_h) - np.abs(across))
    return _soft(inside, canvas)


def bounce(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold a free trajectory back into [low, high] (reflecting walls)."""
    span = high - low
    phase = np.mod(position - low, 2 * span)
    return low + np.where(phase > span, 2 * span - phase, phase)


# =============================================================================================
# Visual primitives: each returns per-frame opacity (L, S, S) in [0, 1] of one coloured shape;
# t is the time (seconds) since the instance started, one value per frame.
# =============================================================================================


def _visual_dog(t, rng, canvas):  # brown disc hopping while it walks
    x0, speed = rng.uniform(0.2, 0.8), rng.choice([-1, 1]) * rng.uniform(0.05, 0.1)
    rate, radius = rng.uniform(1.3, 1.8), rng.uniform(0.1, 0.14)
    cx = bounce(x0 + speed * t, 0.15, 0.85)
    cy = 0.72 - 0.25 * np.abs(np.sin(np.pi * rate * t))
    return disc(canvas, cx, cy, radius)


def _visual_violin(t, rng, canvas):  # orange tilted bar bowed left-right
    x0, y0, rate = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.8, 1.2)
    cx = x0 + 0.14 * np.sin(2 * np.pi * rate * t)
    return box(canvas, cx, y0, rng.uniform(0.2, 0.26), 0.05, angle=np.deg2rad(35))


def _visual_vacuum(t, rng, canvas):  # magenta block sweeping the lower half slowly
    rate, phase, cy = rng.uniform(0.25, 0.4), rng.uniform(0, 2 * np.pi), rng.uniform(0.65, 0.8)
    cx = 0.5 + 0.3 * np.sin(2 * np.pi * rate * t + phase)
    return box(canvas, cx, cy, rng.uniform(0.14, 0.18), 0.09)


def _visual_brushing(t, rng, canvas):  # small white square jittering fast
    x0, y0 = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)
    cx = x0 + rng.uniform(-0.06, 0.06, size=len(t))
    cy = y0 + rng.uniform(-0.03, 0.03, size=len(t))
    return box(canvas, cx, cy, 0.06, 0.045)


def _visual_dishes(t, rng, canvas):  # three blue discs flickering on and off
    alpha = np.zeros((len(t), canvas.size, canvas.size), dtype=np.float32)
    for _ in range(3):
        cx, cy = rng.uniform(0.15, 0.85), rng.uniform(0.3, 0.85)
        on = rng.random(len(t) // 2 + 1) < 0.6  # a state per two frames (8 Hz)
        visible = np.repeat(on, 2)[: len(t)].astype(np.float32)
        alpha = np.maximum(alpha, disc(canvas, cx, cy, 0.075) * per_frame(visible))
    return alpha


def _visual_drums(t, rng, canvas):  # purple bar struck down on each beat
    rate, x0, y0 = rng.uniform(1.7, 2.3), rng.uniform(0.35, 0.65), rng.uniform(0.3, 0.5)
    beat_phase = np.mod(rate * t, 1.0)
    cy = y0 + 0.2 * np.exp(-6.0 * beat_phase)
    return box(canvas, x0, cy, 0.25, 0.045)


def _visual_chopping(t, rng, canvas):  # yellow upright bar: fast fall, slow lift
    rate, x0 = rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.7)
    phase = np.mod(rate * t, 1.0)
    fall = np.where(phase < 0.25, phase / 0.25, (1.0 - phase) / 0.75)
    return box(canvas, x0, 0.25 + 0.45 * fall, 0.045, 0.16)


def _visual_mowing(t, rng, canvas):  # wide green band with stripes, drifting across
    x, y = canvas.grid()
    x0, speed = rng.uniform(0.3, 0.7), rng.choice([-1, 1]) * rng.uniform(0.03, 0.06)
    cx = bounce(x0 + speed * t, 0.3, 0.7)
    band = box(canvas, cx, rng.uniform(0.65, 0.8), 0.3, 0.12)
    stripes = 0.65 + 0.35 * np.sin(2 * np.pi * (5 * x - 1.5 * per_frame(t)))
    return band * stripes


def _visual_cat(t, rng, canvas):  # lime ring swaying slowly
    x0, y0, rate = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.6)
    cx = x0 + 0.12 * np.sin(2 * np.pi * rate * t)
    return ring(canvas, cx, y0, rng.uniform(0.13, 0.16), 0.06)


def _visual_speech(t, rng, canvas):  # salmon disc whose size pulses like a talking mouth
    x0, y0, rate = rng.uniform(0.35, 0.65), rng.uniform(0.3, 0.6), rng.uniform(3.5, 4.5)
    radius = 0.11 + 0.05 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return disc(canvas, x0, y0, radius)


def _visual_alarm(t, rng, canvas):  # red square flashing at about 4 Hz
    x0, y0, rate = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.5), rng.uniform(3.5, 4.5)
    on = (np.mod(rate * t, 1.0) < 0.5).astype(np.float32)
    return box(canvas, x0, y0, 0.12, 0.12) * per_frame(on)


def _visual_water(t, rng, canvas):  # cyan column with stripes flowing down
    x, y = canvas.grid()
    x0, speed = rng.uniform(0.3, 0.7), rng.uniform(1.2, 1.8)
    column = box(canvas, x0, 0.5, 0.13, 0.5)
    flow = 0.6 + 0.4 * np.sin(2 * np.pi * (5 * y - speed * per_frame(t)))
    return column * flow


# =============================================================================================
# Sound helpers
# =============================================================================================


def band_noise(n: int, sample_rate: int, low: float, high: float, rng) -> np.ndarray:
    """White noise restricted to [low, high] Hz (FFT mask)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, n)


def harmonics(phase: np.ndarray, count: int, rolloff: float = 1.0) -> np.ndarray:
    """Sum of ``count`` harmonics of an instantaneous phase (radians), amplitude 1/k^rolloff."""
    return sum(np.sin(k * phase) / k ** rolloff for k in range(1, count + 1))


def tone_phase(freq: np.ndarray | float, n: int, sample_rate: int) -> np.ndarray:
    """Instantaneous phase (n,) in radians of a tone of (per-sample or constant) ``freq`` Hz."""
    freq = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return 2 * np.pi * np.cumsum(freq) / sample_rate


def bursts(n: int, sample_rate: int, rng, rate: float, length: float,
            render: Callable[[int], np.ndarray], jitter: float = 0.25) -> np.ndarray:
    """Repeated sounds: about ``rate`` per second, each ``length`` seconds long."""
    out = np.zeros(n)
    burst = int(length * sample_rate)
    position = rng.uniform(0, 0.3) * sample_rate / rate
    while position < n:
        start = int(position)
        count = min(burst, n - start)
        if count > 16:
            out[start:start + count] += render(burst)[:count]
        position += sample_rate / rate * rng.uniform(1 - jitter, 1 + jitter)
    return out


def decay(n: int, sample_rate: int, tau: float) -> np.ndarray:
    """Exponential envelope (n,) falling by 1/e every ``tau`` seconds."""
    return np.exp(-np.arange(n) / (tau * sample_rate))


# =============================================================================================
# Audio primitives: each returns (n,) samples (any scale; normalised by the caller).
# =============================================================================================


def _audio_dog(n, sr, rng):  # harmonic barks, about 2.5 per second
    f0 = rng.uniform(420, 560)

    def bark(m):
        env = np.minimum(1, np.arange(m) / (0.01 * sr)) * decay(m, sr, 0.06)
        glide = f0 * (1 + 0.25 * np.exp(-np.arange(m) / (0.04 * sr)))
        return env * (harmonics(tone_phase(glide, m, sr), 5) + 0.3 * rng.standard_normal(m))
    return bursts(n, sr, rng, rate=rng.uniform(2.0, 3.0), length=0.18, render=bark)


def _audio_violin(n, sr, rng):  # bowed harmonic tone with vibrato
    f0 = rng.uniform(600, 720)
    freq = f0 * (1 + 0.015 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sr))
    return harmonics(tone_phase(freq, n, sr), 6, rolloff=0.8)


def _audio_vacuum(n, sr, rng):  # steady broadband roar with a low hum
    hum = harmonics(tone_phase(rng.uniform(100, 130), n, sr), 4)
    roar = band_noise(n, sr, 300, 3500, rng)
    return roar / (roar.std() + 1e-9) + 0.4 * hum


def _audio_shaver(n, sr, rng):  # buzzing square wave with a fast flutter
    f0 = rng.uniform(150, 190)
    buzz = np.sign(np.sin(tone_phase(f0, n, sr)))
    return buzz * (1 + 0.3 * np.sin(2 * np.pi * 35 * np.arange(n) / sr))


def _audio_dishes(n, sr, rng):  # sparse metallic pings
    def ping(m):
        f = rng.uniform(2500, 4000)
        return decay(m, sr, 0.04) * np.sin(tone_phase(f, m, sr))
    return bursts(n, sr, rng, rate=rng.uniform(4, 7), length=0.15, render=ping, jitter=0.7)


def _audio_water(n, sr, rng):  # bubbling high noise band with slow random swells
    hiss = band_noise(n, sr, 1200, 3200, rng)
    swell = band_noise(n, sr, 2, 8, rng)
    swell = 1 + 0.8 * swell / (np.abs(swell).max() + 1e-9)
    return hiss * swell


def _audio_speech(n, sr, rng):  # voiced harmonics with formant emphasis and 4 Hz syllables
    time = np.arange(n) / sr
    f0 = rng.uniform(110, 180) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * time))
    phase = tone_phase(f0, n, sr)
    voiced = sum(np.sin(k * phase) * (1.5 if 4 <= k <= 7 else 1.0) / k for k in range(1, 13))
    syllables = np.maximum(0, np.sin(2 * np.pi * rng.uniform(3.5, 4.5) * time)) ** 0.7
    return voiced * syllables


def _audio_cat(n, sr, rng):  # rising-falling meows with harmonics
    base = rng.uniform(480, 560)

    def meow(m):
        shape = np.sin(np.pi * np.arange(m) / m)
        freq = base * (1 + 0.7 * shape)
        return shape * harmonics(tone_phase(freq, m, sr), 3)
    return bursts(n, sr, rng, rate=rng.uniform(0.9, 1.2), length=0.65, render=meow, jitter=0.15)


def _audio_alarm(n, sr, rng):  # 2 kHz bell gated at about 10 Hz
    time = np.arange(n) / sr
    tone = harmonics(tone_phase(rng.uniform(1800, 2200), n, sr), 2)
    gate = (np.mod(rng.uniform(9, 11) * time, 1.0) < 0.6).astype(np.float64)
    return tone * gate


def _audio_blender(n, sr, rng):  # low noise band plus a whining motor tone
    whine = np.sin(tone_phase(rng.uniform(850, 1000), n, sr))
    rumble = band_noise(n, sr, 150, 800, rng)
    return rumble / (rumble.std() + 1e-9) + 0.7 * whine


def _audio_frying(n, sr, rng):  # crackles on a high hiss
    hiss = band_noise(n, sr, 3500, 7000, rng)
    crackle = np.zeros(n)
    clicks = rng.integers(0, max(1, n - 80), size=int(rng.uniform(30, 50) * n / sr))
    for start in clicks:
        crackle[start:start + 80] += rng.standard_normal(80) * decay(80, sr, 0.001) * 6
    return 0.3 * hiss / (hiss.std() + 1e-9) + crackle


def _audio_drums(n, sr, rng):  # kick thumps on the beat, snare noise between
    rate = rng.uniform(1.7, 2.3)

    def hit(m):
        kick = decay(m, sr, 0.08) * np.sin(
            tone_phase(70 * (1 + np.exp(-np.arange(m) / (0.02 * sr))), m, sr))
        half = m // 2
        snare = np.zeros(m)
        snare[half:] = 0.6 * decay(m - half, sr, 0.04) * rng.standard_normal(m - half)
        return 2 * kick + snare
    return bursts(n, sr, rng, rate=rate, length=1.0 / rate, render=hit, jitter=0.03)


# =============================================================================================
# Concepts
# =============================================================================================


AudioPrimitive = Callable[[int, int, np.random.Generator], np.ndarray]
VisualPrimitive = Callable[[np.ndarray, np.random.Generator, Canvas], np.ndarray]


@dataclass(frozen=True)
class Concept:
    """A thing that can be seen (``visual``) and/or heard (``audio``) in the synthetic world."""

    name: str
    colour: tuple[float, float, float] | None = None
    visual: VisualPrimitive | None = None
    audio: AudioPrimitive | None = None


#: The concepts by name; the classes of the three tasks share them (see docs/synthetic.md).
CONCEPTS: dict[str, Concept] = {c.name: c for c in [
    Concept("dog", (0.62, 0.36, 0.12), _visual_dog, _audio_dog),
    Concept("violin", (1.0, 0.55, 0.0), _visual_violin, _audio_violin),
    Concept("vacuum", (0.9, 0.15, 0.65), _visual_vacuum, _audio_vacuum),
    Concept("brushing", (1.0, 1.0, 1.0), _visual_brushing, _audio_shaver),
    Concept("dishes", (0.15, 0.35, 1.0), _visual_dishes, _audio_dishes),
    Concept("drums", (0.5, 0.1, 0.85), _visual_drums, _audio_drums),
    Concept("chopping", (0.95, 0.9, 0.1), _visual_chopping, None),
    Concept("mowing", (0.1, 0.6, 0.15), _visual_mowing, None),
    Concept("cat", (0.65, 1.0, 0.2), _visual_cat, _audio_cat),
    Concept("speech", (1.0, 0.62, 0.5), _visual_speech, _audio_speech),
    Concept("alarm", (1.0, 0.05, 0.05), _visual_alarm, _audio_alarm),
    Concept("water", (0.1, 0.9, 0.95), _visual_water, _audio_water),
    Concept("blender", None, None, _audio_blender),
    Concept("frying", None, None, _audio_frying),
]}
