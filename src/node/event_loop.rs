//! The event loop: the only code that drives the Raft core and writes the
//! WAL and the state file. See the module docs of [`crate::node`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::applier::{Applier, ApplyJob, Pending};
use super::error::{Error, Result};
use super::metrics::Metrics;
use super::snapshots::SnapshotState;
use super::state_cell::StateCell;
use super::status::{PeerStatus, Status};
use super::wal_store::WalStore;
use super::wal_sync::WalSyncer;
use super::{Input, NodeConfig, Transport, ROUND_INPUTS_MAX};
use crate::raft::{Body, Config, Index, Message, NodeId, Raft, RaftError, Ready, Role, Term};
use futures::channel::oneshot;

/// `Ready` batches handled per round before taking new inputs.
const READY_ROUNDS_MAX: usize = 64;
/// Batches queued for the apply thread, at most; the loop waits when it is
/// this far behind (back-pressure rather than unbounded memory).
const APPLY_QUEUE_LEN_MAX: usize = 1_024;
/// Appends in flight to one follower (Raft's `inflight_max`, which
/// defaults to 256 as in etcd's raft): one being persisted, one on its
/// way. Fewer messages carry more entries each, and a message costs far
/// more CPU than an entry (capnp-rpc, TCP, a wake-up on each side). Measured
/// with `benches/cluster/ab-bench.sh` (random new keys, 64 in flight, 15 s,
/// two runs each, one at 4): cluster CPU per put 79 / 79 µs at 256, 76 at 4, 72 / 71
/// at 2, 67 / 68 at 1, at the same throughput and p99. One would leave the
/// follower's disk idle for a round trip between syncs; two keep it busy.
/// A lost append still frees its slot at the next heartbeat answer.
/// Caveat: a follower then receives at most 2 messages (of up to
/// `message_bytes_max`, 1 MiB) per round trip and disk sync: ~200 MB/s at
/// 10 ms, ~40 MB/s across a 50 ms WAN link, which also bounds how fast a
/// follower that fell behind catches up.
const APPENDS_IN_FLIGHT_MAX: usize = 2;

/// The loop's state.
pub struct EventLoop {
    /// The consensus core, over the WAL.
    pub(super) raft: Raft<WalStore>,
    /// The replicated state (swapped when a snapshot is installed).
    cell: StateCell,
    /// Inputs from the edges.
    inbox: Receiver<Input>,
    /// Published after each round.
    status: Arc<Mutex<Status>>,
    /// Shared with the handle.
    pub(super) metrics: Arc<Metrics>,
    /// Clients waiting for apply, by log index (bounded by Raft's limit on
    /// uncommitted entries).
    proposals: BTreeMap<Index, Pending>,
    /// Reads waiting for their read index, by request id (bounded by Raft's
    /// limit on pending reads).
    reads: HashMap<u64, oneshot::Sender<Result<(), RaftError>>>,
    /// Local reads waiting for the apply thread to commit what it has
    /// answered, sent to it as one job per round.
    visible: Vec<oneshot::Sender<Result<(), RaftError>>>,
    /// The next read request id.
    next_read: u64,
    /// The tick length.
    tick: Duration,
    /// The state file's applied index, published by the apply thread.
    pub(super) applied: Arc<AtomicU64>,
    /// Work for the apply thread.
    pub(super) apply: SyncSender<ApplyJob>,
    /// The apply thread, until `run` starts it.
    applier: Option<Applier>,
    /// Snapshot triggers, the newest snapshot, transfers in and out.
    pub(super) snapshots: SnapshotState,
    /// The client URL this node advertises, for the status.
    client_url: String,
    /// The cluster version the state file records (from the apply thread).
    cluster_version: Arc<AtomicU64>,
    /// The space guard's limit, for the status's alarms.
    state_bytes_max: u64,
    /// The last leader known and its term (for counting leader changes).
    leader_seen: (NodeId, Term),
    /// Whether the CORRUPT alarm's cause has been logged (once while it
    /// lasts).
    lost_log_logged: bool,
    /// Recent changes and watchers (recorded by the apply thread).
    history: Arc<super::history::History>,
    /// Syncs a leader's WAL in the background.
    wal_sync: WalSyncer,
}

