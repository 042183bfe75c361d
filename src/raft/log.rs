//! The log as one Raft node sees it: the persisted part in a [`LogStore`]
//! and, after it, entries (or a snapshot) not yet persisted.
//!
//! Invariants: `applied <= committed <= last_index()`; committed entries are
//! never overwritten (asserted); unstable entries shadow stored ones at the
//! same index until the node persists them and `stable_to` drops them.
//! Unstable entries before `in_progress` were handed out to be written in
//! the background (a leader's, [`super::ready::Ready::background`]): they
//! are not handed out again, and they count as persisted only once the
//! node reports them synced.

use super::failure::Failure;
use super::message::{count_within, Entry, Index, Position, Term};
use super::store::{LogStore, StoreError};

/// What is not on disk yet.
#[derive(Debug, Default)]
struct Unstable {
    /// A snapshot to install, received from the leader.
    snapshot: Option<Position>,
    /// Index of `entries[0]` (or where the next entry would go).
    offset: Index,
    /// The first entry not yet handed out to be written (`offset <=
    /// in_progress <= offset + entries.len()`).
    in_progress: Index,
    /// Entries to persist.
    entries: Vec<Entry>,
}

impl Unstable {
    /// Nothing unstable; the next entry goes at `offset`.
    fn empty_at(offset: Index) -> Self {
        Unstable { snapshot: None, offset, in_progress: offset, entries: Vec::new() }
    }
}

/// The combined log.
#[derive(Debug)]
pub struct RaftLog<S> {
    /// The persisted log.
    store: S,
    /// What follows it, not yet persisted.
    unstable: Unstable,
    /// Highest index known committed.
    committed: Index,
    /// Highest index handed out to apply.
    applied: Index,
}

impl<S: LogStore> RaftLog<S> {
    /// A log over `store`, `applied` as far as the state machine has got.
    pub fn new(store: S, committed: Index, applied: Index) -> Result<Self, StoreError> {
        let last = store.last_index();
        let first = store.first_index();
        let committed = committed.max(first - 1);
        if committed > last || applied > committed {
            return Err(StoreError::Fatal(Failure::invariant(format!(
                "inconsistent start: applied {applied}, commit {committed}, log {first}..={last}"
            ))));
        }
        let unstable = Unstable::empty_at(last + 1);
        Ok(RaftLog { store, unstable, committed, applied: applied.max(first - 1) })
    }

    /// The store (read-only).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for the node to persist into between `ready` and `advance`.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Highest committed index.
    pub fn committed(&self) -> Index {
        self.committed
    }

    /// Highest index handed out for applying.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The first index held as an entry, stored or not.
    pub fn first_index(&self) -> Index {
        match self.unstable.snapshot {
            Some(snapshot) => snapshot.index + 1,
            None => self.store.first_index(),
        }
    }

