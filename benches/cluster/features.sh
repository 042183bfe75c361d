#!/usr/bin/env bash
# Transactions, leases and watch beside etcd 3.4, in one run: a local
# 3-node cluster of each (lib.sh), both running throughout, loaded in
# alternating rounds with nothing else busy; etcd driven through its native
# gRPC client (etcd-native), as its users and its `benchmark` tool do.
#
# Per round:
#   txn-put          64 concurrent txns of 2 puts each (new random keys,
#                    100-byte values, no compares), to the leader
#   lease-keepalive  64 concurrent keepalives, each connection renewing
#                    its own lease (etcd: KeepAliveOnce), to the leader
#   watch            1,000 watchers on one prefix, spread over the three
#                    members, while 8 connections put at RATE puts/s (and
#                    once at 4 x RATE): events delivered per second, the
#                    time from a put's sending to each watcher's receiving
#                    it, and the members' CPU per event delivered
# CPU per operation is the CPU seconds the three members spent during the
# run (/proc), divided by the operations acknowledged (for watch: by the
# events delivered); the load generators' own CPU is not in it.
#
#   benches/cluster/features.sh [seconds per run, 15] [rounds, 2] [RATE, 100]
#   needs what lib.sh needs
source "$(dirname "$0")/lib.sh"
SECS="${1:-15}"; ROUNDS="${2:-2}"; RATE="${3:-100}"
build_tools
start_clusters
RDB_ALL=$(for i in $(seq "$NODES"); do printf '%s://127.0.0.1:1808%s,' "$SCHEME" "$i"; done)
ETCD_ALL=$(for i in $(seq "$NODES"); do printf '127.0.0.1:%s2379,' "$i"; done)
RDB_ALL="${RDB_ALL%,}"; ETCD_ALL="${ETCD_ALL%,}"

RDB_NEXT=0; ETCD_NEXT=0
for round in $(seq "$ROUNDS"); do
  echo "== round $round" >&2
  run rdb "txn-put, 2 puts a txn" 200 "${RDB_PIDS[@]}" -- \
    "$RDB" bench txn-put --txn-ops 2 --endpoints "$RDB_URL" -c 64 --duration "${SECS}s" --first-key "$RDB_NEXT" --json "${RDB_TLS_ARGS[@]}"
  RDB_NEXT=$((RDB_NEXT + 2 * $(requests_of "$LAST")))
  run "etcd native" "txn-put, 2 puts a txn" 200 "${ETCD_PIDS[@]}" -- \
    "$NATIVE" -endpoints "$ETCD_EP" -op txn-put -txn-ops 2 -clients 64 -conns 8 -duration "${SECS}s" -first-key "$ETCD_NEXT" "${NATIVE_TLS_ARGS[@]}"
  ETCD_NEXT=$((ETCD_NEXT + 2 * $(requests_of "$LAST")))
  run rdb "lease-keepalive" 0 "${RDB_PIDS[@]}" -- \
    "$RDB" bench lease-keepalive --endpoints "$RDB_URL" -c 64 --duration "${SECS}s" --json "${RDB_TLS_ARGS[@]}"
  run "etcd native" "lease-keepalive" 0 "${ETCD_PIDS[@]}" -- \
    "$NATIVE" -endpoints "$ETCD_EP" -op lease-keepalive -clients 64 -conns 8 -duration "${SECS}s" "${NATIVE_TLS_ARGS[@]}"
  for rate in "$RATE" $((4 * RATE)); do
    run rdb "watch, 1,000 watchers, $rate puts/s" 100 "${RDB_PIDS[@]}" -- \
      "$RDB" bench watch --watchers 1000 --rate "$rate" --endpoints "$RDB_ALL" -c 8 --duration "${SECS}s" --first-key "$RDB_NEXT" --json "${RDB_TLS_ARGS[@]}"
    RDB_NEXT=$((RDB_NEXT + $(requests_of "$LAST")))
    run "etcd native" "watch, 1,000 watchers, $rate puts/s" 100 "${ETCD_PIDS[@]}" -- \
      "$NATIVE" -endpoints "$ETCD_ALL" -op watch -watchers 1000 -rate "$rate" -clients 8 -conns 8 -duration "${SECS}s" -first-key "$ETCD_NEXT" "${NATIVE_TLS_ARGS[@]}"
    ETCD_NEXT=$((ETCD_NEXT + $(requests_of "$LAST")))
  done
done

python3 - "$ROWS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["workload"], r["system"]), []).append(r)
print("| workload | system | runs | ops/s | p50 ms | p99 ms | cluster CPU µs/op | events/s delivered (of expected) | delivery p50 / p99 ms | cluster CPU µs/event | errors+non-2xx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (workload, system), rs in groups.items():
    m = lambda k: statistics.median(r[k] for r in rs)
    watch = "", "", ""
    if "events" in rs[0]:
        share = sum(r["events"] for r in rs) / max(sum(r["expected_events"] for r in rs), 1)
        watch = (f"{m('events_s'):,.0f} ({share:.1%})", f"{m('delivery_p50'):.1f} / {m('delivery_p99'):.1f}",
                 f"{m('cpu_us_event'):.2f}")
    print(f"| {workload} | {system} | {len(rs)} | {m('ops_s'):,.0f} | {m('p50'):.2f} | {m('p99'):.2f} | "
          f"{m('cpu_us'):.0f} | {watch[0]} | {watch[1]} | {watch[2]} | {sum(r['errors'] + r['non_2xx'] for r in rs)} |")
PY
