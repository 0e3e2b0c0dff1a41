#!/usr/bin/env bash
# The QAT rows of docs/ptq.md: for each scripts/qat.py output folder given, emits its plan on its
# fine-tuned model with its learned calibration (pillarq emit), then scores the emitted model.onnx
# in onnxruntime (scripts/ort_detect.py) and pillarq's simulation of the same plan over the val
# split with the same evaluator (scripts/ort_vs_sim.sh), and prints both mAPs.
# Usage: scripts/qat_report.sh QAT_DIR...     env: DATA, BIN (a prebuilt pillarq), THREADS (1)
set -euo pipefail
dirs=("$@")
source "$(dirname "$0")/ort_vs_sim.sh"
for d in "${dirs[@]}"; do
  model=$(ls "$d"/*-qat.onnx)
  calib=$(ls "$d"/*-qat-calib.json)
  name=$(basename "$d")
  "$BIN" emit --model "$model" --plan "$d/plan.json" --calib "$calib" --out "$d/engine" -q
  MODEL=$model ort_vs_sim "$d/engine" "$d" "$name"
  .venv/bin/python - "$name" "$d/ort-$name.json" "$d/sim-$name.json" <<'PY'
import json, sys
o, s = (json.load(open(p))["map"] for p in sys.argv[2:])
print(f"{sys.argv[1]}: onnxruntime mAP {o:.3f}, pillarq simulation {s:.3f}, difference {o - s:+.3f}")
PY
done
