#!/usr/bin/env bash
# rdb beside etcd 3.4 (Debian's etcd-server) on this machine, in one run:
# a local 3-node cluster of each, both running throughout, loaded in
# alternating rounds with nothing else busy.
#
# Per round (64 concurrent requests, 100-byte values, random keys):
#   rdb     puts of new random keys      `rdb bench put`  (HTTP/1.1, JSON)
#   etcd    the same keys, native        etcd-native (clientv3, gRPC, 8 conns)
#   etcd    puts through the JSON gateway wrk + etcd-random.lua
#   rdb     linearizable gets of random keys it wrote      `rdb bench get`
#   etcd    the same, native; and through the gateway
# then once: 1 KiB and 64 KiB values (MB/s acknowledged, beside the disk's
# own sequential write rate from dd with fdatasync), and state bytes per key.
# Writes go to each cluster's leader. CPU is read from /proc for the three
# nodes of the system under load: CPU per operation = their CPU seconds in
# the run / operations acknowledged. Prints the rounds, then a Markdown
# table of medians.
#
#   benches/cluster/compare.sh [seconds per run, 20] [rounds, 3]
#   NODES=5 benches/cluster/compare.sh     (5-node clusters)
#   TLS=1 benches/cluster/compare.sh       (HTTPS clients with certificates,
#                                           mutual TLS between peers; no
#                                           gateway rows: wrk has no client
#                                           certificate)
#   VALUES=same benches/cluster/compare.sh  (a friendly pattern: rdb's
#                                           puts send one value, as etcd's
#                                           benchmark does, so its value
#                                           index holds one entry; by
#                                           default each value differs and
#                                           each put adds an entry; etcd
#                                           keeps no such index, so its
#                                           load is the same either way)
#   needs: cargo, go (golang-go), golang-etcd-server-dev, etcd, wrk, curl,
#   python3 (lib.sh builds and starts everything)
source "$(dirname "$0")/lib.sh"
SECS="${1:-20}"; ROUNDS="${2:-3}"; VALUES="${VALUES:-distinct}"
build_tools
start_clusters

RDB_NEXT=0; ETCD_NEXT=0
for round in $(seq "$ROUNDS"); do
  echo "== round $round" >&2
  run rdb "put, random new keys" 100 "${RDB_PIDS[@]}" -- \
    "$RDB" bench put --values "$VALUES" --endpoints "$RDB_URL" -c 64 --duration "${SECS}s" --first-key "$RDB_NEXT" --json "${RDB_TLS_ARGS[@]}"
  RDB_NEXT=$((RDB_NEXT + $(requests_of "$LAST")))
  run "etcd native" "put, random new keys" 100 "${ETCD_PIDS[@]}" -- \
    "$NATIVE" -endpoints "$ETCD_EP" -op put -clients 64 -conns 8 -duration "${SECS}s" -first-key "$ETCD_NEXT" "${NATIVE_TLS_ARGS[@]}"
  ETCD_NEXT=$((ETCD_NEXT + $(requests_of "$LAST")))
  # wrk cannot present a client certificate: no gateway rows with TLS=1.
  [ "$TLS" = 1 ] || run "etcd gateway" "put, random new keys" 100 "${ETCD_PIDS[@]}" -- \
    bash -c "WRK_MODE=put wrk -t2 -c64 -d${SECS}s -s '$HERE/etcd-random.lua' 'http://$ETCD_EP' | wrk_json"
  run rdb "get, random existing keys (linearizable)" 100 "${RDB_PIDS[@]}" -- \
    "$RDB" bench get --endpoints "$RDB_URL" -c 64 --duration "${SECS}s" --key-space "$RDB_NEXT" --json "${RDB_TLS_ARGS[@]}"
  run "etcd native" "get, random existing keys (linearizable)" 100 "${ETCD_PIDS[@]}" -- \
    "$NATIVE" -endpoints "$ETCD_EP" -op get -clients 64 -conns 8 -duration "${SECS}s" -key-space "$ETCD_NEXT" "${NATIVE_TLS_ARGS[@]}"
  python3 - "$ETCD_NEXT" >"$WORK/keys" <<'PY'
import base64, sys
M = (1 << 64) - 1
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)
n = min(int(sys.argv[1]), 200000)
for i in range(n):
    key = "bench/%016x" % mix64((0x9e3779b97f4a7c15 + i) & M)
    print(base64.b64encode(key.encode()).decode())
PY
  [ "$TLS" = 1 ] || run "etcd gateway" "get, random existing keys (linearizable)" 100 "${ETCD_PIDS[@]}" -- \
    bash -c "WRK_MODE=get KEYS_FILE='$WORK/keys' wrk -t2 -c64 -d${SECS}s -s '$HERE/etcd-random.lua' 'http://$ETCD_EP' | wrk_json"
done

# State bytes per key with 100-byte values only (before the value sizes).
RDB_STATE=$(du -s -B1 "$WORK/rdb$LEADER/state" | cut -f1); RDB_KEYS=$RDB_NEXT
ETCD_DB=$(du -s -B1 "$WORK/etcd$ELEADER/member/snap/db" | cut -f1); ETCD_KEYS=$ETCD_NEXT

echo "== value sizes" >&2
for bytes in 1024 65536; do
  run rdb "put, $bytes-byte values" "$bytes" "${RDB_PIDS[@]}" -- \
    "$RDB" bench put --values "$VALUES" --endpoints "$RDB_URL" -c 64 --duration "${SECS}s" --value-bytes "$bytes" --first-key "$RDB_NEXT" --json "${RDB_TLS_ARGS[@]}"
  RDB_NEXT=$((RDB_NEXT + $(requests_of "$LAST")))
  run "etcd native" "put, $bytes-byte values" "$bytes" "${ETCD_PIDS[@]}" -- \
    "$NATIVE" -endpoints "$ETCD_EP" -op put -clients 64 -conns 8 -duration "${SECS}s" -value-bytes "$bytes" -first-key "$ETCD_NEXT" "${NATIVE_TLS_ARGS[@]}"
  ETCD_NEXT=$((ETCD_NEXT + $(requests_of "$LAST")))
done
DISK_MB_S=$(dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 conv=fdatasync 2>&1 | sed -n 's/.* copied, \([0-9.]*\) s.*/\1/p' | awk '{printf "%.0f", 1073.741824 / $1}')
rm -f "$WORK/dd"

python3 - "$ROWS" "$DISK_MB_S" "$RDB_STATE" "$RDB_KEYS" "$ETCD_DB" "$ETCD_KEYS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
disk, rdb_state, rdb_keys, etcd_db, etcd_keys = sys.argv[2:]
groups = {}
for r in rows:
    groups.setdefault((r["workload"], r["system"]), []).append(r)
print("| workload | system | runs | ops/s | MB/s | p50 ms | p99 ms | cluster CPU µs/op | errors+non-2xx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for (workload, system), rs in groups.items():
    m = lambda k: statistics.median(r[k] for r in rs)
    print(f"| {workload} | {system} | {len(rs)} | {m('ops_s'):,.0f} | {m('mb_s'):.1f} | {m('p50'):.2f} | "
          f"{m('p99'):.2f} | {m('cpu_us'):.0f} | {sum(r['errors'] + r['non_2xx'] for r in rs)} |")
print()
print(f"Disk sequential write (dd, 1 GiB, fdatasync): {disk} MB/s.")
print(f"State on the leader (allocated bytes): rdb {int(rdb_state)/int(rdb_keys):.0f} bytes/key ({rdb_keys} keys), "
      f"etcd {int(etcd_db)/int(etcd_keys):.0f} bytes/key ({etcd_keys} keys).")
PY
