#!/usr/bin/env bash
# Every GPU check at once, on a machine with a CUDA GPU:  bash scripts/gpu_checks.sh
#
#   1. pytest -k gpu: trainer=gpu gives the CPU run's metrics (float32, to 1e-4); bf16-mixed
#      completes close to them; jobs of a hydra/launcher=local sweep see the GPU; every trainer
#      config builds. REGLAB_REQUIRE_GPU=1 turns "skipped: no GPU" into failures.
#   2. The vectorized-sweep benchmark on the GPU, if scripts/bench_sweep.py has a --device flag
#      (extra arguments, e.g. the member counts K=1,64,1024, in BENCH_ARGS).
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
  if "$PY" scripts/bench_sweep.py --help | grep -q -- "--device"; then
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
    timeout 300 "$PY" scripts/bench_sweep.py --device cuda ${BENCH_ARGS:-} || status=$?
  else
    echo "scripts/bench_sweep.py has no --device flag: the vectorized GPU benchmark was not run"
  fi
  exit $status
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
