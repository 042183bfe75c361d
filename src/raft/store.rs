//! The stable log as Raft reads it, and an in-memory implementation.
//!
//! Raft never writes to the store itself: the node persists what a `Ready`
//! hands it (entries, hard state, snapshot) and only then calls `advance`.
//! Raft reads back through [`LogStore`] when it needs entries that are no
//! longer in its unstable buffer: to send them to a follower, to apply them,
//! or to answer a term lookup. The WAL implements this trait in the node; the
//! tests and the simulator use [`MemStore`].

use std::fmt;

use super::failure::Failure;
use super::membership::Membership;
use super::message::{count_within, Entry, HardState, Index, Position, Term};

/// Why a store could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The entry was folded into a snapshot: send the snapshot instead.
    Compacted,
    /// The store cannot serve a snapshot right now (being made): retry later.
    SnapshotUnavailable,
    /// An IO or corruption error: the node must stop.
    Fatal(Failure),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Compacted => write!(f, "log entry compacted into a snapshot"),
            StoreError::SnapshotUnavailable => write!(f, "snapshot not available yet"),
            StoreError::Fatal(why) => write!(f, "log store failed: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The persisted log. Invariant: entries `first_index()..=last_index()` are
/// present and contiguous; `first_index() - 1` is the snapshot's index (0 if
/// none), whose term `term` answers.
pub trait LogStore {
    /// The hard state and snapshot found at start-up.
    fn initial_state(&self) -> Result<(HardState, Position), StoreError>;
    /// The first index held as an entry.
    fn first_index(&self) -> Index;
    /// The last index held (the snapshot's if no entries follow it).
    fn last_index(&self) -> Index;
    /// The term of entry `index`, for `first_index() - 1 ..= last_index()`.
    fn term(&self, index: Index) -> Result<Term, StoreError>;
    /// Entries `lo..hi`, stopping early (but never before the first) once
    /// their sizes pass `max_bytes`.
    fn entries(&self, lo: Index, hi: Index, max_bytes: usize) -> Result<Vec<Entry>, StoreError>;
    /// The newest snapshot, with the membership as of its index, for
    /// sending to a follower.
    fn snapshot(&self) -> Result<(Position, Membership), StoreError>;
}

/// A log held in memory: what tests and the simulator persist into.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    /// The persisted hard state.
    pub hard_state: HardState,
    /// The snapshot the entries follow.
    pub snapshot: Position,
    /// The membership as of the snapshot.
    pub snapshot_membership: Membership,
    /// Entries `snapshot.index + 1 ..`.
    pub entries: Vec<Entry>,
}

impl MemStore {
    /// Writes `entries`, first removing any held entries at or after the
    /// first of them (a leader overwrote them).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(first.index > self.snapshot.index, "appending below the snapshot");
        assert!(first.index <= self.last_index() + 1, "appending leaves a gap");
        let keep = usize::try_from(first.index - self.snapshot.index - 1).expect("fits memory");
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Replaces the log with a snapshot: entries it covers go; entries after
    /// it stay only if the log agrees with it at its index.
    pub fn apply_snapshot(&mut self, meta: Position, membership: Membership) {
        if self.term(meta.index) == Ok(meta.term) {
            self.compact(meta.index, membership.clone());
        } else {
            self.entries.clear();
        }
        self.snapshot = meta;
        self.snapshot_membership = membership;
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
    }

    /// Drops entries up to `index` (which must be held) into a snapshot
    /// whose membership is `membership`.
    pub fn compact(&mut self, index: Index, membership: Membership) {
        if index <= self.snapshot.index {
            return;
        }
        let term = self.term(index).expect("compacting to a held index");
        let drop = usize::try_from(index - self.snapshot.index).expect("fits memory");
        self.entries.drain(..drop);
        self.snapshot = Position { index, term };
        self.snapshot_membership = membership;
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let offset = index.checked_sub(self.snapshot.index + 1)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }
}

impl LogStore for MemStore {
    fn initial_state(&self) -> Result<(HardState, Position), StoreError> {
        Ok((self.hard_state, self.snapshot))
    }

    fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }

    fn term(&self, index: Index) -> Result<Term, StoreError> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.snapshot.index {
            return Err(StoreError::Compacted);
        }
        self.entry(index).map(|entry| entry.term).ok_or_else(|| {
            StoreError::Fatal(Failure::invariant(format!("term of {index} asked beyond the log")))
        })
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: usize) -> Result<Vec<Entry>, StoreError> {
        if lo <= self.snapshot.index {
            return Err(StoreError::Compacted);
        }
        if hi > self.last_index() + 1 {
            return Err(StoreError::Fatal(Failure::invariant(format!(
                "entries up to {hi} asked beyond the log"
            ))));
        }
        let offset =
            |index: Index| usize::try_from(index - self.snapshot.index - 1).expect("fits memory");
        let wanted = &self.entries[offset(lo)..offset(hi.max(lo))];
        Ok(wanted[..count_within(wanted, 0, max_bytes)].to_vec())
    }

    fn snapshot(&self) -> Result<(Position, Membership), StoreError> {
        Ok((self.snapshot, self.snapshot_membership.clone()))
    }
}
