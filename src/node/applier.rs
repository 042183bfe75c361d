//! The apply thread: committed entries onto the state file, off the Raft
//! loop, so that consensus (WAL fsyncs, messages) never waits for B-tree
//! work and a slow state-file sync never stalls heartbeats.
//!
//! The loop hands over batches of committed entries, in log order, each with
//! the client waiting for it (if any), and the linearizable reads it has
//! released. Entries are applied into a write transaction that stays open
//! while writes keep coming, for at most [`COMMIT_INTERVAL`]: each write is
//! answered as soon as it is applied (its entry is committed in Raft, so
//! durable on a quorum's WAL; the state file only catches up), and fewer,
//! larger commits do the per-commit work (root, catalog, free pages, meta)
//! less often without holding the answers back.
//! What a client was told must be visible to its next read, so a read is
//! answered only from a committed state covering it: a released
//! linearizable read commits the open transaction at once, and a
//! serializable read that would miss an answered write asks for the same
//! ([`StateCell::answered`]). Commits are deferred and made durable every
//! [`STATE_SYNC_INTERVAL`] by the syncer's thread ([`super::state_sync`]),
//! while this one goes on applying: the WAL already holds every applied
//! entry, and a restart replays it past the state file's applied index.
//!
//! Caveats: `/status`'s applied index and watchers' events follow commits,
//! so they trail the answered writes by about [`COMMIT_INTERVAL`] (plus
//! the round being applied and the commit itself); a watch set up on this
//! node waits for the commit, so that it never starts before a write its
//! client was told of. A serializable read that waits for a commit goes
//! through the event loop, and gets 503 when the loop's inbox is full.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdb_storage::btree::{Db, Durability, WriteTxn};

use super::error::{Error, Result};
use super::metrics::Metrics;
use super::snapshot_dir::SnapshotDir;
use super::state_cell::StateCell;
use super::state_file::{self, decode_meta, encode_meta, STATE_FILE_NAME};
use super::state_sync::Syncer;
use super::Input;
use crate::kv::{self, Command, Reply};
use crate::raft::{Entry, EntryKind, Membership, Position, RaftError, Term};

/// Snapshots kept on disk; older ones are removed.
pub const SNAPSHOTS_KEPT: usize = 2;

/// How often deferred state-file commits are made durable. Pages freed by
/// commits are reused only after a durable one, so this also bounds how
/// much free space waits.
pub const STATE_SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// How long a write transaction stays open while writes keep coming; a
/// read, a snapshot, an install or a stop commits it at once. Measured with
/// `benches/cluster/ab-bench.sh` (random new keys, alternating builds):
/// 5 ms took cluster CPU per put from 90-92 µs (a commit per ~0.5 ms
/// batch, writes answered after it) to 83-84 at the same p99 (~7.5 ms);
/// 10 ms gave 79-80 µs at 8.0 ms, 20 ms 76-77 µs at 8.6-9.1 ms, since a
/// longer transaction's commit holds up the answers queued behind it.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(5);
/// Jobs taken from the queue in one round, at most.
const JOBS_PER_ROUND_MAX: usize = 1_024;
/// How long a snapshot waits, at most, for the syncer to make the state it
/// exports durable (asked every [`STATE_SYNC_INTERVAL`]); past it the
/// snapshot fails as busy and nothing is written.
const SNAPSHOT_DURABLE_WAIT_MAX: Duration = Duration::from_secs(30);
/// How often the snapshot thread looks meanwhile.
const SNAPSHOT_DURABLE_POLL: Duration = Duration::from_millis(5);

/// A client waiting for its proposal to be applied.
#[derive(Debug)]
pub(super) struct Pending {
    /// The term it was proposed in: an entry of another term at its index
    /// means it was overwritten and never applied.
    pub(super) term: Term,
    /// Where its result goes.
    pub(super) done: oneshot::Sender<Result<Reply, RaftError>>,
}

