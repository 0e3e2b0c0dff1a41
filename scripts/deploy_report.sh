#!/usr/bin/env bash
# The onnxruntime-vs-simulation mAP agreement of docs/deploy.md: emits every candidate of
# out/ptq/candidates.json (scripts/ptq_report.sh) to out/engines, then for the full-INT8 reference
# and the best candidate runs the emitted model.onnx in onnxruntime (scripts/ort_detect.py, numpy
# pre/post-processing) and pillarq's simulation of the same plan over the whole val split, and
# evaluates both sets of KITTI result files with the same evaluator.
# Usage: scripts/deploy_report.sh [ENGINE...]   (default: int8 and the search's best candidate)
#        env: MODEL, DATA, BIN (a prebuilt pillarq: no cargo build), CANDIDATES, THREADS (1)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-onnx/pointpillars_small.onnx}
DATA=${DATA:-data/synth}
CANDIDATES=${CANDIDATES:-out/ptq/candidates.json}
THREADS=${THREADS:-1}
OUT=out/deploy
if [ -z "${BIN:-}" ]; then
  BIN=target/release/pillarq
  cargo build --release -q
fi
[ -x .venv/bin/python ] || scripts/setup_venv.sh
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
  .venv/bin/python scripts/ort_detect.py "out/engines/$e/model.onnx" --data "$DATA" --split val \
      --out "$OUT/ort-$e" --threads "$THREADS" 2> "$OUT/ort-$e.log"
  "$BIN" eval --preds "$OUT/ort-$e" --data "$DATA" --split val --json > "$OUT/ort-$e.json"
  "$BIN" eval --model "$MODEL" --plan "out/engines/$e/plan.json" --data "$DATA" --split val \
      --threads "$THREADS" --quiet --out "$OUT/sim-$e" --json > /dev/null
  "$BIN" eval --preds "$OUT/sim-$e" --data "$DATA" --split val --json > "$OUT/sim-$e.json"
  .venv/bin/python - "$e" "$OUT/ort-$e.json" "$OUT/sim-$e.json" <<'PY'
import json, sys
o, s = (json.load(open(p))["map"] for p in sys.argv[2:])
print(f"{sys.argv[1]}: onnxruntime mAP {o:.3f}, pillarq simulation {s:.3f}, difference {o - s:+.3f}")
PY
done
