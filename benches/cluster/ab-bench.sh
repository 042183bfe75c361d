#!/usr/bin/env bash
# A/B of two builds under `rdb bench` (random new keys, then random existing
# keys): run it for each build, alternating, with nothing else busy. Starts
# a local 3-node cluster of BINARY on ports 18081-18083 / 19081-19083, loads
# its leader with `LOADER bench put` for SECONDS, then `LOADER bench get`
# (linearizable, among the keys the put run wrote), and prints for each:
# ops/s, p99, the three nodes' CPU per operation (/proc) and the share of
# the machine's CPU time left idle (/proc/stat): well above zero, the
# cluster waits on something other than CPU (disk syncs, hand-offs).
#
#   benches/cluster/ab-bench.sh BINARY [seconds, 20]
#   LOADER (default: target/release/rdb) is the same for both builds;
#   BENCH_FLAGS adds flags to the put run (e.g. "--values same");
#   PUT_OP=put-value puts by value instead (then no get run: the nodes
#   drew the keys); TLS=1 runs HTTPS and mutual TLS between peers;
#   PLACEMENT=state|wal|tmpfs puts those files on tmpfs (rdb-cluster.sh),
#   to see what the disk costs.
# After the put run, one line per node from its /metrics (since its start):
# the mean WAL sync, state-file commit and state-file sync, in ms.
set -euo pipefail
BIN="$1"; SECS="${2:-20}"
RDB="$BIN"
source "$(dirname "$0")/rdb-cluster.sh"
LOADER="${LOADER:-$ROOT/target/release/rdb}"
start_rdb_cluster
KEYS=0
OPS=(put get); [ "${PUT_OP:-put}" = put-value ] && OPS=(put-value)
for op in "${OPS[@]}"; do
  before=$(cpu_ticks "${RDB_PIDS[@]}"); idle_before=$(machine_ticks)
  flags=(); [ "$op" != get ] && read -r -a flags <<< "${BENCH_FLAGS:-}"
  out=$("$LOADER" bench "$op" --endpoints "$RDB_URL" --duration "${SECS}s" \
    --key-space "$((KEYS > 0 ? KEYS : 1))" "${flags[@]}" "${RDB_TLS_ARGS[@]}" --json 2>/dev/null)
  after=$(cpu_ticks "${RDB_PIDS[@]}"); idle_after=$(machine_ticks)
  python3 -c '
import json, sys
r = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); clk = int(sys.argv[3])
(i0, t0), (i1, t1) = [map(int, s.split()) for s in sys.argv[5:7]]
print(sys.argv[4], round(r["ops_per_second"]), "ops/s  p50", r["latency_ms"]["p50"], "ms  p99",
      r["latency_ms"]["p99"], "ms  cluster CPU",
      round(ticks / clk * 1e6 / r["requests"]), "us/op  machine idle", f"{(i1 - i0) / (t1 - t0):.0%}")' \
    "$out" "$((after - before))" "$CLK" "$op" "$idle_before" "$idle_after"
  [ "$op" = get ] || for i in $(seq "$NODES"); do
    role=follower; [ "$i" = "$LEADER" ] && role=leader
    "${CURL[@]}" "$SCHEME://127.0.0.1:1808$i/metrics" | python3 -c '
import sys
sums = {}
for line in sys.stdin:
    name, _, value = line.partition(" ")
    if name.endswith(("_sum", "_count")):
        sums[name] = float(value)
def mean(metric):
    count = sums.get(metric + "_count", 0)
    if not count:
        return "-"
    return "%.3f ms (%d)" % (sums[metric + "_sum"] / count * 1e3, count)
node, role = sys.argv[1:3]
print("  node %s (%s): WAL sync %s, state commit %s, state sync %s" % (node, role,
      mean("rdb_wal_sync_seconds"), mean("rdb_state_commit_seconds"), mean("rdb_state_sync_seconds")))' "$i" "$role"
  done
  KEYS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$out")
done
