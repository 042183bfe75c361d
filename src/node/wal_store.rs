//! The WAL as Raft's [`LogStore`]: what Raft reads back, and the one place
//! that turns Raft entries into WAL records and back.

use rdb_storage::wal::{self, Wal};

use crate::raft::{Entry, EntryKind, HardState, Index, LogStore, SnapshotMeta, StoreError, Term};

/// The first payload byte of a record: what kind of entry follows.
const KIND_NOOP: u8 = 0;
/// See [`KIND_NOOP`].
const KIND_NORMAL: u8 = 1;

/// Raft's stable log, on the WAL.
#[derive(Debug)]
pub struct WalStore {
    /// The log and hard state on disk.
    pub(crate) wal: Wal,
}

impl WalStore {
    /// Persists `entries`, removing any stored entries at or after the first
    /// (a conflict), then syncs once for all of them.
    pub fn persist(&mut self, entries: &[Entry]) -> rdb_storage::Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        if first.index <= self.wal.last_index() {
            self.wal.truncate_suffix(first.index)?;
        }
        let records: Vec<wal::Entry> = entries.iter().map(to_record).collect();
        self.wal.append(&records)?;
        self.wal.sync()
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

fn to_record(entry: &Entry) -> wal::Entry {
    let mut payload = Vec::with_capacity(entry.data.len() + 1);
    payload.push(match entry.kind {
        EntryKind::Noop => KIND_NOOP,
        EntryKind::Normal => KIND_NORMAL,
    });
    payload.extend_from_slice(&entry.data);
    wal::Entry { index: entry.index, term: entry.term, payload }
}

fn from_record(record: wal::Entry) -> Result<Entry, StoreError> {
    let kind = match record.payload.first() {
        Some(&KIND_NOOP) => EntryKind::Noop,
        Some(&KIND_NORMAL) => EntryKind::Normal,
        _ => {
            return Err(StoreError::Fatal(format!("WAL record {} has no entry kind", record.index)))
        }
    };
    let mut data = record.payload;
    data.remove(0);
    Ok(Entry { term: record.term, index: record.index, kind, data })
}

fn fatal(error: rdb_storage::Error) -> StoreError {
    StoreError::Fatal(error.to_string())
}

impl LogStore for WalStore {
    fn initial_state(&self) -> Result<(HardState, SnapshotMeta), StoreError> {
        let hs = self.wal.hard_state();
        let index = self.wal.first_index() - 1;
        let term = self.term(index)?;
        Ok((
            HardState { term: hs.term, vote: hs.vote, commit: hs.commit },
            SnapshotMeta { index, term },
        ))
    }

    fn first_index(&self) -> Index {
        self.wal.first_index()
    }

    fn last_index(&self) -> Index {
        self.wal.last_index()
    }

    fn term(&self, index: Index) -> Result<Term, StoreError> {
        if index == 0 {
            return Ok(0);
        }
        self.wal.term(index).ok_or(StoreError::Compacted)
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: usize) -> Result<Vec<Entry>, StoreError> {
        if lo < self.wal.first_index() {
            return Err(StoreError::Compacted);
        }
        let records = self.wal.entries(lo, hi, max_bytes).map_err(fatal)?;
        records.into_iter().map(from_record).collect()
    }

    fn snapshot(&self) -> Result<SnapshotMeta, StoreError> {
        // Snapshots are shipped once the snapshot issue lands; until then
        // the log is never compacted, so no follower needs one.
        Err(StoreError::SnapshotUnavailable)
    }
}
