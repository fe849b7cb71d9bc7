"""The embedded synthetic benchmark: raw media and annotations generated from a seed.

Three datasets shaped like the paper's (DESIGN section 4.1), each written as one MP4 per video
(H.264 video at 16 fps, square frames of ``media.frame_size`` pixels, AAC mono audio at 16 kHz)
plus an ActivityNet-style annotation JSON (see :mod:`uniav.data.annotations`):

=======  ==========  ==============================  ==========================================
task     duration    instances per video             modality of the instances
=======  ==========  ==============================  ==========================================
``tal``  30-60 s     1-4 actions, 3-20 s, disjoint   visual; the audio is unrelated background
``sed``  10 s        1-4 events, 0.6-9 s, may        audio; the video is unrelated background
                     overlap (different classes)
``avel`` 12-25 s     1-3 events, 1.5-6 s, plus 1-2   both at once; a distractor is the *same*
                     distractors, all disjoint       primitive in one modality only (not an event)
=======  ==========  ==============================  ==========================================

**Concepts and primitives.**  Every class is tied to a *concept* (``dog``, ``violin``,
``vacuum``, ...) that has a visual primitive (a colour, a shape and a motion, e.g. a brown disc
hopping) and an audio primitive (tones, chirps, noise bands, modulation, e.g. harmonic barks at
about 2.5 per second).  The same concept appears across tasks - ``Walking the dog`` (tal) shows the
dog primitive, ``Dog`` (sed) sounds it, ``dog barking`` (avel) shows and sounds it - so what one
task learns transfers to the others, as in the paper's multi-task setting.

**Nuisances.**  Per video: a background colour, a drifting gradient, pixel noise and
desaturated "clutter" blobs; pink background noise and random non-class tone blips.  Per instance:
colour, size, position, speed, pitch and loudness (6-18 dB above the background) jitter.

**Determinism.**  Each video draws from its own generator seeded with
``(datasets.synthetic.seed, crc32(task), split, index)``: the plan (durations, instances) from one
stream and the pixels and samples from another, so a video is the same whether it is generated
alone or with the others, and an interrupted run resumes with identical files.

**Files.**  ``<media dir>/<video_id>.mp4``, video ids ``<task>_<subset>_<index>``; the annotation
file (written last) has a top-level ``classes`` list and, per video, ``subset``, ``duration``,
``fps``, ``annotations`` and - for avel - ``distractors`` (segments of one-modality primitives,
with their ``modality``; :func:`~uniav.data.annotations.load_annotations` ignores them).  Its
``synthetic`` record (generator version, seed, sizes, media settings and their fingerprint) lets
a rerun keep complete outputs; ``<media dir>/.synthetic.json`` holds the same record so that
media files of an interrupted run are reused only when they were made with the same settings.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from uniav.config import Config, DatasetTaskConfig, MediaConfig, config_hash
from uniav.prepare.parallel import parallel_map
from uniav.errors import ConfigError
from uniav.fileio import atomic_write_json, read_json_object

LOG = logging.getLogger(__name__)

#: Bump when the generated data changes, so existing outputs are regenerated.
GENERATOR_VERSION = 1
SIDECAR = ".synthetic.json"

# =============================================================================================
# Visual primitives: each returns per-frame opacity (L, S, S) in [0, 1] of one coloured shape.
# Coordinates are fractions of the frame (x to the right, y downwards); t is the time (seconds)
# since the instance started, one value per frame.
# =============================================================================================


@dataclass(frozen=True)
class Canvas:
    """Pixel-centre coordinates of a square frame."""

    size: int

    @property
    def pixel(self) -> float:
        return 1.0 / self.size

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y), each (1, S, S), broadcastable against per-frame (L, 1, 1) parameters."""
        axis = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size
        return axis[None, None, :], axis[None, :, None]


def _col(values: np.ndarray | float) -> np.ndarray:
    """Per-frame parameter (L,) -> (L, 1, 1) for broadcasting against the grid."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


def _soft(distance_inside: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Anti-aliased coverage from a signed distance (positive inside), about one pixel wide."""
    return np.clip(distance_inside / canvas.pixel + 0.5, 0.0, 1.0)


def _disc(canvas: Canvas, cx, cy, radius) -> np.ndarray:
    x, y = canvas.grid()
    distance = np.sqrt((x - _col(cx)) ** 2 + (y - _col(cy)) ** 2)
    return _soft(_col(radius) - distance, canvas)


def _ring(canvas: Canvas, cx, cy, radius, thickness) -> np.ndarray:
    x, y = canvas.grid()
    distance = np.sqrt((x - _col(cx)) ** 2 + (y - _col(cy)) ** 2)
    return _soft(_col(thickness) / 2 - np.abs(distance - _col(radius)), canvas)


