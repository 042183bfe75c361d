//! [`Wal`]: the log as Raft sees it: append, sync, read, cut, purge, and the
//! hard state.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    segment_name, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use super::hard_state::{HardState, HardStateFile};
use super::recovery::recover;
use super::segment::Segment;
use super::{Entry, TermRun};
use crate::disk::Disk;
use crate::{Error, Result};

/// The smallest segment size limit accepted; small limits are for tests.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// The largest segment size limit accepted; record offsets are kept as u32.
pub const SEGMENT_BYTES_MAX_LIMIT: u64 = 1 << 30;
/// The default segment size limit.
const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// How a [`Wal`] lays out its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// A new segment starts when a record would take the open one past this
    /// many bytes; from [`SEGMENT_BYTES_MIN`] to [`SEGMENT_BYTES_MAX_LIMIT`].
    pub segment_bytes_max: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_bytes_max: SEGMENT_BYTES_DEFAULT }
    }
}

/// The write-ahead log of one node; see the module docs.
#[derive(Debug)]
pub struct Wal {
    /// Where the files are.
    disk: Arc<dyn Disk>,
    /// The WAL directory, `<data-dir>/wal`.
    dir: PathBuf,
    /// Layout options.
    options: WalOptions,
    /// Segments in index order, never empty; the last is the open one.
    segments: VecDeque<Segment>,
    /// Term runs covering at least `first_index()..=last_index()`.
    terms: Vec<TermRun>,
    /// The hard-state file.
    hard_state: HardStateFile,
    /// Every entry up to here is durable.
    pub(super) synced_index: u64,
    /// Counts truncations and resets, so that a background sync's report
    /// from before one is ignored (see `background_sync.rs`).
    pub(super) generation: u64,
    /// Reused encoding buffer, so appends do not allocate per batch.
    scratch: Vec<u8>,
    /// Why the log refuses all calls, after an IO error.
    pub(super) poisoned: Option<String>,
    /// Bytes recovery cut from the open segment as a torn tail.
    torn_bytes_at_open: u64,
}

