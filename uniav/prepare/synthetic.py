"""The embedded synthetic benchmark: raw media and annotations generated from a seed.

Three datasets shaped like the paper's (docs/synthetic.md describes them in full), each written
as one MP4 per video (H.264 video at 16 fps, square frames of ``media.frame_size`` pixels, AAC
mono audio at 16 kHz) plus an ActivityNet-style annotation JSON (see
:mod:`uniav.data.annotations`):

=======  ==========  ==============================  ==========================================
task     duration    instances per video             modality of the instances
=======  ==========  ==============================  ==========================================
``tal``  30-60 s     1-4 actions, 3-20 s, disjoint   visual; the audio is unrelated background
``sed``  10 s        1-4 events, 0.6-9 s, may        audio; the video is unrelated background
                     overlap (different classes)
``avel`` 12-25 s     1-3 events, 1.5-6 s, plus 1-2   both at once; a distractor is the *same*
                     distractors, all disjoint       primitive in one modality only (not an event)
=======  ==========  ==============================  ==========================================

The generator is split in three modules:

* :mod:`uniav.prepare.synthetic_plan` - the task recipes and the plan of every video (duration,
  instances, seeds);
* :mod:`uniav.prepare.synthetic_primitives` - the concepts and what they look and sound like;
* this module - rendering a planned video (background, nuisances, instances) and writing a
  task's media and annotation file: :func:`render_video`, :func:`generation_record`,
  :func:`annotations_of`, :func:`is_complete`, :func:`render_and_write` and the entry points
  :func:`synthesize_task` and :func:`synthesize`.

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
from pathlib import Path
from typing import Any

import numpy as np

from uniav.config import Config, MediaConfig, config_hash
from uniav.errors import ConfigError
from uniav.fileio import atomic_write_json, read_json_object
from uniav.prepare.parallel import parallel_map
from uniav.prepare.synthetic_plan import (TaskRecipe, VideoPlan, plan_task, task_classes,
                                          task_recipe)
from uniav.prepare.synthetic_primitives import (CONCEPTS, Canvas, Concept, bounce, disc,
                                                per_frame, tone_phase)

LOG = logging.getLogger(__name__)

#: Bump when the generated data changes, so existing outputs are regenerated.
GENERATOR_VERSION = 1
SIDECAR = ".synthetic.json"

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
    gradient = 0.12 * np.sin(2 * np.pi * (ramp - drift * per_frame(time)))  # (N, S, S)
    frames = np.empty((num_frames, canvas.size, canvas.size, 3), dtype=np.float32)
    frames[...] = base.astype(np.float32)
    frames += gradient[..., None]
    for _ in range(int(rng.integers(recipe.clutter_blobs[0], recipe.clutter_blobs[1] + 1))):
        start = int(rng.integers(0, num_frames))
        end = min(num_frames, start + int(rng.uniform(2, 12) * fps))
        t = time[start:end] - time[start]
        cx = bounce(rng.uniform(0, 1) + rng.uniform(-0.08, 0.08) * t, 0.05, 0.95)
        cy = bounce(rng.uniform(0, 1) + rng.uniform(-0.08, 0.08) * t, 0.05, 0.95)
        alpha = disc(canvas, cx, cy, rng.uniform(0.08, 0.2)) * rng.uniform(0.4, 0.8)
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
        blip = np.sin(tone_phase(freq, length, sample_rate)) * np.hanning(length)
        noise[start:start + length] += blip * level * rng.uniform(1.0, 3.0)
    return noise, level


def _render_audio_instance(concept: Concept, num_samples: int, sample_rate: int, level: float,
                           rng) -> np.ndarray:
    """One instance's sound (num_samples,): 6-18 dB above the background, 20 ms fades."""
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
        plan: from :func:`~uniav.prepare.synthetic_plan.plan_video`.
        media: frame rate, sample rate and frame size.

    Returns:
        ``(frames, audio)``: (N, S, S, 3) uint8 and (N * sample_rate / fps,) float32.
    """
    recipe = task_recipe(task)
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
    task_recipe(task)
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
        if task_recipe(task).distractors[1] > 0:
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
