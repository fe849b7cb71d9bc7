"""Training-step benchmark: paper preset, one optimizer step as the engine runs it.

For each variant - eager or compiled (``train.compile``) x fp32 or bf16 autocast - one
multi-task iteration as the engine runs it: for each of ``--tasks`` in order, one full training
step of :class:`~uniav.engine.stepper.TrainingStep` (forward, losses, backward, gradient
clipping, AdamW step, EMA update, the step's read-back of its losses) on ``--batch`` videos of
the task's maximum length, then the scheduler step; median of ``--repeats`` iterations after
``--warmup``:

* ``step_s``: seconds per iteration (``task_step_s``: per task, median);
  ``videos_per_s``: batch x tasks / step_s;
* ``tflops``: estimated throughput, the FLOPs of one forward + backward of every task (counted
  once with ``torch.utils.flop_counter.FlopCounterMode``, the same for every variant) / step_s;
* ``mfu``: tflops / the measured matmul throughput of the device in the variant's dtype (large
  square matmuls, best of 6; ``peak_source``); on known GPUs ``mfu_datasheet`` is relative to the
  datasheet dense peak as well (H100/H200: 989 TFLOP/s bf16, 67 fp32 - TF32 is off).

Without CUDA it prints a "no GPU" line and measures the CPU; compiled variants are skipped there
unless asked for (``--modes eager,compiled``), as ``train.compile: auto`` trains eagerly on the
CPU.  The last output line is one JSON object (``--json``: the only output).  Usage::

    .venv/bin/python benchmarks/train_step.py --quick
    python3 benchmarks/train_step.py --device cuda --batch 16 --json
    python3 benchmarks/train_step.py --tasks tal --modes eager   # one task's step alone
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import platform
import statistics
import sys
import time

import torch

from uniav.config import ModelConfig, resolve_model
from uniav.engine.optim import make_optimizer
from uniav.engine.schedule import ModelEMA, make_scheduler
from uniav.engine.stepper import TrainingStep
from uniav.model import ModelSpec, TaskHeadConfig, UniAV

PAPER_TASKS = {"tal": TaskHeadConfig(200, 256, False, 0.1, 400.0),
               "sed": TaskHeadConfig(10, 64, True, 0.0, 400.0),
               "avel": TaskHeadConfig(100, 256, True, 0.0, 300.0)}
FEATURE_DIM = 1536
#: dense peak TFLOP/s (bf16 tensor cores, TF32 tensor cores, plain fp32) of known GPUs
GPU_PEAKS = {"H200": (989.0, 494.0, 67.0), "H100": (989.0, 494.0, 67.0),
             "A100": (312.0, 156.0, 19.5)}


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Best observed matmul throughput in TFLOP/s."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=None)
def peak_tflops(device: torch.device, precision: str, quick: bool) -> tuple[float, str]:
    """The peak the MFU is relative to: the measured matmul throughput of the device in the
    variant's dtype (bf16, or fp32 as the engine runs it: TF32 off), measured once per run."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    size = 8192 if device.type == "cuda" else (1024 if quick else 2048)
    return matmul_tflops(device, dtype, size), f"measured {dtype} matmul, {size}^3"


