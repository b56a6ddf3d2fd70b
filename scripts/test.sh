#!/usr/bin/env bash
# Run the test suite: bash scripts/test.sh [pytest args...]
source "$(dirname "${BASH_SOURCE[0]}")/_setup_env.sh"
exec python -m pytest "$@"
