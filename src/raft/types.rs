//! The identifiers every part of Raft shares: who (`NodeId`), when
//! (`Term`) and where in the log (`Index`). Plain integers, named so that
//! signatures say which one they mean.

/// Identifies a cluster member. Never 0 (0 means "nobody").
pub type NodeId = u64;
/// A Raft term. Term 0 precedes every election.
pub type Term = u64;
/// A log position; the first entry has index 1, index 0 is "before the log".
pub type Index = u64;
