//! What a node must do after feeding Raft: the [`Ready`] batch, and the
//! errors of the calls that feed it.

use std::fmt;

use super::failure::Failure;
use super::membership::{Membership, MembershipError};
use super::message::{Entry, HardState, Index, Message, NodeId, Position};

/// One batch of work, in this order: send `messages` (at once); persist
/// `snapshot`, `entries` and `hard_state` (sync); then send
/// `persisted_messages`; then apply `committed`; then serve `reads`; then
/// call `Raft::advance` with this batch. `messages` are a leader's, which
/// may go before the sync (thesis §10.2.1: followers write in parallel with
/// it; it counts itself towards a quorum only for what `advance` or
/// `Raft::persisted` reports persisted); anyone else's are in
/// `persisted_messages`, as they may grant a vote or acknowledge entries
/// that must be durable first. (raft-rs splits its `Ready` the same way.)
///
/// With `background` set (a leader's, with `Config::background_persist`),
/// `entries` need only be written before `advance`; the node syncs them
/// when it likes and reports it with `Raft::persisted`. `committed` then
/// holds only entries already reported synced, so a node never applies
/// what its own log might lose (thesis §10.2.1: the leader counts itself
/// towards a quorum only once its entries are durable). A `Ready` without
/// it must be persisted, as above, together with every entry handed out
/// in the background before it.
#[derive(Debug, Default)]
pub struct Ready {
    /// Whether `entries` may be synced in the background (see above).
    pub background: bool,
    /// The hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// A snapshot from the leader to install (its bytes came with it).
    pub snapshot: Option<Position>,
    /// Entries to append to the stable log; any stored entries at or after
    /// the first of them must be removed first.
    pub entries: Vec<Entry>,
    /// Messages that may be sent before the above is on disk (a leader's).
    pub messages: Vec<Message>,
    /// Messages to send only once the above is on disk.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Entry>,
    /// Linearizable reads that may be served once `committed` is applied.
    pub reads: Vec<ReadState>,
    /// Read requests that can no longer be confirmed (leadership lost):
    /// answer them with "retry".
    pub reads_failed: Vec<u64>,
    /// The membership in force, if it changed since the last batch (the
    /// node connects to new members and drops removed ones).
    pub membership: Option<Membership>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed.is_empty()
            && self.reads.is_empty()
            && self.reads_failed.is_empty()
            && self.membership.is_none()
    }
}

/// A confirmed read: serve request `ctx` once entries up to `index` are
/// applied (thesis §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's request id.
    pub ctx: u64,
    /// The read index.
    pub index: Index,
}

/// Why a proposal or read was refused; each variant says what the caller
/// does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftError {
    /// Not the leader: forward to `leader` if known, else retry later.
    NotLeader {
        /// The leader this node believes in, if any.
        leader: Option<NodeId>,
    },
    /// A leadership transfer is under way: retry shortly.
    Transferring,
    /// Too much is pending: retry after a pause.
    Busy,
    /// The request itself is wrong (answer the client).
    Invalid(String),
    /// A membership change that cannot be made now (answer the operator).
    Membership(MembershipError),
    /// The log store failed: stop the node.
    Fatal(Failure),
}

impl fmt::Display for RaftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaftError::NotLeader { leader: Some(id) } => write!(f, "not the leader; node {id} is"),
            RaftError::NotLeader { leader: None } => write!(f, "not the leader; no leader known"),
            RaftError::Transferring => write!(f, "leadership transfer in progress"),
            RaftError::Busy => write!(f, "too many requests pending"),
            RaftError::Invalid(why) => write!(f, "invalid request: {why}"),
            RaftError::Membership(why) => write!(f, "membership change refused: {why}"),
            RaftError::Fatal(why) => write!(f, "fatal: {why}"),
        }
    }
}

impl std::error::Error for RaftError {}

impl From<super::store::StoreError> for RaftError {
    fn from(error: super::store::StoreError) -> Self {
        match error {
            super::store::StoreError::Fatal(failure) => RaftError::Fatal(failure),
            other => RaftError::Fatal(Failure::new(other)),
        }
    }
}
