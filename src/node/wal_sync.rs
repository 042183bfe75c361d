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

use rdb_storage::wal::{PendingSync, Synced};

use super::error::{Error, Result};
use super::metrics::Metrics;
use super::wal_store::WalStore;
use super::Input;
use crate::raft::{Position, Raft};

/// The sync thread and the channels to it.
pub(super) struct WalSyncer {
    /// Syncs to run; `None` once stopped.
    requests: Option<SyncSender<PendingSync>>,
    /// Finished syncs, in order.
    done: Receiver<rdb_storage::Result<Synced>>,
    /// The last entry the sync in flight covers, if one runs.
    in_flight: Option<Position>,
    /// The thread, joined on stop.
    thread: Option<JoinHandle<()>>,
}

/// A finished sync: what the WAL and Raft record.
pub(super) struct Finished {
    /// For `Wal::finish_sync` (which poisons the WAL if it failed).
    pub(super) result: rdb_storage::Result<Synced>,
    /// For `Raft::persisted`, once the WAL took it.
    pub(super) position: Position,
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
        Ok(WalSyncer { requests: Some(requests), done, in_flight: None, thread: Some(thread) })
    }

    /// Starts a sync of everything the log holds unsynced, unless one is in
    /// flight (the next starts when it ends) or there is nothing to sync.
    pub(super) fn start_sync(&mut self, raft: &Raft<WalStore>) -> Result<()> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let wal = &raft.log().store().wal;
        let Some(pending) = wal.begin_sync() else { return Ok(()) };
        let index = pending.index();
        let term = wal
            .term(index)
            .ok_or_else(|| Error::Stopped(format!("the WAL lost entry {index} before its sync")))?;
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        requests.send(pending).map_err(|_| stopped())?;
        self.in_flight = Some(Position { index, term });
        Ok(())
    }

    /// The sync that ended since the last call, if any.
    pub(super) fn poll(&mut self) -> Result<Option<Finished>> {
        if self.in_flight.is_none() {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(result) => Ok(Some(self.finished(result))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(stopped()),
        }
    }

    /// Waits for the sync in flight, if any.
    pub(super) fn wait(&mut self) -> Result<Option<Finished>> {
        if self.in_flight.is_none() {
            return Ok(None);
        }
        match self.done.recv() {
            Ok(result) => Ok(Some(self.finished(result))),
            Err(RecvError) => Err(stopped()),
        }
    }

    fn finished(&mut self, result: rdb_storage::Result<Synced>) -> Finished {
        let position = self.in_flight.take().expect("checked by the caller");
        Finished { result, position }
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
