#!/usr/bin/env bash
# Show the threads of a running shardhost, the CPU each last ran on (PSR), its affinity and CPU time.
set -euo pipefail
pid="${1:?usage: perf/threads.sh PID}"
ps -L -o tid,psr,pcpu,time,comm -p "$pid"
for task in /proc/"$pid"/task/*; do
  printf '%s %s affinity=%s\n' "$(basename "$task")" "$(cat "$task/comm")" "$(grep Cpus_allowed_list "$task/status" | awk '{print $2}')"
done
