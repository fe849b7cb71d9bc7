"""Decoding with PyAV: frame/audio timing, resampling, resizing, bad files."""

from __future__ import annotations

import logging

import av
import numpy as np
import pytest

from uniav.prepare.media import decode_media, media_duration, write_media, yuv420_to_rgb
from uniav.errors import InputError

FPS, RATE = 16, 16000


def _coded_frames(count: int, size: int = 32) -> np.ndarray:
    """Frames whose grey level encodes their index (distinct by 2 * 5 levels)."""
    levels = 20 + (np.arange(count) % 20) * 10
    return np.broadcast_to(levels[:, None, None, None], (count, size, size, 3)).astype(np.uint8)


def _band_energy(audio: np.ndarray, frequency: float, hop: int = 160) -> np.ndarray:
    """Energy near ``frequency`` in 10 ms frames (20 ms Hann windows)."""
    window = np.hanning(320)
    frames = np.lib.stride_tricks.sliding_window_view(audio, 320)[::hop] * window
    spectrum = np.abs(np.fft.rfft(frames, axis=1))
    freqs = np.fft.rfftfreq(320, 1 / RATE)
    band = (freqs > frequency - 100) & (freqs < frequency + 100)
    return spectrum[:, band].sum(axis=1)


def test_media_round_trip_aligns_frames_and_audio(tmp_path):
    duration = 5.5
    frames = _coded_frames(int(duration * FPS))
    time = np.arange(int(duration * RATE)) / RATE
    audio = 0.01 * np.random.default_rng(0).standard_normal(len(time))
    tone = (time >= 2.0) & (time < 2.5)
    audio[tone] += 0.5 * np.sin(2 * np.pi * 1000 * time[tone])
    path = tmp_path / "clip.mp4"
    write_media(path, frames, audio)

    media = decode_media(path)
    assert media.duration == pytest.approx(duration)
    assert media_duration(path) == pytest.approx(duration)
    assert media.frames.shape == (88, 32, 32, 3) and media.frames.dtype == np.uint8
    assert media.audio.shape == (88000,) and media.audio.dtype == np.float32
    assert media.has_audio
    # every decoded frame is the frame written at that index (grey code within codec noise)
    decoded_levels = media.frames.reshape(88, -1).mean(axis=1)
    np.testing.assert_allclose(decoded_levels, frames.reshape(88, -1).mean(axis=1), atol=3)
    # the tone starts at 2.000 s and stops at 2.500 s (AAC priming removed): 10 ms frames
    energy = _band_energy(media.audio, 1000)
    loud = np.flatnonzero(energy > 0.5 * energy.max())
    start_s, end_s = loud[0] * 0.01, (loud[-1] * 160 + 320) / RATE
    assert start_s == pytest.approx(2.0 - 0.01, abs=0.012)
    assert end_s == pytest.approx(2.5 + 0.01, abs=0.012)


