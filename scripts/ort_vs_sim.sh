# Sourced by scripts/deploy_report.sh and scripts/pow2_report.sh (not run on its own): the shared
# environment (MODEL, DATA, CANDIDATES, THREADS, BIN: a prebuilt pillarq, else cargo builds one;
# the test venv) and ort_vs_sim, which scores one emitted engine both ways.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODEL=${MODEL:-onnx/pointpillars_small.onnx}
DATA=${DATA:-data/synth}
CANDIDATES=${CANDIDATES:-out/ptq/candidates.json}
THREADS=${THREADS:-1}
if [ -z "${BIN:-}" ]; then
  BIN=target/release/pillarq
  cargo build --release -q
fi
[ -x .venv/bin/python ] || scripts/setup_venv.sh

# ort_vs_sim ENGINE_DIR OUT NAME: runs ENGINE_DIR/model.onnx in onnxruntime
# (scripts/ort_detect.py, numpy pre/post-processing) and pillarq's simulation of
# ENGINE_DIR/plan.json over the val split. Writes OUT/ort-NAME and OUT/sim-NAME (KITTI result
# files), OUT/{ort,sim}-NAME.json (both scored from those files by the same evaluator) and
# OUT/mem-NAME.json (the simulation scored in memory).
ort_vs_sim() {
  local dir=$1 out=$2 name=$3
  .venv/bin/python scripts/ort_detect.py "$dir/model.onnx" --data "$DATA" --split val \
      --out "$out/ort-$name" --threads "$THREADS" 2> "$out/ort-$name.log"
  "$BIN" eval --preds "$out/ort-$name" --data "$DATA" --split val --json > "$out/ort-$name.json"
  "$BIN" eval --model "$MODEL" --plan "$dir/plan.json" --data "$DATA" --split val \
      --threads "$THREADS" --quiet --out "$out/sim-$name" --json > "$out/mem-$name.json"
  "$BIN" eval --preds "$out/sim-$name" --data "$DATA" --split val --json > "$out/sim-$name.json"
}
