#!/usr/bin/env bash
# What the disk costs a put: `rdb bench put` (random new keys, 64
# connections) on a local 3-node cluster of BINARY for SECONDS, with the
# nodes' files where PLACEMENT says, then ops/s, p50, p99, the nodes' CPU
# per put (/proc) and the share of the machine left idle (/proc/stat):
#
#   disk   every data directory on disk, as in production;
#   state  the state files on tmpfs (/dev/shm), the WALs on disk;
#   wal    the WALs on tmpfs, the state files on disk;
#   tmpfs  everything on tmpfs: no real syncs at all.
#
# tmpfs loses everything at a reboot and its `fdatasync` waits for nothing:
# this is a diagnostic of where the time goes, never a way to run rdb.
# Alternate placements, round after round, with nothing else busy.
#
#   benches/cluster/placement.sh BINARY PLACEMENT [seconds, 10]
set -euo pipefail
BIN="$1"; PLACEMENT="$2"; SECS="${3:-10}"
RDB="$BIN"
source "$(dirname "$0")/rdb-cluster.sh"
SHM="$(mktemp -d /dev/shm/rdb-placement.XXXXXX)"
trap 'cleanup; rm -rf "$SHM"' EXIT
# A node creates its data directory's parts only where they are missing,
# so links made before it starts put them elsewhere.
for i in $(seq "$NODES"); do
  mkdir -p "$WORK/rdb$i"
  case "$PLACEMENT" in
    disk) ;;
    state) mkdir "$SHM/state$i" && ln -s "$SHM/state$i" "$WORK/rdb$i/state" ;;
    wal) mkdir "$SHM/wal$i" && ln -s "$SHM/wal$i" "$WORK/rdb$i/wal" ;;
    tmpfs) rmdir "$WORK/rdb$i" && mkdir "$SHM/rdb$i" && ln -s "$SHM/rdb$i" "$WORK/rdb$i" ;;
    *) echo "placement: disk, state, wal or tmpfs, not '$PLACEMENT'" >&2; exit 2 ;;
  esac
done
start_rdb_cluster
before=$(cpu_ticks "${RDB_PIDS[@]}"); idle_before=$(machine_ticks)
out=$("$RDB" bench put --endpoints "$RDB_URL" --duration "${SECS}s" "${RDB_TLS_ARGS[@]}" --json 2>/dev/null)
after=$(cpu_ticks "${RDB_PIDS[@]}"); idle_after=$(machine_ticks)
python3 -c '
import json, sys
r = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); clk = int(sys.argv[3])
(i0, t0), (i1, t1) = [map(int, s.split()) for s in sys.argv[5:7]]
ops, lat = round(r["ops_per_second"]), r["latency_ms"]
cpu, idle = round(ticks / clk * 1e6 / r["requests"]), (i1 - i0) / (t1 - t0)
print(f"{sys.argv[4]:6s}", ops, "puts/s  p50", lat["p50"], "ms  p99", lat["p99"], "ms  cluster CPU", cpu,
      f"us/put  machine idle {idle:.0%}")' \
  "$out" "$((after - before))" "$CLK" "$PLACEMENT" "$idle_before" "$idle_after"
