"""A tiny three-task project on planted features (no media), for engine tests.

Each class has its own feature channel: an event of class k raises channel k of the visual
features (tal), of the audio features (sed), or of both (avel) over the event's steps, on top
of Gaussian noise.  Small enough that a few seconds of CPU training learn it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from uniav.config import Config, config_from_dict
from uniav.data.features import FeatureLayout, write_meta, write_npy_video

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 8
CLASSES = {"tal": ["Bungee jumping", "Playing violin", "Surfing"],
           "sed": ["Dog", "Speech", "Blender"],
           "avel": ["dog barking", "playing guitar", "car passing by"]}
# task -> (steps per video, feature step in seconds, videos per subset)
GRID = {"tal": (48, 0.5, 10), "sed": (32, 0.25, 10), "avel": (48, 0.25, 10)}


def _write_task(root: Path, task: str, seed: int, dims: tuple[int, int] = (DIM, DIM),
                encoders: tuple[str, str] = ("planted", "planted")) -> None:
    steps, step_seconds, per_subset = GRID[task]
    visual_dim, audio_dim = dims
    rng = np.random.default_rng(seed)
    database = {}
    task_dir = root / task
    for subset in ("training", "validation", "testing"):
        for i in range(per_subset if subset == "training" else per_subset // 2):
            video = f"{task}_{subset}_{i:02d}"
            visual = rng.normal(0, 1, (steps, visual_dim)).astype(np.float32)
            audio = rng.normal(0, 1, (steps, audio_dim)).astype(np.float32)
            annotations = []
            start = int(rng.integers(1, 6))
            while start < steps - 6:
                length = int(rng.integers(4, 12))
                end = min(start + length, steps - 1)
                label = int(rng.integers(0, 3))
                if task in ("tal", "avel"):
                    visual[start:end, label] += 3.0
                if task in ("sed", "avel"):
                    audio[start:end, label] += 3.0
                # grid x <-> (x * stride + window / 2) / fps seconds = x * step + 0.5 s here
                annotations.append({"segment": [start * step_seconds + 0.5, end * step_seconds + 0.5],
                                    "label": CLASSES[task][label]})
                start = end + int(rng.integers(3, 8))
            duration = (steps - 1) * step_seconds + 1.0
            database[video] = {"subset": subset, "duration": duration, "fps": 16,
                               "annotations": annotations}
            write_npy_video(task_dir / "features", FeatureLayout(), video, visual, audio)
    write_meta(task_dir / "features", {"visual_encoder": encoders[0], "audio_encoder": encoders[1],
                                       "visual_dim": visual_dim, "audio_dim": audio_dim,
                                       "fps": 16, "format": "npy"})
    (task_dir / "annotations.json").write_text(json.dumps({"classes": CLASSES[task],
                                                           "database": database}))
    prompts = np.eye(3, 6, dtype=np.float32)
    (root / "prompts").mkdir(exist_ok=True)
    np.save(root / "prompts" / f"{task}.npy", prompts)


def tiny_raw(root: Path, **overrides) -> dict:
    """params.yaml (as a mapping) with the synthetic tasks pointed at the planted data."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["scale"] = "default"
    lengths = {"tal": 64, "sed": 32, "avel": 64}
    for task in ("tal", "sed", "avel"):
        entry = raw["datasets"]["synthetic"]["tasks"][task]
        entry["annotations"] = str(root / task / "annotations.json")
        entry["features"] = str(root / task / "features")
        entry["media"] = str(root / task / "media")
        entry["max_seq_len"] = lengths[task]
        entry.pop("resize_length", None)
    raw["model"] = {"preset": "cpu", "embd_dim": 16, "head_dim": 16, "droppath": 0.1}
    raw["train"].update({"epochs": 2, "warmup_epochs": 1, "batch_size": {"tal": 4, "sed": 4, "avel": 4},
                         "lr": {"tal": 0.002, "sed": 0.002, "avel": 0.002}, "device": "cpu"})
    raw["tracking"]["enabled"] = False
    for key, value in overrides.items():
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return raw


def tiny_config(root: Path, **overrides) -> Config:
    """The validated :func:`tiny_raw` configuration."""
    return config_from_dict(tiny_raw(root, **overrides))


@pytest.fixture(scope="session")
def planted_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    for i, task in enumerate(("tal", "sed", "avel")):
        _write_task(root, task, seed=100 + i)
    return root