def _box(canvas: Canvas, cx, cy, half_w, half_h, angle=0.0) -> np.ndarray:
    x, y = canvas.grid()
    dx, dy = x - _col(cx), y - _col(cy)
    cos, sin = np.cos(_col(angle)), np.sin(_col(angle))
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    inside = np.minimum(_col(half_w) - np.abs(along), _col(half_h) - np.abs(across))
    return _soft(inside, canvas)


def _bounce(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Fold a free trajectory back into [low, high] (reflecting walls)."""
    span = high - low
    phase = np.mod(position - low, 2 * span)
    return low + np.where(phase > span, 2 * span - phase, phase)


def _visual_dog(t, rng, canvas):  # brown disc hopping while it walks
    x0, speed = rng.uniform(0.2, 0.8), rng.choice([-1, 1]) * rng.uniform(0.05, 0.1)
    rate, radius = rng.uniform(1.3, 1.8), rng.uniform(0.1, 0.14)
    cx = _bounce(x0 + speed * t, 0.15, 0.85)
    cy = 0.72 - 0.25 * np.abs(np.sin(np.pi * rate * t))
    return _disc(canvas, cx, cy, radius)


def _visual_violin(t, rng, canvas):  # orange tilted bar bowed left-right
    x0, y0, rate = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.8, 1.2)
    cx = x0 + 0.14 * np.sin(2 * np.pi * rate * t)
    return _box(canvas, cx, y0, rng.uniform(0.2, 0.26), 0.05, angle=np.deg2rad(35))


def _visual_vacuum(t, rng, canvas):  # magenta block sweeping the lower half slowly
    rate, phase, cy = rng.uniform(0.25, 0.4), rng.uniform(0, 2 * np.pi), rng.uniform(0.65, 0.8)
    cx = 0.5 + 0.3 * np.sin(2 * np.pi * rate * t + phase)
    return _box(canvas, cx, cy, rng.uniform(0.14, 0.18), 0.09)


def _visual_brushing(t, rng, canvas):  # small white square jittering fast
    x0, y0 = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.6)
    cx = x0 + rng.uniform(-0.06, 0.06, size=len(t))
    cy = y0 + rng.uniform(-0.03, 0.03, size=len(t))
    return _box(canvas, cx, cy, 0.06, 0.045)


def _visual_dishes(t, rng, canvas):  # three blue discs flickering on and off
    alpha = np.zeros((len(t), canvas.size, canvas.size), dtype=np.float32)
    for _ in range(3):
        cx, cy = rng.uniform(0.15, 0.85), rng.uniform(0.3, 0.85)
        on = rng.random(len(t) // 2 + 1) < 0.6  # a state per two frames (8 Hz)
        visible = np.repeat(on, 2)[: len(t)].astype(np.float32)
        alpha = np.maximum(alpha, _disc(canvas, cx, cy, 0.075) * _col(visible))
    return alpha


def _visual_drums(t, rng, canvas):  # purple bar struck down on each beat
    rate, x0, y0 = rng.uniform(1.7, 2.3), rng.uniform(0.35, 0.65), rng.uniform(0.3, 0.5)
    beat_phase = np.mod(rate * t, 1.0)
    cy = y0 + 0.2 * np.exp(-6.0 * beat_phase)
    return _box(canvas, x0, cy, 0.25, 0.045)


def _visual_chopping(t, rng, canvas):  # yellow upright bar: fast fall, slow lift
    rate, x0 = rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.7)
    phase = np.mod(rate * t, 1.0)
    fall = np.where(phase < 0.25, phase / 0.25, (1.0 - phase) / 0.75)
    return _box(canvas, x0, 0.25 + 0.45 * fall, 0.045, 0.16)


def _visual_mowing(t, rng, canvas):  # wide green band with stripes, drifting across
    x, y = canvas.grid()
    x0, speed = rng.uniform(0.3, 0.7), rng.choice([-1, 1]) * rng.uniform(0.03, 0.06)
    cx = _bounce(x0 + speed * t, 0.3, 0.7)
    band = _box(canvas, cx, rng.uniform(0.65, 0.8), 0.3, 0.12)
    stripes = 0.65 + 0.35 * np.sin(2 * np.pi * (5 * x - 1.5 * _col(t)))
    return band * stripes


def _visual_cat(t, rng, canvas):  # lime ring swaying slowly
    x0, y0, rate = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.6)
    cx = x0 + 0.12 * np.sin(2 * np.pi * rate * t)
    return _ring(canvas, cx, y0, rng.uniform(0.13, 0.16), 0.06)


def _visual_speech(t, rng, canvas):  # salmon disc whose size pulses like a talking mouth
    x0, y0, rate = rng.uniform(0.35, 0.65), rng.uniform(0.3, 0.6), rng.uniform(3.5, 4.5)
    radius = 0.11 + 0.05 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return _disc(canvas, x0, y0, radius)


def _visual_alarm(t, rng, canvas):  # red square flashing at about 4 Hz
    x0, y0, rate = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.5), rng.uniform(3.5, 4.5)
    on = (np.mod(rate * t, 1.0) < 0.5).astype(np.float32)
    return _box(canvas, x0, y0, 0.12, 0.12) * _col(on)


def _visual_water(t, rng, canvas):  # cyan column with stripes flowing down
    x, y = canvas.grid()
    x0, speed = rng.uniform(0.3, 0.7), rng.uniform(1.2, 1.8)
    column = _box(canvas, x0, 0.5, 0.13, 0.5)
    flow = 0.6 + 0.4 * np.sin(2 * np.pi * (5 * y - speed * _col(t)))
    return column * flow


# =============================================================================================
# Audio primitives: each returns (n,) samples (any scale; normalised by the caller).
# =============================================================================================


def _band_noise(n: int, sample_rate: int, low: float, high: float, rng) -> np.ndarray:
    """White noise restricted to [low, high] Hz (FFT mask)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, n)


