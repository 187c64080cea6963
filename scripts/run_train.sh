#!/usr/bin/env bash
# Train in graph mode: bash scripts/run_train.sh --device Ascend|GPU|CPU [flags of python -m mindresnet.train]
# Every flag is passed through; see `bash scripts/run_train.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" -m mindresnet.train "$@"
