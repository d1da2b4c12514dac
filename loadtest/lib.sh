# Shared set-up of the harness's scenario scripts (start.sh, footprint.sh); sourced, not run.
# Before sourcing, set `script` (its name, for messages) and `scenario` (the results folder's
# prefix). Defines root, target, results (from $1 or target/loadtest/{scenario}-<UTC time>),
# shardhost, loadtest, work (a temporary folder), pids (stopped on exit: SIGTERM, 10 s, then
# SIGKILL), and lt_start_nats, which starts nats-server -js on a free loopback port ($port).

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
results="${1:-$target/loadtest/$scenario-$(date -u +%Y%m%dT%H%M%SZ)}"
nats_bin="${SHARDHOST_NATS_SERVER:-$root/.tools/venv/bin/nats-server}"
[[ -x "$nats_bin" ]] || nats_bin="$(command -v nats-server || true)"
[[ -n "$nats_bin" ]] || { echo "$script: no nats-server: run scripts/setup" >&2; exit 1; }
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$root" && cargo build --release --locked --quiet --bin shardhost --bin shardhost-loadtest)
fi
shardhost="$target/release/shardhost"
loadtest="$target/release/shardhost-loadtest"
mkdir -p "$results"
work="$(mktemp -d)"
pids=()
lt_cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  [[ $status -eq 0 ]] || echo "$script: failed (exit $status); logs in $results" >&2
  exit "$status"
}
trap lt_cleanup EXIT

lt_start_nats() {
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$nats_bin" -js -a 127.0.0.1 -p "$port" -sd "$work/js" >"$results/nats.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "$script: nats-server does not listen on 127.0.0.1:$port" >&2
  exit 1
}
