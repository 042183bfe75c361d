//! What Raft nodes say to each other, and the log entries they carry.
//!
//! These types are plain data: the RPC edge translates them to and from Cap'n
//! Proto, the simulator passes them around in memory. Every message carries
//! the sender's term; `step` treats a message from a newer term as news of a
//! newer leader or election, and answers one from an older term only where
//! the sender must learn that it is stale.

use super::membership::Membership;
pub use super::types::{Index, NodeId, Position, Term};

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A client's command, opaque to Raft.
    Normal,
    /// The empty entry a new leader appends so that it can commit entries of
    /// its term (§5.4.2, thesis §6.4).
    Noop,
    /// A new membership (thesis §4.1), encoded by `Membership::encode`; in
    /// force on every node from the moment it is appended to its log.
    Config,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The leader's term when the entry was created.
    pub term: Term,
    /// Its position in the log.
    pub index: Index,
    /// Command or no-op.
    pub kind: EntryKind,
    /// The command bytes (empty for a no-op).
    pub data: Vec<u8>,
}

impl Entry {
    /// Bytes counted against message and batch limits: the payload plus a
    /// fixed allowance for the header.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// How many of `entries` fit within `bytes_max` when `bytes_used` are
/// already taken; never none when nothing is taken yet, so that one entry
/// larger than the limit still goes out on its own.
pub fn count_within(entries: &[Entry], bytes_used: usize, bytes_max: usize) -> usize {
    let mut bytes = bytes_used;
    for (count, entry) in entries.iter().enumerate() {
        bytes += entry.size_bytes();
        if bytes > bytes_max && (count > 0 || bytes_used > 0) {
            return count;
        }
    }
    entries.len()
}

/// The per-entry allowance in size accounting.
pub const ENTRY_OVERHEAD_BYTES: usize = 24;

/// What must be on disk before any message that depends on it goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom it voted for in `term` (0: nobody).
    pub vote: NodeId,
    /// The highest index it knows to be committed.
    pub commit: Index,
}

/// A message between two members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would stand in).
    pub term: Term,
    /// What it says.
    pub body: Body,
}

/// The kinds of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Asks for a vote (§5.2), or with `pre` asks whether a vote would be
    /// granted without disturbing anyone (thesis §9.6).
    Vote {
        /// A pre-vote.
        pre: bool,
        /// The candidate's last log index (§5.4.1).
        last_index: Index,
        /// The term of that entry.
        last_term: Term,
        /// Sent on a leader's request (TimeoutNow): voters do not hold on to
        /// a current leader's lease.
        transfer: bool,
    },
    /// The answer to `Vote`.
    VoteResponse {
        /// Answers a pre-vote.
        pre: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// Replicates entries following `prev_index` (§5.3).
    Append {
        /// The index just before `entries`.
        prev_index: Index,
        /// Its term, for the consistency check.
        prev_term: Term,
        /// New entries, possibly none.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// The answer to `Append`.
    AppendResponse {
        /// Accepted: the follower's log matches the leader's up to `index`.
        /// Rejected: the follower holds no entry `index` with the leader's
        /// term there (`index` is the rejected `prev_index`).
        reject: bool,
        /// See `reject`.
        index: Index,
        /// When rejected: the follower's best guess of where the logs may
        /// agree (its last index, or the start of its conflicting term).
        hint_index: Index,
        /// The term of the follower's entry at `hint_index`.
        hint_term: Term,
    },
    /// Keeps followers from starting elections and carries the commit index;
    /// `round` numbers the broadcast for ReadIndex confirmation.
    Heartbeat {
        /// The commit index, capped at what the follower is known to hold.
        commit: Index,
        /// The leader's broadcast round.
        round: u64,
    },
    /// The answer to `Heartbeat`.
    HeartbeatResponse {
        /// The round being answered.
        round: u64,
    },
    /// Tells a follower to install the leader's snapshot; the bytes travel
    /// beside this message (the node streams the file).
    Snapshot {
        /// Which snapshot.
        meta: Position,
        /// The membership as of the snapshot's index.
        membership: Membership,
    },
    /// Asks the receiver to start an election at once (leadership transfer,
    /// thesis §3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index (thesis §6.4).
    ReadIndex {
        /// The follower's request id, echoed back.
        ctx: u64,
    },
    /// The leader's answer to `ReadIndex`.
    ReadIndexResponse {
        /// The request id.
        ctx: u64,
        /// Reads may be served once this index is applied; 0 means refused
        /// (not leader any more).
        index: Index,
    },
}

impl Body {
    /// A follower's answer that its log matches the leader's up to `index`.
    pub fn accepted(index: Index) -> Self {
        Body::AppendResponse { reject: false, index, hint_index: 0, hint_term: 0 }
    }
}

impl Message {
    /// Bytes counted against per-peer limits.
    pub fn size_bytes(&self) -> usize {
        match &self.body {
            Body::Append { entries, .. } => {
                ENTRY_OVERHEAD_BYTES + entries.iter().map(Entry::size_bytes).sum::<usize>()
            }
            _ => ENTRY_OVERHEAD_BYTES,
        }
    }
}
