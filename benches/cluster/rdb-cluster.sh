# A local rdb cluster for the benchmark scripts (sourced, not run): a work
# directory removed on exit with every process started, and
#   start_rdb ID        (re)starts node ID (HTTP 1808ID, peers 1908ID)
#   start_rdb_cluster   starts NODES nodes, waits for a leader and for the
#                       cluster version to reach the binary's: LEADER (its
#                       id), RDB_URL (its client URL)
#   cpu_ticks PID...    user + system CPU of the processes, in clock ticks
#   machine_ticks       the whole machine's idle and total clock ticks
# RDB is the binary (set it before calling). Settings (environment):
# NODES (default 3); RDB_SERVE_ARGS, more flags for every `rdb serve`
# (split on spaces); TLS=1 for HTTPS clients and mutual TLS between peers,
# with certificates from deploy/gen-certs.sh: RDB_TLS_ARGS then holds
# curl's (and rdb bench's) client flags, CURL a curl that uses them;
# PLACEMENT, where the nodes' files live: disk (the default, as in
# production), or on tmpfs (/dev/shm) state (the state files), wal (the
# WALs) or tmpfs (everything). tmpfs loses everything at a reboot and its
# syncs wait for nothing: a diagnostic of what the disk costs, never a way
# to run rdb.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$(mktemp -d)"
PIDS=(); RDB_PIDS=(); SHM=""
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true
  rm -rf "$WORK"; [ -z "$SHM" ] || rm -rf "$SHM"
}
trap cleanup EXIT
CLK=$(getconf CLK_TCK)
NODES="${NODES:-3}"; TLS="${TLS:-0}"; PLACEMENT="${PLACEMENT:-disk}"
case "$PLACEMENT" in
  disk) ;;
  state | wal | tmpfs) SHM="$(mktemp -d /dev/shm/rdb-bench.XXXXXX)" ;;
  *) echo "PLACEMENT: disk, state, wal or tmpfs, not '$PLACEMENT'" >&2; exit 2 ;;
esac
SCHEME=http; RDB_TLS_ARGS=(); CERTS="$WORK/certs"
if [ "$TLS" = 1 ]; then
  SCHEME=https
  "$ROOT/deploy/gen-certs.sh" "$CERTS" $(for i in $(seq "$NODES"); do echo "rdb$i:127.0.0.1"; done) >/dev/null
  RDB_TLS_ARGS=(--cacert "$CERTS/ca.pem" --cert "$CERTS/client.pem" --key "$CERTS/client-key.pem")
fi
CURL=(curl -s "${RDB_TLS_ARGS[@]}")

# Makes node $1's data directory (a node creates the parts it misses, so
# links made first put them where PLACEMENT says); kept across restarts.
make_data_dir() {
  local dir="$WORK/rdb$1"
  [ -e "$dir" ] && return
  case "$PLACEMENT" in
    disk) mkdir "$dir" ;;
    tmpfs) mkdir "$SHM/rdb$1" && ln -s "$SHM/rdb$1" "$dir" ;;
    *) mkdir "$dir" "$SHM/$PLACEMENT$1" && ln -s "$SHM/$PLACEMENT$1" "$dir/$PLACEMENT" ;;
  esac
}

start_rdb() {
  local peers tls=() extra=()
  make_data_dir "$1"
  read -r -a extra <<< "${RDB_SERVE_ARGS:-}"
  peers=$(for i in $(seq "$NODES"); do printf '%s=127.0.0.1:1908%s,' "$i" "$i"; done)
  if [ "$TLS" = 1 ]; then
    tls=(--tls-cert "$CERTS/rdb$1.pem" --tls-key "$CERTS/rdb$1-key.pem" --tls-ca "$CERTS/ca.pem"
      --client-ca "$CERTS/ca.pem")
  fi
  RUST_LOG=error "$RDB" serve --id "$1" --peers "${peers%,}" --http "127.0.0.1:1808$1" \
    --data-dir "$WORK/rdb$1" "${tls[@]}" "${extra[@]}" >/dev/null 2>&1 &
  PIDS+=($!); RDB_PIDS[$(($1 - 1))]=$!
}

start_rdb_cluster() {
  local i
  for i in $(seq "$NODES"); do start_rdb "$i"; done
  LEADER=""
  for _ in $(seq 200); do
    LEADER=$("${CURL[@]}" "$SCHEME://127.0.0.1:18081/status" | sed -n 's/.*"leader":\([0-9]*\).*/\1/p' || true)
    [ -n "$LEADER" ] && [ "$LEADER" != 0 ] && break
    sleep 0.1
  done
  RDB_URL="$SCHEME://127.0.0.1:1808$LEADER"
  # A new cluster starts at cluster version 1 and the leader raises it
  # within a second or so; wait, so that what is measured is this binary's
  # behaviour (from version 3, a collection made by key keeps no value
  # index) and not version 1's.
  local status version max
  for _ in $(seq 100); do
    status=$("${CURL[@]}" "$RDB_URL/status" || true)
    version=$(sed -n 's/.*"cluster_version":\([0-9]*\).*/\1/p' <<< "$status")
    max=$(sed -n 's/.*"cluster_version_max":\([0-9]*\).*/\1/p' <<< "$status")
    [ -n "$version" ] && [ "$version" = "$max" ] && break
    sleep 0.1
  done
}

cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# "idle total" clock ticks of the whole machine so far (/proc/stat: idle
# and iowait count as idle).
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t}' /proc/stat; }