/// Work for the apply thread, in log order.
#[derive(Debug)]
pub(super) enum ApplyJob {
    /// Committed entries, each with its waiting client.
    Entries(Vec<(Entry, Option<Pending>)>),
    /// Reads whose read index is covered by the entries sent before.
    Reads(Vec<oneshot::Sender<Result<(), RaftError>>>),
    /// Take a snapshot of the state as of the entries sent before.
    Snapshot,
    /// Replace the state file with the snapshot at `path` (from the
    /// leader); `done` answers once the new state file is durable and open.
    Install {
        /// The verified snapshot file.
        path: PathBuf,
        /// The outcome.
        done: SyncSender<Result<(), Arc<Error>>>,
    },
    /// Sync and stop.
    Stop,
}

/// The apply thread's state.
pub(super) struct Applier {
    /// The node's id, for thread names.
    pub(super) id: u64,
    /// The state file.
    pub(super) db: Db,
    /// Where readers find the state file (swapped on install).
    pub(super) cell: StateCell,
    /// The directory of the state file.
    pub(super) state_dir: PathBuf,
    /// Where snapshots are written.
    pub(super) snapshots: SnapshotDir,
    /// The event loop's inbox, told when a snapshot is written.
    pub(super) inbox: SyncSender<Input>,
    /// Counts snapshots.
    pub(super) metrics: Arc<Metrics>,
    /// The last applied index and its term.
    pub(super) last_applied: Position,
    /// Jobs from the Raft loop.
    pub(super) jobs: Receiver<ApplyJob>,
    /// The last index applied, published for status and health.
    pub(super) applied: Arc<AtomicU64>,
    /// The applied index the state file is durable at (a crash keeps it),
    /// published after each sync (by the syncer, or by this thread): the
    /// WAL may be compacted below it. It only grows.
    pub(super) durable: Arc<AtomicU64>,
    /// Commits since the last sync or sync request.
    pub(super) dirty: bool,
    /// When the state file was last synced or handed to the syncer.
    pub(super) last_sync: Instant,
    /// The cluster version the state file records, published for the
    /// status (kept in step with each apply and install).
    pub(super) cluster_version: Arc<AtomicU64>,
    /// Where applied changes are recorded for watchers.
    pub(super) history: Arc<super::history::History>,
}

impl Applier {
    /// Runs until told to stop or until the state file fails; on stop,
    /// everything applied is durable before it returns.
    pub(super) fn run(mut self) -> Result<()> {
        let mut syncer = Syncer::start(self.id, self.durable.clone(), self.metrics.clone())?;
        let applied = self.apply_until_stopped(&syncer);
        let synced = syncer.stop();
        applied?;
        synced?;
        self.sync()
    }

    fn apply_until_stopped(&mut self, syncer: &Syncer) -> Result<()> {
        // An install replaces `self.db`; the rounds go on with the new one.
        loop {
            let db = self.db.clone();
            if self.rounds(&db, syncer)? == Ended::Stopped {
                return Ok(());
            }
        }
    }

