#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 120), one after another, from its corpus
# (fuzz/corpus/<target>, grown in place) plus the seeds captured from the integration tests
# (fuzz/seeds/<target>, made by fuzz/capture.sh), and prints per target the executions, the
# coverage (libFuzzer's `cov` edges and `ft` features) and the corpus size; crashes land in
# fuzz/artifacts/<target> and fail the run.
#   fuzz/run.sh                        # 120 s per target
#   fuzz/run.sh 600 par                # 600 s, only par
#   RUNS=10000000 fuzz/run.sh 3600     # stop each at 10 M executions (or the time, if first)
# live_pipeline builds the host itself (wasmtime, glommio; feature `live`) and runs without a
# sanitizer: its first build takes a while.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-120}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(nats_frame invocation claims par ctl_json live_pipeline)
export RUSTC_BOOTSTRAP=1
# Extra cargo-fuzz flags of a target.
flags_for() {
  if [[ $1 == live_pipeline ]]; then echo "-s none --features live"; fi
}
status=0
printf '%-14s %14s %8s %8s %8s\n' target executions cov ft corpus
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
  log="$(mktemp)"
  # shellcheck disable=SC2046
  cargo fuzz build --release $(flags_for "$t") "$t" >/dev/null
  # shellcheck disable=SC2046
  cargo fuzz run --release $(flags_for "$t") "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$seconds" ${RUNS:+-runs="$RUNS"} -print_final_stats=1 -max_len=65536 >"$log" 2>&1 || status=$?
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  printf '%-14s %14s %8s %8s %8s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$(ls "fuzz/corpus/$t" | wc -l)"
  if grep -qE 'SUMMARY|panicked|deadly signal' "$log"; then
    echo "$t: crash; log kept at $log" >&2
    status=1
  else
    rm -f "$log"
  fi
done
exit "$status"
