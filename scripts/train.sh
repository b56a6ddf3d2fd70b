#!/usr/bin/env bash
# Train an FCN: bash scripts/train.sh [hydra overrides...]
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"
exec python -m fcn.train "$@"
