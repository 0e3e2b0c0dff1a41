#!/usr/bin/env bash
# PTQ simulation overhead: network time per frame of INT8, FP16 and mixed plans against FP32,
# same binary, same inputs, same threads, runs interleaved (ROUNDS x REPEAT each).
# Usage: scripts/bench_ptq.sh [MODEL]   env: THREADS (1), REPEAT (15), ROUNDS (3)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-onnx/pointpillars_small.onnx}
THREADS=${THREADS:-1}
REPEAT=${REPEAT:-15}
ROUNDS=${ROUNDS:-3}
OUT=out/bench-ptq
BIN=target/release/pillarq
cargo build --release -q
mkdir -p "$OUT"
[ -f "$OUT/data/ImageSets/train.txt" ] || "$BIN" synth --out "$OUT/data" --train 8 --val 0 --seed 11 >/dev/null
"$BIN" calibrate --model "$MODEL" --data "$OUT/data" --frames 8 --method max --out "$OUT/calib" -q >/dev/null
STEM=$(basename "$MODEL" .onnx)
CALIB="$OUT/calib/$STEM-max-8.json"
echo '{"default": "fp32"}' > "$OUT/fp32.json"
echo '{"default": "int8"}' > "$OUT/int8.json"
echo '{"default": "fp16"}' > "$OUT/fp16.json"
echo '{"default": "int8", "layers": {"/pfn/linear/MatMul": "fp16", "/backbone/blocks.0/blocks.0.4/Conv": "fp16"}}' > "$OUT/mixed.json"
declare -A SUM
for r in $(seq "$ROUNDS"); do
  for p in fp32 int8 fp16 mixed; do
    ms=$("$BIN" infer "$MODEL" --random 0 --out "$OUT/t" --repeat "$REPEAT" --threads "$THREADS" --json \
         --plan "$OUT/$p.json" --calib "$CALIB" | sed 's/.*"median_ms":\([0-9.]*\).*/\1/')
    SUM[$p]=$(python3 -c "print(${SUM[$p]:-0} + $ms)")
  done
done
echo "model $MODEL, $THREADS thread(s), median of $REPEAT runs, mean over $ROUNDS interleaved rounds"
for p in fp32 int8 fp16 mixed; do
  python3 -c "m=${SUM[$p]}/$ROUNDS; b=${SUM[fp32]}/$ROUNDS; print(f'{\"$p\":<6} {m:8.2f} ms   x{m/b:.3f} of fp32')"
done
