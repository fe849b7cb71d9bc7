"""Decoding and writing of raw media with PyAV (FFmpeg).

Decoding (:func:`decode_media`) turns any file FFmpeg reads (``.mp4``, ``.mkv``, ``.webm``, ...)
into what feature extraction needs:

* **frames** at a fixed frame rate (16 fps): output frame ``i`` is the decoded frame whose
  timestamp is nearest to ``t = i / fps`` (so a 30 fps video is sub-sampled, a 10 fps video has
  frames repeated); the number of frames is ``round(duration * fps)``.  Frames are RGB ``uint8``,
  optionally resized on the fly (FFmpeg's swscale through ``frame.reformat``) to a small square
  size, so a long full-HD video never sits in memory at full resolution.
* **audio** as mono ``float32`` at 16 kHz (PyAV's ``AudioResampler``), placed on the same time
  axis as the frames: decoded audio frames are positioned by their timestamps, so an audio track
  that starts late is padded with silence and samples before the video's start are dropped.
  AAC encoder priming (the 1024 samples every AAC encoder puts in front) is removed by FFmpeg's
  MP4 demuxer from the edit list / ``skip_samples`` side data; the tests check that a click planted
  at 3.000 s is decoded at 3.000 s.  The audio is cut or zero-padded to ``round(duration * rate)``.
* **duration** in seconds: the video stream's duration when the container records it, otherwise
  the container's, otherwise the last frame's end.

A missing, empty or corrupt file, or one without a video stream, raises
:class:`~uniav.errors.InputError` naming the file.  A video **without an audio stream** is
accepted with silent audio and a logged warning: own-video inference then still works (the
audio-dependent tasks simply see silence), which is friendlier than refusing a screen recording.

Writing (:func:`write_media`) produces the synthetic benchmark's files: H.264 (``libx264``,
yuv420p) video and AAC audio in an MP4 container, written to a temp file and renamed into place.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uniav.errors import InputError
from uniav.fileio import atomic_path

LOG = logging.getLogger(__name__)

#: Frame rate and audio sample rate everything is resampled to (the paper's ONE-PEACE setting).
DEFAULT_FPS = 16
DEFAULT_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class DecodedMedia:
    """One decoded media file on a common time axis.

    Attributes:
        frames: (N, H, W, 3) uint8 RGB frames at ``fps``; N = round(duration * fps).
        audio: (S,) float32 mono samples in [-1, 1] at ``sample_rate``; S = round(duration * rate).
        duration: length in seconds.
        fps: frame rate of ``frames``.
        sample_rate: sample rate of ``audio``.
        has_audio: False when the file has no audio stream (``audio`` is then silence).
    """

    frames: np.ndarray
    audio: np.ndarray
    duration: float
    fps: float
    sample_rate: int
    has_audio: bool


def _frame_size_pair(frame_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if frame_size is None:
        return None
    if isinstance(frame_size, int):
        return frame_size, frame_size
    width, height = frame_size
    return int(width), int(height)


def decode_media(path: str | Path, *, fps: float = DEFAULT_FPS,
                 sample_rate: int = DEFAULT_SAMPLE_RATE,
                 frame_size: int | tuple[int, int] | None = None,
                 video_id: str | None = None) -> DecodedMedia:
    """Decode a media file into frames at ``fps`` and mono audio at ``sample_rate``.

    Args:
        path: the media file.
        fps: output frame rate (frames are picked nearest in time, see module docs).
        sample_rate: output audio rate in Hz.
        frame_size: resize frames to this size (``int`` for square, or ``(width, height)``);
            ``None`` keeps the decoded size.
        video_id: the video id, only used to name the video in error messages.

    Returns:
        The :class:`DecodedMedia`.

    Raises:
        InputError: missing, empty or undecodable file; no video stream; no decodable frame.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError("media file not found", file=path, video=video_id)
    if path.stat().st_size == 0:
        raise InputError("media file is empty", file=path, video=video_id)
    if fps <= 0 or sample_rate <= 0:
        raise InputError(f"fps ({fps}) and sample_rate ({sample_rate}) must be positive",
                         file=path, video=video_id)
    size = _frame_size_pair(frame_size)
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot open media file ({exc})", file=path, video=video_id) from None
    try:
        if not container.streams.video:
            raise InputError("no video stream in the file", file=path, video=video_id,
                             field="video")
        video_stream = container.streams.video[0]
        origin = _time_origin(container)
        duration = _duration(container, video_stream)
        times, images = _decode_video(container, video_stream, size, origin, path, video_id)
        if duration is None:
            step = 1.0 / float(video_stream.average_rate or fps)
            duration = float(times[-1]) + step
        has_audio = bool(container.streams.audio)
        if has_audio:
            audio = _decode_audio(path, sample_rate, origin, video_id)
        else:
            LOG.warning("%s: no audio stream; using silence for the audio features", path)
            audio = np.zeros(0, dtype=np.float32)
    finally:
        container.close()
    if not duration > 0:
        raise InputError(f"media duration is not positive ({duration})", file=path,
                         video=video_id, field="duration")
    frames = _resample_frames(times, images, duration, fps)
    num_samples = int(round(duration * sample_rate))
    audio = _fit_length(audio, num_samples)
    return DecodedMedia(frames=frames, audio=audio, duration=float(duration), fps=float(fps),
                        sample_rate=int(sample_rate), has_audio=has_audio)


