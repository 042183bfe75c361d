//! The WAL syncer: a leader's `fdatasync` on a thread of its own, so that
//! the event loop goes on stepping acknowledgements and proposals while its
//! own log syncs.
//!
//! Raft lets a leader replicate entries before they are durable in its
//! own log, counting itself towards a quorum only once they are (thesis
//! §10.2.1); the core marks such a `Ready` `background`. The loop writes
//! its entries, hands a [`PendingSync`] to this thread and goes on; when
//! the sync ends the thread wakes the loop, which records it in the WAL
//! (`finish_sync`) and in Raft (`persisted`), and starts the next sync if
//! more was written meanwhile (group commit: one sync in flight at a time).
//!
//! Before, the loop blocked in every sync (0.5-0.7 ms under load on the
//! development VM, most of its wall time), and every acknowledgement or
//! proposal that arrived meanwhile waited for it.
//!
//! Caveats: entries are applied only once synced locally, so a leader's
//! answer still waits for its own disk (the state file must never be ahead
//! of the log it recovers from). A `Ready` that is not `background` (a
//! follower's, or one with a new term or vote) first waits for the sync in
//! flight, then syncs itself. A failed sync stops the node, as a failed
//! synchronous one does.

use std::sync::mpsc::{sync_channel, Receiver, RecvError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rdb_storage::wal::{PendingSync, Synced, Wal};

use super::error::{Error, Result};
use super::metrics::Metrics;
use super::Input;

/// The sync thread and the channels to it.
pub(super) struct WalSyncer {
    /// Syncs to run; `None` once stopped.
    requests: Option<SyncSender<PendingSync>>,
    /// Finished syncs, in order.
    done: Receiver<rdb_storage::Result<Synced>>,
    /// Whether a sync is in flight.
    in_flight: bool,
    /// The thread, joined on stop.
    thread: Option<JoinHandle<()>>,
}

impl WalSyncer {
    /// Starts the thread; it wakes the loop through `wake` after each sync.
    pub(super) fn start(id: u64, wake: SyncSender<Input>, metrics: Arc<Metrics>) -> Result<Self> {
        let (requests, jobs) = sync_channel::<PendingSync>(1);
        let (report, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("rdb-wal-sync-{id}"))
            .spawn(move || {
                for pending in jobs {
                    let started = Instant::now();
                    let result = pending.run();
                    metrics.wal_sync(started.elapsed());
                    if report.send(result).is_err() {
                        return;
                    }
                    // Full means the loop is awake with inputs to take; it
                    // polls `done` every round.
                    let _ = wake.try_send(Input::WalSynced);
                }
            })
            .map_err(|e| Error::Stopped(format!("cannot start the WAL sync thread: {e}")))?;
        Ok(WalSyncer { requests: Some(requests), done, in_flight: false, thread: Some(thread) })
    }

    /// Starts a sync of everything `wal` holds unsynced, unless one is in
    /// flight (the next starts when it ends) or there is nothing to sync.
    pub(super) fn start_sync(&mut self, wal: &Wal) -> Result<()> {
        if self.in_flight {
            return Ok(());
        }
        let Some(pending) = wal.begin_sync() else { return Ok(()) };
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        requests.send(pending).map_err(|_| stopped())?;
        self.in_flight = true;
        Ok(())
    }

    /// The sync that ended since the last call, if any, recorded in `wal`
    /// (`Wal::finish_sync`: a failed one poisons it and is returned, a
    /// stale one is `None`).
    pub(super) fn poll(&mut self, wal: &mut Wal) -> Result<Option<Synced>> {
        if !self.in_flight {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(result) => self.finish(wal, result),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(stopped()),
        }
    }

    /// Waits for the sync in flight, if any, and records it in `wal`.
    pub(super) fn wait(&mut self, wal: &mut Wal) -> Result<()> {
        if !self.in_flight {
            return Ok(());
        }
        match self.done.recv() {
            Ok(result) => self.finish(wal, result).map(drop),
            Err(RecvError) => Err(stopped()),
        }
    }

    fn finish(
        &mut self,
        wal: &mut Wal,
        result: rdb_storage::Result<Synced>,
    ) -> Result<Option<Synced>> {
        self.in_flight = false;
        wal.finish_sync(result).map_err(Error::storage("WAL sync"))
    }

    /// Ends the thread after the sync in flight.
    pub(super) fn stop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopped() -> Error {
    Error::Stopped("the WAL sync thread stopped".into())
}