def test_media_resamples_frame_rate_by_nearest_frame(tmp_path):
    frames = _coded_frames(64)  # 2 s at 32 fps
    path = tmp_path / "fast.mp4"
    write_media(path, frames, np.zeros(32000), fps=32)
    media = decode_media(path, fps=16)
    assert media.frames.shape[0] == 32
    decoded_levels = media.frames.reshape(32, -1).mean(axis=1)
    expected = frames[::2].reshape(32, -1).mean(axis=1)  # output i at i/16 s = input 2i
    np.testing.assert_allclose(decoded_levels, expected, atol=3)

    slow = tmp_path / "slow.mp4"
    write_media(slow, _coded_frames(16), np.zeros(16000), fps=8)  # 2 s at 8 fps
    media = decode_media(slow, fps=16)
    assert media.frames.shape[0] == 32
    decoded_levels = media.frames.reshape(32, -1).mean(axis=1)
    source = _coded_frames(16).reshape(16, -1).mean(axis=1)
    # output i at i/16 s: nearest input frame round-half-down -> i // 2
    np.testing.assert_allclose(decoded_levels, source[np.arange(32) // 2], atol=3)


def test_media_resizes_frames(tmp_path):
    frames = np.zeros((16, 64, 96, 3), dtype=np.uint8)
    frames[:, :, :48] = (200, 30, 30)  # left half red, right half black
    path = tmp_path / "wide.mp4"
    write_media(path, frames, np.zeros(16000))
    media = decode_media(path, frame_size=32)
    assert media.frames.shape == (16, 32, 32, 3)
    left, right = media.frames[:, :, :14].mean(axis=(0, 1, 2)), media.frames[:, :, 18:].mean(
        axis=(0, 1, 2))
    assert left[0] > 150 and left[1] < 80 and right.max() < 30


def test_media_yuv_conversion_matches_ffmpeg(tmp_path):
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    frames = blocks.repeat(4, axis=1).repeat(4, axis=2)  # 4 frames of 4x4-pixel colour blocks
    frame = av.VideoFrame.from_ndarray(frames[0], format="rgb24").reformat(format="yuv420p")
    ours = yuv420_to_rgb(frame.to_ndarray()[None])[0]
    ffmpeg = frame.to_ndarray(format="rgb24")
    assert np.abs(ours.astype(int) - ffmpeg.astype(int)).max() <= 3


def test_media_without_audio_gives_silence_and_a_warning(tmp_path, caplog):
    path = tmp_path / "mute.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for image in _coded_frames(24):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with caplog.at_level(logging.WARNING, logger="uniav.prepare.media"):
        media = decode_media(path)
    assert not media.has_audio
    assert media.audio.shape == (24000,) and not media.audio.any()
    assert "no audio stream" in caplog.text


def test_media_bad_files_raise_input_error_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="not found") as missing:
        decode_media(tmp_path / "nope.mp4", video_id="v1")
    assert missing.value.file.endswith("nope.mp4") and missing.value.video == "v1"

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        decode_media(empty)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError) as corrupt:
        decode_media(garbage)
    assert corrupt.value.file == str(garbage)

    truncated = tmp_path / "truncated.mp4"
    write_media(tmp_path / "full.mp4", _coded_frames(32), np.zeros(32000))
    truncated.write_bytes((tmp_path / "full.mp4").read_bytes()[:600])
    with pytest.raises(InputError) as cut:
        decode_media(truncated)
    assert cut.value.file == str(truncated)

    sound_only = tmp_path / "sound.m4a"
    with av.open(str(sound_only), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=RATE)
        stream.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, RATE), np.float32), format="flt",
                                           layout="mono")
        chunk.sample_rate = RATE
        for packet in stream.encode(chunk):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream") as no_video:
        decode_media(sound_only)
    assert no_video.value.field == "video"


def test_media_user_like_file_is_resampled_and_aligned(tmp_path):
    """A 30 fps 320x180 video with 44.1 kHz stereo AAC, as a phone or YouTube file might be."""
    path = tmp_path / "phone.mp4"
    source_rate, seconds = 44100, 3.0
    time = np.arange(int(seconds * source_rate)) / source_rate
    tone = np.where((time >= 1.0) & (time < 1.5), 0.5 * np.sin(2 * np.pi * 1000 * time), 0.0)
    stereo = np.stack([tone, tone]).astype(np.float32)  # (2, S)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        sound = container.add_stream("aac", rate=source_rate)
        sound.layout = "stereo"
        for index in range(int(seconds * 30)):
            image = np.full((180, 320, 3), 40, dtype=np.uint8)
            image[:, : 320 * index // 90] = 200  # a bar growing left to right
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        chunk = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
        chunk.sample_rate, chunk.pts = source_rate, 0
        for packet in sound.encode(chunk):
            container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    media = decode_media(path, frame_size=32)
    assert media.duration == pytest.approx(seconds, abs=0.05)
    count = int(round(media.duration * FPS))
    assert media.frames.shape == (count, 32, 32, 3) and media.audio.shape == (
        int(round(media.duration * RATE)),)
    # output frame i (at i/16 s) is source frame round(i * 30 / 16): bar width i*30/16/90
    bar = (media.frames[:, 16, :, 0] > 120).mean(axis=1)
    expected = np.round(np.arange(count) * 30 / 16) / 90
    np.testing.assert_allclose(bar, expected, atol=2 / 32)
    energy = _band_energy(media.audio, 1000)
    loud = np.flatnonzero(energy > 0.5 * energy.max())
    assert loud[0] * 0.01 == pytest.approx(1.0 - 0.01, abs=0.012)
