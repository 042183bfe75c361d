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
//! leadership transfer (§3.10) and snapshot installation (chapter 5), and
//! membership changes one server at a time (§4.1, see below).
//!
//! # Membership changes
//!
//! rdb uses single-server changes (thesis §4.1), not joint consensus
//! (§4.3): each change adds, promotes or removes one server, so any
//! majority of the old voters and any majority of the new overlap and no
//! two leaders can be elected in one term across the change. They need no
//! intermediate joint configuration, and one server at a time is what an
//! operator does (replace a VM, grow 3 to 5). The membership travels as a
//! `Config` entry and is in force on each node as soon as it is in its
//! log, committed or not; an overwritten entry takes its membership with it.
//! With the fix for the bug Ongaro found in §4.1 (raft-dev, 2015): a leader
//! proposes a change only once an entry of its own term has committed, and
//! only while no other change is uncommitted.
//!
//! Learners receive the log and snapshots but never vote, campaign or count
//! toward a quorum; promotion is a change like any other. A leader that
//! removes itself keeps leading (without counting itself) until the change
//! commits, then hands over to the most caught-up voter and steps down
//! (§4.2.2). A learner, a joining node and a node that knows its removal
//! committed never campaign; a node whose newest membership leaves it out
//! but is not committed yet still may, counting only the new voters' votes,
//! because it may be needed to commit that membership (§4.2.2: a leader
//! that removed itself and then lost its quorum would otherwise leave the
//! cluster with no one able to win; the simulator found this case). A
//! removed server that does not know it is removed cannot disrupt the
//! cluster, since pre-vote and check-quorum's lease keep followers of a
//! live leader from answering it (§4.2.3).
//!
//! The node uses it like this: after every input, while `has_ready()`, take
//! `ready()`, persist its snapshot, entries and hard state (synced), send its
//! messages, apply its committed entries, serve its reads, then `advance`.
//! With `Config::background_persist` a leader's `Ready` may be `background`:
//! its entries need only be written before `advance`, and the node reports
//! their sync later with `persisted`.

mod config;
mod core;
mod failure;
mod leader;
mod log;
mod membership;
mod membership_log;
mod message;
mod progress;
mod ready;
mod reconfig;
pub mod sim;
mod step;
mod store;
mod types;

pub use self::config::Config;
pub use self::core::{mix64, splitmix64, Raft, Role};
pub use self::failure::Failure;
pub use self::log::RaftLog;
pub use self::membership::{
    Member, MemberRole, Membership, MembershipChange, MembershipError, ADDRESS_BYTES_MAX,
    MEMBERS_MAX, VOTERS_MAX,
};
pub use self::membership_log::MembershipLog;
pub use self::message::{
    Body, Entry, EntryKind, HardState, Index, Message, NodeId, Position, Term, ENTRY_OVERHEAD_BYTES,
};
pub use self::progress::{is_lost, is_majority, quorum_index, Progress, ProgressState};
pub use self::ready::{RaftError, ReadState, Ready};
pub use self::store::{LogStore, MemStore, StoreError};
