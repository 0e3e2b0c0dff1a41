#!/usr/bin/env bash
# Full-INT8 mAP of every calibrator with and without each PTQ recipe step (issue 14), for
# docs/ptq.md: calibrate on N seeded training frames, score a uniform INT8 plan on the val split.
# Usage: scripts/ptq_recipe.sh   env: MODEL (small), DATA (data/synth), N (8), FRAMES (all val),
#        RECIPES ("none sparse sparse-zeros"; e.g. "sparse,equalize all"), METHODS (max,percentile,entropy,mse), THREADS (2),
#        OUT (out/ptq-recipe), BIN (a prebuilt pillarq: no cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-onnx/pointpillars_small.onnx}
DATA=${DATA:-data/synth}
N=${N:-8}
THREADS=${THREADS:-2}
OUT=${OUT:-out/ptq-recipe}
RECIPES=${RECIPES:-none sparse sparse-zeros}
METHODS=${METHODS:-max,percentile,entropy,mse}
if [ -z "${BIN:-}" ]; then
  BIN=target/release/pillarq
  cargo build --release -q
fi
[ -f "$DATA/ImageSets/val.txt" ] || "$BIN" synth --out "$DATA" --seed 0
mkdir -p "$OUT"
STEM=$(basename "$MODEL" .onnx)
FRAMES_ARG=()
[ -n "${FRAMES:-}" ] && FRAMES_ARG=(--frames "$FRAMES")
echo '{"default": "int8"}' > "$OUT/int8.json"
printf '| recipe | method | calibrate s | full-INT8 mAP |\n|---|---|---:|---:|\n'
for r in $RECIPES; do
  start=$SECONDS
  files=$("$BIN" calibrate --model "$MODEL" --data "$DATA" --frames "$N" --seed 0 --method "$METHODS" --recipe "$r" \
    --out "$OUT/calib" --threads "$THREADS" -q --json | python3 -c '
import json, sys
for c in json.load(sys.stdin)["calibrations"]:
    print(c["method"].split(":")[0], c["file"])')
  secs=$((SECONDS - start))
  while read -r m f; do
    map=$("$BIN" eval --model "$MODEL" --data "$DATA" --split val "${FRAMES_ARG[@]}" --plan "$OUT/int8.json" \
      --calib "$f" --threads "$THREADS" --json | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["map"])')
    printf '| %s | %s | %s | %s |\n' "$r" "$m" "$secs" "$map"
  done <<< "$files"
done
