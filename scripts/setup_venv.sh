#!/usr/bin/env bash
# Create (idempotently) the Python virtual environment used by pillarq's scripts.
#
#   scripts/setup_venv.sh [test|export]
#
#   test   (default) -> .venv         from scripts/requirements-test.txt   (numpy, onnx, onnxruntime)
#   export           -> .venv-export  from scripts/requirements-export.txt (adds torch; model export)
#
# pip is skipped when the stamp file inside the venv holds the sha256 of the requirements file.
# Prints the venv's python path as the last line.
set -euo pipefail

mode="${1:-test}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$mode" in
  test)   venv="$root/.venv";        req="$root/scripts/requirements-test.txt" ;;
  export) venv="$root/.venv-export"; req="$root/scripts/requirements-export.txt" ;;
  *) echo "usage: $0 [test|export]" >&2; exit 2 ;;
esac

[ -f "$req" ] || { echo "error: missing $req" >&2; exit 1; }
py="${PYTHON:-python3}"
command -v "$py" >/dev/null || { echo "error: $py not found" >&2; exit 1; }

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv" >&2
  "$py" -m venv "$venv"
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv up to date ($(basename "$req") unchanged)" >&2
else
  echo "installing $(basename "$req") into $venv" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >&2
  echo "$want" > "$stamp"
fi

echo "$venv/bin/python"