    /// The last index held.
    pub fn last_index(&self) -> Index {
        match self.unstable.entries.last() {
            Some(entry) => entry.index,
            None => match self.unstable.snapshot {
                Some(snapshot) => snapshot.index,
                None => self.store.last_index(),
            },
        }
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Term {
        self.term(self.last_index()).unwrap_or(0)
    }

    /// The term at `index`: `Compacted` before the snapshot, `Fatal` past
    /// the end (callers check `last_index` first).
    pub fn term(&self, index: Index) -> Result<Term, StoreError> {
        if index > self.last_index() {
            return Err(StoreError::Fatal(Failure::invariant(format!(
                "term of {index} beyond the log"
            ))));
        }
        if index >= self.unstable.offset {
            let at = usize::try_from(index - self.unstable.offset).expect("fits memory");
            return Ok(self.unstable.entries[at].term);
        }
        if let Some(snapshot) = self.unstable.snapshot {
            return match index.cmp(&snapshot.index) {
                std::cmp::Ordering::Equal => Ok(snapshot.term),
                std::cmp::Ordering::Less => Err(StoreError::Compacted),
                std::cmp::Ordering::Greater => {
                    unreachable!("entries after a snapshot are unstable")
                }
            };
        }
        self.store.term(index)
    }

    /// Whether the log holds `index` with `term` (index 0 matches term 0).
    pub fn matches(&self, index: Index, term: Term) -> Result<bool, StoreError> {
        if index > self.last_index() {
            return Ok(false);
        }
        match self.term(index) {
            Ok(held) => Ok(held == term),
            // Compacted entries were committed; the leader's match them.
            Err(StoreError::Compacted) => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// §5.4.1: a candidate's log is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        let our_term = self.last_term();
        last_term > our_term || (last_term == our_term && last_index >= self.last_index())
    }

    /// How many of `entries` (consecutive, from a leader) the log already
    /// holds with the same terms: the index of the first to append.
    pub fn matching_prefix(&self, entries: &[Entry]) -> Result<usize, StoreError> {
        for (held, entry) in entries.iter().enumerate() {
            if !self.matches(entry.index, entry.term)? {
                return Ok(held);
            }
        }
        Ok(entries.len())
    }

    /// Appends `entries` at their indices, dropping any held from the first.
    pub fn append(&mut self, entries: Vec<Entry>) {
        let Some(first) = entries.first().map(|entry| entry.index) else { return };
        assert!(first > self.committed, "overwriting committed entry {first}");
        assert!(first <= self.last_index() + 1, "append leaves a gap at {first}");
        if first < self.unstable.offset {
            // The stored entries from `first` on are replaced; the node drops
            // them when it persists these (the store's append truncates).
            self.unstable.offset = first;
            self.unstable.entries.clear();
        } else {
            let keep = usize::try_from(first - self.unstable.offset).expect("fits memory");
            self.unstable.entries.truncate(keep);
        }
        self.unstable.in_progress = self.unstable.in_progress.clamp(self.unstable.offset, first);
        self.unstable.entries.extend(entries);
    }

    /// Entries `lo..hi`, from the store and the unstable buffer, stopping
    /// once past `max_bytes` (never before the first).
    pub fn entries(
        &self,
        lo: Index,
        hi: Index,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let hi = hi.min(self.last_index() + 1);
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index() {
            return Err(StoreError::Compacted);
        }
        let mut out = if lo < self.unstable.offset {
            self.store.entries(lo, hi.min(self.unstable.offset), max_bytes)?
        } else {
            Vec::new()
        };
        let next = lo + out.len() as u64;
        if next >= hi || next < self.unstable.offset {
            return Ok(out); // all of it, or the store stopped at the size limit
        }
        let offset =
            |index: Index| usize::try_from(index - self.unstable.offset).expect("fits memory");
        let unstable = &self.unstable.entries[offset(next.max(self.unstable.offset))..offset(hi)];
        let bytes_used = out.iter().map(Entry::size_bytes).sum();
        out.extend_from_slice(&unstable[..count_within(unstable, bytes_used, max_bytes)]);
        Ok(out)
    }

    /// Raises the commit index (never lowers it).
    pub fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            assert!(index <= self.last_index(), "commit {index} beyond the log");
            self.committed = index;
        }
    }

    /// Committed entries not yet handed out, up to index `upto` (at most
    /// the commit index) and `max_bytes`.
    pub fn next_to_apply(&self, upto: Index, max_bytes: usize) -> Result<Vec<Entry>, StoreError> {
        let upto = upto.min(self.committed);
        if upto <= self.applied {
            return Ok(Vec::new());
        }
        self.entries(self.applied + 1, upto + 1, max_bytes)
    }

    /// Records that entries up to `index` were handed out.
    pub fn applied_to(&mut self, index: Index) {
        assert!(index <= self.committed, "applied {index} beyond commit {}", self.committed);
        self.applied = self.applied.max(index);
    }

    /// Unstable entries not yet handed out to be written, for a `Ready`.
    pub fn unstable_entries(&self) -> &[Entry] {
        let from =
            usize::try_from(self.unstable.in_progress - self.unstable.offset).expect("fits memory");
        &self.unstable.entries[from..]
    }

    /// Records that entries up to `index` are being written in the
    /// background: later `Ready`s leave them out, and they stay unstable
    /// (not persisted) until `stable_to`.
    pub fn in_progress_to(&mut self, index: Index) {
        let end = self.unstable.offset + self.unstable.entries.len() as Index;
        self.unstable.in_progress = self.unstable.in_progress.max(index + 1).min(end);
    }

    /// The last entry handed out to be written in the background and not
    /// yet reported synced, if any.
    pub fn last_in_progress(&self) -> Option<Index> {
        (self.unstable.in_progress > self.unstable.offset).then(|| self.unstable.in_progress - 1)
    }