impl std::fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop").field("id", &self.raft.id()).finish_non_exhaustive()
    }
}

impl EventLoop {
    /// Opens (or initialises) the data directory and recovers: the state
    /// file's applied index, then the WAL past it.
    pub(super) fn open(
        config: &NodeConfig,
        inbox: Receiver<Input>,
        inbox_sender: SyncSender<Input>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let recovered = super::recovery::recover(config)?;
        let mut raft_config = Config::with_membership(config.id, recovered.membership.clone());
        raft_config.applied = recovered.applied.index;
        raft_config.election_ticks = config.election_ticks;
        // Raft refuses proposals above its message limit; every command the
        // front end accepts must fit.
        raft_config.message_bytes_max =
            raft_config.message_bytes_max.max(crate::kv::COMMAND_BYTES_MAX);
        raft_config.seed = config.id ^ seed_from_clock();
        raft_config.inflight_max = APPENDS_IN_FLIGHT_MAX;
        raft_config.background_persist = true;
        let newest =
            recovered.newest.as_ref().map(|(_, header)| (header.meta, header.membership.clone()));
        let store = WalStore {
            wal: recovered.wal,
            floor: recovered.floor,
            newest,
            snapshot_wanted: std::cell::Cell::new(false),
        };
        let raft = Raft::new(raft_config, store)?;
        let cell = StateCell::new(recovered.db.clone());
        let applied = Arc::new(AtomicU64::new(recovered.applied.index));
        let version = crate::kv::cluster_version(&recovered.db.begin_read())
            .map_err(Error::storage("state file"))?;
        let cluster_version = Arc::new(AtomicU64::new(version));
        let history = Arc::new(super::history::History::new(
            config.watch_history_events,
            config.watch_history_bytes,
            recovered.applied.index,
        ));
        // The state file as opened is durable up to its applied index.
        let durable = Arc::new(AtomicU64::new(recovered.applied.index));
        let (apply, jobs) = std::sync::mpsc::sync_channel(APPLY_QUEUE_LEN_MAX);
        let applier = Applier {
            id: config.id,
            db: recovered.db,
            cell: cell.clone(),
            state_dir: config.data_dir.join("state"),
            snapshots: recovered.snapshots.clone(),
            inbox: inbox_sender.clone(),
            metrics: metrics.clone(),
            last_applied: recovered.applied,
            jobs,
            applied: applied.clone(),
            durable: durable.clone(),
            dirty: false,
            last_sync: Instant::now(),
            cluster_version: cluster_version.clone(),
            history: history.clone(),
        };
        let snapshots = SnapshotState::new(
            config,
            (recovered.snapshots, recovered.newest),
            (applied.clone(), durable),
            apply.clone(),
            metrics.clone(),
        );
        let wal_sync = WalSyncer::start(config.id, inbox_sender, metrics.clone())?;
        let mut event_loop = EventLoop {
            raft,
            cell,
            inbox,
            status: Arc::new(Mutex::new(Status::default())),
            metrics,
            proposals: BTreeMap::new(),
            reads: HashMap::new(),
            visible: Vec::new(),
            next_read: 1,
            tick: config.tick,
            applied,
            apply,
            applier: Some(applier),
            snapshots,
            client_url: config.client_url.clone(),
            cluster_version,
            state_bytes_max: config.state_bytes_max,
            leader_seen: (0, 0),
            lost_log_logged: false,
            history,
            wal_sync,
        };
        event_loop.publish_recovered_status();
        Ok(event_loop)
    }

    /// Publishes what the node recovered, served from the moment the front
    /// end listens (a Raft node starts as a follower), rather than an empty
    /// role before the first round. Not live until that round has run
    /// (`published_at` stays None).
    fn publish_recovered_status(&mut self) {
        let status = self.current_status();
        *self.lock_status() = status;
    }

    pub(super) fn cell(&self) -> StateCell {
        self.cell.clone()
    }

    pub(super) fn history(&self) -> Arc<super::history::History> {
        self.history.clone()
    }

