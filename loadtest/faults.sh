#!/usr/bin/env bash
# The fault suite (issue 10), one scenario after another against release builds of the host and
# the generator, each on its own loopback NATS (a three-node cluster for node loss):
#   nats-restart             nats-server SIGKILLed and restarted twice under 64 in flight
#   cluster-node-loss        a cluster node lost under load; failover, R3 bucket, link applied
#   overload-10x             open loop at 10x the measured capacity
#   overload-runaway-guests  every slot held by runaway guests; the excess refused at once
#   hostile-guests           trap / runaway / memory hog / bad pointers beside echo
#   graceful-drain           SIGTERM to one of two hosts under load
#   soak                     mixed load for SOAK_SECS (default 300; 1800 for a release check)
# Each prints its figures; each green one writes {scenario}.json (verdict and figures) into the
# results folder ($1, or target/loadtest/faults-<UTC time>), next to the full log. Prints one
# verdict line per scenario; exits non-zero if any failed.
#   loadtest/faults.sh                 # everything
#   ONLY=cluster loadtest/faults.sh    # test names matching a regex
set -euo pipefail
script=faults.sh
scenario=faults
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export SHARDHOST_BIN="$shardhost" SHARDHOST_LOADTEST_BIN="$loadtest" SHARDHOST_NATS_SERVER="$nats_bin"
export SHARDHOST_FAULTS_OUT="$results" SHARDHOST_SOAK_SECS="${SOAK_SECS:-300}"
filter="test(/^(faults|drain|cluster|overload|soak)::/)"
[[ -n "${ONLY:-}" ]] && filter="$filter & test(/${ONLY}/)"
status=0
(cd "$root" && cargo nextest run --locked --test integration -E "$filter" --test-threads 1 \
  --no-fail-fast --no-capture) >"$results/log.txt" 2>&1 || status=$?

echo "fault suite: $results"
grep -E '^ +(PASS|FAIL|TIMEOUT) \[' "$results/log.txt" | sed -E 's/^ +//; s/shardhost::integration //' || true
for record in "$results"/*.json; do
  [[ -e "$record" ]] || continue
  echo "--- $(basename "$record")"
  cat "$record"
done
[[ $status -eq 0 ]] || echo "$script: at least one scenario failed; see $results/log.txt" >&2
exit "$status"
