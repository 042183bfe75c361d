//! A sync of the log that runs on another thread while the log takes more
//! appends: [`Wal::begin_sync`], [`PendingSync::run`], then
//! [`Wal::finish_sync`].
//!
//! A node's leader appends its new entries and goes on replicating them
//! while they sync (Raft thesis §10.2.1); only what a finished sync covers
//! counts as durable. The sync is an `fdatasync` of the open segment, which
//! covers every earlier segment too: a segment is synced in full before the
//! next one is created.
//!
//! Caveats: a truncation or reset between `begin_sync` and `finish_sync`
//! makes the report stale (the generation differs): `finish_sync` ignores
//! it and returns `None`, so the caller never reports entries durable that
//! a truncation replaced. The log does not wait for a sync in flight
//! before it truncates (the node waits for it before any `Ready` that is
//! not a leader's background one, hence before any truncation). A failed
//! sync poisons the log, as a failed synchronous one does, once it is
//! reported with `finish_sync`.

use std::path::PathBuf;
use std::sync::Arc;

use super::Wal;
use crate::disk::DiskFile;
use crate::{Error, Result};

/// A sync of everything appended before [`Wal::begin_sync`], to run on any
/// thread.
#[derive(Debug)]
pub struct PendingSync {
    /// The open segment when the sync began.
    file: Arc<dyn DiskFile>,
    /// Its path, for the error.
    path: PathBuf,
    /// What it will make durable.
    done: Synced,
}

/// What a finished [`PendingSync`] made durable: entries up to `index`,
/// unless the log was cut since (hand it to [`Wal::finish_sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// The last entry appended before the sync began.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The log's truncation generation when it began.
    generation: u64,
}

impl PendingSync {
    /// The last entry this sync covers.
    pub fn index(&self) -> u64 {
        self.done.index
    }

    /// Runs the `fdatasync`. An error means the entries may not be durable
    /// and the page cache can no longer be trusted: the caller must stop
    /// using the log (reopening it recovers what is on disk).
    pub fn run(self) -> Result<Synced> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.done)
    }
}

impl Wal {
    /// A sync of everything appended so far, to run on another thread; None
    /// when everything is already durable or the log is poisoned.
    pub fn begin_sync(&self) -> Option<PendingSync> {
        if self.poisoned.is_some() || self.synced_index >= self.last_index() {
            return None;
        }
        let (index, generation) = (self.last_index(), self.generation);
        let term = self.term(index)?;
        let (file, path) = self.open_segment().shared_file();
        Some(PendingSync { file, path, done: Synced { index, term, generation } })
    }

    /// Records what a finished background sync made durable, and returns
    /// it; a report from before a truncation or reset changes nothing and
    /// returns `None`. A failed sync poisons the log (every later call fails
    /// until it is reopened) and is returned.
    pub fn finish_sync(&mut self, result: Result<Synced>) -> Result<Option<Synced>> {
        let synced = match result {
            Ok(synced) => synced,
            Err(error) => {
                self.poisoned = Some(error.to_string());
                return Err(error);
            }
        };
        if synced.generation != self.generation {
            return Ok(None);
        }
        self.synced_index = self.synced_index.max(synced.index.min(self.last_index()));
        Ok(Some(synced))
    }
}
