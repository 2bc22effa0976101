#!/usr/bin/env bash
# Set up sslrobot in ./.venv from this checkout: the one install step the README, CI and the
# benchmarks share. Usage: bash scripts/install.sh [extras, default "dev"]
# Every package is held to the version in scripts/constraints.txt, the set the tests passed on;
# SSLROBOT_UNPINNED=1 resolves pyproject.toml's ranges to the newest instead (to try a release).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: it meets pyproject's open range, so pip does not fetch another build.
# (Here the pin is the CPU wheel on disk; elsewhere it is PyPI's default build for the platform.)
pip install -q "torch==2.13.0"
if [[ "${SSLROBOT_UNPINNED:-0}" == "1" ]]; then
  pip install -q -e ".[${extras}]"
  echo "SSLROBOT_UNPINNED=1: resolved the newest releases pyproject.toml allows, not scripts/constraints.txt"
else
  pip install -q -c scripts/constraints.txt -e ".[${extras}]"
fi
echo "installed sslrobot into $(pwd)/.venv (extras: ${extras})"
