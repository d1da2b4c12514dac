#!/usr/bin/env bash
# Echo load test on this machine, against the raw NATS floor of the same run: starts
# nats-server, a shardhost host and the built-in raw responder on 127.0.0.1, signs and starts
# the echo actor (call alias loadtest/echo) and a caller actor, then for each of ROUNDS rounds
# runs shardhost-loadtest closed-loop at 1 and at 64 in flight, in alternation: the raw floor,
# echo, actor-to-actor (echo_a2a: the caller forwards each call to the echo by alias, two
# invocations per request) and actor-to-provider (echo_a2p: the caller calls KeyValue.Get of
# the real wasmbus-rpc keyvalue provider, tests/fixtures/kvprovider, started from its archive
# and linked to it) — raw 1, echo 1, echo_a2a 1, echo_a2p 1, raw 64, … — writes
# every JSON report (plus logs and the exact commands) to a results directory and the medians
# with their share of the floor to summary.md, and stops everything it started on exit.
# See loadtest/README.md.
#
# Usage: loadtest/echo.sh [RESULTS_DIR]     (default: target/loadtest/echo-<UTC time>)
# Environment (all optional):
#   DURATION=10 WARMUP=2        measured and warmup seconds of each run
#   ROUNDS=3                    alternating rounds of raw and echo at each concurrency
#   PAYLOAD_BYTES=64 CONNECTIONS=1 TIMEOUT_MS=2000
#   SHARDS=N                    host --shards (default: the host's, one per core)
#   RATES="5000 20000"          also run open loop at each of these rates (invocations/s)
#   SHARDHOST_NATS_SERVER=PATH  nats-server binary (default: .tools/venv/bin/nats-server, then PATH)
#   HOSTS="a=BIN b=BIN"         compare builds: one host per NAME=BINARY, each on its own lattice
#                               with its own echo actor, run in alternation with the floor
#                               (raw, a, b, raw, a, b, …); default: echo=target/release/shardhost
#   HOST_ARGS_<NAME>="--flag v" extra flags for host NAME, e.g. HOSTS="uring=BIN epoll=BIN"
#                               HOST_ARGS_uring="--shard-io io-uring" HOST_ARGS_epoll="--shard-io epoll"
#   POLICY_TOPIC=SUBJECT        start a policy service that permits everything on SUBJECT and make
#                               the load's caller known to every host (its claims in the bucket);
#                               give the hosts under test `--policy-topic SUBJECT` with
#                               HOST_ARGS_<NAME> (e.g. HOSTS="plain=BIN policy=BIN"
#                               HOST_ARGS_policy="--policy-topic SUBJECT")
#   HOST_ENV_<NAME>="K=V …"     extra environment for host NAME, e.g. the tracing variants:
#                               HOSTS="off=BIN t100=BIN t1=BIN" OTLP_SINK=1
#                               HOST_ARGS_t100="--otel-traces-exporter otlp"
#                               HOST_ENV_t100="OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=1"
#                               (and _t1 with ARG=0.01)
#   OTLP_SINK=1                 start `shardhost-loadtest otlp-sink` (an OTLP/HTTP collector that
#                               counts what each host exports) and point every host's
#                               OTEL_EXPORTER_OTLP_ENDPOINT at it; its counts go to otlp-sink.json
#   SKIP_BUILD=1                use the release binaries already built
#   MESSAGING=1                 also the built-in messaging round trip (NAME_msg): the real 0.x
#                               echo_messaging actor (wascap 0.11's fixture, from the cargo registry)
#                               behind `wasmcloud+builtin://messaging-nats`, subscribed to a subject
#                               the load requests on; it publishes each body back to the reply
#                               subject (two guest steps: HandleMessage, then Messaging.Publish)
#   A2P=0                       leave out actor-to-provider (it builds the provider in release
#                               once, a few minutes, with its own Cargo.lock)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
results="${1:-$target/loadtest/echo-$(date -u +%Y%m%dT%H%M%SZ)}"
duration="${DURATION:-10}"
warmup="${WARMUP:-2}"
payload_bytes="${PAYLOAD_BYTES:-64}"
connections="${CONNECTIONS:-1}"
timeout_ms="${TIMEOUT_MS:-2000}"
rounds="${ROUNDS:-3}"
lattice="loadtest$$"
# Bounds (seconds) on each step, so a wedged process cannot hang the script.
nats_ready_secs=10
actor_start_secs=60
host_stop_secs=10
run_bound_secs=$(( ${duration%.*} + ${warmup%.*} + timeout_ms / 1000 + 120 ))

