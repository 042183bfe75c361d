#!/usr/bin/env bash
# Where a put's CPU goes, thread by thread: starts a local 3-node cluster of
# BINARY, runs `rdb bench put` (random new keys, 64 connections) on the
# leader for SECONDS, and prints for the leader and one follower each
# thread's CPU and context switches per acknowledged put (/proc/PID/task).
#
#   benches/cluster/threads.sh BINARY [seconds, 10]
set -euo pipefail
BIN="$1"; SECS="${2:-10}"
WORK="$(mktemp -d)"; PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PEERS="1=127.0.0.1:19081,2=127.0.0.1:19082,3=127.0.0.1:19083"
for i in 1 2 3; do
  RUST_LOG=error "$BIN" serve --id "$i" --peers "$PEERS" --http "127.0.0.1:1808$i" \
    --data-dir "$WORK/n$i" >/dev/null 2>&1 &
  PIDS+=($!)
done
LEADER=0
for _ in $(seq 100); do
  LEADER=$(curl -s 127.0.0.1:18081/status | sed -n 's/.*"leader":\([0-9]*\).*/\1/p' || true)
  [ -n "$LEADER" ] && [ "$LEADER" != 0 ] && break
  sleep 0.1
done
LP=${PIDS[$((LEADER - 1))]}; FP=${PIDS[$((LEADER % 3))]}
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
OUT=$("$BIN" bench put --endpoints "http://127.0.0.1:1808$LEADER" --duration "${SECS}s" --json 2>/dev/null)
snapshot >"$WORK/after"
N=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$OUT")
echo "$N puts acknowledged; per put:"
join "$WORK/before" "$WORK/after" | awk -v n="$N" -v clk="$(getconf CLK_TCK)" \
  '{ printf "%-32s %6.2f switches  %6.1f us CPU\n", $1, ($4 - $2) / n, ($5 - $3) / clk * 1e6 / n }'
