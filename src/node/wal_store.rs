//! The WAL as Raft's [`LogStore`]: what Raft reads back, and the one place
//! that turns Raft entries into WAL records and back.

use rdb_storage::wal::{self, Wal};

use crate::raft::{
    Entry, EntryKind, Failure, HardState, Index, LogStore, Membership, Position, StoreError, Term,
};

/// The first payload byte of a record: what kind of entry follows.
const KIND_NOOP: u8 = 0;
/// See [`KIND_NOOP`].
const KIND_NORMAL: u8 = 1;
/// See [`KIND_NOOP`].
const KIND_CONFIG: u8 = 2;

/// Raft's stable log, on the WAL.
///
/// Raft sees the entries after `floor`: the index (and term) below which the
/// log is compacted. The WAL may physically hold a few entries at or below
/// it (it deletes whole segments only); they are never read.
#[derive(Debug)]
pub struct WalStore {
    /// The log and hard state on disk.
    pub(crate) wal: Wal,
    /// The last index Raft treats as compacted, and its term.
    pub(crate) floor: Position,
    /// The newest snapshot file and the membership it records, sent to
    /// followers that need entries below the floor (only if it reaches the
    /// floor: the WAL is compacted without one).
    pub(crate) newest: Option<(Position, Membership)>,
    /// Raft asked for a snapshot to send and none reaches the floor: the
    /// loop writes one.
    pub(crate) snapshot_wanted: std::cell::Cell<bool>,
}

impl WalStore {
    /// Persists `entries` (see [`WalStore::write`]), then syncs once for
    /// them and for anything written before them.
    pub fn persist(&mut self, entries: &[Entry]) -> rdb_storage::Result<()> {
        self.write(entries)?;
        self.wal.sync()
    }

    /// Writes `entries`, removing any stored entries at or after the first
    /// (a conflict); no sync.
    pub fn write(&mut self, entries: &[Entry]) -> rdb_storage::Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        if first.index <= self.wal.last_index() {
            self.wal.truncate_suffix(first.index)?;
        }
        let records: Vec<wal::Entry> = entries.iter().map(to_record).collect();
        self.wal.append(&records)
    }

    /// Saves term and vote (and the commit index as far as it is synced).
    /// Only term and vote must be durable before messages go out: a commit
    /// index that lags is recomputed from the leader after a restart, so a
    /// commit-only change is not worth a sync of its own.
    pub fn save_hard_state(&mut self, state: HardState) -> rdb_storage::Result<()> {
        let saved = self.wal.hard_state();
        if saved.term == state.term && saved.vote == state.vote {
            return Ok(());
        }
        let commit = state.commit.min(self.wal.synced_index()).max(saved.commit);
        self.wal.save_hard_state(wal::HardState { term: state.term, vote: state.vote, commit })
    }
}

impl WalStore {
    /// Discards entries up to `upto` (whole segments at most up to it) once
    /// the durable state file (or a snapshot file) covers them; Raft then
    /// sees the log start after `upto`.
    pub fn compact(&mut self, upto: Index) -> rdb_storage::Result<()> {
        if upto <= self.floor.index || upto < self.wal.first_index() || upto > self.wal.last_index()
        {
            return Ok(());
        }
        let Some(term) = self.wal.term(upto) else { return Ok(()) };
        self.wal.purge_prefix(upto)?;
        self.floor = Position { index: upto, term };
        Ok(())
    }

    /// The log after installing the leader's snapshot `meta`: everything up
    /// to it is gone, and entries continue after it.
    pub fn restore(&mut self, meta: Position, membership: Membership) -> rdb_storage::Result<()> {
        if meta.index < self.wal.last_index() {
            self.wal.truncate_suffix(meta.index + 1)?;
        }
        self.wal.purge_prefix(meta.index)?;
        self.floor = meta;
        self.newest = Some((meta, membership));
        Ok(())
    }
}

fn to_record(entry: &Entry) -> wal::Entry {
    let mut payload = Vec::with_capacity(entry.data.len() + 1);
    payload.push(match entry.kind {
        EntryKind::Noop => KIND_NOOP,
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::Config => KIND_CONFIG,
    });
    payload.extend_from_slice(&entry.data);
    wal::Entry { index: entry.index, term: entry.term, payload }
}

fn from_record(record: wal::Entry) -> Result<Entry, StoreError> {
    let Some((kind, _)) = split_record(&record.payload) else {
        let why = format!("WAL record {} has no entry kind", record.index);
        return Err(StoreError::Fatal(Failure::invariant(why)));
    };
    let mut data = record.payload;
    data.remove(0);
    Ok(Entry { term: record.term, index: record.index, kind, data })
}

/// A WAL record's payload as Raft's entry kind and data (None: no known
/// kind byte, which the WAL's checksum makes damage by rdb's own hand).
pub fn split_record(payload: &[u8]) -> Option<(EntryKind, &[u8])> {
    let (&kind, data) = payload.split_first()?;
    let kind = match kind {
        KIND_NOOP => EntryKind::Noop,
        KIND_NORMAL => EntryKind::Normal,
        KIND_CONFIG => EntryKind::Config,
        _ => return None,
    };
    Some((kind, data))
}

fn fatal(error: rdb_storage::Error) -> StoreError {
    StoreError::Fatal(Failure::new(error))
}

impl LogStore for WalStore {
    fn initial_state(&self) -> Result<(HardState, Position), StoreError> {
        let hs = self.wal.hard_state();
        Ok((HardState { term: hs.term, vote: hs.vote, commit: hs.commit }, self.floor))
    }

    fn first_index(&self) -> Index {
        self.floor.index + 1
    }

    fn last_index(&self) -> Index {
        self.wal.last_index().max(self.floor.index)
    }

    fn term(&self, index: Index) -> Result<Term, StoreError> {
        if index == self.floor.index {
            return Ok(self.floor.term);
        }
        if index < self.floor.index {
            return Err(StoreError::Compacted);
        }
        self.wal.term(index).ok_or(StoreError::Compacted)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: usize) -> Result<Vec<Entry>, StoreError> {
        if lo <= self.floor.index || lo < self.wal.first_index() {
            return Err(StoreError::Compacted);
        }
        let records = self.wal.entries(lo, hi, max_bytes).map_err(fatal)?;
        records.into_iter().map(from_record).collect()
    }

    fn snapshot(&self) -> Result<(Position, Membership), StoreError> {
        // A follower installing an older one would still need entries
        // between it and the floor.
        let newest = self.newest.clone().filter(|(meta, _)| meta.index >= self.floor.index);
        self.snapshot_wanted.set(newest.is_none());
        newest.ok_or(StoreError::SnapshotUnavailable)
    }
}
