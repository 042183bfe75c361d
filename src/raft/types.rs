//! The identifiers every part of Raft shares: who (`NodeId`), when
//! (`Term`) and where in the log (`Index`, and `Position`: an index with
//! its term). Named so that signatures say which one they mean.

/// Identifies a cluster member. Never 0 (0 means "nobody").
pub type NodeId = u64;
/// A Raft term. Term 0 precedes every election.
pub type Term = u64;
/// A log position; the first entry has index 1, index 0 is "before the log".
pub type Index = u64;

/// An entry's place in the log: its index and the term it was written in.
/// Two logs holding an entry at the same position hold the same entry and
/// the same entries before it (the Log Matching Property, Raft paper §5.3).
/// What a position marks is in the name of the field or variable holding
/// it: a snapshot's `meta` (the last entry it covers), the state file's
/// `applied`, the log's `floor` (the position before its first entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The entry's index.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
}
