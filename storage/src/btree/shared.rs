//! What every handle and transaction of one open state file shares: the
//! file, the published snapshot with its reader registry, and the writer's
//! state, each behind its own lock. `Db`, `ReadTxn` and `WriteTxn` all build
//! on this; it knows none of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::alloc::FreePages;
use super::flush::Unhinted;
use super::meta::Meta;
use super::page::PAGE_BYTES;
use crate::disk::{DiskFile, Mapping};
use crate::{Error, Result};

/// A committed snapshot: its meta and a mapping that covers its pages.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The snapshot's root.
    pub(crate) meta: Meta,
    /// Covers at least `meta.page_count` pages.
    pub(crate) map: Arc<Mapping>,
}

/// What readers see: the newest commit and who is still reading what.
#[derive(Debug)]
pub(crate) struct Published {
    /// The newest commit (durable or deferred).
    pub(crate) snapshot: Snapshot,
    /// Open readers by the txid of their snapshot.
    pub(crate) readers: BTreeMap<u64, usize>,
}

/// What only the writer touches.
#[derive(Debug)]
pub(crate) struct WriterState {
    /// Free space as of the newest commit.
    pub(crate) free: FreePages,
    /// The file's length in pages (at least the high-water mark).
    pub(crate) file_pages: u64,
    /// Why writing is refused, after an IO error.
    pub(crate) poisoned: Option<String>,
    /// Writes not yet covered by a writeback hint (none after a sync).
    pub(crate) unhinted: Unhinted,
}

/// The newest durable meta. Its lock is taken after the writer's, never
/// before, and is held by whoever writes a meta for the whole of the
/// meta's syncs: [`Db::sync`](super::Db::sync) lets the writer go during
/// them (deferred commits go on meanwhile) but keeps this, so that a second
/// durable meta waits for the first to land.
#[derive(Debug)]
pub(crate) struct Durable {
    /// The newest meta that is on disk and synced.
    pub(crate) meta: Meta,
    /// The meta slot (0 or 1) holding `meta`.
    pub(crate) slot: u64,
}

/// How much of the state file holds data, as of the newest commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    /// The file's length, in bytes.
    pub file_bytes: u64,
    /// Pages below the high-water mark (used or free).
    pub page_count: u64,
    /// Of those, pages holding no live data (reusable).
    pub free_pages: u64,
}

impl Space {
    /// Bytes of pages that hold live data: what the data needs, whatever
    /// the file's length.
    pub fn used_bytes(&self) -> u64 {
        self.page_count.saturating_sub(self.free_pages) * PAGE_BYTES as u64
    }
}

/// Everything behind a [`Db`](super::Db).
#[derive(Debug)]
pub(crate) struct Shared {
    /// The state file, for error messages.
    pub(crate) path: PathBuf,
    /// The open file.
    pub(crate) file: Box<dyn DiskFile>,
    /// Published snapshot and reader registry, under one lock so that a
    /// reader's snapshot and its registration are one step.
    pub(crate) published: Mutex<Published>,
    /// Held for the whole life of a write transaction.
    pub(crate) writer: Mutex<WriterState>,
    /// The newest durable meta (see [`Durable`] for its lock's order).
    pub(crate) durable: Mutex<Durable>,
    /// `durable`'s txid, read without its lock: the writer frees pages by
    /// it while a meta's syncs run (FORMAT.md, "Free-page reuse").
    pub(crate) durable_txid: AtomicU64,
    /// Published with each commit, so that asking never waits for a writer.
    pub(crate) space: Mutex<Space>,
}

impl Shared {
    /// Records the space of `writer` as of its newest commit.
    pub(crate) fn publish_space(&self, writer: &WriterState) {
        *lock(&self.space) = Space {
            file_bytes: writer.file_pages * PAGE_BYTES as u64,
            page_count: writer.free.page_count(),
            free_pages: writer.free.free_count(),
        };
    }

    /// Syncs the data, writes `meta` into the slot not holding the newest
    /// durable meta, and syncs again (FORMAT.md, "Commit protocol", step
    /// 3). Needs no writer: the runs `meta` reaches are written, and none of
    /// them is written again until a meta newer than `meta` is durable.
    pub(crate) fn write_durable_meta(&self, durable: &mut Durable, meta: Meta) -> Result<()> {
        assert!(meta.txid > durable.meta.txid, "a durable meta only moves forward");
        let io = |e| Error::io(&self.path, e);
        self.file.sync_data().map_err(io)?;
        let slot = 1 - durable.slot;
        self.file.write_all_at(&meta.encode(), slot * PAGE_BYTES as u64).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        *durable = Durable { meta, slot };
        self.durable_txid.store(meta.txid, Ordering::Release);
        Ok(())
    }
}

/// Locks a mutex; a panicked holder left nothing half-done that matters here,
/// because every change is published in one assignment.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
