#!/usr/bin/env bash
# Every GPU check in one short run, for a lent GPU machine (H100/H200); raw results under $OUT,
# to be recorded in docs/performance.md:
#   1. paper-preset training-step throughput (benchmarks/train_step.py): eager vs compiled
#      (train.compile, CUDA graphs) x fp32 vs bf16 autocast, batch 2 and 16 (the paper's):
#      s/iteration, videos/s, TFLOP/s, MFU;
#   2. the real engine on the planted tiny data set with train.compile: auto, bf16, one GPU;
#   3. batch decoding on CUDA against per-video decoding (bitwise);
#   4. DDP/NCCL smoke: torchrun --nproc_per_node 2 when the machine has two GPUs (else 1).
# Runs from the repository root with the machine's own python3 + torch (PYTHONPATH=.); about
# 10 minutes on an H200.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
} > "$OUT/env.txt" 2>&1
# decode_batch on CUDA == decode_video per video (bitwise; what inference runs on CUDA)
timeout 60 python3 - > "$OUT/decode_check.txt" 2>&1 <<'PY'
import torch
from uniav.postprocess import decode_batch, decode_video
g = torch.Generator().manual_seed(0)
for aware in (False, True):
    lengths, k = (257, 129, 65), 7   # odd sizes: vector tails everywhere
    logits = [(torch.randn(4, t, k, generator=g) * 3 - 2).cuda() for t in lengths]
    offsets = [torch.rand((4, t, k, 2) if aware else (4, t, 2), generator=g).cuda() * 4 for t in lengths]
    masks = [(torch.arange(t) < t - 3).expand(4, t).clone().cuda() for t in lengths]
    got = decode_batch(logits, offsets, masks, [1, 2, 4], pre_nms_topk=50)
    for i, video in enumerate(got):
        ref = decode_video([x[i] for x in logits], [x[i] for x in offsets], [x[i] for x in masks],
                           [1, 2, 4], pre_nms_topk=50)
        assert all(torch.equal(a, b.cpu()) for a, b in zip(video, ref)), (aware, i)
print("decode_batch on CUDA == decode_video: ok")
PY
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
for batch in 2 16; do
  timeout 240 python3 benchmarks/train_step.py --device cuda --modes eager,compiled \
    --precisions fp32,bf16 --batch "$batch" --repeats 10 --warmup 3 \
    > "$OUT/step_b${batch}.txt" 2>&1
done
timeout 150 python3 benchmarks/ddp_smoke.py --root /tmp/gpu_check_compile --nproc 1 \
  --device cuda --precision bf16 --compile auto --epochs 4 > "$OUT/engine_compile.txt" 2>&1
NPROC=$(( GPUS >= 2 ? 2 : 1 ))
timeout 150 python3 benchmarks/ddp_smoke.py --root /tmp/gpu_check_ddp --nproc "$NPROC" \
  --device cuda --precision bf16 --epochs 4 > "$OUT/ddp_smoke_${NPROC}gpu.txt" 2>&1
tail -n 3 "$OUT"/*.txt
