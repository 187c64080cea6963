#!/usr/bin/env bash
# Train in graph mode: bash scripts/run_train.sh --device Ascend|GPU|CPU [flags of python -m mindresnet.train]
# Every flag is passed through (see --help). Python: $PYTHON, else the repo's .venv, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m mindresnet.train "$@"
