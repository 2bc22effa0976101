#!/usr/bin/env bash
# Set up sslrobot in ./.venv from this checkout: the one install step the README, CI and the
# benchmarks share. Usage: bash scripts/install.sh [extras, default "dev"]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: it meets pyproject's open range, so pip does not fetch another build.
# (Here the pin is the CPU wheel on disk; elsewhere it is PyPI's default build for the platform.)
pip install -q "torch==2.13.0"
pip install -q -e ".[${extras}]"
echo "installed sslrobot into $(pwd)/.venv (extras: ${extras})"
