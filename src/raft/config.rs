//! The settings of one Raft node, with the limits that bound its memory and
//! its messages.

use super::membership::Membership;
use super::message::{Index, NodeId};
use super::ready::RaftError;

/// Settings of one node. Times are in ticks; the node decides how long a
/// tick is (100 ms suits small VMs).
#[derive(Debug, Clone)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The membership as of `applied` (from the state machine, or the
    /// initial members of a new cluster). It may omit this node: a node
    /// joining a cluster starts knowing no members and never campaigns
    /// until a configuration entry makes it a voter.
    pub membership: Membership,
    /// Ticks without a leader before an election; the actual timeout is
    /// drawn from `election_ticks..2 * election_ticks`.
    pub election_ticks: u32,
    /// Ticks between a leader's heartbeats; well below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Pre-vote (thesis §9.6): a node learns whether it could win before it
    /// bumps its term, so a rejoining node does not depose a healthy leader.
    pub pre_vote: bool,
    /// A leader that has not heard from a majority within an election
    /// timeout steps down; followers that heard from a leader within one
    /// ignore vote requests (thesis §6.2 and §4.2.3).
    pub check_quorum: bool,
    /// Appends in flight per follower.
    pub inflight_max: usize,
    /// Entry bytes per append message (at least one entry is always sent).
    pub message_bytes_max: usize,
    /// Entry bytes handed out to apply per `Ready`.
    pub apply_bytes_max: usize,
    /// Proposals accepted but not yet committed, beyond which `propose`
    /// refuses (back-pressure).
    pub uncommitted_entries_max: usize,
    /// Pending ReadIndex requests, beyond which `read_index` refuses.
    pub pending_reads_max: usize,
    /// Entries a learner may lag the leader by and still be promoted.
    pub promotion_lag_max: u64,
    /// The index the state machine has applied (from the state file).
    pub applied: Index,
    /// Seeds the election-timeout randomness (tests replay it).
    pub seed: u64,
    /// A leader's new entries may be synced in the background (see
    /// [`super::ready::Ready::background`]); off, every `Ready` is
    /// persisted before the next.
    pub background_persist: bool,
}

impl Config {
    /// Defaults for `id` among the voters `members`.
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Self {
        Self::with_membership(id, Membership::voters_only(&members))
    }

    /// Defaults for `id` in `membership`.
    pub fn with_membership(id: NodeId, membership: Membership) -> Self {
        Config {
            id,
            membership,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            inflight_max: 256,
            message_bytes_max: 1 << 20,
            apply_bytes_max: 16 << 20,
            uncommitted_entries_max: 100_000,
            pending_reads_max: 100_000,
            promotion_lag_max: 1_000,
            applied: 0,
            seed: id,
            background_persist: false,
        }
    }

    /// Checks the settings; [`RaftError::Invalid`] says which one is wrong.
    pub fn validate(&self) -> Result<(), RaftError> {
        let invalid = |why: &str| Err(RaftError::Invalid(why.to_string()));
        if self.id == 0 {
            return invalid("node id 0 is reserved");
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return invalid("need 0 < heartbeat_ticks < election_ticks");
        }
        if self.inflight_max == 0 || self.message_bytes_max == 0 || self.apply_bytes_max == 0 {
            return invalid("inflight_max, message_bytes_max and apply_bytes_max must be > 0");
        }
        Ok(())
    }
}