    pub(super) fn status(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }

    pub(super) fn snapshot_dir(&self) -> super::snapshot_dir::SnapshotDir {
        self.snapshots.dir().clone()
    }

    /// Runs until asked to stop or until storage fails (the error says why).
    pub fn run(mut self, mut transport: Box<dyn Transport>) -> Result<()> {
        let applier =
            self.applier.take().ok_or_else(|| Error::Stopped("the loop runs once".into()))?;
        let id = self.raft.id();
        let applier = std::thread::Builder::new()
            .name(format!("rdb-apply-{id}"))
            .spawn(move || applier.run())
            .map_err(|e| Error::Stopped(format!("cannot start the apply thread: {e}")))?;
        let result = self.run_rounds(transport.as_mut());
        self.wal_sync.stop();
        let _ = self.apply.send(ApplyJob::Stop);
        let applied =
            applier.join().map_err(|_| Error::Stopped("the apply thread panicked".into()))?;
        // If the apply thread failed, its error is the cause ("the apply
        // thread stopped" is only what the loop saw of it).
        applied.and(result)
    }

    fn run_rounds(&mut self, transport: &mut dyn Transport) -> Result<()> {
        transport.set_membership(self.raft.membership());
        let mut next_tick = Instant::now() + self.tick;
        self.publish_status();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut stop = match self.inbox.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => true,
                Ok(input) => self.handle(input)?,
                Err(RecvTimeoutError::Timeout) => false,
            };
            for _ in 0..ROUND_INPUTS_MAX {
                let Ok(input) = self.inbox.try_recv() else { break };
                stop |= matches!(input, Input::Stop) || self.handle(input)?;
            }
            self.background_synced()?;
            let now = Instant::now();
            if now >= next_tick {
                self.raft.tick()?;
                next_tick = (next_tick + self.tick).max(now);
            }
            self.process_ready(transport)?;
            if !self.visible.is_empty() {
                let visible = std::mem::take(&mut self.visible);
                self.to_apply(ApplyJob::Reads(visible))?;
            }
            self.snapshots.maybe_snapshot(&mut self.raft)?;
            self.publish_status();
            if stop {
                return Ok(());
            }
        }
    }

    /// Feeds one input to Raft; true means stop.
    fn handle(&mut self, input: Input) -> Result<bool> {
        match input {
            // A snapshot offer is stepped only with its file (SnapshotReceived).
            Input::Peer(Message { body: Body::Snapshot { .. }, .. }) => {}
            Input::Peer(message) => match self.raft.step(message) {
                Err(error @ RaftError::Fatal(_)) => return Err(error.into()),
                Err(error) => log::warn!("peer message refused: {error}"),
                Ok(()) => {}
            },
            Input::Propose { payload, accepted, done } => {
                let proposed = self.raft.propose(payload);
                self.proposed(proposed, &accepted, done)?;
            }
            Input::ChangeMembership { change, accepted, done } => {
                let proposed = self.raft.propose_membership(&change);
                if proposed.is_ok() {
                    log::info!("node {}: proposed membership change {change:?}", self.raft.id());
                }
                self.proposed(proposed, &accepted, done)?;
            }
            Input::TransferLeader { to, done } => match self.raft.transfer_leader(to) {
                Err(error @ RaftError::Fatal(_)) => return Err(error.into()),
                result => {
                    if let Ok(to) = result {
                        log::info!("node {}: handing leadership to {to}", self.raft.id());
                    }
                    let _ = done.send(result);
                }
            },
            Input::Read { ready } => {
                let ctx = self.next_read;
                self.next_read += 1;
                match self.raft.read_index(ctx) {
                    Ok(()) => {
                        self.reads.insert(ctx, ready);
                    }
                    Err(error @ RaftError::Fatal(_)) => return Err(error.into()),
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            }
            Input::Visible { ready } => self.visible.push(ready),
            Input::WalSynced => {} // polled every round
            Input::Stop => return Ok(true),
            other => self.snapshots.handle_input(&mut self.raft, other)?,
        }
        Ok(false)
    }

    /// Records a proposal's waiting client, or answers it with the refusal.
    fn proposed(
        &mut self,
        proposed: Result<(Index, crate::raft::Term), RaftError>,
        accepted: &AtomicBool,
        done: oneshot::Sender<Result<crate::kv::Reply, RaftError>>,
    ) -> Result<()> {
        match proposed {
            Ok((index, term)) => {
                accepted.store(true, Ordering::Release);
                self.proposals.insert(index, Pending { term, done });
            }
            Err(error @ RaftError::Fatal(_)) => return Err(error.into()),
            Err(error) => {
                let _ = done.send(Err(error));
            }
        }
        Ok(())
    }

    /// Persist, send, hand over to apply, release reads: the `Ready`
    /// protocol.
    fn process_ready(&mut self, transport: &mut dyn Transport) -> Result<()> {
        for _ in 0..READY_ROUNDS_MAX {
            if !self.raft.has_ready() {
                return Ok(());
            }
            let mut ready = self.raft.ready()?;
            if let Some(membership) = &ready.membership {
                log::info!("node {}: membership now {membership}", self.raft.id());
                transport.set_membership(membership);
            }
            // A leader's messages go before its own fsync (thesis §10.2.1):
            // followers then write in parallel with it. `Ready` says which.
            let early = std::mem::take(&mut ready.messages);
            let early = self.snapshots.route_snapshots(&mut self.raft, early, transport);
            transport.send(early);
            if ready.background {
                self.raft
                    .store_mut()
                    .write(&ready.entries)
                    .map_err(Error::storage("WAL append"))?;
            } else {
                // Everything written in the background must be durable
                // before this `Ready`'s own sync counts for it.
                self.wal_sync.wait(&mut self.raft.store_mut().wal)?;
                self.persist(&ready)?;
            }
            let after = std::mem::take(&mut ready.persisted_messages);
            let after = self.snapshots.route_snapshots(&mut self.raft, after, transport);
            transport.send(after);
            self.hand_over(&mut ready)?;
            self.raft.advance(&ready)?;
            if ready.background {
                self.wal_sync.start_sync(&self.raft.log().store().wal)?;
            }
        }
        Ok(())
    }

    /// Records a background sync that ended in the WAL and in Raft (which
    /// may commit and make entries appliable), and starts the next sync if
    /// more was written meanwhile.
    fn background_synced(&mut self) -> Result<()> {
        let Some(synced) = self.wal_sync.poll(&mut self.raft.store_mut().wal)? else {
            return Ok(());
        };
        self.raft.persisted(synced.index, synced.term)?;
        self.wal_sync.start_sync(&self.raft.log().store().wal)
    }

    /// Queues `job` for the apply thread (waiting while its queue is full).
    fn to_apply(&self, job: ApplyJob) -> Result<()> {
        self.apply.send(job).map_err(|_| Error::Stopped("the apply thread stopped".into()))
    }

    /// Sends committed entries, with their waiting clients, and then the
    /// reads they cover, to the apply thread; answers failed reads.
    fn hand_over(&mut self, ready: &mut Ready) -> Result<()> {
        if !ready.committed.is_empty() {
            let entries = std::mem::take(&mut ready.committed)
                .into_iter()
                .map(|entry| {
                    let pending = self.proposals.remove(&entry.index);
                    (entry, pending)
                })
                .collect();
            self.to_apply(ApplyJob::Entries(entries))?;
        }
        let reads: Vec<_> =
            ready.reads.iter().filter_map(|read| self.reads.remove(&read.ctx)).collect();
        if !reads.is_empty() {
            self.to_apply(ApplyJob::Reads(reads))?;
        }
        for ctx in &ready.reads_failed {
            if let Some(waiter) = self.reads.remove(ctx) {
                let _ = waiter.send(Err(RaftError::NotLeader { leader: None }));
            }
        }
        Ok(())
    }

    fn persist(&mut self, ready: &Ready) -> Result<()> {
        if let Some(meta) = ready.snapshot {
            self.set_installing(true);
            let installed = self.snapshots.install_snapshot(&mut self.raft, meta);
            self.set_installing(false);
            installed?;
        }
        let store = self.raft.store_mut();
        let started = Instant::now();
        let unsynced = store.wal.synced_index() < store.wal.last_index();
        if unsynced || !ready.entries.is_empty() {
            store.persist(&ready.entries).map_err(Error::storage("WAL append"))?;
            self.metrics.wal_sync(started.elapsed());
        }
        if let Some(hard_state) = ready.hard_state {
            store.save_hard_state(hard_state).map_err(Error::storage("WAL hard state"))?;
        }
        Ok(())
    }

    /// Says in the status that the loop waits for a snapshot install (so
    /// that `/livez` does not take the wait for a stall).
    fn set_installing(&self, installing: bool) {
        let mut status = self.lock_status();
        status.installing_snapshot = installing;
        status.published_at = Some(Instant::now());
    }

    /// The alarms raised now; the first time the log is found lost, says so
    /// in the log too.
    fn alarms(&mut self, space: rdb_storage::btree::Space) -> Vec<&'static str> {
        let mut alarms = Vec::new();
        if super::status::over_quota(space, self.state_bytes_max) {
            alarms.push(super::status::ALARM_NOSPACE);
        }
        let lost = self.raft.lost_log();
        if let Some(commit) = lost {
            if !self.lost_log_logged {
                log::error!(
                    "node {}: the leader says this node holds the log up to entry {commit}, but \
                     it ends at entry {}: entries it acknowledged are gone (was its data \
                     directory wiped, or restored from an older copy?). Alarm CORRUPT: replace \
                     this member (docs/OPERATIONS.md, \"A node will not start\")",
                    self.raft.id(),
                    self.raft.last_index()
                );
            }
            alarms.push(super::status::ALARM_CORRUPT);
        }
        self.lost_log_logged = lost.is_some();
        alarms
    }

    /// Publishes this round's status; says so in the log and the metrics
    /// when a new leader is known.
    fn publish_status(&mut self) {
        let leader = (self.raft.leader().unwrap_or(0), self.raft.term());
        if leader.0 != 0 && leader != self.leader_seen {
            self.leader_seen = leader;
            self.metrics.leader_changed();
            log::info!("node {}: node {} is leader at term {}", self.raft.id(), leader.0, leader.1);
        }
        let status = Status { published_at: Some(Instant::now()), ..self.current_status() };
        *self.lock_status() = status;
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The node's state now, not yet stamped as published by a round.
    fn current_status(&mut self) -> Status {
        let space = self.cell.get().space();
        let alarms = self.alarms(space);
        let raft = &self.raft;
        let store = raft.log().store();
        Status {
            id: raft.id(),
            role: match raft.role() {
                Role::Follower => "follower",
                Role::PreCandidate => "pre-candidate",
                Role::Candidate => "candidate",
                Role::Leader => "leader",
            },
            term: raft.term(),
            leader: raft.leader().unwrap_or(0),
            commit_index: raft.committed(),
            leader_commit_index: raft.leader_commit(),
            applied_index: self.applied.load(Ordering::Acquire),
            last_log_index: raft.last_index(),
            snapshot_index: self.snapshots.newest_index(),
            wal_first_index: store.wal.first_index(),
            wal_bytes: store.wal.bytes(),
            wal_segments: store.wal.segment_count() as u64,
            state_bytes: space.file_bytes,
            state_used_bytes: space.used_bytes(),
            state_free_pages: space.free_pages,
            state_bytes_max: self.state_bytes_max,
            client_url: self.client_url.clone(),
            version: super::status::VERSION,
            cluster_version: self.cluster_version.load(Ordering::Acquire),
            cluster_version_max: super::upgrade::cluster_version_max(),
            alarms,
            peers: raft
                .match_indexes()
                .into_iter()
                .map(|(id, match_index)| PeerStatus { id, match_index })
                .collect(),
            membership: raft.membership().clone(),
            installing_snapshot: false,
            published_at: None,
        }
    }
}

/// Election timeouts must differ between runs and nodes; they need not be
/// replayable outside the simulator.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() << 30 ^ u64::from(d.subsec_nanos()))
}