    /// The unstable snapshot, for a `Ready`.
    pub fn unstable_snapshot(&self) -> Option<Position> {
        self.unstable.snapshot
    }

    /// The node persisted entries up to `index` with `term`.
    pub fn stable_to(&mut self, index: Index, term: Term) {
        if index < self.unstable.offset || self.term(index) != Ok(term) {
            return; // overwritten meanwhile; the newer entries come in a later Ready
        }
        let drop = usize::try_from(index + 1 - self.unstable.offset).expect("fits memory");
        self.unstable.entries.drain(..drop);
        self.unstable.offset = index + 1;
        self.unstable.in_progress = self.unstable.in_progress.max(self.unstable.offset);
    }

    /// The node installed the snapshot.
    pub fn stable_snapshot_to(&mut self, index: Index) {
        if self.unstable.snapshot.is_some_and(|snapshot| snapshot.index == index) {
            self.unstable.snapshot = None;
        }
    }

    /// Replaces the log with a snapshot from the leader.
    pub fn restore(&mut self, snapshot: Position) {
        assert!(snapshot.index > self.committed, "snapshot behind commit");
        self.unstable =
            Unstable { snapshot: Some(snapshot), ..Unstable::empty_at(snapshot.index + 1) };
        self.committed = snapshot.index;
        self.applied = snapshot.index;
    }

    /// The index of the last entry at or before `index` whose term is at
    /// most `term`: where a follower's log, which has `term` at `index`,
    /// may agree with ours.
    pub fn find_conflict_by_term(&self, index: Index, term: Term) -> Index {
        let mut at = index.min(self.last_index());
        while at > 0 {
            match self.term(at) {
                Ok(held) if held > term => at -= 1,
                _ => return at,
            }
        }
        0
    }
}

impl<S: LogStore> RaftLog<S> {
    /// The last index that is on disk and still part of the log.
    pub fn persisted_index(&self) -> Index {
        if let Some(snapshot) = self.unstable.snapshot {
            return snapshot.index.saturating_sub(1).min(self.store.last_index());
        }
        self.store.last_index().min(self.unstable.offset - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{EntryKind, MemStore};

    fn entry(index: Index) -> Entry {
        Entry { term: 1, index, kind: EntryKind::Normal, data: vec![0; 8] }
    }

    /// Entries 1..=3 stored, 4..=5 unstable; each counts 32 bytes.
    fn log() -> RaftLog<MemStore> {
        let mut store = MemStore::default();
        store.append(&[entry(1), entry(2), entry(3)]);
        let mut log = RaftLog::new(store, 0, 0).unwrap();
        log.append(vec![entry(4), entry(5)]);
        log
    }

    fn indices(entries: &[Entry]) -> Vec<Index> {
        entries.iter().map(|entry| entry.index).collect()
    }

    #[test]
    #[should_panic(expected = "commit 6 beyond the log")]
    fn a_commit_past_the_last_index_is_caught() {
        log().commit_to(6);
    }

    #[test]
    #[should_panic(expected = "overwriting committed entry 3")]
    fn overwriting_a_committed_entry_is_caught() {
        let mut log = log();
        log.commit_to(4);
        log.append(vec![entry(3)]);
    }

    #[test]
    fn entries_span_the_store_and_the_unstable_buffer() {
        let log = log();
        assert_eq!(indices(&log.entries(2, 6, usize::MAX).unwrap()), [2, 3, 4, 5]);
        assert_eq!(indices(&log.entries(1, 3, usize::MAX).unwrap()), [1, 2], "store only");
        assert_eq!(indices(&log.entries(4, 9, usize::MAX).unwrap()), [4, 5], "unstable only");
        assert!(log.entries(5, 5, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn entries_stop_at_the_size_limit_but_never_before_the_first() {
        let log = log();
        assert_eq!(indices(&log.entries(1, 6, 64).unwrap()), [1, 2], "stops in the store");
        assert_eq!(indices(&log.entries(3, 6, 64).unwrap()), [3, 4], "stops in the buffer");
        assert_eq!(indices(&log.entries(2, 6, 1).unwrap()), [2], "one entry always goes");
        assert_eq!(indices(&log.entries(4, 6, 1).unwrap()), [4]);
    }
}
