#!/usr/bin/env bash
# PTQ simulation overhead: network time per frame of INT8, FP16 and mixed plans against FP32,
# same binary, same inputs, same threads, runs interleaved (ROUNDS x REPEAT each); the figure
# per plan is the best round's median (this VM's neighbours add noise, never speed).
# Usage: scripts/bench_ptq.sh [MODEL]   env: THREADS (1), REPEAT (15), ROUNDS (5)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-onnx/pointpillars_small.onnx}
THREADS=${THREADS:-1}
REPEAT=${REPEAT:-15}
ROUNDS=${ROUNDS:-5}
OUT=out/bench-ptq
BIN=target/release/pillarq
cargo build --release -q
mkdir -p "$OUT"
[ -f "$OUT/data/ImageSets/train.txt" ] || "$BIN" synth --out "$OUT/data" --train 8 --val 0 --seed 11 >/dev/null
rm -rf "$OUT/calib"
"$BIN" calibrate --model "$MODEL" --data "$OUT/data" --frames 8 --method max --out "$OUT/calib" -q >/dev/null
# The one calibration just written (its name carries the default recipe).
CALIB=$(ls "$OUT"/calib/*.json)
echo '{"default": "fp32"}' > "$OUT/fp32.json"
echo '{"default": "int8"}' > "$OUT/int8.json"
echo '{"default": "fp16"}' > "$OUT/fp16.json"
echo '{"default": "int8", "layers": {"/pfn/linear/MatMul": "fp16", "/backbone/blocks.0/blocks.0.4/Conv": "fp16"}}' > "$OUT/mixed.json"
# Two figures per plan, each the best of ROUNDS interleaved rounds: the median network time of
# REPEAT runs (wall clock), and the process CPU time (user + sys) of the whole invocation, which a
# busy VM's stolen time does not inflate (load and plan compilation are included, same for all).
declare -A WALL CPU
TIMEFORMAT='%U %S'
for r in $(seq "$ROUNDS"); do
  for p in fp32 int8 fp16 mixed; do
    { t=$( { time "$BIN" infer "$MODEL" --random 0 --out "$OUT/t" --repeat "$REPEAT" --threads "$THREADS" --json \
             --plan "$OUT/$p.json" --calib "$CALIB" > "$OUT/$p.out"; } 2>&1 ); }
    ms=$(sed 's/.*"median_ms":\([0-9.]*\).*/\1/' "$OUT/$p.out")
    cpu=$(echo "$t" | awk '{print $1 + $2}')
    WALL[$p]=$(python3 -c "print(min(${WALL[$p]:-1e9}, $ms))")
    CPU[$p]=$(python3 -c "print(min(${CPU[$p]:-1e9}, $cpu))")
  done
done
echo "model $MODEL, $THREADS thread(s), $REPEAT runs per invocation, best of $ROUNDS interleaved rounds"
for p in fp32 int8 fp16 mixed; do
  python3 -c "w=${WALL[$p]}; b=${WALL[fp32]}; c=${CPU[$p]}; d=${CPU[fp32]}; print(f'{\"$p\":<6} median {w:8.2f} ms  x{w/b:.3f}    cpu {c:7.2f} s  x{c/d:.3f}')"
done
