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
//! makes the report stale, and `finish_sync` ignores it (the generation
//! differs); the log does not wait for a sync in flight before it
//! truncates, so the caller must not report entries durable that a
//! truncation replaced (the node waits for the sync in flight before any
//! `Ready` that is not a leader's background one, hence before any
//! truncation). A failed sync poisons the log, as a failed synchronous one
//! does, once it is reported with `finish_sync`.

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
    /// it; a report from before a truncation or reset changes nothing. A
    /// failed sync poisons the log (every later call fails until it is
    /// reopened) and is returned.
    pub fn finish_sync(&mut self, result: Result<Synced>) -> Result<Synced> {
        let synced = match result {
            Ok(synced) => synced,
            Err(error) => {
                self.poisoned = Some(error.to_string());
                return Err(error);
            }
        };
        if synced.generation == self.generation {
            self.synced_index = self.synced_index.max(synced.index.min(self.last_index()));
        }
        Ok(synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{Disk, SimDisk};
    use crate::wal::{Entry, WalOptions};
    use std::path::Path;

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range
            .map(|index| Entry { index, term, payload: vec![index.to_le_bytes()[0]; 10] })
            .collect()
    }

    fn open(disk: &SimDisk) -> Wal {
        let disk: Arc<dyn Disk> = Arc::new(disk.clone());
        Wal::open(disk, Path::new("/wal"), WalOptions::default()).expect("opens")
    }

    #[test]
    fn a_background_sync_makes_what_came_before_it_durable() {
        let disk = SimDisk::new(7);
        let mut wal = open(&disk);
        assert!(wal.begin_sync().is_none(), "nothing to sync");
        wal.append(&entries(1..=3, 1)).unwrap();
        let pending = wal.begin_sync().expect("three unsynced entries");
        assert_eq!(pending.index(), 3);
        wal.append(&entries(4..=5, 1)).unwrap();
        let synced = std::thread::spawn(move || pending.run()).join().unwrap().unwrap();
        assert_eq!(wal.synced_index(), 0, "not durable until reported");
        wal.finish_sync(Ok(synced)).unwrap();
        assert_eq!(wal.synced_index(), 3, "entries appended after it began are not covered");
        disk.crash();
        let wal = open(&disk);
        assert!(wal.last_index() >= 3, "the synced entries survive a crash");
    }

    #[test]
    fn a_report_from_before_a_truncation_is_ignored() {
        let disk = SimDisk::new(8);
        let mut wal = open(&disk);
        wal.append(&entries(1..=4, 1)).unwrap();
        let pending = wal.begin_sync().expect("unsynced entries");
        wal.truncate_suffix(2).unwrap();
        wal.append(&entries(2..=4, 2)).unwrap();
        let synced = pending.run().unwrap();
        wal.finish_sync(Ok(synced)).unwrap();
        assert_eq!(wal.synced_index(), 1, "the entries it covered were replaced");
    }

    /// A process that crashed between a write and its sync leaves the
    /// entries in the page cache; reopening makes them durable (FORMAT.md,
    /// recovery step 7), since the node counts what it recovered as its own.
    #[test]
    fn what_a_crashed_process_wrote_is_durable_once_reopened() {
        for seed in 0..32 {
            let disk = SimDisk::new(seed);
            let mut wal = open(&disk);
            wal.append(&entries(1..=3, 1)).unwrap();
            drop(wal); // the process dies; the machine does not
            assert_eq!(open(&disk).last_index(), 3, "seed {seed}: the page cache still has them");
            disk.crash(); // now the machine
            assert_eq!(open(&disk).last_index(), 3, "seed {seed}: reopening synced them");
        }
    }

    #[test]
    fn a_failed_background_sync_poisons_the_log() {
        let disk = SimDisk::new(9);
        let mut wal = open(&disk);
        wal.append(&entries(1..=2, 1)).unwrap();
        let pending = wal.begin_sync().expect("unsynced entries");
        disk.fail_at(disk.ops());
        let failed = pending.run();
        assert!(failed.is_err(), "the injected IO error");
        assert!(wal.finish_sync(failed).is_err());
        assert!(wal.append(&entries(3..=3, 1)).is_err(), "a poisoned log refuses appends");
        assert_eq!(wal.synced_index(), 0);
    }
}
