#!/usr/bin/env bash
# Sample a running shardhost and write a flamegraph: perf/flamegraph.sh PID [SECONDS]
set -euo pipefail
pid="${1:?usage: perf/flamegraph.sh PID [SECONDS]}"
secs="${2:-10}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/out"; mkdir -p "$out"
stamp="$(date +%Y%m%d-%H%M%S)"
command -v perf >/dev/null || { echo "perf missing: apt-get install -y linux-perf" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || { echo "inferno missing: cargo install inferno" >&2; exit 1; }
perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -p "$pid" -o "$out/perf-$stamp.data" -- sleep "$secs"
perf script -i "$out/perf-$stamp.data" | inferno-collapse-perf > "$out/folded-$stamp.txt"
inferno-flamegraph < "$out/folded-$stamp.txt" > "$out/flame-$stamp.svg"
echo "$out/flame-$stamp.svg"
