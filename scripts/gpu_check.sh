#!/usr/bin/env bash
# Prove and measure the CUDA paths in one command: bash scripts/gpu_check.sh [bench_gpu.py args]
# Sets up .venv as train.sh and test.sh do (scripts/_setup_env.sh: the package registries are
# all it needs), then runs scripts/bench_gpu.py: the `gpu` tests, training/eval/predict
# throughput, the loader against the GPU, DDP on every GPU. Prints one JSON document (also
# written to $OUT/gpu_check.json when OUT is set, else outputs/gpu_check.json); the whole
# check, set-up included, ends within FCN_GPU_CHECK_BUDGET_S seconds (480). Without a GPU it
# says so, runs what it can and exits 0. FCN_PYTHON=/path/to/python uses that environment
# instead of .venv (one that already has the package and its dev extra).
set -euo pipefail
export FCN_GPU_CHECK_START="${FCN_GPU_CHECK_START:-$(date +%s)}"
BUDGET="${FCN_GPU_CHECK_BUDGET_S:-480}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${FCN_PYTHON:-}" ]; then
    PY="$FCN_PYTHON"
    cd "$ROOT"
else
    # stdout carries only the JSON: the set-up talks on stderr.
    # shellcheck disable=SC1091
    source "$ROOT/scripts/_setup_env.sh" >&2
    PY=python
fi
export FCN_GPU_CHECK_SETUP_S=$(( $(date +%s) - FCN_GPU_CHECK_START ))
echo "[gpu_check] set-up took ${FCN_GPU_CHECK_SETUP_S} s; budget ${BUDGET} s in all" >&2
# The runner keeps to the budget itself; this outer guard stops it (it then still writes the
# JSON of what ran) should a CUDA call hang, and kills it 20 s later.
LEFT=$(( BUDGET - FCN_GPU_CHECK_SETUP_S ))
[ "$LEFT" -gt 30 ] || LEFT=30
exec timeout --kill-after=20 "$LEFT" "$PY" "$ROOT/scripts/bench_gpu.py" --budget-s "$BUDGET" "$@"
