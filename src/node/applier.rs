//! The apply thread: committed entries onto the state file, off the Raft
//! loop, so that consensus (WAL fsyncs, messages) never waits for B-tree
//! work and a slow state-file sync never stalls heartbeats.
//!
//! The loop hands over batches of committed entries, in log order, each with
//! the client waiting for it (if any), and the linearizable reads it has
//! released; a read is answered only after every entry handed over before it
//! is applied. Whatever has queued up while the previous commit ran is
//! applied in one write transaction, so the busier the node, the larger the
//! batches. Commits are deferred and made durable every
//! [`STATE_SYNC_INTERVAL`] by the syncer's thread ([`super::state_sync`]),
//! while this one goes on applying: the WAL already holds every applied
//! entry, and a restart replays it past the state file's applied index.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdb_storage::btree::{Db, Durability};

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
/// How long a busy apply thread gathers jobs for one transaction
/// (`benches/cluster/compare.sh`: 500 µs gave the best throughput and p99 among 0,
/// 0.5, 1, 2 and 3 ms).
const GATHER: Duration = Duration::from_micros(500);
/// Work arriving within this of the previous commit means the node is busy.
const BUSY_WINDOW: Duration = Duration::from_millis(1);
/// Jobs drained into one write transaction, at most.
const JOBS_PER_COMMIT_MAX: usize = 1_024;

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
    /// When the last transaction committed.
    pub(super) last_commit: Instant,
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
        loop {
            syncer.check()?;
            let first = match self.jobs.recv_timeout(STATE_SYNC_INTERVAL) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(ApplyJob::Stop),
            };
            let mut jobs: Vec<ApplyJob> = first.into_iter().collect();
            // Under load (work arrived right after the last commit), wait a
            // little for more: fewer, larger commits cut the per-commit cost
            // and the p99 latency; an idle node commits at once.
            let busy = self.last_commit.elapsed() < BUSY_WINDOW;
            let gather_until = Instant::now() + if busy { GATHER } else { Duration::ZERO };
            while jobs.len() < JOBS_PER_COMMIT_MAX {
                let left = gather_until.saturating_duration_since(Instant::now());
                let Ok(job) = self.jobs.recv_timeout(left) else { break };
                jobs.push(job);
            }
            let stop = jobs.iter().any(|job| matches!(job, ApplyJob::Stop));
            self.apply(jobs)?;
            if stop {
                return Ok(());
            }
            if self.last_sync.elapsed() >= STATE_SYNC_INTERVAL {
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

    /// Applies every entry in `jobs` in one transaction, then answers the
    /// clients and the reads, in order, then takes a snapshot or installs
    /// one if asked.
    fn apply(&mut self, jobs: Vec<ApplyJob>) -> Result<()> {
        let mut answers = Vec::new();
        let mut events = Vec::new();
        let mut snapshot = false;
        let mut install = None;
        let db = self.db.clone();
        let mut txn = None;
        for job in jobs {
            match job {
                ApplyJob::Entries(entries) => {
                    if txn.is_none() {
                        txn = Some(db.begin_write().map_err(Error::storage("state file"))?);
                    }
                    let txn = txn.as_mut().expect("just begun");
                    for (entry, pending) in entries {
                        let reply = apply_entry(txn, &entry, &self.cluster_version, &mut events)?;
                        self.last_applied = Position { index: entry.index, term: entry.term };
                        if let Some(pending) = pending {
                            answers.push(Answer::Write(pending, entry.term, reply));
                        }
                    }
                }
                ApplyJob::Reads(reads) => answers.push(Answer::Reads(reads)),
                ApplyJob::Snapshot => snapshot = true,
                ApplyJob::Install { path, done } => install = Some((path, done)),
                ApplyJob::Stop => {}
            }
        }
        if let Some(txn) = txn {
            let Position { index, term } = self.last_applied;
            let started = Instant::now();
            txn.commit(encode_meta(index, term), Durability::Deferred)
                .map_err(Error::storage("state file commit"))?;
            self.metrics.state_commit(started.elapsed());
            self.applied.store(index, Ordering::Release);
            self.dirty = true;
            self.last_commit = Instant::now();
            self.history.record(std::mem::take(&mut events), index);
        }
        answers.into_iter().for_each(Answer::send);
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
        }
        Ok(())
    }

    /// Makes the state durable (so that a restart never finds the state file
    /// behind a snapshot, or behind a WAL compacted after one), then writes
    /// the snapshot from a reader on its own thread: applying goes on.
    fn start_snapshot(&mut self) -> Result<()> {
        self.sync()?;
        let txn = self.db.begin_read();
        let membership = state_file::read_membership(&txn)?.unwrap_or_default();
        let (dir, meta) = (self.snapshots.clone(), self.last_applied);
        let (inbox, metrics) = (self.inbox.clone(), self.metrics.clone());
        std::thread::Builder::new()
            .name("rdb-snapshot".into())
            .spawn(move || {
                let started = Instant::now();
                let result = dir
                    .write(&txn, meta, &membership)
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

/// An answer held until the transaction that produced it has committed.
enum Answer {
    /// A client's write: proposed in a term, answered with a reply (None
    /// for a no-op).
    Write(Pending, Term, Option<Reply>),
    /// Released reads.
    Reads(Vec<oneshot::Sender<Result<(), RaftError>>>),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Write(pending, term, reply) => {
                let reply = match reply {
                    Some(reply) if pending.term == term => reply,
                    _ => Reply::unavailable(
                        "leadership changed before the write committed; not applied",
                    ),
                };
                let _ = pending.done.send(Ok(reply));
            }
            Answer::Reads(reads) => {
                for read in reads {
                    let _ = read.send(Ok(()));
                }
            }
        }
    }
}

/// Applies one entry; a no-op has no reply. A configuration entry is
/// recorded in the state file and answered with the new membership.
fn apply_entry(
    txn: &mut rdb_storage::btree::WriteTxn<'_>,
    entry: &Entry,
    cluster_version: &AtomicU64,
    events: &mut Vec<super::history::Event>,
) -> Result<Option<Reply>> {
    let reply = match entry.kind {
        EntryKind::Noop => return Ok(None),
        EntryKind::Config => {
            // Raft refused any configuration entry that does not decode
            // before it reached the log.
            let membership = Membership::decode(&entry.data)
                .map_err(|source| Error::Membership { what: "configuration entry", source })?;
            state_file::write_membership(txn, &membership)?;
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
                Reply::from(outcome).with_revision(entry.index)
            }
            Err(why) => Reply::bad_request(why.to_string()),
        },
    };
    Ok(Some(reply))
}
