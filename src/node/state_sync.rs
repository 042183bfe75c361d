//! The state-file syncer: makes the apply thread's deferred commits durable
//! on a thread of its own, so that applying goes on while the disk syncs.
//!
//! Every `STATE_SYNC_INTERVAL` (200 ms; the apply thread's constant) the
//! apply thread hands the syncer its state file; the syncer runs
//! [`Db::sync`], which holds the writer only to write the free list and lets
//! it go for the data and meta syncs (storage/FORMAT.md, "Commit
//! protocol"), then publishes the applied index the state file is now
//! durable at (the WAL may be compacted below it). Before, the apply thread
//! synced itself and stalled for each sync: about 2 ms every 200 ms under
//! load, up to 20-50 ms on a busy disk, paid by every write waiting to be
//! applied meanwhile.
//!
//! Caveats: one sync at a time; a request while one runs is dropped (the
//! next interval asks again). A failed sync poisons the state file's writer
//! and is reported to the apply thread, which stops the node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdb_storage::btree::Db;

use super::error::{Error, Result};
use super::metrics::Metrics;
use super::state_file::decode_meta;

/// The syncer thread and the channels to it.
pub(super) struct Syncer {
    /// State files to make durable; `None` once stopped.
    requests: Option<SyncSender<Db>>,
    /// The first failure, if any.
    failed: Receiver<rdb_storage::Error>,
    /// The thread, joined on stop.
    thread: Option<JoinHandle<()>>,
    /// Set while the syncer waits for the writer (see [`Syncer::let_in`]).
    wants_writer: Arc<AtomicBool>,
}

/// How long the apply thread waits, at most, for the syncer to take the
/// writer (it holds it only to write the free list: well under this).
const HANDOFF_WAIT_MAX: Duration = Duration::from_millis(50);
/// How often it looks meanwhile.
const HANDOFF_POLL: Duration = Duration::from_micros(50);

impl Syncer {
    /// Starts the thread; it publishes each durable applied index in
    /// `durable` (only ever raising it).
    pub(super) fn start(id: u64, durable: Arc<AtomicU64>, metrics: Arc<Metrics>) -> Result<Self> {
        let (requests, jobs) = sync_channel::<Db>(1);
        let (report, failed) = sync_channel(1);
        let wants_writer = Arc::new(AtomicBool::new(false));
        let wants = wants_writer.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rdb-sync-{id}"))
            .spawn(move || {
                for db in jobs {
                    let started = Instant::now();
                    // The first half needs the writer, which a busy apply
                    // thread holds almost always: it waits while this is set.
                    wants.store(true, Ordering::Release);
                    let pending = db.begin_sync();
                    wants.store(false, Ordering::Release);
                    match pending.and_then(|pending| pending.finish()) {
                        Ok(user) => {
                            metrics.state_sync(started.elapsed());
                            durable.fetch_max(decode_meta(user).0, Ordering::AcqRel);
                        }
                        Err(error) => {
                            let _ = report.try_send(error);
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::Stopped(format!("cannot start the sync thread: {e}")))?;
        Ok(Syncer { requests: Some(requests), failed, thread: Some(thread), wants_writer })
    }

    /// Waits, at most [`HANDOFF_WAIT_MAX`], while the syncer waits for the
    /// state file's writer. The apply thread calls it before beginning a
    /// transaction: it holds the writer for up to a commit interval at a
    /// time and takes it again microseconds after each commit, so the
    /// syncer, woken on another core, could otherwise lose every race
    /// (`std::sync::Mutex` is not fair) and nothing would become durable.
    pub(super) fn let_in(&self) {
        let deadline = Instant::now() + HANDOFF_WAIT_MAX;
        while self.wants_writer.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(HANDOFF_POLL);
        }
    }

    /// Asks for `db` to be made durable; false if a sync is still running
    /// (ask again later).
    pub(super) fn request(&self, db: &Db) -> bool {
        let Some(requests) = &self.requests else { return false };
        match requests.try_send(db.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// The failure of an earlier sync, if one failed.
    pub(super) fn check(&self) -> Result<()> {
        match self.failed.try_recv() {
            Ok(source) => Err(Error::Storage { what: "state file sync", source }),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Ok(()),
        }
    }

    /// Waits for the sync in flight, if any, and ends the thread; reports
    /// its failure.
    pub(super) fn stop(&mut self) -> Result<()> {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            thread.join().map_err(|_| Error::Stopped("the sync thread panicked".into()))?;
        }
        self.check()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
