# Sourced by train.sh and test.sh: create .venv if missing, install the package with its dev
# extra once (re-installed when pyproject.toml changes), then activate it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
STAMP=.venv/.fcn-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    echo "[setup] installing fcn[dev] into .venv (first run takes a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    # torch/torchvision pinned to the releases this machine's pip serves from disk.
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
    .venv/bin/python -m pip install -q -e ".[dev]"
    touch "$STAMP"
fi
# shellcheck disable=SC1091
source .venv/bin/activate
