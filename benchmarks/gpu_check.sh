#!/usr/bin/env bash
# Every GPU check in one run (for a lent GPU machine; results under $OUT, recorded in
# docs/performance.md): paper-preset training-step throughput in fp32 and bf16 at batch 2 and 16,
# and a DDP/NCCL smoke run of the real training engine (torchrun, bf16 autocast).
# Runs from the repository root with the machine's own python3 + torch (PYTHONPATH=.).
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
} > "$OUT/env.txt" 2>&1
for precision in fp32 bf16; do
  for batch in 2 16; do
    timeout 240 python3 benchmarks/train_step.py --device cuda --precision "$precision" \
      --batch "$batch" --repeats 10 > "$OUT/step_${precision}_b${batch}.txt" 2>&1
  done
done
timeout 240 python3 benchmarks/ddp_smoke.py --root /tmp/ddp_gpu --nproc 1 --device cuda \
  --precision bf16 --epochs 4 > "$OUT/ddp_smoke.txt" 2>&1
tail -n 2 "$OUT"/*.txt
