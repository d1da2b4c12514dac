#!/usr/bin/env bash
# Where a release host's wake-ups go under load: per thread, the context switches and the
# system calls (io_uring_enter, sendto, recvfrom, futex, membarrier) counted with perf's
# software tracepoints over 3 s of the echo actor at IN_FLIGHT in flight, divided by the
# invocations served meanwhile. Starts nats-server and the host on 127.0.0.1; stops both.
#
# Usage: perf/syscalls.sh [IN_FLIGHT=1]   Needs linux-perf, release binaries, scripts/setup.
set -euo pipefail
cd "$(dirname "$0")/.."
in_flight="${1:-1}"
load=./target/release/shardhost-loadtest
nats_bin="${SHARDHOST_NATS_SERVER:-.tools/venv/bin/nats-server}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$nats_bin" -js -a 127.0.0.1 -p "$port" -sd "$work/js" >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
WASMCLOUD_CLUSTER_SEED="$("$load" gen-seed cluster 2>/dev/null)"
export WASMCLOUD_CLUSTER_SEED
./target/release/shardhost up --nats-host 127.0.0.1 --nats-port "$port" --allow-file-load --lattice sys >"$work/host.log" 2>&1 &
host=$!
pids+=("$host")
key=$("$load" prepare-echo --out "$work/echo.wasm" 2>/dev/null)
timeout 60 "$load" start-actor --nats "127.0.0.1:$port" --lattice sys --file "$work/echo.wasm" >/dev/null 2>&1
timeout 60 "$load" run --nats "127.0.0.1:$port" --lattice sys --actor "$key" --origin-contract wasmcloud:httpserver \
  --in-flight "$in_flight" --duration 6 --warmup 1 --host-pid "$host" --json "$work/load.json" 2>/dev/null &
runner=$!
sleep 2
events=context-switches,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom
events+=,syscalls:sys_enter_futex,syscalls:sys_enter_membarrier
perf stat --per-thread -x, -e "$events" -p "$host" -o "$work/stat.csv" -- sleep 3
wait "$runner"
python3 - "$work/stat.csv" "$work/load.json" <<'PY'
import csv, json, sys
rate = json.load(open(sys.argv[2]))["throughput"]["ok_per_sec"]
served = rate * 3
rows = {}
for row in csv.reader(line for line in open(sys.argv[1]) if line.strip() and not line.startswith("#")):
    thread, value, event = row[0], row[1], row[3]
    if not value.isdigit() or int(value) == 0:
        continue
    name = thread.rsplit("-", 1)[0]
    rows.setdefault(name, {})[event.replace("syscalls:sys_enter_", "")] = rows.get(name, {}).get(event.replace("syscalls:sys_enter_", ""), 0) + int(value)
print(f"{rate:.0f} invocations/s; per invocation (3 s window, {served:.0f} invocations):")
for name, counts in sorted(rows.items()):
    print(f"  {name:<14}" + "  ".join(f"{event} {count / served:.2f}" for event, count in sorted(counts.items())))
PY
