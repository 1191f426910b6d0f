#!/usr/bin/env bash
# Every GPU check at once, on a machine with a CUDA GPU:  bash scripts/gpu_checks.sh
#
#   1. pytest -k gpu: trainer=gpu gives the CPU run's metrics (float32, to 1e-4); bf16-mixed
#      completes close to them; jobs of a hydra/launcher=local sweep see the GPU; every trainer
#      config builds. REGLAB_REQUIRE_GPU=1 turns "skipped: no GPU" into failures.
#   2. Issue 10, goal 6: the stacked engine's throughput on the GPU, members × steps per second and
#      the speed-up over K sequential runs for K = 1, 64, 1024, 4096 (scripts/bench_sweep.py
#      --device cuda; other arguments, e.g. --members 1,64 --throughput-epochs 20, in BENCH_ARGS).
#
# Writes its output to ${OUT:-.}/gpu_checks.log as well. Exit status: non-zero if a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LOG=${OUT:-.}/gpu_checks.log
export WANDB_MODE=offline REGLAB_REQUIRE_GPU=1

{
  nvidia-smi -L || true
  "$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda); sys.exit(0 if torch.cuda.is_available() else 'error: torch sees no CUDA GPU')"
  status=0
  timeout 480 "$PY" -m pytest -q -rs -p no:cacheprovider -k gpu tests/ --durations=5 || status=$?
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
  timeout 300 "$PY" scripts/bench_sweep.py --device cuda ${BENCH_ARGS:-} || status=$?
  exit $status
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
