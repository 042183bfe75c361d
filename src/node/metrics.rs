//! Counters and latency histograms for GET /metrics, rendered in the
//! Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::raft::NodeId;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS_S: [f64; 12] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0];

/// Why a proposal failed, as `rdb_proposals_failed_total` labels them.
pub const PROPOSAL_FAILURES: [&str; 7] =
    ["busy", "invalid", "refused", "no_leader", "timeout", "stopped", "no_space"];

/// A latency histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound of [`BUCKETS_S`].
    buckets: [u64; BUCKETS_S.len()],
    /// All observations.
    count: u64,
    /// Their sum, in seconds.
    sum_s: f64,
}

impl Histogram {
    fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS_S) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_s += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS_S) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {bucket}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_s);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Everything counted; the maps are keyed by a small fixed set of actions
/// and statuses, so they stay bounded.
#[derive(Debug, Default)]
struct Counts {
    /// Requests by (action, status).
    requests: BTreeMap<(&'static str, u16), u64>,
    /// Request latency by action.
    latency: BTreeMap<&'static str, Histogram>,
    /// WAL append-and-sync latency.
    wal_sync: Histogram,
    /// State-file commits of applied batches (not synced).
    state_commit: Histogram,
    /// State-file syncs (every `STATE_SYNC_INTERVAL` under load).
    state_sync: Histogram,
    /// Proposals this node's Raft did not commit, by reason.
    proposals_failed: BTreeMap<&'static str, u64>,
}

/// One peer's deliveries.
#[derive(Debug, Default)]
struct PeerCounts {
    /// Round trips of delivered batches.
    round_trip: Histogram,
    /// Batches not delivered (no connection, an error or no answer).
    failures: u64,
}

/// Snapshot counters: how many, and how many bytes.
#[derive(Debug, Default)]
struct SnapshotCounts {
    /// Snapshots written here.
    made: [AtomicU64; 2],
    /// Snapshots sent to followers.
    sent: [AtomicU64; 2],
    /// Snapshots installed from the leader.
    installed: [AtomicU64; 2],
}

/// The node's metrics, shared by the event loop and the front ends.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Behind one lock: updates are a few additions.
    counts: Mutex<Counts>,
    /// Leaders seen (a leader known for a new term counts once).
    leader_changes: AtomicU64,
    /// Message batches to each peer: round-trip latency of the delivered
    /// ones, and how many could not be delivered. Keyed by member id, so
    /// bounded by the members this node has had. Its own lock: the RPC
    /// thread updates it per batch, the front end per request.
    peers: Mutex<BTreeMap<NodeId, PeerCounts>>,
    /// Snapshot counters.
    snapshots: SnapshotCounts,
}

fn count(counter: &[AtomicU64; 2], bytes: u64) {
    counter[0].fetch_add(1, Ordering::Relaxed);
    counter[1].fetch_add(bytes, Ordering::Relaxed);
}

impl Metrics {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a finished request.
    pub fn request(&self, action: &'static str, status: u16, elapsed: Duration) {
        let mut counts = self.counts();
        *counts.requests.entry((action, status)).or_default() += 1;
        counts.latency.entry(action).or_default().observe(elapsed);
    }

