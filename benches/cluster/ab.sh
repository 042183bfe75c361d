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
RDB="$BIN"
source "$(dirname "$0")/rdb-cluster.sh"
start_rdb_cluster
URL="$RDB_URL"
if [ "$MODE" = get ]; then
  WRK_MODE=put wrk -t2 -c64 -d5s -s "$HERE/rdb.lua" "$URL" >/dev/null
fi
WRK_MODE="$MODE" wrk -t2 -c64 -d"${DURATION}s" -s "$HERE/rdb.lua" "$URL" | grep -E "Requests/sec|RESULT"
