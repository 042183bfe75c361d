//! The event loop's side of snapshots and log compaction: when to compact
//! the WAL, when to write a snapshot file, streaming one to a follower that
//! needs it, and installing one from the leader.
//!
//! The state file is the snapshot Raft's log compaction needs (Ongaro's
//! thesis §5.2, snapshotting disk-based state machines). The apply thread's
//! syncer makes it durable every few hundred milliseconds and publishes the
//! applied index it is durable at; once enough entries
//! have been applied, or the WAL has grown enough, since the last
//! compaction, the WAL is compacted up to that index minus a margin that
//! spares slightly slow followers a transfer. This costs nothing that grows
//! with the data, as etcd's compaction beside its bbolt file does.
//!
//! A snapshot *file* (the state file's compact export) is written only when
//! it is needed: a follower needs entries below the WAL's start and no file
//! newer than that start exists, or an operator asks (`POST
//! /admin/snapshot`). It is written from the apply thread's read
//! transaction, on a thread of its own that first waits for that state to
//! be durable, so writes keep flowing. A follower
//! that needs compacted entries is sent the newest snapshot file in chunks;
//! only when it has arrived whole and verified does the follower's Raft see
//! the `Snapshot` message, and its `Ready` then has the loop replace the
//! state file (on the apply thread) and restart the WAL after the snapshot.
//!
//! Caveats: writing a snapshot file reads the whole state (about 1.3 GB at
//! 5 million keys of 100 bytes) and holds a read transaction meanwhile, so
//! pages freed by writes in that time are reused only after it ends; that
//! is why it is not done periodically. A node whose state file is damaged
//! and has no snapshot file is restarted empty and sent one by the leader.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use futures::channel::oneshot;

use super::applier::ApplyJob;
use super::error::{Error, Result};
use super::metrics::Metrics;
use super::snapshot_dir::{SnapshotDir, SnapshotFile};
use super::wal_store::WalStore;
use super::{Input, NodeConfig, Transport};
use crate::raft::{Body, Index, Message, NodeId, Position, Raft};

/// Snapshot bookkeeping of the event loop.
#[derive(Debug)]
pub(super) struct SnapshotState {
    /// Compact the WAL after this many entries applied since the last time.
    entries: u64,
    /// ... or after the WAL grew this many bytes since the last time.
    wal_bytes: u64,
    /// Entries kept below the compaction point, for slightly slow followers.
    margin: u64,
    /// The applied index of the state file (the apply thread's).
    applied: Arc<AtomicU64>,
    /// The applied index the state file is durable at (the apply thread's).
    durable: Arc<AtomicU64>,
    /// Work for the apply thread (snapshots to write, to install).
    apply: SyncSender<ApplyJob>,
    /// Counts snapshots sent.
    metrics: Arc<Metrics>,
    /// Where snapshots live.
    dir: SnapshotDir,
    /// The newest snapshot on disk.
    newest: Option<SnapshotFile>,
    /// The durable applied index at the last compaction (or at start).
    last_index: Index,
    /// The WAL's size after the last compaction (or at start).
    last_wal_bytes: u64,
    /// A snapshot is being written.
    running: bool,
    /// Admin requests waiting for the snapshot being written.
    waiters: Vec<oneshot::Sender<Result<SnapshotFile, Arc<Error>>>>,
    /// A verified snapshot from the leader, waiting for Raft to install it.
    received: Option<SnapshotFile>,
    /// Followers a snapshot is being streamed to (one transfer each).
    sending: BTreeSet<NodeId>,
}

impl SnapshotState {
    /// Bookkeeping for a node that starts with `newest` in `dir` and its
    /// state file applied up to `applied`, durable up to `durable` (both
    /// published by the apply thread, fed by `apply`).
    pub(super) fn new(
        config: &NodeConfig,
        (dir, newest): (SnapshotDir, Option<SnapshotFile>),
        (applied, durable): (Arc<AtomicU64>, Arc<AtomicU64>),
        apply: SyncSender<ApplyJob>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let applied_index = applied.load(Ordering::Acquire);
        SnapshotState {
            applied,
            apply,
            metrics,
            entries: config.snapshot_entries.max(1),
            wal_bytes: config.snapshot_wal_bytes.max(1),
            margin: config.compaction_margin_entries,
            durable,
            dir,
            last_index: newest
                .as_ref()
                .map_or(applied_index, |(_, h)| h.meta.index.max(applied_index)),
            newest,
            last_wal_bytes: 0,
            running: false,
            waiters: Vec::new(),
            received: None,
            sending: BTreeSet::new(),
        }
    }

    /// The snapshot directory.
    pub(super) fn dir(&self) -> &SnapshotDir {
        &self.dir
    }

    /// The newest snapshot's index (0: none).
    pub(super) fn newest_index(&self) -> Index {
        self.newest.as_ref().map_or(0, |(_, h)| h.meta.index)
    }
}

impl SnapshotState {
    /// Compacts the WAL below the durable state when a trigger is reached,
    /// and asks the apply thread for a snapshot file when a follower needs
    /// one that does not exist.
    pub(super) fn maybe_snapshot(&mut self, raft: &mut Raft<WalStore>) -> Result<()> {
        // A follower needs entries no longer in the log and there is no
        // snapshot file at or past the log's start to send it.
        if !self.running && raft.log().store().snapshot_wanted.take() {
            self.request_snapshot()?;
        }
        let state = &*self;
        let applied = self.applied.load(Ordering::Acquire);
        let wal_bytes = raft.log().store().wal.bytes();
        let by_entries = applied >= state.last_index + state.entries;
        let by_bytes =
            applied > state.last_index && wal_bytes >= state.last_wal_bytes + state.wal_bytes;
        let durable = state.durable.load(Ordering::Acquire);
        // Not while a snapshot is written or sent: compacting past its
        // index would make it useless to the follower waiting for it (Raft
        // would ask for another, and another, under steady load).
        let busy = state.running || !state.sending.is_empty();
        if (by_entries || by_bytes) && durable > state.last_index && !busy {
            self.compact(raft, durable)?;
        }
        Ok(())
    }

