#!/usr/bin/env bash
# The test command of the project:
#
#   bash scripts/test.sh [extra cargo test args, e.g. --test ort_parity -- --nocapture]
#
# Creates (or reuses) the onnxruntime venv `.venv` that the integration tests compare against,
# then runs the whole test suite in release mode (the tests are numeric and heavy).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup_venv.sh test >/dev/null
export PILLARQ_PYTHON="$PWD/.venv/bin/python"
"$PILLARQ_PYTHON" -c 'import numpy, onnx, onnxruntime' \
  || { echo "error: $PILLARQ_PYTHON lacks numpy/onnx/onnxruntime; delete .venv and rerun" >&2; exit 1; }

exec cargo test --release --features tensorrt "$@"