def _harmonics(phase: np.ndarray, count: int, rolloff: float = 1.0) -> np.ndarray:
    """Sum of ``count`` harmonics of an instantaneous phase (radians), amplitude 1/k^rolloff."""
    return sum(np.sin(k * phase) / k ** rolloff for k in range(1, count + 1))


def _phase(freq: np.ndarray | float, n: int, sample_rate: int) -> np.ndarray:
    freq = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return 2 * np.pi * np.cumsum(freq) / sample_rate


def _bursts(n: int, sample_rate: int, rng, rate: float, length: float,
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


def _decay(n: int, sample_rate: int, tau: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau * sample_rate))


def _audio_dog(n, sr, rng):  # harmonic barks, about 2.5 per second
    f0 = rng.uniform(420, 560)

    def bark(m):
        env = np.minimum(1, np.arange(m) / (0.01 * sr)) * _decay(m, sr, 0.06)
        glide = f0 * (1 + 0.25 * np.exp(-np.arange(m) / (0.04 * sr)))
        return env * (_harmonics(_phase(glide, m, sr), 5) + 0.3 * rng.standard_normal(m))
    return _bursts(n, sr, rng, rate=rng.uniform(2.0, 3.0), length=0.18, render=bark)


def _audio_violin(n, sr, rng):  # bowed harmonic tone with vibrato
    f0 = rng.uniform(600, 720)
    freq = f0 * (1 + 0.015 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sr))
    return _harmonics(_phase(freq, n, sr), 6, rolloff=0.8)


def _audio_vacuum(n, sr, rng):  # steady broadband roar with a low hum
    hum = _harmonics(_phase(rng.uniform(100, 130), n, sr), 4)
    roar = _band_noise(n, sr, 300, 3500, rng)
    return roar / (roar.std() + 1e-9) + 0.4 * hum


def _audio_shaver(n, sr, rng):  # buzzing square wave with a fast flutter
    f0 = rng.uniform(150, 190)
    buzz = np.sign(np.sin(_phase(f0, n, sr)))
    return buzz * (1 + 0.3 * np.sin(2 * np.pi * 35 * np.arange(n) / sr))


def _audio_dishes(n, sr, rng):  # sparse metallic pings
    def ping(m):
        f = rng.uniform(2500, 4000)
        return _decay(m, sr, 0.04) * np.sin(_phase(f, m, sr))
    return _bursts(n, sr, rng, rate=rng.uniform(4, 7), length=0.15, render=ping, jitter=0.7)


def _audio_water(n, sr, rng):  # bubbling high noise band with slow random swells
    hiss = _band_noise(n, sr, 1200, 3200, rng)
    swell = _band_noise(n, sr, 2, 8, rng)
    swell = 1 + 0.8 * swell / (np.abs(swell).max() + 1e-9)
    return hiss * swell


def _audio_speech(n, sr, rng):  # voiced harmonics with formant emphasis and 4 Hz syllables
    time = np.arange(n) / sr
    f0 = rng.uniform(110, 180) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * time))
    phase = _phase(f0, n, sr)
    voiced = sum(np.sin(k * phase) * (1.5 if 4 <= k <= 7 else 1.0) / k for k in range(1, 13))
    syllables = np.maximum(0, np.sin(2 * np.pi * rng.uniform(3.5, 4.5) * time)) ** 0.7
    return voiced * syllables


def _audio_cat(n, sr, rng):  # rising-falling meows with harmonics
    base = rng.uniform(480, 560)

    def meow(m):
        shape = np.sin(np.pi * np.arange(m) / m)
        freq = base * (1 + 0.7 * shape)
        return shape * _harmonics(_phase(freq, m, sr), 3)
    return _bursts(n, sr, rng, rate=rng.uniform(0.9, 1.2), length=0.65, render=meow, jitter=0.15)


