#!/usr/bin/env bash
# The onnxruntime-vs-simulation mAP agreement of docs/deploy.md: emits every candidate of
# out/ptq/candidates.json (scripts/ptq_report.sh) to out/engines, then for the full-INT8 reference
# and the best candidate runs the emitted model.onnx in onnxruntime (scripts/ort_detect.py, numpy
# pre/post-processing) and pillarq's simulation of the same plan over the whole val split, and
# evaluates both sets of KITTI result files with the same evaluator.
# Usage: scripts/deploy_report.sh [ENGINE...]   (default: int8 and the search's best candidate)
#        env: MODEL, DATA, BIN (a prebuilt pillarq: no cargo build), CANDIDATES, THREADS (1)
set -euo pipefail
source "$(dirname "$0")/ort_vs_sim.sh"
OUT=out/deploy
mkdir -p "$OUT"
"$BIN" emit --model "$MODEL" --candidates "$CANDIDATES" --out out/engines -q
ENGINES=("$@")
if [ ${#ENGINES[@]} -eq 0 ]; then
  best=$(.venv/bin/python - "$CANDIDATES" out/engines/index.json <<'PY'
import json, sys
best = json.load(open(sys.argv[1]))["best"]
for e in json.load(open(sys.argv[2])):
    if best and e["name"].startswith("greedy-") and sorted(e["fp_layers"]) == sorted(best["fp_layers"]):
        print(e["name"])
        break
PY
)
  ENGINES=(int8 ${best})
fi
for e in "${ENGINES[@]}"; do
  ort_vs_sim "out/engines/$e" "$OUT" "$e"
  .venv/bin/python - "$e" "$OUT/ort-$e.json" "$OUT/sim-$e.json" <<'PY'
import json, sys
o, s = (json.load(open(p))["map"] for p in sys.argv[2:])
print(f"{sys.argv[1]}: onnxruntime mAP {o:.3f}, pillarq simulation {s:.3f}, difference {o - s:+.3f}")
PY
done
