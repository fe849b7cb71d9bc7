#!/usr/bin/env bash
# Every GPU check in one short run, for a lent GPU machine (H100/H200); raw results under $OUT
# (one file per check, written as it goes: a check cut off by its time limit keeps what it
# printed), to be recorded in docs/performance.md.  In order:
#   1. environment, and batch decoding on CUDA against per-video decoding (bitwise);
#   2. paper-preset multi-task iteration (one step of tal, sed, avel), batch 16 per task, eager
#      fp32 and bf16 (benchmarks/train_step.py: s/iteration, videos/s, TFLOP/s, MFU);
#   3. the compiled step (train.compile: CUDA graphs), batch 16, one process per task of
#      the comma list $COMPILED_TASKS (default tal,sed,avel) and precision of $COMPILED_PRECISIONS (default
#      bf16): compiling one task's step took 144 s on an H200 (2026-11-30), so each gets 170 s;
#   4. the real engine on the planted tiny data set under torchrun, bf16, on every GPU of the
#      machine (DDP/NCCL when there are two or more);
#   5. eager fp32/bf16 at batch 2 (launch-bound or not: compare with batch 16).
# The default run takes about 9 minutes on an H200 (one device call may run 10): measure fewer
# compiled tasks per call (COMPILED_TASKS=tal) where the session's device time is short.
# Runs from the repository root with the machine's own python3 + torch (PYTHONPATH=.).  Python
# packages the machine lacks (pydantic, msgspec, ...) travel as wheels (docs/performance.md,
# "GPU check").
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
started=$SECONDS
stamp() { echo "[gpu_check] $1 done at $((SECONDS - started)) s"; }
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, \
torch.version.cuda, triton.__version__, torch.cuda.get_device_name())"
  python3 -c "import uniav.cli, uniav.engine.trainer, pydantic, msgspec; print('uniav imports: ok')"
  nproc
} > "$OUT/env.txt" 2>&1
stamp env
# decode_batch on CUDA == decode_video per video (bitwise; what inference runs on CUDA)
timeout 45 python3 - > "$OUT/decode_check.txt" 2>&1 <<'PY'
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
stamp decode
step() {   # step NAME LIMIT ARGS...: one benchmarks/train_step.py run into $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  timeout "$limit" python3 benchmarks/train_step.py --device cuda --repeats 10 --warmup 3 "$@" \
    > "$OUT/$name.txt" 2>&1
  stamp "$name (exit $?)"
}
step step_b16_eager 60 --modes eager --precisions fp32,bf16 --batch 16
for precision in $(echo "${COMPILED_PRECISIONS:-bf16}" | tr , ' '); do
  for task in $(echo "${COMPILED_TASKS:-tal,sed,avel}" | tr , ' '); do
    step "step_b16_compiled_${precision}_${task}" 170 --modes compiled --precisions "$precision" \
      --batch 16 --tasks "$task"
  done
done
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
NPROC=$(( GPUS >= 2 ? 2 : 1 ))
timeout 50 python3 benchmarks/ddp_smoke.py --root /tmp/gpu_check_engine --nproc "$NPROC" \
  --device cuda --precision bf16 --compile off --epochs 2 > "$OUT/engine_${NPROC}gpu.txt" 2>&1
stamp "engine (exit $?)"
step step_b2_eager 40 --modes eager --precisions fp32,bf16 --batch 2
tail -n 4 "$OUT"/*.txt