def datasheet_tflops(device: torch.device, precision: str) -> float | None:
    """The datasheet dense peak of a known GPU for the variant's precision, else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32, fp32) in GPU_PEAKS.items():
        if key in name:
            if precision == "bf16":
                return bf16
            return tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32
    return None


def make_model(device: torch.device) -> UniAV:
    torch.manual_seed(0)
    spec = ModelSpec(model=resolve_model(ModelConfig(preset="paper")), tasks=PAPER_TASKS,
                     visual_dim=FEATURE_DIM, audio_dim=FEATURE_DIM, text_dim=FEATURE_DIM)
    model = UniAV(spec).to(device).train()
    for task, head in PAPER_TASKS.items():
        model.set_text_embeddings(task, torch.nn.functional.normalize(
            torch.randn(head.num_classes, FEATURE_DIM), dim=1).to(device))
    return model


def make_batch(model: UniAV, task: str, batch: int, device: torch.device):
    """``batch`` videos of the task's max length (random features, a few instances each) and
    their targets on the device (as the trainer's prefetcher hands them over)."""
    length = PAPER_TASKS[task].max_seq_len
    generator = torch.Generator().manual_seed(0)
    visual = torch.randn(batch, FEATURE_DIM, length, generator=generator).to(device)
    audio = torch.randn(batch, FEATURE_DIM, length, generator=generator).to(device)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    patterns = [torch.tensor([[10.0, 60.0], [100.0, 180.0], [200.0, 230.0]]),
                torch.tensor([[5.0, 250.0]])]
    num_classes = PAPER_TASKS[task].num_classes
    segments = [patterns[i % 2].clamp(max=length - 1) for i in range(batch)]
    labels = [torch.arange(len(s)) * 7 % num_classes for s in segments]
    targets = tuple(t.to(device) for t in model.targets(length, segments, labels, task, "cpu"))
    return visual, audio, mask, segments, labels, targets


def training_step(model: UniAV, precision: str, tasks: list[str]) -> TrainingStep:
    optimizer = make_optimizer(model, base_lr=1e-4, weight_decay=0.05, text_proj_lr=1e-4)
    scheduler = make_scheduler(optimizer, 1, 10 ** 6)
    return TrainingStep(model, model, optimizer, scheduler, ModelEMA(model, 0.999),
                        {task: 1.0 for task in tasks}, clip_grad_norm=1.0,
                        autocast_dtype=torch.bfloat16 if precision == "bf16" else None)


def count_gflop(model: UniAV, task: str, batch) -> float:
    """GFLOPs of one forward + backward of ``task`` on ``batch``."""
    from torch.utils.flop_counter import FlopCounterMode

    visual, audio, mask, _, _, targets = batch
    counter = FlopCounterMode(display=False)
    with counter:
        output = model(visual, audio, mask, task)
        cls_sum, reg_sum, _ = model.loss_terms(output, *targets, task)
        (cls_sum + reg_sum).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def measure(device: torch.device, mode: str, precision: str, args, gflop: float
            ) -> dict:
    """One variant: ``--warmup`` then ``--repeats`` timed multi-task iterations."""
    model = make_model(device)
    step = training_step(model, precision, args.tasks)
    batches = {task: make_batch(model, task, args.batch, device) for task in args.tasks}
    task_times: dict[str, list[float]] = {task: [] for task in args.tasks}

    def task_step(task: str, timed: bool):
        visual, audio, mask, segments, labels, targets = batches[task]
        start = time.perf_counter()
        result = step.task_step(task, visual, audio, mask, segments, labels, targets=targets)
        if timed:   # task_step reads its losses back: the device is done with the task's step
            task_times[task].append(time.perf_counter() - start)
        return result

    result = {"mode": mode, "precision": precision}
    if mode == "compiled":
        torch._dynamo.reset()
        if not step.enable_compile(required=False):
            return {**result, "skipped": f"compiling failed: {step.compile_fallback}"}
    started = time.perf_counter()
    for done in range(args.warmup):   # allocator, optimizer state; compiling, CUDA graph capture
        step.iteration(args.tasks, lambda task: task_step(task, False))
        print(f"{mode} {precision}: warm-up iteration {done + 1} done after "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    _sync(device)
    result["warmup_s"] = round(time.perf_counter() - started, 2)
    if mode == "compiled" and step.captured is None:
        return {**result, "skipped": f"compiling failed: {step.compile_fallback}"}
    times = []
    for _ in range(args.repeats):
        _sync(device)
        start = time.perf_counter()
        step.iteration(args.tasks, lambda task: task_step(task, True))
        _sync(device)   # for the scheduler and optimizer
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    peak, source = peak_tflops(device, precision, args.quick)
    sheet = datasheet_tflops(device, precision)
    tflops = gflop / step_s / 1e3
    videos = args.batch * len(args.tasks)
    return {**result, "step_s": round(step_s, 4), "videos_per_s": round(videos / step_s, 2),
            "tflops": round(tflops, 4), "peak_tflops": round(peak, 3), "peak_source": source,
            **({"mfu_datasheet": round(tflops / sheet, 4)} if sheet else {}),
            "mfu": round(tflops / peak, 4), "step_times_s": [round(t, 4) for t in times],
            "task_step_s": {task: round(statistics.median(values), 4)
                            for task, values in task_times.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--modes", default=None,
                        help="comma list of eager, compiled (default: both on CUDA, eager on CPU)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument("--tasks", default="tal,sed,avel",
                        help="comma list of the tasks of one iteration, in order "
                             "(default: %(default)s, one step of each)")
    parser.add_argument("--batch", type=int, default=None, help="videos per step (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 7)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="3 timed steps after 1 warm-up step, batch 2 (unless given)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()
    args.tasks = args.tasks.split(",")
    unknown = sorted(set(args.tasks) - set(PAPER_TASKS))
    if unknown or not args.tasks:
        parser.error(f"--tasks: unknown task(s) {unknown}; choose from {sorted(PAPER_TASKS)}")
    args.batch = args.batch or 2
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda *a: None) if args.json else print
    has_cuda = torch.cuda.is_available()
    if args.device == "auto":
        device = torch.device("cuda" if has_cuda else "cpu")
    else:
        device = torch.device(args.device)
    if not has_cuda:
        log("no GPU: CUDA is not available here; measuring the CPU only "
            "(GPU figures: run benchmarks/gpu_check.sh on a GPU machine)")
    modes = (args.modes or ("eager,compiled" if device.type == "cuda" else "eager")).split(",")
    precisions = args.precisions.split(",")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False   # fp32 means fp32 (as the engine runs)
        machine = torch.cuda.get_device_name(device)
    else:
        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    # FLOPs of one iteration (fp32 eager; the same computation for every variant)
    model = make_model(device)
    with contextlib.redirect_stdout(io.StringIO()):
        gflop = sum(count_gflop(model, task, make_batch(model, task, args.batch, device))
                    for task in args.tasks)
    del model
    results = []
    for mode in modes:
        for precision in precisions:
            entry = measure(device, mode, precision, args, gflop)
            results.append(entry)
            if "skipped" in entry:
                log(f"{mode:8s} {precision}: skipped ({entry['skipped']})")
            else:
                log(f"{mode:8s} {precision}: {entry['step_s']:.4f} s/iteration, "
                    f"{entry['videos_per_s']:.2f} videos/s, {entry['tflops']:.3f} TFLOP/s, "
                    f"MFU {100 * entry['mfu']:.2f} % of {entry['peak_tflops']:.3f} TFLOP/s "
                    f"({entry['peak_source']}); per task "
                    + ", ".join(f"{task} {t:.4f} s" for task, t in entry["task_step_s"].items()))
    if device.type == "cpu" and "compiled" not in modes:
        log("compiled: not measured on the CPU (train.compile: auto trains eagerly there; "
            "--modes eager,compiled to measure it)")
    summary = {"device": str(device), "machine": machine, "cuda": has_cuda,
               "torch": torch.__version__, "tasks": args.tasks, "batch": args.batch,
               "repeats": args.repeats, "warmup": args.warmup, "gflop_per_iteration": round(gflop, 2),
               "results": results}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