    /// Runs rounds on `db` until told to stop or until a snapshot replaced
    /// the state file; no transaction is left open either way.
    fn rounds(&mut self, db: &Db, syncer: &Syncer) -> Result<Ended> {
        let mut open: Option<Open<'_>> = None;
        loop {
            syncer.check()?;
            let wait = open.as_ref().map_or(STATE_SYNC_INTERVAL, |open| {
                COMMIT_INTERVAL.saturating_sub(open.began.elapsed())
            });
            let first = match self.jobs.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(ApplyJob::Stop),
            };
            let mut jobs: Vec<ApplyJob> = first.into_iter().collect();
            while jobs.len() < JOBS_PER_ROUND_MAX {
                let Ok(job) = self.jobs.try_recv() else { break };
                jobs.push(job);
            }
            if open.is_none() {
                syncer.let_in();
            }
            if let Some(ended) = self.round(db, &mut open, jobs)? {
                return Ok(ended);
            }
            // (The syncer needs the writer: not while a transaction is open.)
            if open.is_none() && self.last_sync.elapsed() >= STATE_SYNC_INTERVAL {
                self.request_sync(syncer);
            }
        }
    }

    /// Hands the state file to the syncer if commits wait to be made
    /// durable; if it is still busy, the next round asks again.
    fn request_sync(&mut self, syncer: &Syncer) {
        if self.dirty && !syncer.request(&self.db) {
            return;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }

    /// Applies the entries in `jobs` into the open transaction (beginning
    /// one if none is open), answering each write at once; commits when the
    /// transaction is [`COMMIT_INTERVAL`] old or a job needs everything
    /// applied visible (reads, snapshot, install, stop); then answers the
    /// reads and takes or installs a snapshot.
    fn round<'db>(
        &mut self,
        db: &'db Db,
        open: &mut Option<Open<'db>>,
        jobs: Vec<ApplyJob>,
    ) -> Result<Option<Ended>> {
        let (mut reads, mut snapshot, mut install, mut stop) = (Vec::new(), false, None, false);
        for job in jobs {
            match job {
                ApplyJob::Entries(entries) => self.apply_entries(db, open, entries)?,
                ApplyJob::Reads(released) => reads.extend(released),
                ApplyJob::Snapshot => snapshot = true,
                ApplyJob::Install { path, done } => install = Some((path, done)),
                ApplyJob::Stop => stop = true,
            }
        }
        let due = open.as_ref().is_some_and(|open| open.began.elapsed() >= COMMIT_INTERVAL);
        if due || !reads.is_empty() || snapshot || install.is_some() || stop {
            if let Some(open) = open.take() {
                self.commit(open)?;
            }
        }
        for read in reads {
            let _ = read.send(Ok(()));
        }
        if snapshot {
            self.start_snapshot()?;
        }
        if let Some((path, done)) = install {
            if let Err(error) = self.install(&path) {
                let error = Arc::new(error);
                let _ = done.send(Err(error.clone()));
                // The loop hears of it as "stopped"; this thread's error,
                // returned when it is joined, is the cause.
                return Err(Arc::try_unwrap(error)
                    .unwrap_or_else(|shared| Error::Stopped(format!("install: {shared}"))));
            }
            let _ = done.send(Ok(()));
            return Ok(Some(if stop { Ended::Stopped } else { Ended::Installed }));
        }
        Ok(stop.then_some(Ended::Stopped))
    }

    /// Applies `entries` into the open transaction, beginning one if needed,
    /// and answers each waiting client as soon as its entry is applied.
    fn apply_entries<'db>(
        &mut self,
        db: &'db Db,
        open: &mut Option<Open<'db>>,
        entries: Vec<(Entry, Option<Pending>)>,
    ) -> Result<()> {
        if open.is_none() {
            let txn = db.begin_write().map_err(Error::storage("state file"))?;
            *open = Some(Open { txn, began: Instant::now(), events: Vec::new() });
        }
        let open = open.as_mut().expect("just begun");
        for (entry, pending) in entries {
            let wanted = pending.is_some();
            let reply = apply_entry(
                &mut open.txn,
                &entry,
                &self.cluster_version,
                &mut open.events,
                wanted,
            )?;
            self.last_applied = Position { index: entry.index, term: entry.term };
            if let Some(pending) = pending {
                // Before the answer leaves: a read must then wait for it.
                self.cell.set_answered(entry.index);
                answer(pending, entry.term, reply);
            }
        }
        Ok(())
    }

    /// Commits `open` (deferred: the syncer makes it durable) and publishes
    /// its applied index and its changes for watchers.
    fn commit(&mut self, open: Open<'_>) -> Result<()> {
        let Position { index, term } = self.last_applied;
        let started = Instant::now();
        open.txn
            .commit(encode_meta(index, term), Durability::Deferred)
            .map_err(Error::storage("state file commit"))?;
        self.metrics.state_commit(started.elapsed());
        self.applied.store(index, Ordering::Release);
        self.dirty = true;
        self.history.record(open.events, index);
        Ok(())
    }

    /// Writes a snapshot of everything applied from a reader on its own
    /// thread: applying goes on. That thread first waits for the syncer to
    /// make this state durable (so that a restart never finds the state
    /// file behind a snapshot, or behind a WAL compacted after one).
    /// Before, this thread synced the state file itself, a stall that every
    /// write waiting to be applied paid (what the syncer exists to avoid:
    /// `state_sync.rs`).
    fn start_snapshot(&mut self) -> Result<()> {
        let txn = self.db.begin_read();
        let membership = state_file::read_membership(&txn)?.unwrap_or_default();
        let (dir, meta) = (self.snapshots.clone(), self.last_applied);
        let (inbox, metrics) = (self.inbox.clone(), self.metrics.clone());
        let durable = self.durable.clone();
        std::thread::Builder::new()
            .name("rdb-snapshot".into())
            .spawn(move || {
                let waited = wait_durable(&durable, meta.index, SNAPSHOT_DURABLE_WAIT_MAX);
                let started = Instant::now();
                let result = waited
                    .and_then(|()| dir.write(&txn, meta, &membership))
                    .and_then(|taken| dir.prune(SNAPSHOTS_KEPT).map(|()| taken));
                drop(txn);
                if let Ok((path, header)) = &result {
                    let bytes = dir.file_bytes(path);
                    metrics.snapshot_made(bytes);
                    log::info!(
                        "snapshot at index {} written to {} ({bytes} bytes, {:?})",
                        header.meta.index,
                        path.display(),
                        started.elapsed()
                    );
                }
                let _ = inbox.send(Input::SnapshotTaken(result.map_err(Arc::new)));
            })
            .map(|_| ())
            .map_err(|e| Error::Stopped(format!("cannot start the snapshot thread: {e}")))
    }

    /// Replaces the state file with the snapshot at `path`: unpacked under a
    /// temporary name, synced, renamed over the old one, directory synced,
    /// opened. Readers of the old file finish on their mapping of it.
    fn install(&mut self, path: &Path) -> Result<()> {
        let header = super::recovery::restore_state_file(&self.snapshots, path, &self.state_dir)?;
        let target = self.state_dir.join(STATE_FILE_NAME);
        let db = Db::open(self.snapshots.disk().clone(), &target)
            .map_err(Error::storage("installed state file"))?;
        let (index, _) = decode_meta(db.begin_read().user_meta());
        if index != header.meta.index {
            let why = format!("claims index {} but its state file says {index}", header.meta.index);
            return Err(Error::bad_snapshot(path, why));
        }
        let version = kv::cluster_version(&db.begin_read())
            .map_err(Error::storage("installed state file"))?;
        self.cluster_version.store(version, Ordering::Release);
        self.db = db.clone();
        self.cell.set(db);
        self.history.reset(index);
        self.last_applied = header.meta;
        self.applied.store(index, Ordering::Release);
        // Installing synced the new state file before opening it.
        self.durable.fetch_max(index, Ordering::AcqRel);
        self.dirty = false;
        self.metrics.snapshot_installed(header.content_bytes);
        log::info!("installed snapshot at index {index} from {}", path.display());
        Ok(())
    }

    /// Makes every commit durable now, on this thread (after a sync the
    /// syncer has in flight, if any).
    fn sync(&mut self) -> Result<()> {
        let started = Instant::now();
        let user = self.db.sync().map_err(Error::storage("state file sync"))?;
        self.metrics.state_sync(started.elapsed());
        self.durable.fetch_max(decode_meta(user).0, Ordering::AcqRel);
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// Waits until the state file is durable at `index` or later (`durable`
/// reaches it), for at most `wait_max` ([`Error::Busy`] then).
fn wait_durable(durable: &AtomicU64, index: u64, wait_max: Duration) -> Result<()> {
    let deadline = Instant::now() + wait_max;
    while durable.load(Ordering::Acquire) < index {
        if Instant::now() >= deadline {
            return Err(Error::Busy("the state file was not made durable in time for a snapshot"));
        }
        std::thread::sleep(SNAPSHOT_DURABLE_POLL);
    }
    Ok(())
}

/// How [`Applier::rounds`] on one state file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Told to stop: everything applied is committed.
    Stopped,
    /// A snapshot replaced the state file.
    Installed,
}