def _time_origin(container) -> float:
    """The earliest stream start time in seconds (0 for files written from scratch)."""
    starts = []
    for stream in container.streams:
        if stream.type in ("video", "audio") and stream.start_time is not None:
            starts.append(float(stream.start_time * stream.time_base))
    return min(starts) if starts else 0.0


def _duration(container, video_stream) -> float | None:
    if video_stream.duration is not None and video_stream.time_base is not None:
        value = float(video_stream.duration * video_stream.time_base)
        if value > 0:
            return value
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000.0  # AV_TIME_BASE microseconds
    return None


def _decode_video(container, stream, size: tuple[int, int] | None, origin: float, path: Path,
                  video_id: str | None) -> tuple[np.ndarray, np.ndarray]:
    """All frames of the stream: (times (M,) seconds, images (M, H, W, 3) uint8 RGB).

    Frames in 4:2:0 YUV (nearly every H.264/HEVC/VP9 file) are taken as raw planes (resized by
    swscale without a format change when needed) and converted to RGB for all frames at once
    with :func:`yuv420_to_rgb` - several times faster than a per-frame RGB conversion.  Other
    pixel formats go through swscale's RGB conversion frame by frame.
    """
    import av

    stream.thread_type = "AUTO"
    times: list[float] = []
    planes: list[np.ndarray] = []  # (H * 3 / 2, W) uint8 per frame, yuv420p
    images: list[np.ndarray] = []  # (H, W, 3) uint8 per frame, other formats
    matrix = "bt601"
    full_range = False
    rate = float(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
    try:
        for index, frame in enumerate(container.decode(stream)):
            if frame.time is not None:
                times.append(float(frame.time) - origin)
            else:  # no timestamps (raw streams): assume a constant rate
                times.append(index / rate)
            width, height = size if size is not None else (frame.width, frame.height)
            if frame.format.name in ("yuv420p", "yuvj420p") and width % 2 == 0 \
                    and height % 2 == 0 and not images:
                if (frame.width, frame.height) != (width, height):
                    frame = frame.reformat(width=width, height=height)
                if not planes:
                    matrix = "bt709" if frame.colorspace == 1 else "bt601"  # AVCOL_SPC_BT709
                    full_range = frame.format.name == "yuvj420p" or frame.color_range == 2
                planes.append(frame.to_ndarray())
            else:
                if planes:  # the format changed mid-stream: convert what we have so far
                    images.extend(yuv420_to_rgb(np.stack(planes), matrix, full_range))
                    planes = []
                images.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
    except av.FFmpegError as exc:
        if not planes and not images:
            raise InputError(f"cannot decode the video stream ({exc})", file=path,
                             video=video_id, field="video") from None
        LOG.warning("%s: video decoding stopped after %d frames (%s); using what was decoded",
                    path, len(planes) + len(images), exc)
    if planes:
        stacked = yuv420_to_rgb(np.stack(planes), matrix, full_range)
    elif images:
        stacked = np.stack(images)
    else:
        raise InputError("the video stream has no decodable frame", file=path, video=video_id,
                         field="video")
    order = np.argsort(np.asarray(times), kind="stable")
    return np.asarray(times)[order], stacked[order]


#: (Cr -> R, Cb -> G, Cr -> G, Cb -> B) coefficients of the YCbCr -> RGB matrices.
_YUV_MATRICES = {"bt601": (1.402, 0.344136, 0.714136, 1.772),
                 "bt709": (1.5748, 0.187324, 0.468124, 1.8556)}


def yuv420_to_rgb(planes: np.ndarray, matrix: str = "bt601",
                  full_range: bool = False) -> np.ndarray:
    """Convert packed yuv420p frames to RGB.

    Args:
        planes: (N, H * 3 / 2, W) uint8, as ``VideoFrame.to_ndarray()`` returns yuv420p: the Y
            plane (H rows), then U and V (H / 4 rows each, every row holding two chroma rows).
        matrix: ``bt601`` or ``bt709`` colour matrix.
        full_range: JPEG (0-255) instead of MPEG (16-235) levels.

    Returns:
        (N, H, W, 3) uint8 RGB (chroma up-sampled by pixel repetition).
    """
    count, rows, width = planes.shape
    height = rows * 2 // 3
    luma = planes[:, :height].astype(np.float32)  # (N, H, W)
    # (N, H/4, W) -> (N, H/2, W/2): each packed row holds two chroma rows
    cb = planes[:, height:height + height // 4].reshape(count, height // 2, width // 2)
    cr = planes[:, height + height // 4:].reshape(count, height // 2, width // 2)
    # (N, H/2, W/2) -> (N, H, W)
    cb = cb.astype(np.float32).repeat(2, axis=1).repeat(2, axis=2) - 128.0
    cr = cr.astype(np.float32).repeat(2, axis=1).repeat(2, axis=2) - 128.0
    if not full_range:
        luma = (luma - 16.0) * (255.0 / 219.0)
        cb *= 255.0 / 224.0
        cr *= 255.0 / 224.0
    r_cr, g_cb, g_cr, b_cb = _YUV_MATRICES[matrix]
    rgb = np.stack([luma + r_cr * cr, luma - g_cb * cb - g_cr * cr, luma + b_cb * cb], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _decode_audio(path: Path, sample_rate: int, origin: float, video_id: str | None) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` whose sample 0 is at time ``origin``."""
    import av

    chunks: list[np.ndarray] = []
    first_time: float | None = None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    try:
        with av.open(str(path), mode="r") as container:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        if not chunks:
            raise InputError(f"cannot decode the audio stream ({exc})", file=path, video=video_id,
                             field="audio") from None
        LOG.warning("%s: audio decoding stopped early (%s); padding with silence", path, exc)
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    offset = int(round(((first_time if first_time is not None else origin) - origin)
                       * sample_rate))
    if offset > 0:  # audio starts after the video: silence before it
        audio = np.concatenate([np.zeros(offset, dtype=np.float32), audio])
    elif offset < 0:  # audio starts before the video: drop what precedes it
        audio = audio[-offset:]
    return audio


def _resample_frames(times: np.ndarray, images: np.ndarray, duration: float,
                     fps: float) -> np.ndarray:
    """Pick, for each output time i / fps, the decoded frame nearest in time."""
    count = max(1, int(round(duration * fps)))
    targets = np.arange(count) / fps
    right = np.clip(np.searchsorted(times, targets), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    take_left = np.abs(times[left] - targets) <= np.abs(times[right] - targets)
    index = np.where(take_left, left, right)
    return np.ascontiguousarray(images[index])


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    if len(audio) >= length:
        return np.ascontiguousarray(audio[:length])
    return np.concatenate([audio, np.zeros(length - len(audio), dtype=np.float32)])


def write_media(path: str | Path, frames: np.ndarray, audio: np.ndarray, *,
                fps: int = DEFAULT_FPS, sample_rate: int = DEFAULT_SAMPLE_RATE,
                crf: int = 18, audio_bit_rate: int = 64000) -> None:
    """Write an MP4 (H.264 video, AAC mono audio) atomically.

    Args:
        path: the ``.mp4`` to write (a temp file next to it is renamed onto it when complete).
        frames: (N, H, W, 3) uint8 RGB frames; H and W must be even (yuv420p).
        audio: (S,) float samples in [-1, 1] at ``sample_rate``.
        fps: frame rate of ``frames``.
        sample_rate: sample rate of ``audio``.
        crf: x264 constant rate factor (lower is better quality).
        audio_bit_rate: AAC bit rate in bits per second.

    Returns:
        None; the file exists complete or not at all.
    """
    import av

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frames must be (N, H, W, 3) with even H and W, got {frames.shape}")
    samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0).reshape(1, -1)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height = frames.shape[2], frames.shape[1]
            video.pix_fmt = "yuv420p"
            # Bit-identical output from run to run: one thread (set on the codec context - PyAV
            # overrides a "threads" option), and no macroblock-tree / lookahead rate control,
            # whose results on such small frames varied between identical runs (measured).
            video.options = {"crf": str(crf), "preset": "veryfast",
                             "x264-params": "mbtree=0:rc-lookahead=0"}
            video.codec_context.thread_count = 1
            video.codec_context.thread_type = "NONE"
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
            sound.bit_rate = audio_bit_rate
            sound.options = {"aac_coder": "fast"}
            for image in frames:
                for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
            if samples.shape[1]:
                chunk = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
                chunk.sample_rate = sample_rate
                chunk.pts = 0
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)


def media_duration(path: str | Path) -> float:
    """The duration recorded in a media file's headers (no decoding).

    Args:
        path: the media file.

    Returns:
        Seconds (the video stream's duration, else the container's).

    Raises:
        InputError: missing or unreadable file, or no duration recorded.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError("media file not found", file=path)
    try:
        with av.open(str(path), mode="r") as container:
            if container.streams.video:
                value = _duration(container, container.streams.video[0])
            elif container.duration:
                value = container.duration / 1_000_000.0
            else:
                value = None
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"cannot open media file ({exc})", file=path) from None
    if value is None or not math.isfinite(value):
        raise InputError("the file records no duration", file=path, field="duration")
    return value
