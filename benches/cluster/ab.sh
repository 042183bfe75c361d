#!/usr/bin/env bash
# A/B: one rdb binary under wrk load, for comparing two builds (run it for
# each, alternating, with nothing else busy). Starts a local 3-node cluster
# of BINARY on ports 18081-18083 / 19081-19083, finds the leader, and drives
# it with `wrk -t2 -c64` and benches/cluster/rdb.lua: MODE put (100-byte
# values, each wrk thread over its own 100,000 keys) or get (linearizable
# gets of keys a 5 s put run loaded first). Prints wrk's Requests/sec and
# rdb.lua's RESULT line.
#
#   benches/cluster/ab.sh BINARY put|get [seconds]     (needs: wrk, curl)
set -euo pipefail
BIN="$1"; MODE="$2"; DURATION="${3:-10}"
HERE="$(cd "$(dirname "$0")" && pwd)"
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
URL="http://127.0.0.1:1808$LEADER"
if [ "$MODE" = get ]; then
  WRK_MODE=put wrk -t2 -c64 -d5s -s "$HERE/rdb.lua" "$URL" >/dev/null
fi
WRK_MODE="$MODE" wrk -t2 -c64 -d"${DURATION}s" -s "$HERE/rdb.lua" "$URL" | grep -E "Requests/sec|RESULT"
