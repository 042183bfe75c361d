#!/usr/bin/env bash
# Snapshots under load, rdb beside etcd 3.4: what copying a member's whole
# state costs the clients writing meanwhile. A local 3-node cluster of
# each is first loaded with KEYS random keys (100-byte values); then, in
# runs of SECONDS of puts of new random keys (64 concurrent requests,
# `rdb bench put` and etcd's native client), one event starts 2 s in:
#   none       nothing (a baseline; run again before the join)
#   backup L   a backup from the leader: `rdb snapshot save`; etcd:
#              `etcdctl snapshot save`'s clientv3 call (etcd-native -op
#              snapshot)
#   backup F   the same from a follower
#   join       a new member added as a learner, which the leader sends its
#              state: `rdb member add` (the node already started with
#              --join); etcd: `member add --learner` (etcd-native -op
#              add-learner), then the member started. Done when its
#              applied index reaches the leader's commit index at the add.
# The systems alternate, run by run. Prints one line per run, then a
# Markdown table: throughput, p50/p99/p99.9/max, errors, the CPU per put of the
# cluster's first NODES members (a joining member's is not counted: etcd's
# starts inside its run), how long the event took and the backup's size.
#
#   benches/cluster/snapshots.sh [keys, 1000000] [seconds per run, 10]
#   (NODES=5 as lib.sh says; not TLS: the joining member has no
#   certificate. ONLY_RDB=1 measures rdb alone, starting no etcd;
#   RDB_BIN=PATH measures that build of rdb instead of this tree's, for an
#   A/B; with both nothing is built, so neither cargo nor go is needed, as
#   tests/bench_scripts.rs runs it)
source "$(dirname "$0")/lib.sh"
KEYS="${1:-1000000}"; SECS="${2:-10}"
EVENT_AT_S=2
if [ "$TLS" = 1 ]; then echo "snapshots.sh runs without TLS" >&2; exit 2; fi
if [ "${ONLY_RDB:-0}" = 1 ]; then
  if [ -n "${RDB_BIN:-}" ]; then RDB="$RDB_BIN"; else build_tools; fi
  start_rdb_cluster
else
  build_tools
  [ -z "${RDB_BIN:-}" ] || RDB="$RDB_BIN"
  start_clusters
  EF=$((ELEADER % NODES + 1))
fi
J=$((NODES + 1)); F=$((LEADER % NODES + 1))
EVENTS="$WORK/events"; : >"$EVENTS"
# etcd's learner is started inside an event's subshell, out of PIDS' reach.
trap 'kill "$(cat "$WORK/learner.pid" 2>/dev/null)" 2>/dev/null || true; cleanup' EXIT

echo "loading $KEYS keys into each" >&2
"$RDB" bench put --endpoints "$RDB_URL" --requests "$KEYS" --first-key 1000000000 --json >/dev/null
[ "${ONLY_RDB:-0}" = 1 ] ||
  "$NATIVE" -endpoints "$ETCD_EP" -op put -requests "$KEYS" -first-key 1000000000 >/dev/null

# seconds_since T0: wall seconds since T0 (date +%s.%N).
seconds_since() { python3 -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 2))" "$1"; }

# rdb_index NODE FIELD: a field of node NODE's /status.
rdb_index() {
  "${CURL[@]}" "http://127.0.0.1:1808$1/status" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}
# etcd_index MEMBER FIELD: a field (raftIndex, raftAppliedIndex) of the
# member's maintenance status.
etcd_index() {
  "${CURL[@]}" -X POST "http://127.0.0.1:${1}2379/v3/maintenance/status" -d '{}' |
    sed -n "s/.*\"$2\":\"\([0-9]*\)\".*/\1/p"
}
# wait_index GETTER MEMBER FIELD TARGET: until the field reaches TARGET
# (at most 600 s).
wait_index() {
  local at
  for _ in $(seq 6000); do
    at=$("$1" "$2" "$3" || true)
    [ -n "$at" ] && [ "$at" -ge "$4" ] && return
    sleep 0.1
  done
  echo "member $2 did not reach index $4 within 600 s" >&2; exit 1
}

