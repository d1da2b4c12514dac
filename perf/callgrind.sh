#!/usr/bin/env bash
# Instructions per invocation of the in-process shard pipeline (benches/pipeline.rs: batches of
# 64 signed echo invocations → decode → batch verify → checks → warm instance → reply encoded),
# counted by valgrind's callgrind: repeatable on a VM without hardware counters, where timings
# are noisy. Each build runs twice (LOW and HIGH batches); the difference of the two totals
# over the difference of invocations is the cost of one invocation, set-up excluded.
#
# Usage: perf/callgrind.sh [REV ...]
#   no REV: the working tree only; each REV (a commit) is built in a temporary git worktree
#   with this checkout's benches/pipeline.rs (its counted mode), in its own target directory,
#   and measured beside the working tree: a before/after table.
# Environment: LOW=4 HIGH=24 (batches of 64); OWN_BENCH=1 builds each REV with its own
# benches/pipeline.rs (when this checkout's no longer compiles against it, and the REV's
# already has the counted mode).
# Writes perf/out/callgrind-<time>/ (the callgrind files, the top functions of each build)
# and prints a markdown table.
#
# Note: valgrind emulates a CPU without AVX-512, so curve25519-dalek picks its AVX2 backend
# here whatever the build: the IFMA backend's gain does not show in these counts
# (benches/verify_batch measures it natively).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
low="${LOW:-4}"
high="${HIGH:-24}"
out="$root/perf/out/callgrind-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "callgrind.sh: apt-get install -y valgrind" >&2; exit 1; }

# The pipeline bench executable of the checkout in $1 (target dir $2).
bench_binary() {
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench --locked --bench pipeline --no-run --message-format=json 2>/dev/null) |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "pipeline":
        print(m["executable"])' | tail -n 1
}

# Total instructions of `batches` batches under callgrind: $1 binary, $2 batches, $3 label.
instructions() {
  SHARDHOST_PIPELINE_BATCHES="$2" timeout 900 valgrind --tool=callgrind \
    --callgrind-out-file="$out/$3-$2.callgrind" "$1" >"$out/$3-$2.txt" 2>"$out/$3-$2.log"
  grep -m1 '^summary:' "$out/$3-$2.callgrind" | awk '{print $2}'
}

measure() { # $1 label, $2 binary
  local lo hi per
  lo="$(instructions "$2" "$low" "$1")"
  hi="$(instructions "$2" "$high" "$1")"
  per=$(( (hi - lo) / ((high - low) * 64) ))
  callgrind_annotate --inclusive=no "$out/$1-$high.callgrind" 2>/dev/null | head -n 40 >"$out/$1-top.txt" || true
  echo "| $1 | $lo | $hi | $per |"
}

labels=()
binaries=()
for rev in "$@"; do
  short="$(git -C "$root" rev-parse --short "$rev")"
  # A stable path, so a second run reuses the build.
  tree="$root/target/callgrind-src-$short"
  git -C "$root" worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
  git -C "$root" worktree add --detach -q "$tree" "$rev"
  if [[ "${OWN_BENCH:-0}" == 0 ]]; then
    cp "$root/benches/pipeline.rs" "$tree/benches/pipeline.rs"
  fi
  echo "building $short (its own target dir; the first build takes minutes)" >&2
  binaries+=("$(bench_binary "$tree" "$root/target/callgrind-$short")")
  labels+=("$short")
  git -C "$root" worktree remove --force "$tree"
done
echo "building the working tree" >&2
binaries+=("$(bench_binary "$root" "${CARGO_TARGET_DIR:-$root/target}")")
labels+=("working tree ($(git -C "$root" rev-parse --short HEAD))")
{
  echo "| build | instructions, $low batches | instructions, $high batches | per invocation |"
  echo "|---|---|---|---|"
  for i in "${!labels[@]}"; do
    measure "$(echo "${labels[$i]}" | tr -c 'a-z0-9\n' '_')" "${binaries[$i]}" | sed "s/^| [^|]* |/| ${labels[$i]} |/"
  done
} | tee "$out/summary.md"
echo "callgrind files and top functions: $out" >&2
