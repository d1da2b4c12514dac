#!/usr/bin/env bash
# Profile a release host while shardhost-loadtest drives the echo actor at N invocations in
# flight: starts nats-server and the host on 127.0.0.1, signs and starts the echo actor, runs
# the closed-loop load, samples the host with `perf record -g` (cpu-clock) in the middle of the
# run, then prints the load summary and the top symbols. Everything it starts stops on exit.
#
# Usage: perf/echo-profile.sh [IN_FLIGHT=64] [OUT_DIR=perf/out/echo-<time>]
# Needs: release binaries (cargo build --release --bins), linux-perf, .tools/venv/bin/nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."
in_flight="${1:-64}"
out="${2:-perf/out/echo-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
nats_bin="${SHARDHOST_NATS_SERVER:-.tools/venv/bin/nats-server}"
load=./target/release/shardhost-loadtest
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
"$nats_bin" -js -a 127.0.0.1 -p "$port" -sd "$out/js" >"$out/nats.log" 2>&1 &
pids+=($!)
WASMCLOUD_CLUSTER_SEED="$("$load" gen-seed cluster 2>/dev/null)"
export WASMCLOUD_CLUSTER_SEED
sleep 0.5
./target/release/shardhost up --nats-host 127.0.0.1 --nats-port "$port" --allow-file-load --lattice profile \
    >"$out/host.log" 2>&1 &
host=$!
pids+=("$host")
key=$("$load" prepare-echo --out "$out/echo.wasm" 2>/dev/null)
timeout 40 "$load" start-actor --nats "127.0.0.1:$port" --lattice profile --file "$out/echo.wasm" \
    >/dev/null 2>"$out/start.log"
timeout 60 "$load" run --nats "127.0.0.1:$port" --lattice profile --actor "$key" \
    --origin-contract wasmcloud:httpserver --in-flight "$in_flight" --duration 8 --warmup 1 \
    --payload-bytes 64 --host-pid "$host" --json "$out/load.json" 2>"$out/load.txt" &
runner=$!
sleep 3
perf record -F 1999 -g -p "$host" -o "$out/perf.data" -- sleep 4 >/dev/null 2>&1 || echo "perf record failed (is linux-perf installed?)"
wait "$runner"
grep -E "throughput|host CPU|latency" "$out/load.txt"
perf report -i "$out/perf.data" --no-children --sort comm,dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
perf report -i "$out/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25 | cut -c1-140
echo "profile and logs: $out"
