#!/usr/bin/env bash
# The `footprint` scenario: a release host's resident memory (VmRSS, and its anonymous and
# file-backed parts, from /proc/PID/status) idle, with the echo actor at COUNT instances, and
# after IN_FLIGHT-in-flight load for DURATION seconds. Starts nats-server and the host on
# 127.0.0.1, writes footprint.json and summary.md to the results directory, stops everything.
#
# Usage: loadtest/footprint.sh [RESULTS_DIR]   (default: target/loadtest/footprint-<UTC time>)
# Environment (all optional): COUNT=64 IN_FLIGHT=64 DURATION=5 MODULE=PATH (a signed actor
#   answering HttpServer.HandleRequest with its payload; default the harness's echo)
#   HOST_ARGS="…" SKIP_BUILD=1
set -euo pipefail

script=footprint.sh
scenario=footprint
# shellcheck source=loadtest/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
count="${COUNT:-64}"
in_flight="${IN_FLIGHT:-64}"
duration="${DURATION:-5}"
lt_start_nats
WASMCLOUD_CLUSTER_SEED="$("$loadtest" gen-seed cluster 2>/dev/null)"
export WASMCLOUD_CLUSTER_SEED
lattice="footprint$$"
# shellcheck disable=SC2206
host_cmd=("$shardhost" up --nats-host 127.0.0.1 --nats-port "$port" --allow-file-load --lattice "$lattice" ${HOST_ARGS:-})
"${host_cmd[@]}" >"$results/host.log" 2>&1 &
host=$!
pids+=("$host")
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" >"$results/commands.txt"
echo "${host_cmd[*]}" >>"$results/commands.txt"

# kB of VmRSS, RssAnon, RssFile.
rss() { awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s ", $2}' "/proc/$host/status"; }
sleep 2
idle=$(rss)
module="${MODULE:-$results/echo.wasm}"
[[ -n "${MODULE:-}" ]] || "$loadtest" prepare-echo --out "$module" >/dev/null 2>&1
actor=$("$loadtest" start-actor --nats "127.0.0.1:$port" --lattice "$lattice" --file "$module" --count "$count" --wait-secs 60 2>/dev/null)
sleep 1
started=$(rss)
run_cmd=("$loadtest" run --nats "127.0.0.1:$port" --lattice "$lattice" --actor "$actor" --origin-contract wasmcloud:httpserver
  --in-flight "$in_flight" --duration "$duration" --warmup 1 --host-pid "$host" --json "$results/load.json")
echo "${run_cmd[*]}" >>"$results/commands.txt"
timeout $(( duration + 60 )) "${run_cmd[@]}" 2>"$results/load.txt"
sleep 1
loaded=$(rss)

python3 - "$results" "$count" "$in_flight" "$idle" "$started" "$loaded" <<'PY'
import json, sys
results, count, in_flight = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keys = ("vm_rss_kb", "rss_anon_kb", "rss_file_kb")
phases = {name: dict(zip(keys, map(int, values.split()))) for name, values in
          zip(("idle", f"count_{count}", f"count_{count}_after_{in_flight}_in_flight"), sys.argv[4:7])}
load = json.load(open(f"{results}/load.json"))
record = {"phases": phases, "load_ok": load["counts"]["ok"], "load_sent": load["counts"]["sent"]}
json.dump(record, open(f"{results}/footprint.json", "w"), indent=2)
with open(f"{results}/summary.md", "w") as out:
    out.write("| phase | VmRSS MB | anonymous MB | file-backed MB |\n|---|---|---|---|\n")
    for name, p in phases.items():
        out.write(f"| {name} | {p['vm_rss_kb']/1000:.1f} | {p['rss_anon_kb']/1000:.1f} | {p['rss_file_kb']/1000:.1f} |\n")
    out.write(f"\nload: {record['load_ok']} ok of {record['load_sent']} sent\n")
print(open(f"{results}/summary.md").read(), end="")
PY
echo "results: $results" >&2