    /// Counts a leader known for a new term.
    pub fn leader_changed(&self) {
        self.leader_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a proposal that was not committed here, by `reason` (one of
    /// [`PROPOSAL_FAILURES`]).
    pub fn proposal_failed(&self, reason: &'static str) {
        debug_assert!(PROPOSAL_FAILURES.contains(&reason), "{reason} is not a listed reason");
        *self.counts().proposals_failed.entry(reason).or_default() += 1;
    }

    /// Counts a batch of Raft messages to `peer`: delivered after
    /// `round_trip`, or not delivered (`None`).
    pub fn peer_delivery(&self, peer: NodeId, round_trip: Option<Duration>) {
        let mut peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let counts = peers.entry(peer).or_default();
        match round_trip {
            Some(elapsed) => counts.round_trip.observe(elapsed),
            None => counts.failures += 1,
        }
    }

    /// Counts one WAL append-and-sync.
    pub fn wal_sync(&self, elapsed: Duration) {
        self.counts().wal_sync.observe(elapsed);
    }

    /// Counts one state-file commit of an applied batch.
    pub fn state_commit(&self, elapsed: Duration) {
        self.counts().state_commit.observe(elapsed);
    }

    /// Counts one state-file sync.
    pub fn state_sync(&self, elapsed: Duration) {
        self.counts().state_sync.observe(elapsed);
    }

    /// Counts a snapshot written (file bytes).
    pub fn snapshot_made(&self, bytes: u64) {
        count(&self.snapshots.made, bytes);
    }

    /// Counts a snapshot sent to a follower (file bytes).
    pub fn snapshot_sent(&self, bytes: u64) {
        count(&self.snapshots.sent, bytes);
    }

    /// Counts a snapshot installed (state-file bytes).
    pub fn snapshot_installed(&self, bytes: u64) {
        count(&self.snapshots.installed, bytes);
    }

    /// Requests by action, for the dashboard (through `/status` and
    /// `/cluster`): `{"bucket_bounds_s": [..], "actions": {action: {"count",
    /// "buckets": [cumulative counts at each bound]}}, "leader_changes"}`.
    pub fn requests_json(&self) -> serde_json::Value {
        let counts = self.counts();
        let mut actions = serde_json::Map::new();
        for (action, histogram) in &counts.latency {
            let value = serde_json::json!({"count": histogram.count, "buckets": histogram.buckets});
            actions.insert((*action).to_string(), value);
        }
        serde_json::json!({"bucket_bounds_s": BUCKETS_S, "actions": actions,
                           "leader_changes": self.leader_changes.load(Ordering::Relaxed)})
    }

    /// Renders the counters (the caller adds gauges).
    pub fn render(&self, out: &mut String) {
        for (name, counter) in [
            ("made", &self.snapshots.made),
            ("sent", &self.snapshots.sent),
            ("installed", &self.snapshots.installed),
        ] {
            let (n, bytes) =
                (counter[0].load(Ordering::Relaxed), counter[1].load(Ordering::Relaxed));
            let _ = writeln!(out, "# HELP rdb_snapshots_{name}_total Snapshots {name}.\n# TYPE rdb_snapshots_{name}_total counter\nrdb_snapshots_{name}_total {n}");
            let _ = writeln!(out, "# HELP rdb_snapshot_bytes_{name}_total Bytes of snapshots {name}.\n# TYPE rdb_snapshot_bytes_{name}_total counter\nrdb_snapshot_bytes_{name}_total {bytes}");
        }
        let changes = self.leader_changes.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP rdb_raft_leader_changes_seen_total Leaders seen (a leader known for a new term).\n# TYPE rdb_raft_leader_changes_seen_total counter\nrdb_raft_leader_changes_seen_total {changes}");
        let counts = self.counts();
        out.push_str("# HELP rdb_proposals_failed_total Proposals not committed, by reason.\n");
        out.push_str("# TYPE rdb_proposals_failed_total counter\n");
        // Every reason from the start, so that rate() sees the first one.
        for reason in PROPOSAL_FAILURES {
            let n = counts.proposals_failed.get(reason).copied().unwrap_or(0);
            let _ = writeln!(out, "rdb_proposals_failed_total{{reason=\"{reason}\"}} {n}");
        }
        out.push_str(
            "# HELP rdb_peer_send_failures_total Message batches not delivered, by peer.\n",
        );
        out.push_str("# TYPE rdb_peer_send_failures_total counter\n");
        let peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (peer, counts) in peers.iter() {
            let _ = writeln!(
                out,
                "rdb_peer_send_failures_total{{peer=\"{peer}\"}} {}",
                counts.failures
            );
        }
        out.push_str(
            "# HELP rdb_peer_round_trip_seconds Delivery round trip of message batches, by peer.\n",
        );
        out.push_str("# TYPE rdb_peer_round_trip_seconds histogram\n");
        for (peer, counts) in peers.iter() {
            counts.round_trip.render(
                out,
                "rdb_peer_round_trip_seconds",
                &format!("peer=\"{peer}\""),
            );
        }
        out.push_str("# HELP rdb_requests_total Requests answered, by action and status.\n");
        out.push_str("# TYPE rdb_requests_total counter\n");
        for ((action, status), n) in &counts.requests {
            let _ =
                writeln!(out, "rdb_requests_total{{action=\"{action}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP rdb_request_seconds Request latency by action.\n");
        out.push_str("# TYPE rdb_request_seconds histogram\n");
        for (action, histogram) in &counts.latency {
            histogram.render(out, "rdb_request_seconds", &format!("action=\"{action}\""));
        }
        out.push_str("# HELP rdb_wal_sync_seconds WAL fsync latency; a follower's includes the append before it (a leader syncs in the background).\n");
        out.push_str("# TYPE rdb_wal_sync_seconds histogram\n");
        counts.wal_sync.render(out, "rdb_wal_sync_seconds", "");
        out.push_str(
            "# HELP rdb_state_commit_seconds State-file commit of an applied batch (etcd's \
             backend commit), not synced.\n",
        );
        out.push_str("# TYPE rdb_state_commit_seconds histogram\n");
        counts.state_commit.render(out, "rdb_state_commit_seconds", "");
        out.push_str(
            "# HELP rdb_state_sync_seconds State-file sync making applied batches durable.\n",
        );
        out.push_str("# TYPE rdb_state_sync_seconds histogram\n");
        counts.state_sync.render(out, "rdb_state_sync_seconds", "");
    }
}
