# Shared by compare.sh, growth.sh and snapshots.sh (sourced, not run; the rdb side is
# rdb-cluster.sh's, with its NODES and TLS settings): builds rdb and the
# etcd native load generator, starts a local 3-node cluster of each (both
# run throughout; load alternates between them), finds their leaders, and
# runs one measured load at a time, recording throughput, latency and the
# CPU the three nodes of the system under load spent (from /proc).
#
# After `start_clusters`: RDB, NATIVE (binaries), RDB_PIDS/ETCD_PIDS,
# LEADER (rdb node id), RDB_URL, ELEADER (etcd member), ETCD_EP, WORK, and
# the client TLS flags RDB_TLS_ARGS / NATIVE_TLS_ARGS (empty without TLS).
#
# Settings (environment): NODES=3 or 5 members per cluster; TLS=1 for
# HTTPS clients and mutual TLS between peers on both systems, with
# certificates from deploy/gen-certs.sh (clients present one too).
# Needs: cargo, go (golang-go), golang-etcd-server-dev, etcd, wrk, curl,
# python3.
source "$(dirname "${BASH_SOURCE[0]}")/rdb-cluster.sh"
# etcd keeps its files on disk, so rdb must too for a fair comparison.
if [ "$PLACEMENT" != disk ]; then
  echo "PLACEMENT=$PLACEMENT is for rdb alone (ab-bench.sh, threads.sh), not beside etcd" >&2
  exit 2
fi
NATIVE_TLS_ARGS=()
if [ "$TLS" = 1 ]; then
  NATIVE_TLS_ARGS=(-cacert "$CERTS/ca.pem" -cert "$CERTS/client.pem" -key "$CERTS/client-key.pem")
fi
ROWS="$WORK/rows"; : >"$ROWS"

