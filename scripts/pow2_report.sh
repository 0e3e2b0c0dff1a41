#!/usr/bin/env bash
# Power-of-two scales on the bundled model (docs/ptq.md, "Faithfulness"): what rounding every
# INT8 scale up to 2^k costs in mAP, and the onnxruntime-vs-simulation agreement when the INT8
# arithmetic is exact in f32. Same calibration as scripts/ptq_report.sh (percentile 99.99 on 16
# seeded training frames) with --pow2-scales; plans: full INT8 and the search's best candidate
# (out/ptq/candidates.json). For each plan: emit, run model.onnx in onnxruntime
# (scripts/ort_detect.py) over the val split, run pillarq's simulation of the same plan, and
# score both sets of KITTI files with the same evaluator.
# Usage: scripts/pow2_report.sh     env: MODEL, DATA, BIN (prebuilt pillarq), CANDIDATES, THREADS (1)
set -euo pipefail
source "$(dirname "$0")/ort_vs_sim.sh"
OUT=out/pow2
[ -f "$DATA/ImageSets/val.txt" ] || "$BIN" synth --out "$DATA" --seed 0
mkdir -p "$OUT"
"$BIN" calibrate --model "$MODEL" --data "$DATA" --frames 16 --seed 0 --method percentile --pow2-scales \
    --out "$OUT/calib" --threads "$THREADS" -q > /dev/null
CAL="$OUT/calib/$(basename "$MODEL" .onnx)-percentile99.99-pow2-16.json"
echo '{"default": "int8"}' > "$OUT/int8.json"
PLANS=(int8)
if [ -f "$CANDIDATES" ]; then
  .venv/bin/python - "$CANDIDATES" "$OUT/best.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
best = c.get("best")
if best:
    json.dump({"default": "int8", "layers": best["plan"]["layers"]}, open(sys.argv[2], "w"))
PY
  [ -f "$OUT/best.json" ] && PLANS+=(best)
fi
for p in "${PLANS[@]}"; do
  "$BIN" emit --model "$MODEL" --plan "$OUT/$p.json" --calib "$CAL" --out "$OUT/engines/$p" -q
  ort_vs_sim "$OUT/engines/$p" "$OUT" "$p"
  .venv/bin/python - "$p" "$OUT/mem-$p.json" "$OUT/ort-$p.json" "$OUT/sim-$p.json" "$OUT/ort-$p" "$OUT/sim-$p" <<'PY'
import json, os, sys
m, o, s = (json.load(open(p))["map"] for p in sys.argv[2:5])
# The result files side by side: detection counts and the largest difference of any field.
ort_dir, sim_dir = sys.argv[5:7]
n_o = n_s = 0
worst, worst_where = 0.0, ""
for f in sorted(x for x in os.listdir(ort_dir) if x.endswith(".txt")):
    a = [l.split() for l in open(os.path.join(ort_dir, f)) if l.strip()]
    b = [l.split() for l in open(os.path.join(sim_dir, f)) if l.strip()]
    n_o, n_s = n_o + len(a), n_s + len(b)
    for la, lb in zip(a, b):
        if la[0] != lb[0]:
            worst, worst_where = float("inf"), f"{f}: class {la[0]} vs {lb[0]}"
            continue
        for k, (x, y) in enumerate(zip(la[1:], lb[1:]), 1):
            d = abs(float(x) - float(y))
            if d > worst:
                worst, worst_where = d, f"{f} field {k}"
print(f"{sys.argv[1]} (pow2 scales): simulation mAP {m:.3f} in memory; from files: onnxruntime {o:.3f}, "
      f"simulation {s:.3f}, difference {o - s:+.3f}; detections {n_o} vs {n_s}, largest field "
      f"difference {worst:.2f} ({worst_where or '-'})")
PY
done
