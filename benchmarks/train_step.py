"""Training-step benchmark: paper preset, 2 videos x 256 steps, one optimizer step.

Measures, on this machine:

* the FLOPs of one training step (forward + backward), counted with
  ``torch.utils.flop_counter.FlopCounterMode``;
* the machine's float32 matmul throughput (GFLOP/s, best of several large matmuls);
* the wall time of one full training step as the engine runs it (forward, loss, backward,
  gradient clipping, AdamW step, EMA update), median of ``--repeats`` steps after warm-up;

and prints the ratio of the step time to the FLOP floor (FLOPs / matmul throughput).
Reference (DESIGN section 11, this 2-core CPU): the released implementation took 1.36 s for a
150 GFLOP step, floor ~0.84 s; target <= 1.25 x the floor.

The last output line is one JSON object with keys ``step_s``, ``gflop``, ``matmul_gflops``,
``floor_ratio`` (plus details).  Usage::

    .venv/bin/python benchmarks/train_step.py [--device cuda] [--precision bf16] [--task tal]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from uniav.config import ModelConfig, resolve_model
from uniav.engine.optim import make_optimizer
from uniav.engine.schedule import ModelEMA
from uniav.model import ModelSpec, TaskHeadConfig, UniAV

REFERENCE_STEP_S = 1.36
REFERENCE_GFLOP = 150.0
PAPER_TASKS = {"tal": TaskHeadConfig(200, 256, False, 0.1, 400.0),
               "sed": TaskHeadConfig(10, 64, True, 0.0, 400.0),
               "avel": TaskHeadConfig(100, 256, True, 0.0, 300.0)}


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best observed matmul throughput in GFLOP/s."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def make_batch(task: str, batch: int, device: torch.device):
    """``batch`` videos of the task's max length (random features, a few instances each)."""
    length = PAPER_TASKS[task].max_seq_len
    generator = torch.Generator().manual_seed(0)
    visual = torch.randn(batch, 1536, length, generator=generator).to(device)
    audio = torch.randn(batch, 1536, length, generator=generator).to(device)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    patterns = [torch.tensor([[10.0, 60.0], [100.0, 180.0], [200.0, 230.0]]),
                torch.tensor([[5.0, 250.0]])]
    num_classes = PAPER_TASKS[task].num_classes
    segments = [patterns[i % 2].clamp(max=length - 1) for i in range(batch)]
    labels = [torch.arange(len(s)) * 7 % num_classes for s in segments]
    return visual, audio, mask, segments, labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--task", default="tal", choices=list(PAPER_TASKS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    spec = ModelSpec(model=resolve_model(ModelConfig(preset="paper")), tasks=PAPER_TASKS,
                     visual_dim=1536, audio_dim=1536, text_dim=1536)
    model = UniAV(spec).to(device).train()
    for task, head in PAPER_TASKS.items():
        model.set_text_embeddings(task, torch.nn.functional.normalize(
            torch.randn(head.num_classes, 1536), dim=1).to(device))
    optimizer = make_optimizer(model, base_lr=1e-3, weight_decay=1e-4, text_proj_lr=1e-3)
    ema = ModelEMA(model, 0.999)
    visual, audio, mask, segments, labels = make_batch(args.task, args.batch, device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else torch.autocast(device.type, enabled=False))

    def forward_backward():
        with autocast:
            output = model(visual, audio, mask, args.task)
        losses = model.loss(output, segments, labels, args.task)
        losses["final_loss"].backward()

    def step():
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.update(model)

    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        forward_backward()
    gflop = counter.get_total_flops() / 1e9
    optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up (allocator, optimizer state)
        step()
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak = matmul_gflops(device, dtype, size=4096 if device.type == "cuda" else 2048)
    floor_s = gflop / peak
    result = {"step_s": round(step_s, 4), "gflop": round(gflop, 2),
              "matmul_gflops": round(peak, 1), "floor_ratio": round(step_s / floor_s, 3),
              "floor_s": round(floor_s, 4), "device": str(device), "precision": args.precision,
              "task": args.task, "batch": args.batch, "threads": torch.get_num_threads(),
              "step_times_s": [round(t, 4) for t in times],
              "reference_step_s": REFERENCE_STEP_S,
              "speedup_vs_reference": round(REFERENCE_STEP_S / step_s, 3)}
    print(f"step {step_s:.3f} s for {gflop:.1f} GFLOP; matmul peak {peak:.1f} GFLOP/s -> floor "
          f"{floor_s:.3f} s; ratio {step_s / floor_s:.2f}x (target <= 1.25x); released code "
          f"{REFERENCE_STEP_S} s -> {REFERENCE_STEP_S / step_s:.2f}x faster")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