impl Wal {
    /// Opens the WAL in `dir`, creating it if needed, and recovers it
    /// (FORMAT.md: recovery on open).
    pub fn open(disk: Arc<dyn Disk>, dir: impl Into<PathBuf>, options: WalOptions) -> Result<Self> {
        let limit = options.segment_bytes_max;
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX_LIMIT).contains(&limit) {
            return Err(Error::InvalidArgument(format!(
                "segment_bytes_max {limit} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX_LIMIT}"
            )));
        }
        let dir = dir.into();
        let recovered = recover(disk.as_ref(), &dir)?;
        let mut wal = Wal {
            disk,
            dir,
            options,
            segments: recovered.segments.into(),
            terms: recovered.terms,
            hard_state: recovered.hard_state,
            synced_index: 0,
            generation: 0,
            scratch: Vec::new(),
            poisoned: None,
            torn_bytes_at_open: recovered.torn_bytes,
        };
        // FORMAT.md, recovery step 7: what a crashed process wrote but never
        // synced may still be in the page cache; it is durable from here.
        wal.open_segment().sync()?;
        wal.synced_index = wal.last_index();
        Ok(wal)
    }

    /// The index of the oldest entry kept (`last_index() + 1` when empty).
    pub fn first_index(&self) -> u64 {
        self.segments.front().expect("never empty").first_index()
    }

    /// The index of the newest entry appended (`first_index() - 1` when empty).
    pub fn last_index(&self) -> u64 {
        self.open_segment().next_index() - 1
    }

    /// The newest index that is durable.
    pub fn synced_index(&self) -> u64 {
        self.synced_index
    }

    /// The term of the entry at `index`, if the log holds it.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        let run = self.terms.partition_point(|run| run.first_index <= index);
        Some(self.terms[run.checked_sub(1)?].term)
    }

    /// The newest saved hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state.state()
    }

    /// Bytes that recovery cut from the end of the log as a torn write.
    pub fn torn_bytes_at_open(&self) -> u64 {
        self.torn_bytes_at_open
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the segments occupy, headers included.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(Segment::bytes).sum()
    }

    /// The number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends entries after the last one, without syncing. They must
    /// continue the log's indexes, keep terms from decreasing, and carry at
    /// most [`RECORD_PAYLOAD_BYTES_MAX`] bytes each; otherwise nothing is
    /// written.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.guarded(|wal| {
            wal.check_append(entries)?;
            wal.write_entries(entries)?;
            for entry in entries {
                if wal.terms.last().is_none_or(|run| run.term != entry.term) {
                    wal.terms.push(TermRun { first_index: entry.index, term: entry.term });
                }
            }
            Ok(())
        })
    }

    /// Makes every appended entry durable with one sync (group commit).
    pub fn sync(&mut self) -> Result<()> {
        self.guarded(|wal| {
            if wal.synced_index < wal.last_index() {
                wal.open_segment().sync()?;
                wal.synced_index = wal.last_index();
            }
            Ok(())
        })
    }

    /// Entries `lo..hi`, stopping before the entry that would take the encoded
    /// size past `max_bytes`, but always at least one when `lo < hi`.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: usize) -> Result<Vec<Entry>> {
        self.check_poisoned()?;
        if lo < self.first_index() || lo > hi || hi > self.last_index() + 1 {
            return Err(Error::InvalidArgument(format!(
                "entries {lo}..{hi} are outside the log's {}..{}",
                self.first_index(),
                self.last_index() + 1
            )));
        }
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let mut next = lo;
        let mut segment = self.segments.partition_point(|s| s.first_index() <= lo) - 1;
        while next < hi {
            let source = &self.segments[segment];
            let end = hi.min(source.next_index());
            let read = source.read(next, end, budget, out.is_empty(), &mut out)?;
            budget = budget.saturating_sub(read);
            next = out.last().map_or(lo, |e| e.index + 1);
            if next < end || segment + 1 == self.segments.len() {
                break;
            }
            segment += 1;
        }
        Ok(out)
    }

    /// Removes every entry from index `from` on, durably (a Raft log
    /// conflict). Committed entries cannot be removed.
    pub fn truncate_suffix(&mut self, from: u64) -> Result<()> {
        self.guarded(|wal| {
            let commit = wal.hard_state().commit;
            if from < wal.first_index() || from > wal.last_index() + 1 || from <= commit {
                return Err(Error::InvalidArgument(format!(
                    "cannot truncate from {from}: the log holds {}..={} and {commit} is committed",
                    wal.first_index(),
                    wal.last_index()
                )));
            }
            while wal.open_segment().first_index() > from {
                let removed = wal.segments.pop_back().expect("more than one segment");
                crate::files::remove_durably(wal.disk.as_ref(), &wal.dir, removed.path())?;
            }
            wal.segments.back_mut().expect("never empty").truncate_from(from)?;
            wal.synced_index = from - 1;
            wal.generation += 1;
            wal.terms.retain(|run| run.first_index < from);
            Ok(())
        })
    }

    /// Discards entries up to `upto` that a snapshot now covers: whole sealed
    /// segments are deleted. If `upto` is beyond the last index the log is
    /// emptied and continues at `upto + 1`.
    pub fn purge_prefix(&mut self, upto: u64) -> Result<()> {
        self.guarded(|wal| {
            if upto > wal.last_index() {
                return wal.reset(upto);
            }
            while wal.segments.len() > 1 && wal.segments[1].first_index() <= upto + 1 {
                let removed = wal.segments.pop_front().expect("more than one segment");
                crate::files::remove_durably(wal.disk.as_ref(), &wal.dir, removed.path())?;
            }
            let first = wal.first_index();
            let stale_runs =
                wal.terms.partition_point(|run| run.first_index <= first).saturating_sub(1);
            wal.terms.drain(..stale_runs);
            Ok(())
        })
    }

    /// Saves the hard state durably. Its term may not go down, its vote may
    /// not change within a term, and its commit index may neither go down nor
    /// pass the last synced index.
    pub fn save_hard_state(&mut self, state: HardState) -> Result<()> {
        self.guarded(|wal| {
            let current = wal.hard_state();
            let vote_changed =
                state.term == current.term && current.vote != 0 && state.vote != current.vote;
            if state.term < current.term || vote_changed || state.commit < current.commit {
                return Err(Error::InvalidArgument(format!(
                    "hard state {state:?} would go back from {current:?}"
                )));
            }
            if state.commit > wal.synced_index {
                return Err(Error::InvalidArgument(format!(
                    "commit index {} is beyond the last synced index {}",
                    state.commit, wal.synced_index
                )));
            }
            wal.hard_state.save(state)
        })
    }

    /// Checks an append before anything is written.
    fn check_append(&self, entries: &[Entry]) -> Result<()> {
        let mut expected_index = self.last_index() + 1;
        let mut last_term = self.terms.last().map_or(0, |run| run.term);
        for entry in entries {
            let problem = if entry.index != expected_index {
                format!("entry index {} does not follow {}", entry.index, expected_index - 1)
            } else if entry.term < last_term {
                format!("entry {} has term {} below {last_term}", entry.index, entry.term)
            } else if entry.payload.len() > RECORD_PAYLOAD_BYTES_MAX {
                format!(
                    "entry {} has {} bytes, over {RECORD_PAYLOAD_BYTES_MAX}",
                    entry.index,
                    entry.payload.len()
                )
            } else {
                expected_index += 1;
                last_term = entry.term;
                continue;
            };
            return Err(Error::InvalidArgument(problem));
        }
        Ok(())
    }

    /// Writes checked entries, starting new segments where the size limit says.
    fn write_entries(&mut self, entries: &[Entry]) -> Result<()> {
        let mut start = 0;
        let mut bytes = self.open_segment().bytes();
        for (position, entry) in entries.iter().enumerate() {
            let record_bytes = (RECORD_HEADER_BYTES + entry.payload.len()) as u64;
            let holds_records = bytes > SEGMENT_HEADER_BYTES as u64;
            if holds_records && bytes + record_bytes > self.options.segment_bytes_max {
                self.write_to_open_segment(&entries[start..position])?;
                self.rotate(entry.index)?;
                start = position;
                bytes = SEGMENT_HEADER_BYTES as u64;
            }
            bytes += record_bytes;
        }
        self.write_to_open_segment(&entries[start..])
    }

    fn write_to_open_segment(&mut self, entries: &[Entry]) -> Result<()> {
        let segment = self.segments.back_mut().expect("never empty");
        segment.append(entries, &mut self.scratch)
    }

    /// Seals the open segment and starts the next one at `first_index`.
    fn rotate(&mut self, first_index: u64) -> Result<()> {
        debug_assert!(!self.open_segment().is_empty(), "only a segment with records is sealed");
        self.open_segment().sync()?;
        self.synced_index = self.last_index();
        let segment = Segment::create(self.disk.as_ref(), &self.dir, first_index)?;
        self.segments.push_back(segment);
        Ok(())
    }

    /// Empties the log so that it continues at `upto + 1` (FORMAT.md: reset).
    fn reset(&mut self, upto: u64) -> Result<()> {
        let first = upto + 1;
        let name = segment_name(first);
        let header = super::format::encode_segment_header(first);
        let disk = Arc::clone(&self.disk);
        let temp = crate::files::write_temp_file(disk.as_ref(), &self.dir, &name, &header)?;
        // Oldest first, so that a crash leaves a suffix of the old log.
        for removed in &self.segments {
            crate::files::remove_durably(disk.as_ref(), &self.dir, removed.path())?;
        }
        crate::files::publish_temp_file(disk.as_ref(), &self.dir, &temp, &name)?;
        let segment = Segment::open_empty(disk.as_ref(), &self.dir, first)?;
        self.segments.clear();
        self.segments.push_back(segment);
        self.terms.clear();
        self.synced_index = upto;
        self.generation += 1;
        Ok(())
    }

    pub(super) fn open_segment(&self) -> &Segment {
        self.segments.back().expect("never empty")
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned(reason.clone())),
            None => Ok(()),
        }
    }

    /// Runs a mutating operation; a fatal error poisons the log.
    fn guarded<T>(&mut self, op: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.check_poisoned()?;
        let result = op(self);
        if let Err(error) = &result {
            if error.is_fatal() {
                self.poisoned = Some(error.to_string());
            }
        }
        result
    }
}