def _audio_alarm(n, sr, rng):  # 2 kHz bell gated at about 10 Hz
    time = np.arange(n) / sr
    tone = _harmonics(_phase(rng.uniform(1800, 2200), n, sr), 2)
    gate = (np.mod(rng.uniform(9, 11) * time, 1.0) < 0.6).astype(np.float64)
    return tone * gate


def _audio_blender(n, sr, rng):  # low noise band plus a whining motor tone
    whine = np.sin(_phase(rng.uniform(850, 1000), n, sr))
    rumble = _band_noise(n, sr, 150, 800, rng)
    return rumble / (rumble.std() + 1e-9) + 0.7 * whine


def _audio_frying(n, sr, rng):  # crackles on a high hiss
    hiss = _band_noise(n, sr, 3500, 7000, rng)
    crackle = np.zeros(n)
    clicks = rng.integers(0, max(1, n - 80), size=int(rng.uniform(30, 50) * n / sr))
    for start in clicks:
        crackle[start:start + 80] += rng.standard_normal(80) * _decay(80, sr, 0.001) * 6
    return 0.3 * hiss / (hiss.std() + 1e-9) + crackle


def _audio_drums(n, sr, rng):  # kick thumps on the beat, snare noise between
    rate = rng.uniform(1.7, 2.3)

    def hit(m):
        kick = _decay(m, sr, 0.08) * np.sin(_phase(70 * (1 + np.exp(-np.arange(m) / (0.02 * sr))),
                                                   m, sr))
        half = m // 2
        snare = np.zeros(m)
        snare[half:] = 0.6 * _decay(m - half, sr, 0.04) * rng.standard_normal(m - half)
        return 2 * kick + snare
    return _bursts(n, sr, rng, rate=rate, length=1.0 / rate, render=hit, jitter=0.03)


AudioPrimitive = Callable[[int, int, np.random.Generator], np.ndarray]
VisualPrimitive = Callable[[np.ndarray, np.random.Generator, Canvas], np.ndarray]


@dataclass(frozen=True)
class Concept:
    """A thing that can be seen (``visual``) and/or heard (``audio``) in the synthetic world."""

    name: str
    colour: tuple[float, float, float] | None = None
    visual: VisualPrimitive | None = None
    audio: AudioPrimitive | None = None


#: The concepts; classes of the three tasks share them (see module docs).
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


@dataclass(frozen=True)
class TaskRecipe:
    """What the videos of one synthetic task look like.

    Attributes:
        classes: (class name, concept name, (min, max) instance seconds), in class-list order.
        duration: (min, max) video length in seconds.
        events: (min, max) annotated instances per video.
        modalities: modalities in which an annotated instance is rendered.
        overlap: whether instances may overlap in time (different classes only, at most two).
        distractors: (min, max) one-modality instances that are not annotated.
        clutter_blobs: (min, max) desaturated moving blobs in the background video.
        clutter_sounds: rate (per second) of random non-class tone blips in the background audio.
    """

    classes: tuple[tuple[str, str, tuple[float, float]], ...]
    duration: tuple[float, float]
    events: tuple[int, int]
    modalities: tuple[str, ...]
    overlap: bool = False
    distractors: tuple[int, int] = (0, 0)
    clutter_blobs: tuple[int, int] = (0, 2)
    clutter_sounds: float = 0.15


#: The three tasks; class names are real classes of ActivityNet 1.3, DESED and UnAV-100.
RECIPES: dict[str, TaskRecipe] = {
    "tal": TaskRecipe(
        classes=(("Walking the dog", "dog", (3, 20)), ("Playing violin", "violin", (3, 20)),
                 ("Vacuuming floor", "vacuum", (3, 20)), ("Brushing teeth", "brushing", (3, 20)),
                 ("Washing dishes", "dishes", (3, 20)), ("Playing drums", "drums", (3, 20)),
                 ("Chopping wood", "chopping", (3, 20)), ("Mowing the lawn", "mowing", (3, 20))),
        duration=(30, 60), events=(1, 4), modalities=("visual",), clutter_blobs=(0, 2),
        clutter_sounds=0.4),
    "sed": TaskRecipe(
        classes=(("Alarm_bell_ringing", "alarm", (1.0, 4.0)), ("Blender", "blender", (2.0, 6.0)),
                 ("Cat", "cat", (0.8, 2.5)), ("Dishes", "dishes", (0.6, 2.5)),
                 ("Dog", "dog", (0.6, 2.5)),
                 ("Electric_shaver_toothbrush", "brushing", (2.0, 6.0)),
                 ("Frying", "frying", (3.0, 9.0)), ("Running_water", "water", (2.0, 8.0)),
                 ("Speech", "speech", (1.0, 4.0)), ("Vacuum_cleaner", "vacuum", (3.0, 9.0))),
        duration=(10, 10), events=(1, 4), modalities=("audio",), overlap=True,
        clutter_blobs=(1, 4), clutter_sounds=0.1),
    "avel": TaskRecipe(
        classes=(("dog barking", "dog", (1.5, 6.0)), ("playing violin", "violin", (1.5, 6.0)),
                 ("vacuum cleaner cleaning floors", "vacuum", (1.5, 6.0)),
                 ("cat meowing", "cat", (1.5, 6.0)), ("man speaking", "speech", (1.5, 6.0)),
                 ("playing drum kit", "drums", (1.5, 6.0)),
                 ("telephone bell ringing", "alarm", (1.5, 6.0)),
                 ("water burbling", "water", (1.5, 6.0))),
        duration=(12, 25), events=(1, 3), modalities=("visual", "audio"), distractors=(1, 2),
        clutter_blobs=(0, 2), clutter_sounds=0.15),
}


