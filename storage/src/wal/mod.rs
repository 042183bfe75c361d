//! The segmented write-ahead log.
//!
//! Raft needs two things from disk: an append-only log of entries whose
//! indexes never skip, and a small hard state (term, vote, commit) that must
//! never go backwards. Both must survive a crash at any instant, and the log
//! must be fast to append in batches, because every client write waits for
//! it.
//!
//! The log is a directory of segment files, each named by the index of its
//! first record. Records carry their own length, index, term and a CRC-32 over
//! all of it, so a reader can always tell a whole record from a torn one.
//! Appends go to the last ("open") segment and are not synced; [`Wal::sync`]
//! makes everything appended so far durable with one `fdatasync`, which is
//! how a node turns many concurrent proposals into one disk flush. When the
//! open segment passes its size limit it is synced, sealed for good, and a
//! new one starts. Discarding the prefix after a snapshot is then a matter of
//! deleting whole files, and a Raft conflict cuts a suffix.
//!
//! Recovery relies on that shape: only the open segment can hold a torn
//! write, so a bad record there ends the log, while a bad record in a sealed
//! segment, or a gap between segments, is corruption that stops the node with
//! the file and the byte offset. The hard state lives beside the segments in
//! two alternating checksummed slots. `storage/FORMAT.md` has the byte
//! layouts and the crash protocol of every operation.
//!
//! An IO error while writing poisons the [`Wal`]: after a failed `fsync` the
//! kernel's page cache can no longer be trusted to describe the disk, so every
//! later call fails until the log is reopened and recovery reads the truth.
//! A sync may also run on another thread ([`PendingSync`]); its failure
//! poisons the log when it is reported back ([`Wal::finish_sync`]).

mod background_sync;
mod format;
mod hard_state;
mod inspect;
mod log;
mod recovery;
mod segment;

pub use background_sync::{PendingSync, Synced};
pub use format::RECORD_PAYLOAD_BYTES_MAX;
pub use hard_state::HardState;
pub use inspect::{scan, RecordRef, ScanReport, SegmentReport};
pub use log::{Wal, WalOptions, SEGMENT_BYTES_MAX_LIMIT, SEGMENT_BYTES_MIN};

/// One log entry as stored in the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, starting at 1, without gaps.
    pub index: u64,
    /// The leader term that created the entry; never decreases along the log.
    pub term: u64,
    /// The entry's contents, opaque to the WAL; at most
    /// [`RECORD_PAYLOAD_BYTES_MAX`] bytes.
    pub payload: Vec<u8>,
}

/// A run of consecutive entries with the same term, from `first_index` to the
/// next run (or the end of the log). Terms change rarely, so the log keeps
/// these instead of a term per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TermRun {
    /// The first index of the run.
    pub(crate) first_index: u64,
    /// The term of every entry in the run.
    pub(crate) term: u64,
}
