#!/usr/bin/env bash
# The PTQ numbers of docs/ptq.md on the bundled small model and the default synthetic split
# (`pillarq synth --out data/synth --seed 0`: 1500 train, 500 val). Results and logs go to
# out/ptq/ (or $OUT); every stage is cached in its cache/, so a rerun resumes.
# Usage: scripts/ptq_report.sh   env: THREADS (1), MODEL, DATA, OUT (out/ptq), BIN (a prebuilt pillarq: no cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-onnx/pointpillars_small.onnx}
DATA=${DATA:-data/synth}
THREADS=${THREADS:-1}
OUT=${OUT:-out/ptq}
if [ -z "${BIN:-}" ]; then
  BIN=target/release/pillarq
  cargo build --release -q
fi
[ -f "$DATA/ImageSets/val.txt" ] || "$BIN" synth --out "$DATA" --seed 0
mkdir -p "$OUT"
COMMON=(--model "$MODEL" --data "$DATA" --threads "$THREADS" --cache "$OUT/cache" --quiet)
STEM=$(basename "$MODEL" .onnx)
set -x
# 1. the calibration used by sensitivity and search: percentile 99.99 on 16 seeded training frames
"$BIN" calibrate --model "$MODEL" --data "$DATA" --frames 16 --seed 0 --method percentile --out "$OUT/calib" --threads "$THREADS" -q > "$OUT/calibrate.txt"
CALIB="$OUT/calib/$STEM-percentile99.99-16.json"
# 2. per-layer sensitivity on the 500 val frames
"$BIN" sensitivity "${COMMON[@]}" --calib "$CALIB" --out "$OUT/sensitivity.json" | tee "$OUT/sensitivity.txt"
# 3. greedy search over the top 5, FP16 fallback, with the prefix and bisect baselines
"$BIN" search "${COMMON[@]}" --calib "$CALIB" --top-k 5 --tolerance 1 --fallback fp16 --out "$OUT/candidates.json" | tee "$OUT/search.txt"
# 4. calibration-set sweep (the longest stage): N = 1, 2, 4, 8 (2 seeded draws) and all 1500 training frames, 4 calibrators
"$BIN" calib-sweep "${COMMON[@]}" --max-n 8 --draws 2 --all-frames --out "$OUT/calib-sweep.json" | tee "$OUT/calib-sweep.txt"