def task_classes(task: str) -> list[str]:
    """The class list of a synthetic task.

    Args:
        task: ``tal``, ``sed`` or ``avel``.

    Returns:
        Class names in label order (the annotation file's ``classes``).
    """
    return [name for name, _, _ in _recipe(task).classes]


def _recipe(task: str) -> TaskRecipe:
    if task not in RECIPES:
        raise ConfigError(f"datasets.synthetic.tasks.{task}: the synthetic generator knows no "
                          f"task {task!r} (known: {', '.join(RECIPES)})")
    return RECIPES[task]


# =============================================================================================
# Planning: which instances a video has, where (integer frames, so both modalities align)
# =============================================================================================


@dataclass(frozen=True)
class Instance:
    """One rendered instance: frames [start, end) at the media frame rate."""

    label: str
    concept: str
    start: int
    end: int
    modalities: tuple[str, ...]
    annotated: bool


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one video and to annotate it."""

    video_id: str
    subset: str
    num_frames: int
    instances: tuple[Instance, ...]
    render_seed: tuple[int, ...] = field(repr=False)


def _disjoint_spans(lengths: list[int], total: int, rng) -> list[tuple[int, int]]:
    """Place spans of the given frame lengths without overlap, random gaps, inside [0, total)."""
    lengths = list(lengths)
    if sum(lengths) > 0.85 * total:  # too long together: shrink proportionally
        factor = 0.85 * total / sum(lengths)
        lengths = [max(8, int(length * factor)) for length in lengths]
    slack = total - sum(lengths)
    gaps = np.floor(rng.dirichlet(np.ones(len(lengths) + 1)) * slack).astype(int)
    spans, position = [], 0
    for length, gap in zip(lengths, gaps):
        position += int(gap)
        spans.append((position, position + length))
        position += length
    return spans


def _overlapping_spans(lengths: list[int], classes: list[str], total: int,
                       rng) -> list[tuple[int, int]] | None:
    """Random placement allowing overlap of different classes, at most two at a time."""
    spans: list[tuple[int, int]] = []
    for length, label in zip(lengths, classes):
        length = min(length, total)
        for _ in range(50):
            start = int(rng.integers(0, total - length + 1))
            end = start + length
            clashes = [j for j, (s, e) in enumerate(spans) if s < end and start < e]
            same_class = any(classes[j] == label for j in clashes)
            cover = np.zeros(total, dtype=int)
            for s, e in spans + [(start, end)]:
                cover[s:e] += 1
            if not same_class and cover.max() <= 2:
                spans.append((start, end))
                break
        else:
            return None
    return spans


def plan_video(task: str, video_id: str, subset: str, seeds: tuple[int, ...],
               media: MediaConfig) -> VideoPlan:
    """Draw the duration and the instances of one video.

    Args:
        task: the synthetic task.
        video_id: the id to give the video.
        subset: its annotation subset name.
        seeds: the per-video seed sequence (see module docs).
        media: frame rate etc. of the media.

    Returns:
        The :class:`VideoPlan`.
    """
    recipe = _recipe(task)
    rng = np.random.default_rng([*seeds, 0])
    fps = media.fps
    low, high = recipe.duration
    num_frames = int(round(rng.uniform(low, high) * fps))
    count = int(rng.integers(recipe.events[0], recipe.events[1] + 1))
    chosen = [recipe.classes[i] for i in rng.integers(0, len(recipe.classes), size=count)]
    entries = [(name, concept, int(round(rng.uniform(*seconds) * fps)), recipe.modalities, True)
               for name, concept, seconds in chosen]
    n_distract = int(rng.integers(recipe.distractors[0], recipe.distractors[1] + 1))
    for i in rng.integers(0, len(recipe.classes), size=n_distract):
        name, concept, seconds = recipe.classes[i]
        modality = ("visual",) if rng.random() < 0.5 else ("audio",)
        entries.append((name, concept, int(round(rng.uniform(*seconds) * fps)), modality, False))
    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]
    lengths = [max(8, length) for _, _, length, _, _ in entries]
    spans = None
    if recipe.overlap:
        spans = _overlapping_spans(lengths, [e[0] for e in entries], num_frames, rng)
    if spans is None:
        spans = _disjoint_spans(lengths, num_frames, rng)
    instances = tuple(Instance(label=name, concept=concept, start=start, end=end,
                               modalities=modalities, annotated=annotated)
                      for (name, concept, _, modalities, annotated), (start, end)
                      in sorted(zip(entries, spans), key=lambda pair: pair[1][0]))
    return VideoPlan(video_id=video_id, subset=subset, num_frames=num_frames,
                     instances=instances, render_seed=(*seeds, 1))


# =============================================================================================
# Rendering
# =============================================================================================


def _visual_background(num_frames: int, fps: float, canvas: Canvas, recipe: TaskRecipe,
                       rng) -> np.ndarray:
    """Background frames (N, S, S, 3) float32 in [0, 1]: tint, drifting gradient, grey blobs."""
    x, y = canvas.grid()
    time = np.arange(num_frames, dtype=np.float32) / fps
    base = rng.uniform(0.15, 0.45) + rng.uniform(-0.05, 0.05, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(0.02, 0.08)
    ramp = np.cos(angle) * x + np.sin(angle) * y  # (1, S, S)
    gradient = 0.12 * np.sin(2 * np.pi * (ramp - drift * _col(time)))  # (N, S, S)
    frames = np.empty((num_frames, canvas.size, canvas.size, 3), dtype=np.float32)
    frames[...] = base.astype(np.float32)
    frames += gradient[..., None]
    for _ in range(int(rng.integers(recipe.clutter_blobs[0], recipe.clutter_blobs[1] + 1))):
        start = int(rng.integers(0, num_frames))
        end = min(num_frames, start + int(rng.uniform(2, 12) * fps))
        t = time[start:end] - time[start]
        cx = _bounce(rng.uniform(0, 1) + rng.uniform(-0.08, 0.08) * t, 0.05, 0.95)
        cy = _bounce(rng.uniform(0, 1) + rng.uniform(-0.08, 0.08) * t, 0.05, 0.95)
        alpha = _disc(canvas, cx, cy, rng.uniform(0.08, 0.2)) * rng.uniform(0.4, 0.8)
        grey = np.clip(base.mean() + rng.uniform(-0.3, 0.3), 0, 1) + rng.uniform(-0.04, 0.04, 3)
        frames[start:end] += alpha[..., None] * (grey.astype(np.float32) - frames[start:end])
    return frames


def _audio_background(num_samples: int, sample_rate: int, recipe: TaskRecipe,
                      rng) -> tuple[np.ndarray, float]:
    """Pink-ish noise plus random non-class tone blips; returns (samples, noise RMS)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    spectrum /= np.sqrt(np.maximum(freqs, 50.0))  # 1/f power above 50 Hz
    noise = np.fft.irfft(spectrum, num_samples)
    level = rng.uniform(0.01, 0.03)
    noise *= level / (noise.std() + 1e-12)
    duration = num_samples / sample_rate
    for _ in range(rng.poisson(recipe.clutter_sounds * duration)):
        length = int(rng.uniform(0.1, 0.8) * sample_rate)
        start = int(rng.integers(0, max(1, num_samples - length)))
        length = min(length, num_samples - start)
        f_start, f_end = np.exp(rng.uniform(np.log(250), np.log(3500), size=2))
        if rng.random() < 0.5:
            f_end = f_start
        freq = np.linspace(f_start, f_end, length)
        blip = np.sin(_phase(freq, length, sample_rate)) * np.hanning(length)
        noise[start:start + length] += blip * level * rng.uniform(1.0, 3.0)
    return noise, level


