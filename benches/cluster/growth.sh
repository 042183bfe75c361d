#!/usr/bin/env bash
# Growth: puts of new random keys (100-byte values, 64 concurrent requests)
# into a local 3-node rdb cluster and a local 3-node etcd 3.4 cluster (its
# native gRPC client, benches/cluster/etcd-native), STEP keys at a time,
# alternating, until each holds KEYS keys. Prints, per step, the
# throughput, p99 and CPU per put of both; then the state bytes per key on
# each leader (allocated bytes of rdb's state file, of etcd's bbolt db),
# each leader's anonymous memory (RssAnon), and how long a follower
# restarted on the full state takes to answer /health with 200.
#
#   benches/cluster/growth.sh [keys, 2000000] [keys per step, 250000]
#   (NODES=5 and TLS=1 as lib.sh says; ONLY_RDB=1 loads rdb alone, for
#   long runs: etcd is started but neither loaded nor measured)
source "$(dirname "$0")/lib.sh"
KEYS="${1:-2000000}"; STEP="${2:-250000}"
build_tools
start_clusters

RDB_NEXT=0; ETCD_NEXT=0; STEP_NO=0
[ "${ONLY_RDB:-0}" = 1 ] && ETCD_NEXT=$KEYS
while [ "$RDB_NEXT" -lt "$KEYS" ] || [ "$ETCD_NEXT" -lt "$KEYS" ]; do
  STEP_NO=$((STEP_NO + 1)); echo "== step $STEP_NO" >&2
  EXTRA="{\"step\": $STEP_NO, \"keys_after\": $((RDB_NEXT + STEP))}" \
    run rdb growth 100 "${RDB_PIDS[@]}" -- \
    "$RDB" bench put --endpoints "$RDB_URL" -c 64 --requests "$STEP" --first-key "$RDB_NEXT" --json \
    "${RDB_TLS_ARGS[@]}"
  RDB_NEXT=$((RDB_NEXT + $(requests_of "$LAST")))
  [ "$ETCD_NEXT" -ge "$KEYS" ] && continue
  EXTRA="{\"step\": $STEP_NO, \"keys_after\": $((ETCD_NEXT + STEP))}" \
    run "etcd native" growth 100 "${ETCD_PIDS[@]}" -- \
    "$NATIVE" -endpoints "$ETCD_EP" -op put -clients 64 -conns 8 -requests "$STEP" -first-key "$ETCD_NEXT" \
    "${NATIVE_TLS_ARGS[@]}"
  ETCD_NEXT=$((ETCD_NEXT + $(requests_of "$LAST")))
done

RDB_STATE=$(du -s -B1 "$WORK/rdb$LEADER/state" | cut -f1)
ETCD_DB=$(du -s -B1 "$WORK/etcd$ELEADER/member/snap/db" | cut -f1)
RDB_RSS=$(rss_anon "${RDB_PIDS[$((LEADER - 1))]}")
ETCD_RSS=$(rss_anon "${ETCD_PIDS[$((ELEADER - 1))]}")

# healthy_after URL: seconds until GET URL answers 200 (at most 120 s).
healthy_after() {
  local start; start=$(date +%s.%N)
  for _ in $(seq 1200); do
    if [ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$1")" = 200 ]; then break; fi
    sleep 0.1
  done
  echo "$(date +%s.%N) - $start" | bc
}
F=$((LEADER % NODES + 1)); kill -TERM "${RDB_PIDS[$((F - 1))]}"; wait "${RDB_PIDS[$((F - 1))]}" 2>/dev/null || true
start_rdb "$F"; RDB_RESTART=$(healthy_after "$SCHEME://127.0.0.1:1808$F/health")
ETCD_RESTART=0
[ "${ONLY_RDB:-0}" = 1 ] || {
EF=$((ELEADER % NODES + 1)); kill -TERM "${ETCD_PIDS[$((EF - 1))]}"; wait "${ETCD_PIDS[$((EF - 1))]}" 2>/dev/null || true
start_etcd "$EF" existing; ETCD_RESTART=$(healthy_after "$SCHEME://127.0.0.1:${EF}2379/health")
}

python3 - "$ROWS" "$RDB_STATE" "$RDB_NEXT" "$ETCD_DB" "$ETCD_NEXT" "$RDB_RSS" "$ETCD_RSS" "$RDB_RESTART" "$ETCD_RESTART" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rdb_state, rdb_keys, etcd_db, etcd_keys, rdb_rss, etcd_rss, rdb_restart, etcd_restart = sys.argv[2:]
etcd_loaded = any(r["system"] == "etcd native" for r in rows)
by = {}
for r in rows:
    by.setdefault(r["step"], {})[r["system"]] = r
print("| keys after step | rdb puts/s | rdb p99 ms | rdb CPU µs/put | etcd native puts/s | etcd p99 ms | etcd CPU µs/put |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for step in sorted(by):
    a, b = by[step].get("rdb"), by[step].get("etcd native")
    cell = lambda r, k, f: f.format(r[k]) if r else ""
    print(f"| {(a or b)['keys_after']:,} | {cell(a, 'ops_s', '{:,.0f}')} | {cell(a, 'p99', '{:.1f}')} | "
          f"{cell(a, 'cpu_us', '{:.0f}')} | {cell(b, 'ops_s', '{:,.0f}')} | {cell(b, 'p99', '{:.1f}')} | "
          f"{cell(b, 'cpu_us', '{:.0f}')} |")
for system in ("rdb", "etcd native"):
    steps = [by[s][system] for s in sorted(by) if system in by[s]]
    if len(steps) >= 2:
        print(f"\n{system}: last step {steps[-1]['ops_s'] / steps[0]['ops_s']:.2f}x the first's throughput", end="")
print("\n")
etcd = lambda text: f", etcd {text}" if etcd_loaded else ""
print(f"State on the leader: rdb {int(rdb_state) / int(rdb_keys):.0f} bytes/key"
      + etcd(f"{int(etcd_db) / int(etcd_keys):.0f} bytes/key") + " (allocated bytes of the state file / db).")
print(f"Leader RssAnon: rdb {int(rdb_rss) / 1024:.0f} MiB" + etcd(f"{int(etcd_rss) / 1024:.0f} MiB") + ".")
print(f"Follower restarted (SIGTERM, start) to /health 200: rdb {float(rdb_restart):.2f} s"
      + etcd(f"{float(etcd_restart):.2f} s") + ".")
PY
