"""Feature extraction (``uniav extract``): decode, window on the dataset grid, encode, store.

**The grid** (:class:`uniav.grid.TimeGrid`).  A video decoded to ``N`` frames at ``fps`` has

    T = 1 + floor((N - window_frames) / feat_stride)   steps   (T = 1 when N < window_frames)

and step ``x`` covers frames ``[x * feat_stride, x * feat_stride + window_frames)``, i.e. its
centre is at ``t_x = (x * feat_stride + 0.5 * window_frames) / fps`` seconds - the grid every
other part of the package assumes (``docs/architecture.md``).  Only whole windows are used, so
the last step ends at or before the last frame; a video shorter than one window gets one step
whose window repeats the last frame.  The visual window is those ``window_frames`` frames; the
audio window is the 1 s of audio centred on ``t_x`` (zero-padded before 0 and after the end).
With the synthetic defaults (16 fps, window 16): a 10 s SED clip (160 frames, stride 4) has
T = 37 steps at 0.5, 0.75, ..., 9.5 s; a 45 s TAL video (720 frames, stride 8) has T = 89.
Features are stored as extracted; the dataset resizes ActivityNet-like tasks to a fixed length.

**The store** (``spec.data.features`` in ``spec.data.feature_format``): ``npy`` writes one file
per video and modality with :func:`~uniav.data.features.write_npy_video` plus ``meta.json``;
``hdf5`` stages the same npy files in ``<store>.staging/`` and packs them into the HDF5 file
with :func:`~uniav.data.features.pack_hdf5` at the end (the staging directory is then removed).

**Resuming.**  ``meta.json`` (encoders, dims, grid, format) is written before any video.  A rerun
skips videos whose two files exist, were written after their media file and sit under matching
metadata; when the metadata does not match, the old files of the annotated videos are deleted
first.  (Regenerated media - ``uniav synthesize --force`` with another seed - are thus
re-extracted even though the video ids are the same.)  Every file is written atomically, so a
killed run leaves complete files or none (a video with only its visual file is redone).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from uniav.config import Config, FeaturesConfig, to_plain
from uniav.data.annotations import load_annotations
from uniav.data.features import (META_FILE, FeatureLayout, FeatureStore, layout_of, pack_hdf5,
                                 write_meta, write_npy_video)
from uniav.errors import ConfigError, InputError
from uniav.fileio import read_json_object
from uniav.grid import TimeGrid
from uniav.prepare.encoder_base import Encoder, audio_window_samples
from uniav.prepare.encoders import get_encoder
from uniav.prepare.media import DecodedMedia, decode_media
from uniav.prepare.parallel import parallel_map

LOG = logging.getLogger(__name__)

#: Extensions tried, in order, when looking for ``<media dir>/<video_id>.<ext>``.
MEDIA_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg")


def _resolve(encoder: str | Encoder, features_config: FeaturesConfig | None,
             modality: str) -> Encoder:
    if isinstance(encoder, Encoder):
        if encoder.modality != modality:
            raise ConfigError(f"features: {encoder.name!r} is a {encoder.modality} encoder, "
                              f"not a {modality} one")
        return encoder
    return get_encoder(encoder, features_config, modality=modality)


def features_of_media(media: DecodedMedia, *, feat_stride: int, window_frames: int,
                      visual_encoder: Encoder, audio_encoder: Encoder,
                      source: str | Path | None = None,
                      video_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window decoded media on the grid and encode both modalities.

    Args:
        media: the decoded media (frames at the grid's fps, audio at the encoder's rate).
        feat_stride: grid stride in frames.
        window_frames: visual window in frames.
        visual_encoder: encoder of visual windows.
        audio_encoder: encoder of 1 s audio windows.
        source: the media file (for error messages).
        video_id: the video id (for error messages).

    Returns:
        ``(visual (T, Cv), audio (T, Ca))`` float32.
    """
    if feat_stride <= 0 or window_frames <= 0:
        raise ConfigError(f"feat_stride ({feat_stride}) and window_frames ({window_frames}) "
                          f"must be positive")
    if media.sample_rate != audio_encoder.sample_rate:
        raise ValueError(f"audio at {media.sample_rate} Hz but {audio_encoder.name!r} needs "
                         f"{audio_encoder.sample_rate} Hz")
    grid = TimeGrid(media.fps, feat_stride, window_frames)
    steps = grid.steps_of_frames(len(media.frames))
    frame_starts = np.arange(steps) * feat_stride  # (T,)
    visual = visual_encoder.encode_clip(media.frames, frame_starts, window_frames)
    window_samples = audio_window_samples(audio_encoder)
    centres = grid.step_centres(steps)  # (T,) seconds
    sample_starts = np.rint(centres * media.sample_rate).astype(np.int64) - window_samples // 2
    audio = audio_encoder.encode_clip(media.audio, sample_starts, window_samples)
    for name, array, encoder in (("visual", visual, visual_encoder),
                                 ("audio", audio, audio_encoder)):
        if array.shape != (steps, encoder.dim):
            raise ConfigError(f"encoder {encoder.name!r} returned {array.shape}, expected "
                              f"({steps}, {encoder.dim})")
        if not np.isfinite(array).all():
            raise InputError(f"encoder {encoder.name!r} produced non-finite features",
                             file=source, video=video_id, field=name)
    return visual.astype(np.float32), audio.astype(np.float32)


