#!/usr/bin/env bash
# The standard suite, one command: builds the release host and harness once, then runs on this
# machine, each against its own nats-server and host on 127.0.0.1:
#   echo/      loadtest/echo.sh: the raw NATS floor, echo, actor to actor and actor to provider,
#              closed loop at 1 and 64 in flight, ROUNDS alternating rounds (summary.md, one
#              latency-spectrum SVG per concurrency, every JSON report)
#   start/     loadtest/start.sh: first start and start again after a stop, without and with
#              --cache-dir
#   footprint/ loadtest/footprint.sh: RSS idle, with the echo at 64 instances, after 64 in flight
# and writes summary.md (the three tables, the commit and the commands) into the results
# directory. See loadtest/README.md.
#
# Usage: loadtest/suite.sh [RESULTS_DIR]    (default: target/loadtest/suite-<UTC time>)
# Environment: ROUNDS=3 DURATION=10 WARMUP=2 (echo.sh), A2P=0 (leave out actor to provider),
#   HOSTS="a=BIN b=BIN" (compare builds in the echo part), HOST_ARGS (start and footprint)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
results="${1:-$target/loadtest/suite-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$results"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$root" && cargo build --release --locked --quiet --bin shardhost --bin shardhost-loadtest)
fi
export SKIP_BUILD=1
started=$(date +%s)
echo "=== echo, actor to actor, actor to provider against the raw floor" >&2
"$root/loadtest/echo.sh" "$results/echo" >"$results/echo.out"
echo "=== start" >&2
"$root/loadtest/start.sh" "$results/start" >"$results/start.out"
echo "=== footprint" >&2
"$root/loadtest/footprint.sh" "$results/footprint" >"$results/footprint.out"
{
  echo "# shardhost standard suite"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)'), $(nproc) cores, $(( $(date +%s) - started )) s"
  echo
  echo "## Throughput, latency and host CPU against the raw NATS floor (medians of ${ROUNDS:-3} alternating rounds)"
  echo
  cat "$results/echo/summary.md"
  echo
  for svg in "$results"/echo/latency-*.svg; do
    [[ -e "$svg" ]] && echo "- latency spectrum: echo/$(basename "$svg")"
  done
  echo
  echo "## Actor start (la → actors_started)"
  echo
  cat "$results/start/summary.md"
  echo
  echo "## Resident memory"
  echo
  cat "$results/footprint/summary.md"
  echo
  echo "Exact commands: echo/commands.txt, start/commands.txt, footprint/commands.txt."
} >"$results/summary.md"
cat "$results/summary.md"
echo "results: $results" >&2
