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

script=start.sh
scenario=start
# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds="${ROUNDS:-3}"
lt_start_nats

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
