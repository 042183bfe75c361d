#!/usr/bin/env bash
# A/B of two builds under `rdb bench` (random new keys, then random existing
# keys): run it for each build, alternating, with nothing else busy. Starts
# a local 3-node cluster of BINARY on ports 18081-18083 / 19081-19083, loads
# its leader with `LOADER bench put` for SECONDS, then `LOADER bench get`
# (linearizable, among the keys the put run wrote), and prints for each:
# ops/s, p99, and the three nodes' CPU per operation (/proc).
#
#   benches/cluster/ab-bench.sh BINARY [seconds, 20]
#   LOADER (default: target/release/rdb) is the same for both builds.
set -euo pipefail
BIN="$1"; SECS="${2:-20}"
HERE="$(cd "$(dirname "$0")" && pwd)"
LOADER="${LOADER:-$HERE/../../target/release/rdb}"
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
ticks() { local t=0 p; for p in "${PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
KEYS=0
for op in put get; do
  before=$(ticks)
  out=$("$LOADER" bench "$op" --endpoints "http://127.0.0.1:1808$LEADER" --duration "${SECS}s" \
    --key-space "$((KEYS > 0 ? KEYS : 1))" --json 2>/dev/null)
  after=$(ticks)
  python3 -c '
import json, sys
r = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); clk = int(sys.argv[3])
print(sys.argv[4], round(r["ops_per_second"]), "ops/s  p99", r["latency_ms"]["p99"], "ms  cluster CPU",
      round(ticks / clk * 1e6 / r["requests"]), "us/op")' "$out" "$((after - before))" "$(getconf CLK_TCK)" "$op"
  KEYS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$out")
done