def extract_video_features(media_path: str | Path, *, fps: float, feat_stride: int,
                           window_frames: int, visual_encoder: str | Encoder,
                           audio_encoder: str | Encoder,
                           features_config: FeaturesConfig | None = None,
                           video_id: str | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Features of one media file on a grid (used for own-video inference).

    Args:
        media_path: any file FFmpeg decodes with a video stream.
        fps: frame rate of the grid.
        feat_stride: grid stride in frames.
        window_frames: visual window in frames.
        visual_encoder: encoder name (built-in or in ``features_config.custom_encoders``) or
            an :class:`~uniav.prepare.encoders.Encoder`.
        audio_encoder: likewise for audio.
        features_config: needed only to look up custom encoders by name.
        video_id: id used in error messages.

    Returns:
        ``(visual (T, Cv), audio (T, Ca), duration_seconds)`` with T as in the module docs.
    """
    visual_enc = _resolve(visual_encoder, features_config, "visual")
    audio_enc = _resolve(audio_encoder, features_config, "audio")
    media = decode_media(media_path, fps=fps, sample_rate=audio_enc.sample_rate,
                         frame_size=visual_enc.frame_size, video_id=video_id)
    visual, audio = features_of_media(media, feat_stride=feat_stride, window_frames=window_frames,
                                      visual_encoder=visual_enc, audio_encoder=audio_enc,
                                      source=media_path, video_id=video_id)
    return visual, audio, media.duration


def find_media(media_dir: str | Path, video_id: str) -> Path:
    """Find the media file of a video.

    Args:
        media_dir: the task's media directory.
        video_id: the video id (annotation key).

    Returns:
        ``<media_dir>/<video_id>.mp4`` or the first existing file with another known extension.

    Raises:
        InputError: no such file.
    """
    media_dir = Path(media_dir)
    for extension in MEDIA_EXTENSIONS:
        candidate = media_dir / f"{video_id}{extension}"
        if candidate.is_file():
            return candidate
    raise InputError(f"no media file for this video (tried {', '.join(MEDIA_EXTENSIONS)})",
                     file=media_dir / f"{video_id}.mp4", video=video_id, field="media")


def store_meta(visual: Encoder, audio: Encoder, fps: float, feat_stride: int,
               window_frames: int, feature_format: str) -> dict[str, Any]:
    """The metadata of a store made with these encoders on this grid.

    Args:
        visual: the visual encoder.
        audio: the audio encoder.
        fps: frame rate of the grid.
        feat_stride: grid stride in frames.
        window_frames: window length in frames.
        feature_format: ``npy`` or ``hdf5``.

    Returns:
        The ``meta.json`` mapping (keys of docs/architecture.md).
    """
    return {"visual_encoder": visual.name, "audio_encoder": audio.name,
            "visual_dim": visual.dim, "audio_dim": audio.dim, "fps": fps,
            "feat_stride": feat_stride, "window_frames": window_frames,
            "format": feature_format}


def _existing_hdf5(path: Path, layout: FeatureLayout, meta: dict[str, Any]) -> set[str]:
    """Videos of an existing, compatible HDF5 store (empty when missing or incompatible)."""
    if not path.is_file():
        return set()
    try:
        store = FeatureStore(path, layout)
        if store.meta != meta:
            LOG.info("%s: made with other settings; it will be replaced", path)
            return set()
        return store.video_ids()
    except (InputError, OSError) as exc:
        LOG.warning("%s: unreadable (%s); it will be replaced", path, exc)
        return set()


#: Encoders built in this process, by (visual name, audio name) - reused across videos.
_ENCODER_CACHE: dict[tuple[str, str], tuple[Encoder, Encoder]] = {}


def _encoders(visual: str, audio: str, features_config: FeaturesConfig) -> tuple[Encoder, Encoder]:
    key = (visual, audio)
    if key not in _ENCODER_CACHE:
        _ENCODER_CACHE.clear()
        _ENCODER_CACHE[key] = (get_encoder(visual, features_config, modality="visual"),
                               get_encoder(audio, features_config, modality="audio"))
    return _ENCODER_CACHE[key]


def extract_and_write(media_path: str, video_id: str, expected_duration: float, directory: str,
                      layout: FeatureLayout, fps: float, feat_stride: int, window_frames: int,
                      features_config: FeaturesConfig) -> str:
    """Decode, encode and store one video (the per-video job of :func:`extract_task`).

    Args:
        media_path: the media file.
        video_id: the video id.
        expected_duration: the annotation's duration (a warning when the media differs).
        directory: the npy store (or HDF5 staging) directory.
        layout: file naming of the npy files.
        fps: frame rate of the grid.
        feat_stride: grid stride in frames.
        window_frames: window length in frames.
        features_config: encoder names and custom encoders.

    Returns:
        The video id (its two files are written atomically).
    """
    visual_enc, audio_enc = _encoders(features_config.visual_encoder,
                                      features_config.audio_encoder, features_config)
    media = decode_media(media_path, fps=fps, sample_rate=audio_enc.sample_rate,
                         frame_size=visual_enc.frame_size, video_id=video_id)
    if abs(media.duration - expected_duration) > max(1.0, 0.05 * expected_duration):
        LOG.warning("%s: media lasts %.2f s but the annotation says %.2f s", media_path,
                    media.duration, expected_duration)
    visual, audio = features_of_media(media, feat_stride=feat_stride, window_frames=window_frames,
                                      visual_encoder=visual_enc, audio_encoder=audio_enc,
                                      source=media_path, video_id=video_id)
    write_npy_video(Path(directory), layout, video_id, visual, audio)
    return video_id


def extraction_settings(config: Config, task: str) -> dict[str, Any]:
    """Every setting a task's feature store depends on (besides the media): the encoders and the
    task's grid and store layout - the rerun trigger of the pipeline's extraction job."""
    data = config.task_spec(task).data
    grid = ("fps", "feat_stride", "window_frames", "feature_format", "id_prefix",
            "visual_suffix", "audio_suffix")
    return {"features": to_plain(config.features),
            "grid": {key: getattr(data, key) for key in grid}}


def extract_task(config: Config, task: str, *, force: bool = False, progress: bool = True,
                 jobs: int = 1) -> Path:
    """Extract the features of every video of a task's annotation file (all subsets).

    Args:
        config: the configuration (``features`` and the task's data record).
        task: the task name.
        force: re-extract videos that are already in the store.
        progress: show a progress bar on stderr.
        jobs: worker processes for decoding and encoding.

    Returns:
        The store path (``spec.data.features``).

    Raises:
        ConfigError: no media directory for the task (e.g. the paper benchmark), bad encoders.
        InputError: missing or undecodable media, bad annotations.
    """
    spec = config.task_spec(task)
    data = spec.data
    if not data.media:
        raise ConfigError(f"datasets.{spec.benchmark}.tasks.{task}.media: no media directory; "
                          f"this benchmark's features are downloaded, not extracted")
    database = load_annotations(data.annotations)
    visual_enc, audio_enc = _encoders(config.features.visual_encoder,
                                      config.features.audio_encoder, config.features)
    meta = store_meta(visual_enc, audio_enc, data.fps, data.feat_stride, data.window_frames,
                      data.feature_format)
    layout = layout_of(data)
    npy_layout = FeatureLayout("npy", layout.id_prefix, layout.visual_suffix, layout.audio_suffix)
    store_path = Path(data.features)
    if data.feature_format == "npy":
        directory = store_path
        packed: set[str] = set()
    else:
        directory = store_path.with_name(store_path.name + ".staging")
        packed = set() if force else _existing_hdf5(store_path, layout, meta)
    directory.mkdir(parents=True, exist_ok=True)
    previous = read_json_object(directory / META_FILE)
    if previous is not None and previous != meta:
        LOG.info("%s: features were made with other settings (%s); re-extracting", directory,
                 {k: previous.get(k) for k in meta if previous.get(k) != meta[k]})
        for video_id in database.videos:
            for modality in ("visual", "audio"):
                (directory / _npy_name(npy_layout, video_id, modality)).unlink(missing_ok=True)
    if previous != meta:
        write_meta(directory, meta)
    media_files = {video_id: find_media(data.media, video_id) for video_id in database.videos}
    packed_time = store_path.stat().st_mtime_ns if packed else 0
    todo = []
    for video_id, media_path in media_files.items():
        media_time = media_path.stat().st_mtime_ns
        stored_time = _npy_time(directory, npy_layout, video_id)
        if video_id in packed and stored_time is None:
            stored_time = packed_time
        # kept when stored after its media file was (re)made: regenerated media are re-extracted
        if force or stored_time is None or stored_time < media_time:
            todo.append(video_id)
    if len(todo) < len(database.videos):
        LOG.info("%s: %d of %d videos already extracted", task, len(database.videos) - len(todo),
                 len(database.videos))
    work = [(str(media_files[video_id]), video_id, database.videos[video_id].duration,
             str(directory), npy_layout, data.fps, data.feat_stride, data.window_frames,
             config.features) for video_id in todo]
    for _ in parallel_map(extract_and_write, work, jobs=jobs, desc=f"extract {task}",
                          progress=progress):
        pass
    if data.feature_format == "hdf5":
        # repack unless the existing (compatible) file already holds every video
        if todo or not set(database.videos) <= packed:
            pack_hdf5(store_path, _triples(database.videos, directory, npy_layout, store_path,
                                           layout, packed, todo), meta=meta,
                      id_prefix=layout.id_prefix)
        shutil.rmtree(directory)
    return store_path


def _npy_name(layout: FeatureLayout, video_id: str, modality: str) -> str:
    return f"{layout.id_prefix}{video_id}{layout.suffix(modality)}.npy"


def _npy_time(directory: Path, layout: FeatureLayout, video_id: str) -> int | None:
    """When the older of a video's two npy files was written (ns), or None if one is missing."""
    times = []
    for modality in ("visual", "audio"):
        path = directory / _npy_name(layout, video_id, modality)
        if not path.is_file():
            return None
        times.append(path.stat().st_mtime_ns)
    return min(times)


def _triples(video_ids, directory: Path, npy_layout: FeatureLayout, store_path: Path,
             layout: FeatureLayout, packed: set[str],
             todo: list[str]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(video, visual, audio) for the HDF5 pack: fresh npy files first, else the old store."""
    fresh = set(todo)
    staged = FeatureStore(directory, npy_layout)
    old = FeatureStore(store_path, layout) if packed else None
    for video_id in video_ids:
        if video_id in fresh or video_id not in packed:
            visual, audio = staged.read(video_id)
        else:
            visual, audio = old.read(video_id)
        yield video_id, visual, audio


def extract(config: Config, tasks: list[str] | None = None, *, force: bool = False,
            progress: bool = True, jobs: int = 1) -> dict[str, Path]:
    """Extract features for several tasks.

    Args:
        config: the configuration.
        tasks: task names (default: every task of the config).
        force: re-extract stored videos too.
        progress: show progress bars on stderr.
        jobs: worker processes.

    Returns:
        ``{task: store path}``.
    """
    names = tasks or config.task_names
    return {task: extract_task(config, task, force=force, progress=progress, jobs=jobs)
            for task in names}
