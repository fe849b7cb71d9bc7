"""Feature extraction: the grid, planted events, the encoders, stores, resuming, plug-ins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from uniav.cli import main as uniav_main
from uniav.prepare import extract as extract_module
from uniav.data.annotations import load_annotations
from uniav.prepare.encoder_base import gather_windows
from uniav.prepare.encoder_builtins import ColourMotionEncoder, LogMelEncoder
from uniav.prepare.encoders import get_encoder, list_encoders
from uniav.grid import TimeGrid
from uniav.prepare.extract import extract_task, extract_video_features
from uniav.data.features import FeatureStore, layout_of
from uniav.prepare.media import write_media
from uniav.prepare.synthetic import synthesize_task
from uniav.errors import ConfigError, InputError

SMALL_SED = ("scales.tiny.datasets.synthetic.videos.sed={train: 2, validation: 1, test: 1}",
             "scales.tiny.train.batch_size.sed=2")
HUE_RED = 48  # first hue bin (red) of colour_motion's window means: after 4x4x3 grid means


def test_extract_grid_formula():
    sed, tal = TimeGrid(fps=16, stride=4, window=16), TimeGrid(fps=16, stride=8, window=16)
    assert sed.steps_of_frames(160) == 37  # a 10 s SED clip
    assert tal.steps_of_frames(720) == 89  # a 45 s TAL video
    assert sed.steps_of_frames(16) == 1
    assert sed.steps_of_frames(19) == 1
    assert sed.steps_of_frames(20) == 2
    assert sed.steps_of_frames(5) == 1  # shorter than a window: one padded step
    np.testing.assert_allclose(sed.step_centres(3), [0.5, 0.75, 1.0])
    np.testing.assert_allclose(tal.step_centres(2), [0.5, 1.0])


def _planted_video(path: Path) -> None:
    """8 s: grey picture with a red square during frames [48, 80) (3-5 s), a 1 kHz tone 6-6.5 s."""
    frames = np.full((128, 32, 32, 3), 90, dtype=np.uint8)
    frames[48:80, 8:24, 8:24] = (220, 20, 20)
    time = np.arange(128000) / 16000
    audio = 0.005 * np.random.default_rng(0).standard_normal(len(time))
    tone = (time >= 6.0) & (time < 6.5)
    audio[tone] += 0.4 * np.sin(2 * np.pi * 1000 * time[tone])
    write_media(path, frames, audio)


def test_extract_planted_events_appear_at_the_right_steps(tmp_path):
    path = tmp_path / "planted.mp4"
    _planted_video(path)
    visual, audio, duration = extract_video_features(
        path, fps=16, feat_stride=4, window_frames=16, visual_encoder="colour_motion",
        audio_encoder="logmel")
    steps = TimeGrid(fps=16, stride=4, window=16).steps_of_frames(128)
    assert duration == pytest.approx(8.0)
    assert visual.shape == (steps, ColourMotionEncoder.dim) and audio.shape == (steps, 91)
    # step x covers frames [4x, 4x + 16): the square is seen iff that overlaps [48, 80)
    starts = np.arange(steps) * 4
    overlap = np.clip(np.minimum(starts + 16, 80) - np.maximum(starts, 48), 0, None) / 16
    red = visual[:, HUE_RED]
    assert np.flatnonzero(red > 0.01).tolist() == np.flatnonzero(overlap > 0).tolist()
    # proportional to the fraction of the window's frames that show it (16x16 of 32x32 pixels)
    np.testing.assert_allclose(red, 0.25 * overlap, atol=0.02)
    # the audio window of step x is 1 s centred on (4x + 8)/16 s: the tone (6-6.5 s) is heard
    # by the steps whose window [x/4, x/4 + 1) overlaps it, and the 1 kHz mel band lights up
    centres = TimeGrid(fps=16, stride=4, window=16).step_centres(steps)
    heard = (centres - 0.5 < 6.5) & (centres + 0.5 > 6.0)
    band = LogMelEncoder()._filters.argmax(axis=1)  # mel band of every FFT bin
    tone_band = band[int(round(1000 / (16000 / 512)))]
    level = audio[:, tone_band]  # mean log-mel of the tone's band
    assert level[heard].min() > level[~heard].max() + 2  # e^2: over 7x the power


def test_extract_encoder_clip_path_equals_window_path():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(70, 32, 32, 3), dtype=np.uint8)
    visual = ColourMotionEncoder()
    starts = np.arange(0, 55, 4)
    np.testing.assert_allclose(visual.encode_clip(frames, starts, 16),
                               visual.encode_windows(gather_windows(frames, starts, 16, "edge")),
                               atol=1e-5)
    # windows running past the end repeat the last frame (fallback path, same answer)
    late = np.array([60, 64])
    np.testing.assert_allclose(visual.encode_clip(frames, late, 16),
                               visual.encode_windows(gather_windows(frames, late, 16, "edge")),
                               atol=1e-5)
    samples = rng.standard_normal(50000).astype(np.float32) * 0.1
    audio = LogMelEncoder()
    for sample_starts in (np.arange(-8000, 40000, 4000), np.arange(-500, 30000, 3333)):
        np.testing.assert_allclose(
            audio.encode_clip(samples, sample_starts, 16000),
            audio.encode_windows(gather_windows(samples, sample_starts, 16000, "zeros")),
            atol=1e-4)


def test_extract_builtin_encoders_declare_their_dims():
    for name, modality in (("colour_motion", "visual"), ("logmel", "audio")):
        encoder = get_encoder(name)
        assert encoder.modality == modality
    frames = np.zeros((2, 16, 32, 32, 3), dtype=np.uint8)
    assert get_encoder("colour_motion").encode_windows(frames).shape == (2, 119)
    assert get_encoder("logmel").encode_windows(np.zeros((3, 16000), np.float32)).shape == (3, 91)
    with pytest.raises(ConfigError, match="unknown encoder 'nope'"):
        get_encoder("nope")
    with pytest.raises(ConfigError, match="audio encoder"):
        get_encoder("logmel", modality="visual")


def test_extract_store_of_the_tiny_benchmark(synth_benchmark):
    config = synth_benchmark
    for task in ("tal", "sed", "avel"):
        data = config.task_spec(task).data
        store = FeatureStore(data.features, layout_of(data))
        assert store.meta == {"visual_encoder": "colour_motion", "audio_encoder": "logmel",
                              "visual_dim": 119, "audio_dim": 91, "fps": 16.0,
                              "feat_stride": data.feat_stride, "window_frames": 16,
                              "format": "npy"}
        db = load_annotations(data.annotations)
        assert store.video_ids() == set(db.videos)
        for video in list(db.videos.values())[:3]:
            visual, audio = store.read(video.video_id)
            frames = int(round(video.duration * 16))
            assert len(visual) == len(audio) == TimeGrid.of(data).steps_of_frames(frames)


def _calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = extract_module.extract_and_write

    def counting(*args):
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(extract_module, "extract_and_write", counting)
    return calls


def test_extract_resumes_and_never_leaves_partial_files(tmp_path, synth_make_config, monkeypatch):
    config = synth_make_config(tmp_path, *SMALL_SED)
    synthesize_task(config, "sed", progress=False)
    features = Path(config.task_spec("sed").data.features)
    calls = _calls(monkeypatch)
    extract_task(config, "sed", progress=False)
    assert len(calls) == 4 and len(list(features.glob("*.npy"))) == 8

    calls.clear()
    extract_task(config, "sed", progress=False)  # complete: skipped
    assert calls == []

    victim = sorted(features.glob("*_audio.npy"))[2]
    victim.unlink()
    extract_task(config, "sed", progress=False)
    assert calls == [victim.name[: -len("_audio.npy")]]

    # media remade after its features (same id, new content): re-extracted
    calls.clear()
    remade = sorted(Path(config.datasets.synthetic.tasks["sed"].media).glob("*.mp4"))[0]
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for stale in features.glob(f"{remade.stem}_*.npy"):
        os.utime(stale, ns=(an_hour_ago, an_hour_ago))
    extract_task(config, "sed", progress=False)
    assert calls == [remade.stem]

    # a crash while writing the third video's audio leaves no partial file; the rerun redoes it
    for path in features.glob("*.npy"):
        path.unlink()
    real_save = np.save
    saved = []

    def crashing_save(handle, array, **kwargs):
        saved.append(1)
        if len(saved) == 6:
            handle.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt("killed")
        return real_save(handle, array, **kwargs)

    monkeypatch.setattr(np, "save", crashing_save)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        extract_task(config, "sed", progress=False)
    monkeypatch.setattr(np, "save", real_save)
    names = sorted(os.listdir(features))
    assert not [n for n in names if n.endswith(".tmp")]
    assert len([n for n in names if n.endswith(".npy")]) == 5  # 2 whole videos + 1 visual file
    calls.clear()
    extract_task(config, "sed", progress=False)
    assert len(calls) == 2
    store = FeatureStore(features, layout_of(config.task_spec("sed").data))
    for video in store.video_ids():
        store.read(video)

    # other grid settings: the store is remade
    calls.clear()
    other = synth_make_config(tmp_path, *SMALL_SED, "datasets.synthetic.tasks.sed.feat_stride=8")
    extract_task(other, "sed", progress=False)
    assert len(calls) == 4
    assert json.loads((features / "meta.json").read_text())["feat_stride"] == 8


def test_extract_hdf5_store(tmp_path, synth_make_config, monkeypatch):
    npy = synth_make_config(tmp_path, *SMALL_SED)
    synthesize_task(npy, "sed", progress=False)
    extract_task(npy, "sed", progress=False)
    h5_path = tmp_path / "sed" / "features.h5"
    hdf5 = synth_make_config(tmp_path, *SMALL_SED,
                             "datasets.synthetic.tasks.sed.feature_format=hdf5",
                             f"datasets.synthetic.tasks.sed.features={h5_path}")
    calls = _calls(monkeypatch)
    assert extract_task(hdf5, "sed", progress=False) == h5_path
    assert len(calls) == 4
    assert not (tmp_path / "sed" / "features.h5.staging").exists()
    npy_data = npy.task_spec("sed").data
    from_npy = FeatureStore(npy_data.features, layout_of(npy_data))
    from_h5 = FeatureStore(h5_path, layout_of(hdf5.task_spec("sed").data))
    assert from_h5.meta["format"] == "hdf5" and from_h5.dims() == (119, 91)
    assert from_h5.video_ids() == from_npy.video_ids()
    for video in from_npy.video_ids():
        for a, b in zip(from_npy.read(video), from_h5.read(video)):
            np.testing.assert_array_equal(a, b)
    calls.clear()
    extract_task(hdf5, "sed", progress=False)
    assert calls == []
    # a file made with other settings is replaced, even when nothing needs decoding: a run
    # killed after extracting (staged npy files complete) but before packing
    staging = tmp_path / "sed" / "features.h5.staging"
    shutil.copytree(npy_data.features, staging)
    (staging / "meta.json").write_text(json.dumps({**from_h5.meta}))
    import h5py
    with h5py.File(h5_path, "r+") as handle:
        handle.attrs["meta"] = json.dumps({**from_h5.meta, "visual_encoder": "older"})
    extract_task(hdf5, "sed", progress=False)
    assert calls == [] and not staging.exists()
    assert FeatureStore(h5_path, layout_of(hdf5.task_spec("sed").data)).meta == from_h5.meta


CUSTOM_MODULE = '''
import torch
from torch import nn


class TinyVisual(nn.Module):
    """Mean colour of each frame -> linear -> mean over the window."""

    frame_size = 16

    def __init__(self, dim=8):
        super().__init__()
        self.proj = nn.Linear(3, dim)

    def forward(self, windows):  # (B, W, 3, H, W)
        return self.proj(windows.mean(dim=(3, 4))).mean(dim=1)


def build():
    return TinyVisual()


def build_wide():
    return TinyVisual(dim=12)
'''


def test_extract_custom_encoder_plugin(tmp_path, monkeypatch, synth_make_config, capsys):
    (tmp_path / "synth_plugin_encoders.py").write_text(CUSTOM_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("synth_plugin_encoders", None)
    import synth_plugin_encoders

    module = synth_plugin_encoders.build()
    with torch.no_grad():
        module.proj.weight.copy_(torch.eye(8, 3))
        module.proj.bias.zero_()
    from safetensors.torch import save_file
    save_file(module.state_dict(), str(tmp_path / "tiny.safetensors"))
    torch.save(module.state_dict(), tmp_path / "tiny.pt")

    def config_with(factory: str, weights: str, dim: int = 8):
        entry = (f"features.custom_encoders={{tiny: {{modality: visual, factory: '{factory}', "
                 f"weights: '{weights}', dim: {dim}}}}}")
        return synth_make_config(tmp_path, entry, "features.visual_encoder=tiny")

    path = tmp_path / "planted.mp4"
    _planted_video(path)
    for weights in ("tiny.safetensors", "tiny.pt"):
        config = config_with("synth_plugin_encoders:build", str(tmp_path / weights))
        encoder = get_encoder("tiny", config.features, modality="visual")
        assert encoder.dim == 8 and encoder.frame_size == 16
        visual, audio, _ = extract_video_features(
            path, fps=16, feat_stride=4, window_frames=16, visual_encoder="tiny",
            audio_encoder="logmel", features_config=config.features)
        assert visual.shape == (29, 8) and audio.shape == (29, 91)
        # identity weights: channel 0 is the mean red level of the window's frames; window 12
        # (frames 48-63) shows the red square (220 on a quarter of the picture) on grey 90
        assert visual[0, 0] == pytest.approx(90 / 255, abs=0.02)
        assert visual[12, 0] == pytest.approx((90 + 0.25 * 130) / 255, abs=0.02)
        np.testing.assert_allclose(visual[:, 3:], 0, atol=1e-6)

    assert "tiny" in {row["name"] for row in list_encoders(config.features)}
    assert uniav_main(["extract", "--list-encoders", "--set", "scale=tiny", "--set",
                       "features.custom_encoders={tiny: {modality: visual, factory: 'x:y', "
                       "weights: 'w.pt', dim: 8}}"]) == 0
    listing = capsys.readouterr().out
    assert "colour_motion" in listing and "logmel" in listing and "tiny" in listing

    with pytest.raises(ConfigError, match="custom_encoders.tiny.dim"):
        get_encoder("tiny", config_with("synth_plugin_encoders:build", str(tmp_path / "tiny.pt"),
                                        dim=16).features)
    with pytest.raises(InputError, match="do not fit") as wrong:
        get_encoder("tiny", config_with("synth_plugin_encoders:build_wide",
                                        str(tmp_path / "tiny.pt"), dim=12).features)
    assert wrong.value.file == str(tmp_path / "tiny.pt")
    with pytest.raises(InputError, match="not found"):
        get_encoder("tiny", config_with("synth_plugin_encoders:build",
                                        str(tmp_path / "missing.pt")).features)
    with pytest.raises(ConfigError, match="cannot import"):
        get_encoder("tiny", config_with("no_such_module_here:build",
                                        str(tmp_path / "tiny.pt")).features)
    pickled = tmp_path / "pickled.pt"
    torch.save({"proj.weight": object()}, pickled)
    with pytest.raises(InputError, match="cannot read encoder weights"):
        get_encoder("tiny", config_with("synth_plugin_encoders:build", str(pickled)).features)


def test_extract_refuses_missing_media_and_media_less_benchmarks(tmp_path, synth_make_config):
    config = synth_make_config(tmp_path, *SMALL_SED)
    synthesize_task(config, "sed", progress=False)
    media_dir = Path(config.datasets.synthetic.tasks["sed"].media)
    victim = sorted(media_dir.glob("*.mp4"))[0]
    victim.unlink()
    with pytest.raises(InputError, match="no media file") as missing:
        extract_task(config, "sed", progress=False)
    assert missing.value.video == victim.stem
    paper = synth_make_config(tmp_path, "benchmark=paper")
    with pytest.raises(ConfigError, match="downloaded, not extracted"):
        extract_task(paper, "sed", progress=False)


def test_extract_cli_runs_in_parallel_workers(tmp_path, synth_overrides_for):
    """``uniav synthesize`` / ``uniav extract`` with --jobs 2, as a Snakemake rule calls them."""
    sets = [item for override in synth_overrides_for(tmp_path) + list(SMALL_SED)
            for item in ("--set", override)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for command in ("synthesize", "extract"):
        result = subprocess.run([sys.executable, "-m", "uniav", command, "--task", "sed",
                                 "--jobs", "2", "--no-progress", *sets],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
    store = FeatureStore(tmp_path / "sed" / "features")
    assert len(store.video_ids()) == 4
