#!/usr/bin/env bash
# Where a put's CPU goes, thread by thread: starts a local 3-node cluster of
# BINARY, runs `rdb bench put` (random new keys, 64 connections) on the
# leader for SECONDS, and prints for the leader and one follower each
# thread's CPU and context switches per acknowledged put (/proc/PID/task).
# With PRELOAD keys, it first loads that many random keys (not measured),
# to see where the CPU goes on a larger state.
#
#   benches/cluster/threads.sh BINARY [seconds, 10] [preload keys, 0]
set -euo pipefail
BIN="$1"; SECS="${2:-10}"; PRELOAD="${3:-0}"
RDB="$BIN"
source "$(dirname "$0")/rdb-cluster.sh"
start_rdb_cluster
if [ "$PRELOAD" -gt 0 ]; then
  "$BIN" bench put --endpoints "$RDB_URL" --requests "$PRELOAD" --first-key 1000000000 --json >/dev/null 2>&1
  echo "preloaded $PRELOAD keys"
fi
LP=${RDB_PIDS[$((LEADER - 1))]}; FP=${RDB_PIDS[$((LEADER % NODES))]}
# One line per thread name: "role/name switches ticks" (threads summed).
snapshot() {
  local role pid t
  for role in leader follower; do
    pid=$LP; [ "$role" = follower ] && pid=$FP
    for t in /proc/"$pid"/task/*; do
      echo "$role/$(tr ' ' _ <"$t/comm") $(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status") $(awk '{print $14 + $15}' "$t/stat")"
    done
  done | awk '{c[$1] += $2; u[$1] += $3} END {for (k in c) print k, c[k], u[k]}' | sort
}
snapshot >"$WORK/before"
OUT=$("$BIN" bench put --endpoints "$RDB_URL" --duration "${SECS}s" --json 2>/dev/null)
snapshot >"$WORK/after"
N=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$OUT")
echo "$N puts acknowledged; per put:"
join "$WORK/before" "$WORK/after" | awk -v n="$N" -v clk="$CLK" \
  '{ printf "%-32s %6.2f switches  %6.1f us CPU\n", $1, ($4 - $2) / n, ($5 - $3) / clk * 1e6 / n }'