nats_bin="${SHARDHOST_NATS_SERVER:-}"
if [[ -z "$nats_bin" ]]; then
  if [[ -x "$root/.tools/venv/bin/nats-server" ]]; then
    nats_bin="$root/.tools/venv/bin/nats-server"
  else
    nats_bin="$(command -v nats-server || true)"
  fi
fi
if [[ -z "$nats_bin" ]]; then
  echo "echo.sh: no nats-server: run scripts/setup or set SHARDHOST_NATS_SERVER" >&2
  exit 1
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$root" && cargo build --release --quiet --bin shardhost --bin shardhost-loadtest)
fi
shardhost="$target/release/shardhost"
loadtest="$target/release/shardhost-loadtest"
a2p="${A2P:-1}"
provider_bin=""
if [[ "$a2p" != 0 ]]; then
  provider_bin="$(KVPROVIDER_PROFILE=release bash "$root/tests/fixtures/kvprovider/build.sh" | tail -n 1)"
fi

mkdir -p "$results"
work="$(mktemp -d)"
nats_pid=""
all_host_pids=()
responder_pid=""
policy_pid=""
sink_pid=""

# Stop a process: SIGTERM, wait up to $2 seconds, then SIGKILL.
stop() {
  local pid="$1" secs="$2"
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq $(( secs * 10 ))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  echo "echo.sh: pid $pid did not stop in ${secs}s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${all_host_pids[@]}"; do
    stop "$pid" "$host_stop_secs"
  done
  # After the hosts: their last spans are flushed at stop.
  stop "$sink_pid" 5
  stop "$responder_pid" 5
  stop "$policy_pid" 5
  stop "$nats_pid" 5
  rm -rf "$work"
  if [[ $status -ne 0 ]]; then
    echo "echo.sh: failed (exit $status); logs in $results" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on (a connect attempt is refused).
free_port() {
  local port
  for _ in $(seq 100); do
    port=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

port="$(free_port)"
echo "nats-server on 127.0.0.1:$port (log: $results/nats.log)" >&2
"$nats_bin" -js -a 127.0.0.1 -p "$port" -sd "$work/jetstream" >"$results/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq $(( nats_ready_secs * 10 ))); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$nats_pid" 2>/dev/null || { echo "echo.sh: nats-server exited" >&2; exit 1; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "echo.sh: nats-server not listening" >&2; exit 1; }

# One cluster key for the host and the generator; through the environment, not argv.
WASMCLOUD_CLUSTER_SEED="$("$loadtest" gen-seed cluster 2>/dev/null)"
export WASMCLOUD_CLUSTER_SEED

# The echo answers calls by its alias too; the caller forwards each `Wrap…` call to it
# (actor-to-actor: two invocations per request).
actor="$("$loadtest" prepare-echo --out "$results/echo.wasm" --call-alias loadtest/echo)"
caller="$("$loadtest" prepare-echo --out "$results/caller.wasm" --name loadtest-caller \
  --cap wasmcloud:httpserver --cap wasmcloud:keyvalue)"
echo "echo actor $actor, caller $caller" >&2
provider=""
if [[ "$a2p" != 0 ]]; then
  provider="$("$provider_bin/make-par" --binary "$provider_bin/kvprovider" --out "$results/kvprovider.par" \
    --issuer-seed "$("$loadtest" gen-seed account 2>/dev/null)" --name kvprovider 2>/dev/null)"
  echo "keyvalue provider $provider ($results/kvprovider.par)" >&2
fi
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
} >"$results/commands.txt"

# Wait (10 s at most) until process $2 wrote "ready" into file $1; $3 names it if it exits.
wait_ready() {
  for _ in $(seq 100); do
    grep -q ready "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "echo.sh: $3 exited" >&2; exit 1; }
    sleep 0.1
  done
}

# The tracing variants' collector (OTLP_SINK).
if [[ "${OTLP_SINK:-0}" != 0 ]]; then
  "$loadtest" otlp-sink --json "$results/otlp-sink.json" >"$work/otlp.ready" 2>"$results/otlp-sink.log" &
  sink_pid=$!
  wait_ready "$work/otlp.ready" "$sink_pid" "the OTLP sink"
  OTEL_EXPORTER_OTLP_ENDPOINT="$(sed -n 's/^ready //p' "$work/otlp.ready")"
  export OTEL_EXPORTER_OTLP_ENDPOINT
  echo "OTLP sink at $OTEL_EXPORTER_OTLP_ENDPOINT (counts: $results/otlp-sink.json)" >&2
  echo "$loadtest otlp-sink --json $results/otlp-sink.json" >>"$results/commands.txt"
fi

# The policy service and the load's caller it must know (POLICY_TOPIC).
origin_args=()
if [[ -n "${POLICY_TOPIC:-}" ]]; then
  "$loadtest" policy-responder --nats "127.0.0.1:$port" --topic "$POLICY_TOPIC" >"$work/policy.ready" 2>"$results/policy-responder.log" &
  policy_pid=$!
  wait_ready "$work/policy.ready" "$policy_pid" "the policy responder"
  origin_key="$("$loadtest" gen-seed service 2>&1 >/dev/null | sed -n 's/^public key: //p')"
  origin_args=(--origin-key "$origin_key")
  echo "policy service on $POLICY_TOPIC (permits all); load origin $origin_key" >&2
  echo "$loadtest policy-responder --nats 127.0.0.1:$port --topic $POLICY_TOPIC" >>"$results/commands.txt"
fi

# name=binary for each host under test.
read -r -a hosts <<<"${HOSTS:-echo=$shardhost}"
names=()
declare -A host_pids host_lattices
for spec in "${hosts[@]}"; do
  name="${spec%%=*}"
  binary="${spec#*=}"
  if [[ -z "$name" || "$name" == raw || "$name" == *[!a-z0-9_]* || ! -x "$binary" ]]; then
    echo "echo.sh: HOSTS entry '$spec' must be NAME=EXECUTABLE (NAME in [a-z0-9_], not raw)" >&2
    exit 1
  fi
  names+=("$name")
  host_lattices[$name]="$lattice$name"
  host_cmd=("$binary" up --nats-host 127.0.0.1 --nats-port "$port" --allow-file-load --lattice "${host_lattices[$name]}")
  if [[ -n "${SHARDS:-}" ]]; then
    host_cmd+=(--shards "$SHARDS")
  fi
  extra_args_var="HOST_ARGS_$name"
  if [[ -n "${!extra_args_var:-}" ]]; then
    read -r -a extra_args <<<"${!extra_args_var}"
    host_cmd+=("${extra_args[@]}")
  fi
  host_env=()
  extra_env_var="HOST_ENV_$name"
  if [[ -n "${!extra_env_var:-}" ]]; then
    read -r -a host_env <<<"${!extra_env_var}"
  fi
  echo "host $name: ${host_env[*]} ${host_cmd[*]} (log: $results/host-$name.log)" >&2
  env "${host_env[@]}" "${host_cmd[@]}" >"$results/host-$name.log" 2>&1 &
  host_pids[$name]=$!
  all_host_pids+=("${host_pids[$name]}")
  echo "${host_env[*]} ${host_cmd[*]}" >>"$results/commands.txt"
  for module in echo caller; do
    if ! timeout $(( actor_start_secs + 10 )) "$loadtest" start-actor --nats "127.0.0.1:$port" \
        --lattice "${host_lattices[$name]}" --file "$results/$module.wasm" --wait-secs "$actor_start_secs" >/dev/null; then
      kill -0 "${host_pids[$name]}" 2>/dev/null || echo "echo.sh: host $name exited; last lines of its log:" >&2
      tail -n 20 "$results/host-$name.log" >&2
      exit 1
    fi
  done
  if [[ -n "${POLICY_TOPIC:-}" ]]; then
    "$loadtest" put-claims --nats "127.0.0.1:$port" --lattice "${host_lattices[$name]}" --key "$origin_key"
  fi
  if [[ "${MESSAGING:-0}" != 0 ]]; then
    fixture="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wascap-0.11.*/fixtures/echo_messaging_v0.9.0.wasm | head -n 1)"
    cp "$fixture" "$results/echo_messaging.wasm"
    msg_actor="$("$loadtest" start-actor --nats "127.0.0.1:$port" --lattice "${host_lattices[$name]}" \
      --file "$results/echo_messaging.wasm" --wait-secs "$actor_start_secs")"
    msg_provider="$("$loadtest" start-provider --nats "127.0.0.1:$port" --lattice "${host_lattices[$name]}" \
      --ref wasmcloud+builtin://messaging-nats --wait-secs "$actor_start_secs")"
    "$loadtest" put-link --nats "127.0.0.1:$port" --lattice "${host_lattices[$name]}" --actor "$msg_actor" \
      --provider "$msg_provider" --contract wasmcloud:messaging --value "SUBSCRIPTION=shardhost.loadtest.msg.${host_lattices[$name]}"
  fi
  if [[ "$a2p" != 0 ]]; then
    timeout $(( actor_start_secs + 10 )) "$loadtest" start-provider --nats "127.0.0.1:$port" \
      --lattice "${host_lattices[$name]}" --file "$results/kvprovider.par" --wait-secs "$actor_start_secs" >/dev/null
    "$loadtest" put-link --nats "127.0.0.1:$port" --lattice "${host_lattices[$name]}" \
      --actor "$caller" --provider "$provider" --contract wasmcloud:keyvalue
  fi
done

raw_subject="shardhost.loadtest.raw.$lattice"
"$loadtest" responder --nats "127.0.0.1:$port" --subject "$raw_subject" >"$work/responder.ready" 2>"$results/responder.log" &
responder_pid=$!
wait_ready "$work/responder.ready" "$responder_pid" "the raw responder"
echo "$loadtest responder --nats 127.0.0.1:$port --subject $raw_subject" >>"$results/commands.txt"
for round in $(seq "$rounds"); do
  for in_flight in 1 64; do
    scenarios=(raw)
    for name in "${names[@]}"; do
      scenarios+=("$name" "${name}_a2a")
      [[ "$a2p" == 0 ]] || scenarios+=("${name}_a2p")
      [[ "${MESSAGING:-0}" == 0 ]] || scenarios+=("${name}_msg")
    done
    for scenario in "${scenarios[@]}"; do
      serving="${names[0]}"
      invoked="$actor"
      operation=HttpServer.HandleRequest
      case "$scenario" in
        raw) ;;
        *_a2a) serving="${scenario%_a2a}"; invoked="$caller"; operation=Wrap.HandleRequest ;;
        *_a2p) serving="${scenario%_a2p}"; invoked="$caller"; operation=Kv.HandleRequest ;;
        *_msg) serving="${scenario%_msg}" ;;
        *) serving="$scenario" ;;
      esac
      run_cmd=("$loadtest" run --nats "127.0.0.1:$port" --lattice "${host_lattices[$serving]}" --actor "$invoked"
        --operation "$operation"
        --origin-contract wasmcloud:httpserver --in-flight "$in_flight" --duration "$duration" --warmup "$warmup"
        --payload-bytes "$payload_bytes" --connections "$connections" --timeout-ms "$timeout_ms"
        --host-pid "${host_pids[$serving]}" --json "$results/$scenario-inflight$in_flight-r$round.json"
        "${origin_args[@]}")
      # echo_messaging answers "reply: " and the body: every other scenario echoes exactly.
      [[ "$scenario" == *_msg ]] || run_cmd+=(--verify-echo)
      if [[ "$scenario" == raw ]]; then
        # The floor: the same invocations to the responder; host CPU should read ~0.
        run_cmd+=(--raw-subject "$raw_subject")
      elif [[ "$scenario" == *_msg ]]; then
        # The same bytes as a NATS message to the actor's subscription, echoed back by it.
        run_cmd+=(--raw-subject "shardhost.loadtest.msg.${host_lattices[$serving]}" --messaging)
      fi
      echo "${run_cmd[*]}" >>"$results/commands.txt"
      echo "--- round $round, $scenario, in flight: $in_flight" >&2
      timeout "$run_bound_secs" "${run_cmd[@]}"
    done
  done
done
for rate in ${RATES:-}; do
  for name in "${names[@]}"; do
    run_cmd=("$loadtest" run --nats "127.0.0.1:$port" --lattice "${host_lattices[$name]}" --actor "$actor"
      --origin-contract wasmcloud:httpserver --rate "$rate" --duration "$duration" --warmup "$warmup"
      --payload-bytes "$payload_bytes" --connections "$connections" --timeout-ms "$timeout_ms"
      --host-pid "${host_pids[$name]}" --verify-echo --json "$results/$name-rate$rate.json")
    echo "${run_cmd[*]}" >>"$results/commands.txt"
    echo "--- $name open loop: $rate/s" >&2
    timeout "$run_bound_secs" "${run_cmd[@]}"
  done
done
"$loadtest" summarize "$results" | tee "$results/summary.md"
"$loadtest" plot "$results" >&2
echo "results: $results" >&2
