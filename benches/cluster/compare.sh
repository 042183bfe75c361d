#!/usr/bin/env bash
# Side-by-side load test: a local 3-node rdb cluster and a local 3-node etcd
# 3.4 cluster (Debian's etcd-server), one after the other on this machine,
# under the same wrk load: 64 connections, 2 threads, 100-byte values.
# Writes go to the leader of each (a follower forwards, which measures the
# forwarding hop instead). Prints a Markdown table.
#
#   benches/cluster/compare.sh [seconds]      (needs: cargo, wrk, etcd)
set -euo pipefail
DURATION="${1:-10}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

run_wrk() { # url script [env]
  wrk -t2 -c64 -d"${DURATION}s" -s "$2" "$1" | grep '^RESULT'
}
row() { # system operation RESULT-line
  local line="$3"
  local n d p50 p99 errors
  n=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$line")
  errors=$(sed 's/.*errors_status=\([0-9]*\).*/\1/' <<<"$line")
  d=$(sed 's/.*duration_us=\([0-9]*\).*/\1/' <<<"$line")
  p50=$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$line")
  p99=$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$line")
  awk -v s="$1" -v o="$2" -v n="$n" -v d="$d" -v a="$p50" -v b="$p99" -v e="$errors" \
    'BEGIN { printf "| %s | %s | %.0f | %.2f | %.2f | %d |\n", s, o, n / (d / 1e6), a / 1000, b / 1000, e }'
}

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
RDB="$ROOT/target/release/rdb"

echo "| system | operation | requests/s | p50 ms | p99 ms | non-2xx |"
echo "|---|---|---|---|---|---|"

# rdb
PEERS="1=127.0.0.1:19081,2=127.0.0.1:19082,3=127.0.0.1:19083"
for i in 1 2 3; do
  RUST_LOG=error "$RDB" serve --id "$i" --peers "$PEERS" --http "127.0.0.1:1808$i" \
    --data-dir "$WORK/rdb$i" >/dev/null 2>&1 &
  PIDS+=($!)
done
LEADER=0
for _ in $(seq 100); do
  LEADER=$(curl -s 127.0.0.1:18081/status | sed -n 's/.*"leader":\([0-9]*\).*/\1/p' || true)
  [ -n "$LEADER" ] && [ "$LEADER" != 0 ] && break
  sleep 0.1
done
row rdb put "$(WRK_MODE=put run_wrk "http://127.0.0.1:1808$LEADER" "$HERE/rdb.lua")"
row rdb "get (linearizable)" "$(WRK_MODE=get run_wrk "http://127.0.0.1:1808$LEADER" "$HERE/rdb.lua")"
kill "${PIDS[@]}"; wait 2>/dev/null || true; PIDS=()

# etcd
CLUSTER="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380"
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${i}2379" --advertise-client-urls "http://127.0.0.1:${i}2379" \
    --listen-peer-urls "http://127.0.0.1:${i}2380" --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --log-level error >/dev/null 2>&1 &
  PIDS+=($!)
done
ELEADER=""
for _ in $(seq 100); do
  for i in 1 2 3; do
    if curl -s -X POST "127.0.0.1:${i}2379/v3/maintenance/status" -d '{}' | grep -q '"leader"'; then
      S=$(curl -s -X POST "127.0.0.1:${i}2379/v3/maintenance/status" -d '{}' || true)
      if [ "$(sed 's/.*"member_id":"\([0-9]*\)".*/\1/' <<<"$S")" = "$(sed 's/.*"leader":"\([0-9]*\)".*/\1/' <<<"$S")" ]; then
        ELEADER=$i
      fi
    fi
  done
  [ -n "$ELEADER" ] && break
  sleep 0.1
done
row "etcd 3.4" put "$(WRK_MODE=put run_wrk "http://127.0.0.1:${ELEADER}2379" "$HERE/etcd.lua")"
row "etcd 3.4" "get (linearizable)" "$(WRK_MODE=get run_wrk "http://127.0.0.1:${ELEADER}2379" "$HERE/etcd.lua")"
