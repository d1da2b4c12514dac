#!/usr/bin/env bash
# The `start` scenario on this machine: how long a host takes from `la` to `actors_started`
# for an actor — the first start on a fresh host without --cache-dir, then with a cold and a
# warm --cache-dir, and each time again after ROUNDS stops. Starts nats-server and one host at
# a time on 127.0.0.1, writes start-{nocache,cold,warm}.json and summary.md to the results
# directory, and stops everything it started on exit. See loadtest/README.md.
#
# Usage: loadtest/start.sh [RESULTS_DIR]   (default: target/loadtest/start-<UTC time>)
# Environment (all optional):
#   MODULE=PATH        a signed actor module (default: the harness's echo, prepare-echo);
#                      sign any wasmbus module with: shardhost claims sign IN OUT --issuer-seed SA… --name N
#   ROUNDS=3           stop/start rounds after the first start
#   HOST_ARGS="…"      extra `shardhost up` flags (e.g. "--baseline-compiler false")
#   SKIP_BUILD=1       use the release binaries already built
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
results="${1:-$target/loadtest/start-$(date -u +%Y%m%dT%H%M%SZ)}"
rounds="${ROUNDS:-3}"
nats_bin="${SHARDHOST_NATS_SERVER:-$root/.tools/venv/bin/nats-server}"
[[ -x "$nats_bin" ]] || nats_bin="$(command -v nats-server || true)"
[[ -n "$nats_bin" ]] || { echo "start.sh: no nats-server: run scripts/setup" >&2; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$root" && cargo build --release --locked --quiet --bin shardhost --bin shardhost-loadtest)
fi
shardhost="$target/release/shardhost"
loadtest="$target/release/shardhost-loadtest"
mkdir -p "$results"
work="$(mktemp -d)"
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  [[ $status -eq 0 ]] || echo "start.sh: failed (exit $status); logs in $results" >&2
  exit "$status"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$nats_bin" -js -a 127.0.0.1 -p "$port" -sd "$work/js" >"$results/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

module="${MODULE:-}"
if [[ -z "$module" ]]; then
  module="$results/echo.wasm"
  "$loadtest" prepare-echo --out "$module" >/dev/null 2>&1
fi
cp "$module" "$work/actor.wasm"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown) module=$module ($(stat -c %s "$module") bytes)" >"$results/commands.txt"

# One fresh host per mode; the cold and warm runs share one --cache-dir.
for mode in nocache cold warm; do
  lattice="start$$$mode"
  host_cmd=("$shardhost" up --nats-host 127.0.0.1 --nats-port "$port" --allow-file-load --lattice "$lattice")
  [[ "$mode" == nocache ]] || host_cmd+=(--cache-dir "$work/cache")
  # shellcheck disable=SC2206
  host_cmd+=(${HOST_ARGS:-})
  "${host_cmd[@]}" >"$results/host-$mode.log" 2>&1 &
  host=$!
  pids+=("$host")
  run_cmd=("$loadtest" start-times --nats "127.0.0.1:$port" --lattice "$lattice" --file "$work/actor.wasm"
    --rounds "$rounds" --wait-secs 60 --json "$results/start-$mode.json")
  echo "${host_cmd[*]}" >>"$results/commands.txt"
  echo "${run_cmd[*]}" >>"$results/commands.txt"
  echo "--- $mode" >&2
  timeout 120 "${run_cmd[@]}"
  kill -TERM "$host"
  timeout 15 tail --pid="$host" -f /dev/null || kill -KILL "$host"
done

{
  echo "| host | first start ms | again after a stop, median ms | rounds |"
  echo "|---|---|---|---|"
  for mode in nocache cold warm; do
    python3 -c "
import json,sys
r=json.load(open('$results/start-$mode.json'))
label={'nocache':'no --cache-dir','cold':'cold --cache-dir','warm':'warm --cache-dir (a new host)'}['$mode']
print(f\"| {label} | {r['first_start_ms']:.1f} | {r['start_again_median_ms']:.1f} | {len(r['start_again_ms'])} |\")"
  done
} | tee "$results/summary.md"
echo "results: $results" >&2
