#!/usr/bin/env bash
# Install sslrobot with its test extras and run the default test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
. .venv/bin/activate
python -m pytest -q "$@"
