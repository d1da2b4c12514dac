#!/usr/bin/env bash
# Captures the fuzz seed corpora from real traffic: runs the integration tests with
# SHARDHOST_FUZZ_CAPTURE, which makes the test support keep every signed invocation and every
# reply (as a payload and as a NATS MSG frame), each signed actor module and its claims JWT, and
# each provider archive, under fuzz/seeds/<target> (named by content). Then fuzz/run.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export SHARDHOST_FUZZ_CAPTURE="$PWD/fuzz/seeds"
mkdir -p "$SHARDHOST_FUZZ_CAPTURE"
cargo nextest run --locked --test integration --no-fail-fast "$@" || true
for d in fuzz/seeds/*/; do echo "$(basename "$d"): $(ls "$d" | wc -l) seeds"; done
