#!/usr/bin/env bash
# The `http` scenario on this machine (issue 20): HTTP requests into the same actor
# (loadtest/http_echo.wat, signed with wasmcloud:httpserver) through
#   - builtin: shardhost's built-in HTTP server (`wasmcloud+builtin://http-server`), served on
#     the shards that accept the connections;
#   - par:     the httpserver provider 0.19.1 as a PAR on the same host (set HTTPSERVER_BIN to
#              its binary; it is packed with the kvprovider fixture's make-par) — left out
#              when HTTPSERVER_BIN is not set;
#   - the floor: `shardhost-loadtest http-floor`, hyper answering a fixed 200 thread-per-core
#     on SO_REUSEPORT listeners (as many threads as the host has shards), no actor at all;
# each closed loop at every CONNS count, ROUNDS rounds in alternation (floor, builtin, par,
# floor, …). Starts nats-server and one host on 127.0.0.1, writes every JSON report, the logs
# and the commands to the results directory, the medians (with their share of the floor) to
# summary.md and the latency spectra to latency-closed-N.svg; WRK=1 also runs Debian's wrk once
# per server at 64 connections (wrk-*.txt).
#
# Usage: loadtest/http.sh [RESULTS_DIR]   (default: target/loadtest/http-<UTC time>)
# Environment (all optional):
#   DURATION=10 WARMUP=2 ROUNDS=3 CONNS="1 16 64 256"
#   HTTPSERVER_BIN=PATH   the httpserver provider binary (wasmcloud-provider-httpserver 0.19.1)
#   HOST_ARGS="…"         extra `shardhost up` flags
#   SKIP_BUILD=1          use the release binaries already built
#   WRK=1                 the wrk cross-check (needs `wrk` on PATH)
set -euo pipefail

script=http.sh
scenario=http
# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
duration="${DURATION:-10}"
warmup="${WARMUP:-2}"
rounds="${ROUNDS:-3}"
conns="${CONNS:-1 16 64 256}"
lattice="http$$"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
lt_start_nats
target_nats="127.0.0.1:$port"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" >"$results/commands.txt"

WASMCLOUD_CLUSTER_SEED="$("$loadtest" gen-seed cluster 2>/dev/null)"
export WASMCLOUD_CLUSTER_SEED
host_cmd=("$shardhost" up --nats-host 127.0.0.1 --nats-port "$port" --allow-file-load --lattice "$lattice")
# shellcheck disable=SC2206
host_cmd+=(${HOST_ARGS:-})
"${host_cmd[@]}" >"$results/host.log" 2>&1 &
host_pid=$!
pids+=("$host_pid")
echo "${host_cmd[*]}" >>"$results/commands.txt"
shards="$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')"

actor="$("$loadtest" prepare-echo --out "$results/http.wasm" --wat "$root/loadtest/http_echo.wat" \
  --name loadtest-http --cap wasmcloud:httpserver 2>/dev/null)"
"$loadtest" start-actor --nats "$target_nats" --lattice "$lattice" --file "$results/http.wasm" --wait-secs 60 >/dev/null
echo "actor $actor" >&2

builtin_port="$(free_port)"
builtin="$("$loadtest" start-provider --nats "$target_nats" --lattice "$lattice" --ref wasmcloud+builtin://http-server \
  --link-name builtin --wait-secs 60)"
"$loadtest" put-link --nats "$target_nats" --lattice "$lattice" --actor "$actor" --provider "$builtin" \
  --contract wasmcloud:httpserver --link-name builtin --value "address=127.0.0.1:$builtin_port"
echo "built-in HTTP server $builtin on 127.0.0.1:$builtin_port" >&2
servers=("builtin=127.0.0.1:$builtin_port")

if [[ -n "${HTTPSERVER_BIN:-}" ]]; then
  provider_bin="$(KVPROVIDER_PROFILE=release bash "$root/tests/fixtures/kvprovider/build.sh" | tail -n 1)"
  par_port="$(free_port)"
  "$provider_bin/make-par" --binary "$HTTPSERVER_BIN" --out "$results/httpserver.par" --capid wasmcloud:httpserver \
    --name httpserver --ver 0.19.1 --issuer-seed "$("$loadtest" gen-seed account 2>/dev/null)" >/dev/null 2>&1
  par="$("$loadtest" start-provider --nats "$target_nats" --lattice "$lattice" --file "$results/httpserver.par" \
    --link-name default --wait-secs 60)"
  "$loadtest" put-link --nats "$target_nats" --lattice "$lattice" --actor "$actor" --provider "$par" \
    --contract wasmcloud:httpserver --link-name default --value "address=127.0.0.1:$par_port"
  echo "httpserver PAR $par on 127.0.0.1:$par_port" >&2
  servers+=("par=127.0.0.1:$par_port")
fi

"$loadtest" http-floor --threads "$shards" >"$work/floor.ready" 2>"$results/floor.log" &
floor_pid=$!
pids+=("$floor_pid")
for _ in $(seq 100); do grep -q ready "$work/floor.ready" 2>/dev/null && break; sleep 0.1; done
floor_addr="$(sed -n 's/^ready //p' "$work/floor.ready")"
[[ -n "$floor_addr" ]] || { echo "$script: the floor did not start" >&2; exit 1; }
echo "floor (hyper, $shards threads) on $floor_addr" >&2

# Every server must answer before the load starts (the listeners come up after the link).
for server in "${servers[@]}"; do
  addr="${server#*=}"
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://$addr/" && break
    sleep 0.1
  done
done

run_bound_secs=$(( ${duration%.*} + ${warmup%.*} + 60 ))
for round in $(seq "$rounds"); do
  for c in $conns; do
    all=("floor=$floor_addr" "${servers[@]}")
    for server in "${all[@]}"; do
      name="${server%%=*}" addr="${server#*=}"
      args=(http --address "$addr" --connections "$c" --duration "$duration" --warmup "$warmup"
        --json "$results/http${name}-c$c-r$round.json")
      if [[ "$name" == floor ]]; then
        args+=(--floor --host-pid "$floor_pid")
      else
        args+=(--host-pid "$host_pid")
      fi
      echo "$loadtest ${args[*]}" >>"$results/commands.txt"
      echo "--- round $round, $c connections, $name" >&2
      timeout "$run_bound_secs" "$loadtest" "${args[@]}" 2>>"$results/runs.log"
    done
  done
done

if [[ "${WRK:-0}" != 0 ]]; then
  for server in "floor=$floor_addr" "${servers[@]}"; do
    name="${server%%=*}" addr="${server#*=}"
    echo "wrk -t1 -c64 -d${duration}s --latency http://$addr/" >>"$results/commands.txt"
    timeout "$run_bound_secs" wrk -t1 -c64 -d"${duration}s" --latency "http://$addr/" >"$results/wrk-$name.txt" 2>&1 || true
  done
fi

"$loadtest" summarize "$results" | tee "$results/summary.md"
"$loadtest" plot "$results" >&2
echo "results: $results" >&2
