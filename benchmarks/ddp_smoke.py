"""DDP smoke test: a short multi-task training launched by torchrun on the planted tiny data.

Writes the planted three-task data set used by the engine tests into ``--root``, then runs
``torchrun --standalone --nproc_per_node N -m uniav train`` on it (NCCL on GPUs, Gloo on CPU)
and prints the training summary as JSON.  Usage::

    python benchmarks/ddp_smoke.py --root /tmp/ddp --nproc 1 --device cuda --precision bf16
    python benchmarks/ddp_smoke.py --root /tmp/ddp1 --nproc 1 --device cuda --compile auto
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.engine.conftest import _write_task, tiny_raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--compile", default="off", choices=["off", "auto", "on"],
                        help="train.compile (default: %(default)s)")
    args = parser.parse_args()
    root = Path(args.root)
    for i, task in enumerate(("tal", "sed", "avel")):
        _write_task(root, task, seed=100 + i)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw(root, **{
        "train.epochs": args.epochs, "train.device": args.device,
        "train.precision": args.precision, "train.deterministic": False,
        "train.compile": {"off": False, "on": True}.get(args.compile, args.compile)})))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(args.nproc)]
    command = torchrun + ["-m", "uniav", "train", "--config", str(params), "--experiment", "uniav",
                          "--output-dir", str(root / "out"), "--work-dir", str(root / "work"),
                          "--prompts-dir", str(root / "prompts"), "--no-progress", "--no-tracking"]
    start = time.perf_counter()
    result = subprocess.run(command, env={**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        print(json.dumps({"ok": False, "returncode": result.returncode}))
        return result.returncode
    history = json.loads((root / "out" / "training.json").read_text())
    print(json.dumps({"ok": True, "seconds": round(seconds, 1), "world_size": history["world_size"],
                      "iterations": history["iterations"],
                      "final_val_average_mAP": history["history"][-1].get("val_average_mAP")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
