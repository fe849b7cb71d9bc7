"""DistributedDataParallel training with Gloo on CPU, launched by torchrun: two processes on one
node, and two nodes of one process each (c10d rendezvous on 127.0.0.1) compared with the
one-process run of the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.engine.conftest import tiny_raw
from uniav.engine.checkpoint import load_exported_weights
from uniav.engine.sampling import BatchStream

VENV_BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
       "GLOO_SOCKET_IFNAME": "lo"}


def _train_arguments(params: Path, out: Path, work: Path, prompts: Path) -> list[str]:
    return ["-m", "uniav", "train", "--config", str(params), "--experiment", "uniav",
            "--output-dir", str(out), "--work-dir", str(work), "--prompts-dir", str(prompts),
            "--no-progress", "--threads", "1"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_process_gloo(planted_root, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(planted_root, **{"train.epochs": 1})))
    command = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
               *_train_arguments(params, tmp_path / "out", tmp_path / "work", planted_root / "prompts")]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    history = json.loads((tmp_path / "out" / "training.json").read_text())
    assert history["world_size"] == 2
    # the batch size is global: each of the 2 ranks takes half of it (4 -> 2 per rank)
    assert history["iterations_per_epoch"] == (10 // 2) // 2   # 10 videos, 5 per rank, 2 per batch
    tensors, metadata = load_exported_weights(tmp_path / "out" / "model.safetensors")
    assert metadata["experiment"] == "uniav" and tensors


def test_shards_of_the_ranks_are_the_one_process_batch():
    """Batch j of W ranks together = batch j of one process with a W times larger batch: the
    same items with the same crop generators."""
    single = BatchStream(11, 4, 7, "tal")
    ranks = [BatchStream(11, 2, 7, "tal", rank=r, world_size=2) for r in range(2)]
    assert single.batches_per_pass == ranks[0].batches_per_pass == 2
    for _ in range(5):  # across passes
        whole = single.next()
        parts = [item for stream in ranks for item in stream.next()]
        assert sorted(i for i, _ in whole) == sorted(i for i, _ in parts)
        draws = {i: rng.integers(0, 2**31) for i, rng in whole}
        assert draws == {i: rng.integers(0, 2**31) for i, rng in parts}


def test_two_nodes_equal_one_process_with_the_same_global_batch(planted_root, tmp_path):
    """Two torchrun "nodes" of one process each, rendezvous through c10d on 127.0.0.1, train the
    same model as one process with the same global batch (dropout and drop-path off: their
    masks are drawn per process)."""
    raw = tiny_raw(planted_root, **{"train.epochs": 1, "model.droppath": 0.0})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    prompts = planted_root / "prompts"

    single = subprocess.run([sys.executable, *_train_arguments(params, tmp_path / "single",
                                                               tmp_path / "single-work", prompts)],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    port = _free_port()
    launcher = [str(VENV_BIN / "torchrun"), "--nnodes", "2", "--nproc_per_node", "1",
                "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
                "--rdzv_id", "two-nodes", "--max_restarts", "0"]
    nodes = []
    for node in range(2):  # one launcher per "node", sharing the output folders as on a cluster
        log = (tmp_path / f"node{node}.log").open("w")
        nodes.append((subprocess.Popen(
            [*launcher, *_train_arguments(params, tmp_path / "multi", tmp_path / "multi-work",
                                          prompts)],
            stdout=log, stderr=subprocess.STDOUT, text=True, env=ENV), log))
    try:
        codes = [process.wait(timeout=300) for process, _ in nodes]
    finally:
        for process, log in nodes:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    logs = "\n".join((tmp_path / f"node{n}.log").read_text()[-3000:] for n in range(2))
    assert codes == [0, 0], logs

    one = json.loads((tmp_path / "single" / "training.json").read_text())
    two = json.loads((tmp_path / "multi" / "training.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["iterations_per_epoch"] == two["iterations_per_epoch"] == 10 // 4
    for first, second in zip(one["history"], two["history"], strict=True):
        for task, loss in first["train_loss"].items():
            assert second["train_loss"][task] == pytest.approx(loss, rel=1e-4), task
        assert second["val_average_mAP"] == pytest.approx(first["val_average_mAP"], abs=1e-6)
    weights_one, _ = load_exported_weights(tmp_path / "single" / "model.safetensors")
    weights_two, _ = load_exported_weights(tmp_path / "multi" / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():
        np.testing.assert_allclose(weights_two[name].numpy(), tensor.numpy(), rtol=1e-4,
                                   atol=1e-5, err_msg=name)