def _render_audio_instance(concept: Concept, num_samples: int, sample_rate: int, level: float,
                           rng) -> np.ndarray:
    signal = concept.audio(num_samples, sample_rate, rng)
    rms = float(np.sqrt(np.mean(signal ** 2))) + 1e-12
    snr_db = rng.uniform(6.0, 18.0)
    gain = level * 10 ** (snr_db / 20) / rms
    peak = float(np.abs(signal).max()) * gain
    if peak > 0.6:  # keep the mixture inside [-1, 1]
        gain *= 0.6 / peak
    fade = min(int(0.02 * sample_rate), num_samples // 2)
    envelope = np.ones(num_samples)
    if fade:
        envelope[:fade] = np.linspace(0, 1, fade)
        envelope[-fade:] = np.linspace(1, 0, fade)
    return signal * gain * envelope


def render_video(task: str, plan: VideoPlan, media: MediaConfig) -> tuple[np.ndarray, np.ndarray]:
    """Render the frames and the audio of a planned video.

    Args:
        task: the synthetic task.
        plan: from :func:`plan_video`.
        media: frame rate, sample rate and frame size.

    Returns:
        ``(frames, audio)``: (N, S, S, 3) uint8 and (N * sample_rate / fps,) float32.
    """
    recipe = _recipe(task)
    rng = np.random.default_rng(plan.render_seed)
    canvas = Canvas(media.frame_size)
    fps, sample_rate = media.fps, media.sample_rate
    frames = _visual_background(plan.num_frames, fps, canvas, recipe, rng)
    num_samples = int(round(plan.num_frames * sample_rate / fps))
    audio, level = _audio_background(num_samples, sample_rate, recipe, rng)
    for inst in plan.instances:
        concept = CONCEPTS[inst.concept]
        if "visual" in inst.modalities:
            local_time = np.arange(inst.end - inst.start, dtype=np.float32) / fps
            alpha = np.broadcast_to(concept.visual(local_time, rng, canvas),
                                    (len(local_time), canvas.size, canvas.size))
            alpha = alpha * rng.uniform(0.85, 1.0)
            colour = np.clip(np.asarray(concept.colour) + rng.normal(0, 0.04, 3), 0, 1)
            segment = frames[inst.start:inst.end]
            segment += alpha[..., None] * (colour.astype(np.float32) - segment)
        if "audio" in inst.modalities:
            first = int(round(inst.start * sample_rate / fps))
            last = int(round(inst.end * sample_rate / fps))
            audio[first:last] += _render_audio_instance(concept, last - first, sample_rate,
                                                        level, rng)
    frames += rng.normal(0, 0.025, size=frames.shape).astype(np.float32)
    frames_u8 = np.clip(np.rint(frames * 255), 0, 255).astype(np.uint8)
    return frames_u8, np.clip(audio, -1, 1).astype(np.float32)


# =============================================================================================
# Writing a task
# =============================================================================================


def generation_record(config: Config, task: str) -> dict[str, Any]:
    """What determines a task's synthetic outputs.

    Args:
        config: the configuration (``datasets.synthetic``).
        task: the task name.

    Returns:
        ``{"generator_version", "task", "seed", "videos", "subsets", "media", "fingerprint"}``;
        the fingerprint is the first 16 hex digits of the SHA-256 of the rest.
    """
    synthetic = config.datasets.synthetic
    if task not in synthetic.tasks:
        raise ConfigError(f"datasets.synthetic.tasks.{task}: missing")
    if task not in synthetic.videos:
        raise ConfigError(f"datasets.synthetic.videos.{task}: missing")
    _recipe(task)
    data = synthetic.tasks[task]
    sizes = synthetic.videos[task]
    record = {
        "generator_version": GENERATOR_VERSION,
        "task": task,
        "seed": synthetic.seed,
        "videos": {"train": sizes.train, "validation": sizes.validation, "test": sizes.test},
        "subsets": {"train": data.subsets.train, "validation": data.subsets.validation,
                    "test": data.subsets.test},
        "media": {"fps": synthetic.media.fps, "sample_rate": synthetic.media.sample_rate,
                  "frame_size": synthetic.media.frame_size},
    }
    record["fingerprint"] = config_hash(record)
    return record


def plan_task(config: Config, task: str) -> list[VideoPlan]:
    """Plan every video of a synthetic task.

    Args:
        config: the configuration (sizes, subset names, seed, media).
        task: the task name.

    Returns:
        One :class:`VideoPlan` per video, subsets in train / validation / test order.
    """
    synthetic = config.datasets.synthetic
    data: DatasetTaskConfig = synthetic.tasks[task]
    sizes = synthetic.videos[task]
    if synthetic.media.frame_size % 2 or synthetic.media.frame_size < 8:
        raise ConfigError("datasets.synthetic.media.frame_size: need an even size >= 8")
    task_key = zlib.crc32(task.encode())
    plans = []
    for split_index, split in enumerate(("train", "validation", "test")):
        subset = getattr(data.subsets, split)
        count = getattr(sizes, split)
        if subset is None:
            if count:
                LOG.warning("%s: subsets.validation is null; the %d validation videos are not "
                            "generated", task, count)
            continue
        for index in range(count):
            video_id = f"{task}_{subset}_{index:04d}"
            seeds = (synthetic.seed, task_key, split_index, index)
            plans.append(plan_video(task, video_id, subset, seeds, synthetic.media))
    return plans


def annotations_of(task: str, plans: list[VideoPlan], record: dict[str, Any],
                   fps: int) -> dict[str, Any]:
    """The annotation JSON document of a task (see module docs).

    Args:
        task: the task name.
        plans: the task's video plans.
        record: :func:`generation_record` of the task (stored under ``synthetic``).
        fps: media frame rate (segments are frame boundaries / fps).

    Returns:
        ``{"version", "classes", "synthetic", "database"}``.
    """
    database = {}
    for plan in plans:
        entry: dict[str, Any] = {
            "subset": plan.subset, "duration": plan.num_frames / fps, "fps": fps,
            "annotations": [{"segment": [inst.start / fps, inst.end / fps], "label": inst.label}
                            for inst in plan.instances if inst.annotated]}
        distractors = [{"segment": [inst.start / fps, inst.end / fps], "label": inst.label,
                        "modality": inst.modalities[0]}
                       for inst in plan.instances if not inst.annotated]
        if _recipe(task).distractors[1] > 0:
            entry["distractors"] = distractors
        database[plan.video_id] = entry
    return {"version": f"uniav-synthetic-{GENERATOR_VERSION}", "classes": task_classes(task),
            "synthetic": record, "database": database}


def is_complete(config: Config, task: str) -> bool:
    """Whether a task's synthetic outputs are complete and current.

    Args:
        config: the configuration.
        task: the task name.

    Returns:
        True when the annotation file and the media sidecar carry the configuration's
        fingerprint and every video of the annotation file has its media file.
    """
    data = config.datasets.synthetic.tasks[task]
    fingerprint = generation_record(config, task)["fingerprint"]
    document = read_json_object(Path(data.annotations))
    sidecar = read_json_object(Path(data.media) / SIDECAR) if data.media else None
    if not document or not sidecar:
        return False
    if (document.get("synthetic", {}).get("fingerprint") != fingerprint
            or sidecar.get("fingerprint") != fingerprint):
        return False
    media_dir = Path(data.media)
    return all((media_dir / f"{video}.mp4").is_file()
               for video in document.get("database", {}))


def render_and_write(task: str, plan: VideoPlan, media: MediaConfig, path: str) -> str:
    """Render one planned video and write its MP4 atomically (the per-video job).

    Args:
        task: the task name.
        plan: the video's plan.
        media: frame rate, sample rate, frame size.
        path: the ``.mp4`` to write.

    Returns:
        The video id.
    """
    from uniav.prepare.media import write_media

    frames, audio = render_video(task, plan, media)
    write_media(path, frames, audio, fps=media.fps, sample_rate=media.sample_rate)
    return plan.video_id


def synthesize_task(config: Config, task: str, *, force: bool = False, progress: bool = True,
                    jobs: int = 1) -> Path:
    """Generate (or keep) one synthetic task's media and annotations.

    Complete outputs made with the same settings are kept unless ``force``; media files of an
    interrupted run with the same settings are reused; the annotation file is written last.

    Args:
        config: the configuration (``datasets.synthetic``).
        task: ``tal``, ``sed`` or ``avel``.
        force: regenerate everything.
        progress: show a progress bar on stderr.
        jobs: worker processes for rendering and encoding.

    Returns:
        The annotation file.
    """
    data = config.datasets.synthetic.tasks.get(task)
    if data is None:
        raise ConfigError(f"datasets.synthetic.tasks.{task}: missing")
    if not data.media:
        raise ConfigError(f"datasets.synthetic.tasks.{task}.media: needed to write the videos")
    annotations_path, media_dir = Path(data.annotations), Path(data.media)
    if not force and is_complete(config, task):
        LOG.info("%s: synthetic data complete, kept (%s)", task, annotations_path)
        return annotations_path
    record = generation_record(config, task)
    media = config.datasets.synthetic.media
    plans = plan_task(config, task)
    sidecar = read_json_object(media_dir / SIDECAR)
    reuse = (not force and sidecar is not None
             and sidecar.get("fingerprint") == record["fingerprint"])
    media_dir.mkdir(parents=True, exist_ok=True)
    if not reuse:
        planned = {f"{plan.video_id}.mp4" for plan in plans}
        for stale in media_dir.glob(f"{task}_*.mp4"):
            if stale.name not in planned:
                stale.unlink()
        atomic_write_json(media_dir / SIDECAR, record)
    todo = [plan for plan in plans
            if not (reuse and (media_dir / f"{plan.video_id}.mp4").is_file())]
    if len(todo) < len(plans):
        LOG.info("%s: %d of %d videos already generated", task, len(plans) - len(todo), len(plans))
    work = [(task, plan, media, str(media_dir / f"{plan.video_id}.mp4")) for plan in todo]
    for _ in parallel_map(render_and_write, work, jobs=jobs, desc=f"synthesize {task}",
                          progress=progress):
        pass
    atomic_write_json(annotations_path, annotations_of(task, plans, record, media.fps))
    return annotations_path


def synthesize(config: Config, tasks: list[str] | None = None, *, force: bool = False,
               progress: bool = True, jobs: int = 1) -> dict[str, Path]:
    """Generate the synthetic benchmark for ``tasks`` (default: every task of the config).

    Args:
        config: the configuration.
        tasks: task names; default all tasks under ``datasets.synthetic.tasks``.
        force: regenerate complete outputs too.
        progress: show progress bars on stderr.
        jobs: worker processes for rendering and encoding.

    Returns:
        ``{task: annotation file}``.
    """
    names = tasks or list(config.datasets.synthetic.tasks)
    return {task: synthesize_task(config, task, force=force, progress=progress, jobs=jobs)
            for task in names}