/// A write transaction left open across rounds.
struct Open<'db> {
    /// The transaction.
    txn: WriteTxn<'db>,
    /// When it began: it commits [`COMMIT_INTERVAL`] later at the latest.
    began: Instant,
    /// Its changes, recorded for watchers when it commits.
    events: Vec<super::history::Event>,
}

/// Answers a client's write, proposed in `pending.term`, with the reply of
/// its entry of `term` (None for a no-op): an entry of another term at its
/// index means the proposal was overwritten and never applied.
fn answer(pending: Pending, term: Term, reply: Option<Reply>) {
    let reply = match reply {
        Some(reply) if pending.term == term => reply,
        _ => Reply::unavailable("leadership changed before the write committed; not applied"),
    };
    let _ = pending.done.send(Ok(reply));
}

/// Applies one entry; its reply when `wanted` (a client waits), none for a
/// no-op. A configuration entry is recorded in the state file and answered
/// with the new membership.
fn apply_entry(
    txn: &mut WriteTxn<'_>,
    entry: &Entry,
    cluster_version: &AtomicU64,
    events: &mut Vec<super::history::Event>,
    wanted: bool,
) -> Result<Option<Reply>> {
    let reply = match entry.kind {
        EntryKind::Noop => return Ok(None),
        EntryKind::Config => {
            // Raft refused any configuration entry that does not decode
            // before it reached the log.
            let membership = Membership::decode(&entry.data)
                .map_err(|source| Error::Membership { what: "configuration entry", source })?;
            state_file::write_membership(txn, &membership)?;
            if !wanted {
                return Ok(None);
            }
            Reply { status: 200, body: super::members_json(&membership) }
        }
        EntryKind::Normal => match Command::decode(&entry.data) {
            Ok(command) => {
                let at = kv::Applying {
                    revision: entry.index,
                    cluster_version: cluster_version.load(Ordering::Acquire),
                };
                let outcome = kv::apply(txn, &command, at).map_err(Error::storage("state file"))?;
                if let kv::Command::SetClusterVersion { version } = command {
                    cluster_version.store(version.max(at.cluster_version), Ordering::Release);
                }
                events.extend(super::history::events_of(&command, &outcome, entry.index));
                if !wanted {
                    // No client waits here (a follower's entries, a
                    // replay): building the JSON answer was ~3 % of a
                    // follower's apply thread.
                    return Ok(None);
                }
                Reply::from(outcome).with_revision(entry.index)
            }
            Err(why) => Reply::bad_request(why.to_string()),
        },
    };
    Ok(Some(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_waits_for_the_durable_index_and_no_longer() {
        let durable = Arc::new(AtomicU64::new(5));
        assert!(wait_durable(&durable, 5, Duration::ZERO).is_ok(), "already durable");
        let raiser = {
            let durable = durable.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                durable.store(9, Ordering::Release);
            })
        };
        // Bounded by the deadline, not by the raiser's timing.
        assert!(wait_durable(&durable, 8, Duration::from_secs(10)).is_ok());
        raiser.join().expect("the raiser");
        let error = wait_durable(&durable, 10, Duration::from_millis(20)).unwrap_err();
        assert!(matches!(error, Error::Busy(_)), "{error}");
    }
}