build_tools() {
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
  RDB="$ROOT/target/release/rdb"
  (cd "$HERE/etcd-native" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$WORK/gocache" \
    go build -o "$WORK/etcd-native" .)
  NATIVE="$WORK/etcd-native"
}

# start_etcd ID [new|existing]: (re)starts etcd member eID (clients
# ID2379, peers ID2380).
start_etcd() {
  local state="${2:-new}" cluster tls=()
  cluster=$(for i in $(seq "$NODES"); do printf 'e%s=%s://127.0.0.1:%s2380,' "$i" "$SCHEME" "$i"; done)
  if [ "$TLS" = 1 ]; then
    tls=(--cert-file "$CERTS/rdb$1.pem" --key-file "$CERTS/rdb$1-key.pem"
      --trusted-ca-file "$CERTS/ca.pem" --client-cert-auth
      --peer-cert-file "$CERTS/rdb$1.pem" --peer-key-file "$CERTS/rdb$1-key.pem"
      --peer-trusted-ca-file "$CERTS/ca.pem" --peer-client-cert-auth)
  fi
  etcd --name "e$1" --data-dir "$WORK/etcd$1" \
    --listen-client-urls "$SCHEME://127.0.0.1:${1}2379" --advertise-client-urls "$SCHEME://127.0.0.1:${1}2379" \
    --listen-peer-urls "$SCHEME://127.0.0.1:${1}2380" --initial-advertise-peer-urls "$SCHEME://127.0.0.1:${1}2380" \
    --initial-cluster "${cluster%,}" --initial-cluster-state "$state" --log-level error "${tls[@]}" \
    >/dev/null 2>&1 &
  PIDS+=($!); ETCD_PIDS[$(($1 - 1))]=$!
}

start_clusters() {
  ETCD_PIDS=()
  local i
  for i in $(seq "$NODES"); do start_etcd "$i"; done
  start_rdb_cluster
  ELEADER=""
  for _ in $(seq 200); do
    for i in $(seq "$NODES"); do
      local s
      s=$("${CURL[@]}" -X POST "$SCHEME://127.0.0.1:${i}2379/v3/maintenance/status" -d '{}' || true)
      if [ -n "$s" ] && [ "$(sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p' <<<"$s")" = \
           "$(sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p' <<<"$s")" ]; then ELEADER=$i; fi
    done
    [ -n "$ELEADER" ] && break
    sleep 0.1
  done
  ETCD_EP="127.0.0.1:${ELEADER}2379"
  echo "rdb leader: $RDB_URL; etcd leader: $ETCD_EP" >&2
}


# record SYSTEM WORKLOAD BYTES JSON TICKS [EXTRA]: appends one row (JSON).
record() {
  python3 - "$1" "$2" "$3" "$4" "$5" "$CLK" "${6:-}" >>"$ROWS" <<'PY'
import json, sys
system, workload, value_bytes, report, ticks, clk, extra = sys.argv[1:]
r = json.loads(report)
ops = r["requests"]
errors = r["errors"]
row = {"system": system, "workload": workload, "ops": ops, "ops_s": r["ops_per_second"],
  "mb_s": r["ops_per_second"] * int(value_bytes) / 1e6, "p50": r["latency_ms"]["p50"],
  "p99": r["latency_ms"]["p99"], "p999": r["latency_ms"].get("p999"),
  "max": r["latency_ms"].get("max"), "cpu_us": int(ticks) / int(clk) * 1e6 / max(ops, 1),
  "errors": sum(errors.values()) if isinstance(errors, dict) else errors,
  "non_2xx": sum(v for k, v in r.get("statuses", {"200": ops}).items() if not k.startswith("2")),
  "statuses": r.get("statuses", {}), "error_kinds": errors if isinstance(errors, dict) else {}}
w = r.get("watch")
if w:
    row.update({"events": w["events"], "expected_events": w["expected_events"],
      "events_s": w["events_per_second"], "delivery_p50": w["delivery_ms"]["p50"],
      "delivery_p99": w["delivery_ms"]["p99"], "ended_early": w.get("ended_early", 0),
      "cpu_us_event": int(ticks) / int(clk) * 1e6 / max(w["events"], 1)})
if extra:
    row.update(json.loads(extra))
print(json.dumps(row))
PY
  tail -1 "$ROWS" >&2
}

# wrk's RESULT line (report.lua) as rdb bench's JSON.
wrk_json() {
  python3 -c '
import json, re, sys
line = next(l for l in sys.stdin if l.startswith("RESULT"))
f = dict(re.findall(r"(\w+)=(\d+)", line))
n, bad = int(f["requests"]), int(f["errors_status"])
print(json.dumps({"requests": n, "ops_per_second": n / (int(f["duration_us"]) / 1e6),
  "latency_ms": {"p50": int(f["p50_us"]) / 1e3, "p99": int(f["p99_us"]) / 1e3},
  "errors": {}, "statuses": {"200": n - bad, "500": bad}}))'
}
export -f wrk_json

# run SYSTEM WORKLOAD BYTES PIDS... -- COMMAND...: runs COMMAND (which
# prints rdb bench's JSON), records it; LAST holds its output.
run() {
  local system="$1" workload="$2" bytes="$3"; shift 3
  local pids=(); while [ "$1" != -- ]; do pids+=("$1"); shift; done; shift
  local before after
  before=$(cpu_ticks "${pids[@]}")
  LAST=$("$@" 2>>"$WORK/stderr") || { tail -5 "$WORK/stderr" >&2; exit 1; }
  after=$(cpu_ticks "${pids[@]}")
  record "$system" "$workload" "$bytes" "$LAST" "$((after - before))" "${EXTRA:-}"
}

# The key indexes a run consumed (answered or failed).
requests_of() {
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); e=r["errors"]; print(r["requests"] + (sum(e.values()) if isinstance(e, dict) else e))' "$1"
}

# rss_anon PID: the process's anonymous resident memory in KiB.
rss_anon() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
