"""Tiny annotation files and feature stores built by hand for the dataset tests.

Default grid: 16 fps, stride 4, window 16 frames (0.25 s steps, like DESED / UnAV-100).  A video
of ``T`` steps gets the duration ``((T - 1)·stride + window) / fps`` so the length check expects
exactly ``T`` steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from uniav.config import DatasetTaskConfig, SubsetNames, TaskConfig, TaskSpec
from uniav.data.features import FeatureLayout, pack_hdf5, write_meta, write_npy_video
from uniav.errors import InputError

CLASSES = ["Dog", "Speech", "Alarm"]
DIMS = (6, 5)
FPS, STRIDE, WINDOW = 16.0, 4, 16

# (start, end, label) in seconds
Annotation = tuple[float, float, str]


def duration_for(steps: int, *, fps: float = FPS, stride: int = STRIDE,
                 window: int = WINDOW) -> float:
    """The duration whose expected feature length is exactly ``steps``."""
    return ((steps - 1) * stride + window) / fps


def make_spec(annotations: Path, features: Path, *, name: str = "sed", fps: float = FPS,
              feat_stride: int = STRIDE, window_frames: int = WINDOW, max_seq_len: int = 32,
              subsets: SubsetNames | None = None, feature_format: str = "npy",
              resize_length: int | None = None, holdout_fraction: float = 0.25,
              length_tolerance: int = 2, trunc_thresh: float = 0.5,
              crop_ratio: tuple[float, float] = (0.9, 1.0)) -> TaskSpec:
    """A TaskSpec straight from the config dataclasses."""
    data = DatasetTaskConfig(
        annotations=str(annotations), features=str(features), fps=fps, feat_stride=feat_stride,
        window_frames=window_frames, max_seq_len=max_seq_len,
        subsets=subsets or SubsetNames(train="training", validation="validation", test="testing"),
        feature_format=feature_format, resize_length=resize_length,
        holdout_fraction=holdout_fraction, length_tolerance=length_tolerance)
    task = TaskConfig(prompt_template="A sound event of {}.", class_aware=True,
                      trunc_thresh=trunc_thresh, label_smoothing=0.0, init_loss_norm=400,
                      nms_sigma=0.4, tiou_thresholds=[0.5], crop_ratio=crop_ratio)
    return TaskSpec(name=name, benchmark="synthetic", data=data, task=task)


def video(subset: str, steps: int, annotations: Sequence[Annotation] = (), *,
          duration: float | None = None, **grid: Any) -> dict[str, Any]:
    """One video's description for :func:`build` (``grid``: fps/stride/window of its duration)."""
    return {"subset": subset, "steps": steps, "annotations": list(annotations),
            "duration": duration if duration is not None else duration_for(steps, **grid)}


def annotation_json(videos: dict[str, dict[str, Any]], classes: list[str] | None = CLASSES
                    ) -> dict[str, Any]:
    """ActivityNet-style JSON of :func:`video` descriptions."""
    database = {vid: {"subset": v["subset"], "duration": v["duration"],
                      "annotations": [{"segment": [s, e], "label": lab}
                                      for s, e, lab in v["annotations"]]}
                for vid, v in videos.items()}
    data: dict[str, Any] = {"database": database}
    if classes is not None:
        data["classes"] = classes
    return data


def random_features(videos: dict[str, dict[str, Any]], dims: tuple[int, int] = DIMS,
                    seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per video ``(visual (T, Cv), audio (T, Ca))`` float32 noise."""
    rng = np.random.default_rng(seed)
    return {vid: (rng.normal(size=(v["steps"], dims[0])).astype(np.float32),
                  rng.normal(size=(v["steps"], dims[1])).astype(np.float32))
            for vid, v in videos.items()}


def write_store(path: Path, features: dict[str, tuple[np.ndarray, np.ndarray]], *,
                feature_format: str = "npy", layout: FeatureLayout = FeatureLayout(),
                dims: tuple[int, int] | None = None) -> Path:
    """An npy directory or an HDF5 file holding ``features``; metadata records ``dims`` if given.

    Returns:
        The store path (directory or ``.h5`` file).
    """
    meta = None if dims is None else {"visual_encoder": "test", "audio_encoder": "test",
                                      "visual_dim": dims[0], "audio_dim": dims[1]}
    if feature_format == "npy":
        path.mkdir(parents=True, exist_ok=True)
        for vid, (visual, audio) in features.items():
            write_npy_video(path, layout, vid, visual, audio)
        if meta is not None:
            write_meta(path, meta)
        return path
    pack_hdf5(path, [(vid, v, a) for vid, (v, a) in features.items()], meta,
              id_prefix=layout.id_prefix)
    return path


def build(root: Path, videos: dict[str, dict[str, Any]], *, classes: list[str] | None = CLASSES,
          feature_format: str = "npy", dims: tuple[int, int] = DIMS, seed: int = 0,
          meta: bool = True, features: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
          **spec_kwargs: Any) -> tuple[TaskSpec, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Write the annotations and a feature store under ``root`` and return ``(spec, features)``."""
    root.mkdir(parents=True, exist_ok=True)
    annotations = root / "annotations.json"
    annotations.write_text(json.dumps(annotation_json(videos, classes)))
    features = features if features is not None else random_features(videos, dims, seed)
    store = root / ("features" if feature_format == "npy" else "features.h5")
    write_store(store, features, feature_format=feature_format, dims=dims if meta else None)
    return make_spec(annotations, store, feature_format=feature_format, **spec_kwargs), features


def assert_names(excinfo: pytest.ExceptionInfo, *, file: Path | str | None = None,
                 video: str | None = None, field: str | None = None) -> InputError:
    """The raised InputError names ``file``, ``video`` and ``field`` (attributes and message)."""
    error = excinfo.value
    assert isinstance(error, InputError)
    text = str(error)
    if file is not None:
        assert error.file == str(file), text
        assert str(file) in text
    if video is not None:
        assert error.video == video, text
        assert repr(video) in text
    if field is not None:
        assert error.field == field, text
        assert repr(field) in text
    return error


class ScriptedIntegers:
    """A stand-in for ``np.random.Generator`` whose ``integers`` returns scripted values.

    It checks each draw's bounds, so a test also pins down which ranges are sampled."""

    def __init__(self, *draws: tuple[int, int, int]):
        self.draws = list(draws)  # (expected low, expected high (inclusive), value)

    def integers(self, low: int, high: int, *, endpoint: bool) -> int:
        assert endpoint, "bounds are inclusive"
        expected_low, expected_high, value = self.draws.pop(0)
        assert (low, high) == (expected_low, expected_high), (low, high)
        return value
