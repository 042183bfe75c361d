//! What the node reports about itself: GET /status, /health and the gauges
//! of /metrics.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::raft::{Index, Membership, NodeId, Term};

/// A member's replication progress, as the leader sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerStatus {
    /// The member.
    pub id: NodeId,
    /// The highest index known to match the leader's log.
    pub match_index: Index,
}

/// The node's state after its latest event-loop round.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// follower, pre-candidate, candidate or leader.
    pub role: &'static str,
    /// The current term.
    pub term: Term,
    /// The leader this node knows of (0: none).
    pub leader: NodeId,
    /// The highest index known committed (at most the last in this node's
    /// log).
    pub commit_index: Index,
    /// The cluster's commit index as far as this node knows (the highest
    /// the leader has sent it; its own on the leader): a follower whose log
    /// trails shows it here.
    pub leader_commit_index: Index,
    /// The highest index applied to the state file.
    pub applied_index: Index,
    /// The last index in the log.
    pub last_log_index: Index,
    /// The index the newest snapshot covers (0: none yet).
    pub snapshot_index: Index,
    /// The first index the WAL holds.
    pub wal_first_index: Index,
    /// Bytes of WAL segments on disk.
    pub wal_bytes: u64,
    /// WAL segment files on disk.
    pub wal_segments: u64,
    /// The state file's length, in bytes.
    pub state_bytes: u64,
    /// Bytes of state-file pages holding live data (the rest is free space
    /// the file reuses).
    pub state_used_bytes: u64,
    /// State-file pages free for reuse.
    pub state_free_pages: u64,
    /// The space guard's limit on `state_used_bytes` (0: none).
    pub state_bytes_max: u64,
    /// The client URL this node advertises (`--advertise-client-url`).
    pub client_url: String,
    /// This build's version (Cargo's package version).
    pub version: &'static str,
    /// The cluster version the state records: what every replica applies
    /// by (see [`crate::kv::CLUSTER_VERSION`]).
    pub cluster_version: u64,
    /// The highest cluster version this binary supports; the leader raises
    /// the cluster's once every member's is at least that high.
    pub cluster_version_max: u64,
    /// Raised alarms: "NOSPACE" while the state's live data exceeds
    /// `--state-bytes-max` (puts are refused until space is freed);
    /// "CORRUPT" while the leader says this node holds entries its log
    /// does not (its data was lost: replace the member).
    pub alarms: Vec<&'static str>,
    /// On the leader: each member's match index.
    pub peers: Vec<PeerStatus>,
    /// The membership in force on this node (shown as `members`).
    #[serde(skip)]
    pub membership: Membership,
    /// The event loop is installing a snapshot from the leader (it waits
    /// for the state file to be replaced, which takes as long as the state
    /// is large).
    pub installing_snapshot: bool,
    /// When the event loop published this (None: before its first round).
    #[serde(skip)]
    pub published_at: Option<Instant>,
}

/// How far the applied index may trail the commit index on a healthy node.
pub const HEALTHY_APPLY_LAG_MAX: u64 = 10_000;

/// How long the event loop may go without a round before the node is not
/// live (`GET /livez`). It runs one at least every tick (50 ms by default);
/// a loop stuck this long (a disk that does not return from `fdatasync`, a
/// deadlock) will not recover by itself.
pub const LIVENESS_STALL_MAX: Duration = Duration::from_secs(5);

/// The alarm raised while the space guard refuses writes (etcd's name).
pub const ALARM_NOSPACE: &str = "NOSPACE";
/// The alarm raised while this node's log has lost entries it acknowledged
/// ([`crate::raft::Raft::lost_log`]; etcd's name for a member whose data
/// cannot be trusted). The node is not healthy: replace the member.
pub const ALARM_CORRUPT: &str = "CORRUPT";

/// Whether the space guard is tripped: the state file's live data exceeds
/// `state_bytes_max` (0: no guard).
pub fn over_quota(space: rdb_storage::btree::Space, state_bytes_max: u64) -> bool {
    state_bytes_max != 0 && space.used_bytes() > state_bytes_max
}

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this build was made from ("unknown" outside a checkout).
pub const GIT_COMMIT: &str = env!("RDB_GIT_COMMIT");

impl Status {
    /// How far the applied index trails the commit index.
    pub fn apply_lag(&self) -> u64 {
        self.commit_index.saturating_sub(self.applied_index)
    }

    /// In a cluster with a known leader, applied to within
    /// [`HEALTHY_APPLY_LAG_MAX`] of the leader's commit index (not only of
    /// its own, which a trailing log caps), its log whole.
    pub fn healthy(&self) -> bool {
        self.leader != 0
            && self.leader_commit_index.saturating_sub(self.applied_index) <= HEALTHY_APPLY_LAG_MAX
            && !self.alarms.contains(&ALARM_CORRUPT)
    }

    /// The event loop has run a round within [`LIVENESS_STALL_MAX`] of
    /// `now`, or is installing a snapshot (a long wait that ends by itself).
    pub fn live(&self, now: Instant) -> bool {
        self.installing_snapshot
            || self
                .published_at
                .is_some_and(|at| now.saturating_duration_since(at) <= LIVENESS_STALL_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_without_a_round_for_too_long_is_not_live() {
        let now = Instant::now();
        assert!(!Status::default().live(now), "before the first round");
        let fresh = Status { published_at: Some(now), ..Status::default() };
        assert!(fresh.live(now + LIVENESS_STALL_MAX));
        let late = now + LIVENESS_STALL_MAX + Duration::from_millis(1);
        assert!(!fresh.live(late));
        let installing = Status { installing_snapshot: true, ..fresh };
        assert!(installing.live(late), "an install is a long wait, not a stall");
    }

    #[test]
    fn a_follower_whose_log_trails_the_leaders_commit_is_not_healthy() {
        // Applied all it holds (commit 100 = applied 100), but the leader
        // has committed far more: its log trails, and /health says so.
        let caught_up = Status {
            leader: 1,
            commit_index: 100,
            applied_index: 100,
            leader_commit_index: 100 + HEALTHY_APPLY_LAG_MAX,
            ..Status::default()
        };
        assert!(caught_up.healthy());
        let trailing =
            Status { leader_commit_index: 101 + HEALTHY_APPLY_LAG_MAX, ..caught_up.clone() };
        assert!(!trailing.healthy());
        let corrupt = Status { alarms: vec![ALARM_CORRUPT], ..caught_up };
        assert!(!corrupt.healthy());
    }
}
