#!/usr/bin/env bash
# The `footprint` scenario: a release host's resident memory (VmRSS, and its anonymous and
# file-backed parts, from /proc/PID/status) idle, with the echo actor at COUNT instances,
# after IN_FLIGHT-in-flight load for DURATION seconds, and once the shards released the warm
# instances the quiet did not need (`--warm-release-secs RELEASE_SECS`). Beside RSS: the
# writable private mappings (an upper bound of what strict overcommit accounting counts:
# mimalloc maps its 1 GiB arena read-write only where overcommit is on) and all virtual memory
# (VmSize, mostly the pooling allocator's PROT_NONE reservation). Starts nats-server and the
# host on 127.0.0.1, writes footprint.json and summary.md to the results directory, stops
# everything.
#
# Usage: loadtest/footprint.sh [RESULTS_DIR]   (default: target/loadtest/footprint-<UTC time>)
# Environment (all optional): COUNT=64 IN_FLIGHT=64 DURATION=5 RELEASE_SECS=15 MODULE=PATH (a signed actor
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
release_secs="${RELEASE_SECS:-15}"
lt_start_nats
WASMCLOUD_CLUSTER_SEED="$("$loadtest" gen-seed cluster 2>/dev/null)"
export WASMCLOUD_CLUSTER_SEED
lattice="footprint$$"
# shellcheck disable=SC2206
host_cmd=("$shardhost" up --nats-host 127.0.0.1 --nats-port "$port" --allow-file-load --lattice "$lattice" --warm-release-secs "$release_secs" ${HOST_ARGS:-})
"${host_cmd[@]}" >"$results/host.log" 2>&1 &
host=$!
host_started=$SECONDS
pids+=("$host")
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" >"$results/commands.txt"
echo "${host_cmd[*]}" >>"$results/commands.txt"

# kB of VmRSS, RssAnon, RssFile, writable private mappings, VmSize.
rss() {
  awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s ", $2}' "/proc/$host/status"
  python3 -c 'import sys
kb = 0
for line in open(sys.argv[1]):
    span, perms = line.split()[:2]
    if perms.startswith("rw") and perms.endswith("p"):
        lo, hi = span.split("-")
        kb += (int(hi, 16) - int(lo, 16)) // 1024
print(kb, end=" ")' "/proc/$host/maps"
  awk '/^VmSize:/ {printf "%s ", $2}' "/proc/$host/status"
}
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
# Shards release at every multiple of RELEASE_SECS after their start, so the default (15 s)
# comes after the load: that release keeps what the load's period leased at once, the next
# one drops the rest (down to one per actor and shard).
(( SECONDS - host_started < release_secs )) || echo "footprint: the first release came before the load ended; raise RELEASE_SECS" >&2
sleep $(( 2 * release_secs + 3 - (SECONDS - host_started) ))
released=$(rss)

python3 - "$results" "$count" "$in_flight" "$idle" "$started" "$loaded" "$released" <<'PY'
import json, sys
results, count, in_flight = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keys = ("vm_rss_kb", "rss_anon_kb", "rss_file_kb", "writable_private_kb", "vm_size_kb")
names = ("idle", f"count_{count}", f"count_{count}_after_{in_flight}_in_flight", "after_idle_release")
phases = {name: dict(zip(keys, map(int, values.split()))) for name, values in zip(names, sys.argv[4:8])}
load = json.load(open(f"{results}/load.json"))
record = {"phases": phases, "load_ok": load["counts"]["ok"], "load_sent": load["counts"]["sent"]}
json.dump(record, open(f"{results}/footprint.json", "w"), indent=2)
with open(f"{results}/summary.md", "w") as out:
    out.write("| phase | VmRSS MB | anonymous MB | file-backed MB | writable private MB | virtual GB |\n"
              "|---|---|---|---|---|---|\n")
    for name, p in phases.items():
        out.write(f"| {name} | {p['vm_rss_kb']/1000:.1f} | {p['rss_anon_kb']/1000:.1f} | {p['rss_file_kb']/1000:.1f} "
                  f"| {p['writable_private_kb']/1000:.1f} | {p['vm_size_kb']/1e6:.1f} |\n")
    out.write(f"\nload: {record['load_ok']} ok of {record['load_sent']} sent\n")
print(open(f"{results}/summary.md").read(), end="")
PY
echo "results: $results" >&2