    /// Discards the WAL up to `durable` (an index the state file is durable
    /// at, or a snapshot file's) minus the margin.
    fn compact(&mut self, raft: &mut Raft<WalStore>, durable: Index) -> Result<()> {
        let store = raft.store_mut();
        store
            .compact(durable.saturating_sub(self.margin))
            .map_err(Error::storage("WAL compaction"))?;
        self.last_index = self.last_index.max(durable);
        self.last_wal_bytes = store.wal.bytes();
        Ok(())
    }

    fn request_snapshot(&mut self) -> Result<()> {
        self.apply.send(ApplyJob::Snapshot).map_err(|_| apply_stopped())?;
        self.running = true;
        Ok(())
    }

    /// Handles the snapshot inputs of [`Input`].
    pub(super) fn handle_input(&mut self, raft: &mut Raft<WalStore>, input: Input) -> Result<()> {
        match input {
            Input::TakeSnapshot { done } => {
                self.waiters.push(done);
                if !self.running {
                    self.request_snapshot()?;
                }
            }
            Input::SnapshotTaken(result) => self.snapshot_taken(raft, result)?,
            Input::SnapshotReceived { path, header, message } => {
                self.received = Some((path, header));
                if let Err(error) = raft.step(message) {
                    log::warn!("snapshot message refused: {error}");
                }
            }
            Input::SnapshotSent { to, ok, bytes } => {
                self.sending.remove(&to);
                if ok {
                    self.metrics.snapshot_sent(bytes);
                } else {
                    raft.report_snapshot_failed(to);
                }
            }
            other => log::error!("not a snapshot input: {other:?}"),
        }
        Ok(())
    }

    /// A snapshot is on disk: remember it, compact the WAL below it.
    fn snapshot_taken(
        &mut self,
        raft: &mut Raft<WalStore>,
        result: Result<SnapshotFile, Arc<Error>>,
    ) -> Result<()> {
        self.running = false;
        let waiters = std::mem::take(&mut self.waiters);
        let taken = match result {
            Ok(taken) => taken,
            Err(why) => {
                log::error!("snapshot failed: {why}");
                waiters.into_iter().for_each(|w| drop(w.send(Err(why.clone()))));
                return Ok(());
            }
        };
        let meta = taken.1.meta;
        raft.store_mut().newest = Some((meta, taken.1.membership.clone()));
        // Asked for again while it was written; this one reaches the floor.
        raft.store_mut().snapshot_wanted.set(false);
        // The snapshot thread waited for the state file to be durable at
        // `meta` before writing the file; never compact past what it is
        // durable at, whatever that thread did.
        let durable = self.durable.load(Ordering::Acquire);
        self.compact(raft, meta.index.min(durable))?;
        self.newest = Some(taken.clone());
        waiters.into_iter().for_each(|w| drop(w.send(Ok(taken.clone()))));
        Ok(())
    }

    /// Takes the `Snapshot` messages out of `messages` and streams the
    /// newest snapshot file to each such follower instead.
    pub(super) fn route_snapshots(
        &mut self,
        raft: &mut Raft<WalStore>,
        messages: Vec<Message>,
        transport: &mut dyn Transport,
    ) -> Vec<Message> {
        if !messages.iter().any(|m| matches!(m.body, Body::Snapshot { .. })) {
            return messages; // the common case: no copy on the hot path
        }
        let (offers, others): (Vec<Message>, Vec<Message>) =
            messages.into_iter().partition(|m| matches!(m.body, Body::Snapshot { .. }));
        for offer in offers {
            let Body::Snapshot { meta, .. } = offer.body else { continue };
            let file = self.newest.as_ref().filter(|(_, h)| h.meta == meta);
            match file {
                Some((path, _)) if self.sending.insert(offer.to) => {
                    transport.send_snapshot(offer, path.clone());
                }
                Some(_) => {} // a transfer to it is under way
                None => raft.report_snapshot_failed(offer.to),
            }
        }
        others
    }

    /// Installs the leader's snapshot `meta` (Raft's `Ready` asks): the
    /// apply thread replaces the state file, then the WAL restarts after it.
    pub(super) fn install_snapshot(
        &mut self,
        raft: &mut Raft<WalStore>,
        meta: Position,
    ) -> Result<()> {
        let (path, header) =
            self.received.take().filter(|(_, h)| h.meta == meta).ok_or_else(|| {
                Error::Stopped(format!(
                    "asked to install snapshot {meta:?}, which was not received"
                ))
            })?;
        let (done, outcome) = std::sync::mpsc::sync_channel(1);
        self.apply
            .send(ApplyJob::Install { path: path.clone(), done })
            .map_err(|_| apply_stopped())?;
        // The apply thread reports its own failure when it stops.
        outcome.recv().map_err(|_| apply_stopped())?.map_err(|_| apply_stopped())?;
        let store = raft.store_mut();
        store
            .restore(meta, header.membership.clone())
            .map_err(Error::storage("WAL after snapshot install"))?;
        self.last_index = meta.index;
        self.last_wal_bytes = store.wal.bytes();
        self.newest = Some((path, header));
        self.dir.prune(super::applier::SNAPSHOTS_KEPT)
    }
}

fn apply_stopped() -> Error {
    Error::Stopped("the apply thread stopped".into())
}
