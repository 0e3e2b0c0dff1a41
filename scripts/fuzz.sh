#!/usr/bin/env bash
# Fuzzes pillarq's readers with cargo-fuzz (libFuzzer): every target in fuzz/harness.rs for
# SECONDS each (default 60), two at a time, starting from fuzz/seeds and the corpus of earlier
# runs (fuzz/corpus, not committed). Needs a nightly toolchain; installs cargo-fuzz if missing.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600, scripts/fuzz.sh 60 npy
#   FUZZ_RUNS=1000000 scripts/fuzz.sh 0       a fixed number of executions per target instead
#
# Prints one line per target: executions, seconds, crashes. A crash leaves its input in
# fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ (replayed by plain `cargo test`,
# tests/fuzz_regressions.rs) once fixed. Results go in docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
jobs="${FUZZ_JOBS:-2}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
mapfile -t all < <(sed -n 's/^    ("\([a-z_0-9]*\)", .*/\1/p' fuzz/harness.rs)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

# Debug assertions on: integer overflow is a finding, not a silent wrap.
for t in "${targets[@]}"; do
  (cd fuzz && cargo +nightly fuzz build --release --debug-assertions --sanitizer none "$t")
done

mkdir -p fuzz/logs
run_one() {
  local t="$1" corpus="fuzz/corpus/$1" art="fuzz/artifacts/$1/"
  mkdir -p "$corpus" "$art"
  local limit=(-max_total_time="$secs")
  [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
  local max_len=4096
  case "$t" in onnx_model|onnx_metadata|model_config|trtexec_log|trtexec_layers) max_len=16384 ;; esac
  local start=$SECONDS rc=0
  (cd fuzz && cargo +nightly fuzz run --release --debug-assertions --sanitizer none "$t" \
      "../$corpus" "../fuzz/seeds/$t" $([ -d "fuzz/regressions/$t" ] && echo "../fuzz/regressions/$t") -- "${limit[@]}" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="../$art" -print_final_stats=1) >"fuzz/logs/$t.log" 2>&1 || rc=$?
  local execs crashes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/logs/$t.log" | tail -1)
  crashes=$(find "$art" -type f | wc -l)
  printf '%-18s executions %-10s seconds %-6s crashes %s%s\n' "$t" "${execs:-?}" $((SECONDS - start)) "$crashes" \
    "$([ "$rc" -ne 0 ] && echo "  (exit $rc: see fuzz/logs/$t.log)")"
}
export -f run_one
export secs
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