# event SYSTEM NAME: runs the event, then appends its line to EVENTS.
event() {
  local t0 bytes=0 target
  t0=$(date +%s.%N)
  case "$1/$2" in
    rdb/backup*)
      local node=$LEADER; [ "$2" = "backup F" ] && node=$F
      "$RDB" snapshot save "$WORK/backup.lz4" --endpoints "http://127.0.0.1:1808$node" >/dev/null
      bytes=$(stat -c %s "$WORK/backup.lz4"); rm -f "$WORK/backup.lz4" ;;
    etcd*/backup*)
      local member=$ELEADER; [ "$2" = "backup F" ] && member=$EF
      "$NATIVE" -endpoints "127.0.0.1:${member}2379" -op snapshot -out "$WORK/backup.db" \
        >/dev/null 2>>"$WORK/stderr" || { tail -5 "$WORK/stderr" >&2; exit 1; }
      bytes=$(stat -c %s "$WORK/backup.db"); rm -f "$WORK/backup.db" ;;
    rdb/join)
      "$RDB" member add "$J" --peer "127.0.0.1:1908$J" --client-url "http://127.0.0.1:1808$J" \
        --endpoints "$RDB_URL" >/dev/null
      target=$(rdb_index "$LEADER" commit_index)
      wait_index rdb_index "$J" applied_index "$target" ;;
    etcd*/join)
      "$NATIVE" -endpoints "$ETCD_EP" -op add-learner -peer-url "http://127.0.0.1:${J}2380" \
        >/dev/null 2>>"$WORK/stderr" || { tail -5 "$WORK/stderr" >&2; exit 1; }
      target=$(etcd_index "$ELEADER" raftIndex)
      start_etcd_learner
      wait_index etcd_index "$J" raftAppliedIndex "$target" ;;
  esac
  echo "{\"system\": \"$1\", \"event\": \"$2\", \"event_s\": $(seconds_since "$t0"), \"event_bytes\": $bytes}" \
    >>"$EVENTS"
}

# start_etcd_learner: member J, added as a learner, started to join.
start_etcd_learner() {
  local cluster
  cluster=$(for i in $(seq "$J"); do printf 'e%s=http://127.0.0.1:%s2380,' "$i" "$i"; done)
  etcd --name "e$J" --data-dir "$WORK/etcd$J" \
    --listen-client-urls "http://127.0.0.1:${J}2379" --advertise-client-urls "http://127.0.0.1:${J}2379" \
    --listen-peer-urls "http://127.0.0.1:${J}2380" --initial-advertise-peer-urls "http://127.0.0.1:${J}2380" \
    --initial-cluster "${cluster%,}" --initial-cluster-state existing --log-level error >/dev/null 2>&1 &
  echo $! >"$WORK/learner.pid"
}

RDB_NEXT=0; ETCD_NEXT=0
# measure SYSTEM NAME: one run of puts with the event NAME started 2 s in.
measure() {
  local pid="" extra=()
  if [ "$1" = rdb ] && [ "$2" = join ]; then
    # rdb's way: start the node, then add it; etcd's: add, then start.
    mkdir -p "$WORK/rdb$J"
    read -r -a extra <<< "${RDB_SERVE_ARGS:-}"
    RUST_LOG=error "$RDB" serve --id "$J" --join --raft "127.0.0.1:1908$J" \
      --http "127.0.0.1:1808$J" --data-dir "$WORK/rdb$J" "${extra[@]}" >/dev/null 2>&1 &
    PIDS+=($!)
  fi
  if [ "$2" != none ]; then (sleep "$EVENT_AT_S"; event "$1" "$2") & pid=$!; PIDS+=("$pid"); fi
  if [ "$1" = rdb ]; then
    EXTRA="{\"event\": \"$2\"}" run rdb snapshots 100 "${RDB_PIDS[@]}" -- \
      "$RDB" bench put --endpoints "$RDB_URL" -c 64 --duration "${SECS}s" --first-key "$RDB_NEXT" --json
    RDB_NEXT=$((RDB_NEXT + $(requests_of "$LAST")))
  else
    EXTRA="{\"event\": \"$2\"}" run "etcd native" snapshots 100 "${ETCD_PIDS[@]}" -- \
      "$NATIVE" -endpoints "$ETCD_EP" -op put -clients 64 -conns 8 -duration "${SECS}s" -first-key "$ETCD_NEXT"
    ETCD_NEXT=$((ETCD_NEXT + $(requests_of "$LAST")))
  fi
  [ -z "$pid" ] || wait "$pid"
  # Quiet again before the next run: the event's writes reach the disk.
  sleep 2
}

for name in none "backup L" "backup F" none join; do
  echo "== $name" >&2
  measure rdb "$name"
  [ "${ONLY_RDB:-0}" = 1 ] || measure etcd "$name"
done

python3 - "$ROWS" "$EVENTS" "$KEYS" "$((SECS - EVENT_AT_S))" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
events = [json.loads(l) for l in open(sys.argv[2])]
room_s = float(sys.argv[4])
done = {(e["system"].split()[0], e["event"]): e for e in events}
label = {"none": "nothing", "backup L": "a backup from the leader",
         "backup F": "a backup from a follower", "join": "a learner joins"}
print(f"\nAfter {int(sys.argv[3]):,} keys loaded into each; 64 concurrent puts of new random keys:\n")
print("| system | during the run | puts/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | cluster CPU µs/put | event s | backup MB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    e = done.get((r["system"].split()[0], r["event"]))
    size = f"{e['event_bytes'] / 1e6:,.1f}" if e and e["event_bytes"] else ""
    past = " (past the run's end)" if e and e["event_s"] > room_s else ""
    took = f"{e['event_s']:.2f}{past} | {size}" if e else " | "
    print(f"| {r['system']} | {label[r['event']]} | {r['ops_s']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
          f"{r['p999']:.2f} | {r['max']:.2f} | {r['errors'] + r['non_2xx']} | {r['cpu_us']:.0f} | {took} |")
PY
