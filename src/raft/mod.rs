//! Raft consensus as a deterministic state machine.
//!
//! [`Raft`] is fed ticks, peer messages, proposals and read requests, and
//! answers with a [`Ready`]: what to persist, then what to send, then what
//! to apply and which reads to serve. It does no IO, keeps no clock and
//! spawns nothing, so the same inputs give the same outputs; [`sim`] drives
//! whole clusters of it through lossy networks and crashes with a seed.
//!
//! The protocol is the Raft paper's (elections §5.2, log replication §5.3,
//! the election restriction §5.4.1 and the commit rule §5.4.2) with the
//! thesis's pre-vote and check-quorum (§9.6, §6.2), ReadIndex reads (§6.4),
//! leadership transfer (§3.10) and snapshot installation (chapter 5).
//! Membership is fixed at start.
//!
//! The node uses it like this: after every input, while `has_ready()`, take
//! `ready()`, persist its snapshot, entries and hard state (synced), send its
//! messages, apply its committed entries, serve its reads, then `advance`.

mod config;
mod core;
mod leader;
mod log;
mod message;
mod progress;
mod ready;
pub mod sim;
mod step;
mod store;

pub use self::config::Config;
pub use self::core::{splitmix64, Raft, Role};
pub use self::log::RaftLog;
pub use self::message::{
    Body, Entry, EntryKind, HardState, Index, Message, NodeId, SnapshotMeta, Term,
    ENTRY_OVERHEAD_BYTES,
};
pub use self::progress::{is_lost, is_majority, quorum_index, Progress, ProgressState};
pub use self::ready::{RaftError, ReadState, Ready};
pub use self::store::{LogStore, MemStore, StoreError};
