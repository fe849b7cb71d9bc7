"""Two-process DistributedDataParallel training with Gloo on CPU, launched by torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.engine.conftest import tiny_raw
from uniav.engine.checkpoint import load_exported_weights

VENV_BIN = Path(sys.executable).parent


def test_torchrun_two_process_gloo(planted_root, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(planted_root, **{"train.epochs": 1})))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    command = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
               "-m", "uniav", "train", "--config", str(params), "--experiment", "uniav",
               "--output-dir", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
               "--prompts-dir", str(planted_root / "prompts"), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    history = json.loads((tmp_path / "out" / "training.json").read_text())
    assert history["world_size"] == 2
    # each of the 2 ranks takes half of each task's batch size (4 -> 2 per rank)
    assert history["iterations_per_epoch"] == (10 // 2) // 2   # 10 videos, 5 per rank, 2 per batch
    tensors, metadata = load_exported_weights(tmp_path / "out" / "model.safetensors")
    assert metadata["experiment"] == "uniav" and tensors
