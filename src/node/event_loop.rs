//! The event loop: the only code that drives the Raft core and writes the
//! WAL and the state file. See the module docs of [`crate::node`].

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdb_storage::btree::{Db, Durability, USER_META_BYTES};
use rdb_storage::disk::RealDisk;
use rdb_storage::wal::{Wal, WalOptions};

use super::metrics::Metrics;
use super::status::{PeerStatus, Status};
use super::wal_store::WalStore;
use super::{Input, NodeConfig, Transport, ROUND_INPUTS_MAX};
use crate::kv::{self, Command, Reply};
use crate::raft::{Config, Entry, EntryKind, Index, Raft, RaftError, Ready, Role, Term};

/// `Ready` batches handled per round before taking new inputs.
const READY_ROUNDS_MAX: usize = 64;
/// How often deferred state-file commits are made durable.
const STATE_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A client waiting for its proposal to be applied.
struct Pending {
    /// The term it was proposed in: an entry of another term at its index
    /// means it was overwritten and never applied.
    term: Term,
    /// Where its result goes.
    done: oneshot::Sender<Reply>,
}

/// The loop's state.
pub struct EventLoop {
    /// The consensus core, over the WAL.
    raft: Raft<WalStore>,
    /// The replicated state.
    db: Db,
    /// Inputs from the edges.
    inbox: Receiver<Input>,
    /// Published after each round.
    status: Arc<Mutex<Status>>,
    /// Shared with the handle.
    metrics: Arc<Metrics>,
    /// Clients waiting for apply, by log index (bounded by Raft's limit on
    /// uncommitted entries).
    proposals: BTreeMap<Index, Pending>,
    /// Reads waiting for their read index, by request id (bounded by Raft's
    /// limit on pending reads).
    reads: HashMap<u64, oneshot::Sender<Result<(), RaftError>>>,
    /// The next read request id.
    next_read: u64,
    /// The tick length.
    tick: Duration,
    /// When the state file was last synced.
    last_state_sync: Instant,
    /// Whether commits were deferred since then.
    state_dirty: bool,
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
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let disk = Arc::new(RealDisk);
        let state_dir = config.data_dir.join("state");
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let wal_dir = config.data_dir.join("wal");
        let wal = Wal::open(disk.clone(), &wal_dir, WalOptions::default())
            .map_err(|e| format!("WAL {}: {e}", wal_dir.display()))?;
        let db =
            Db::open(disk, state_dir.join("state.db")).map_err(|e| format!("state file: {e}"))?;
        let (applied, _) = decode_meta(db.begin_read().user_meta());
        if applied > wal.last_index() {
            return Err(format!(
                "the state file has applied index {applied} but the WAL ends at {}: \
                 the WAL directory does not belong to this state file",
                wal.last_index()
            ));
        }
        let mut raft_config = Config::new(config.id, config.members.clone());
        raft_config.applied = applied;
        raft_config.election_ticks = config.election_ticks;
        raft_config.seed = config.id ^ seed_from_clock();
        let raft = Raft::new(raft_config, WalStore { wal }).map_err(|e| e.to_string())?;
        Ok(EventLoop {
            raft,
            db,
            inbox,
            status: Arc::new(Mutex::new(Status { id: config.id, ..Status::default() })),
            metrics,
            proposals: BTreeMap::new(),
            reads: HashMap::new(),
            next_read: 1,
            tick: config.tick,
            last_state_sync: Instant::now(),
            state_dirty: false,
        })
    }

    pub(super) fn db(&self) -> Db {
        self.db.clone()
    }

    pub(super) fn status(&self) -> Arc<Mutex<Status>> {
        self.status.clone()
    }

    /// Runs until asked to stop or until storage fails (the error says why).
    pub fn run(mut self, mut transport: Box<dyn Transport>) -> Result<(), String> {
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
            let now = Instant::now();
            if now >= next_tick {
                self.raft.tick().map_err(|e| e.to_string())?;
                next_tick = (next_tick + self.tick).max(now);
            }
            self.process_ready(transport.as_mut())?;
            self.maybe_sync_state(false)?;
            self.publish_status();
            if stop {
                return self.maybe_sync_state(true);
            }
        }
    }

    /// Feeds one input to Raft; true means stop.
    fn handle(&mut self, input: Input) -> Result<bool, String> {
        match input {
            Input::Peer(message) => match self.raft.step(message) {
                Err(RaftError::Fatal(why)) => return Err(why),
                Err(error) => log::debug!("peer message refused: {error}"),
                Ok(()) => {}
            },
            Input::Propose { payload, accepted, done } => match self.raft.propose(payload) {
                Ok((index, term)) => {
                    let _ = accepted.send(Ok(()));
                    self.proposals.insert(index, Pending { term, done });
                }
                Err(RaftError::Fatal(why)) => return Err(why),
                Err(error) => {
                    let _ = accepted.send(Err(error));
                }
            },
            Input::Read { ready } => {
                let ctx = self.next_read;
                self.next_read += 1;
                match self.raft.read_index(ctx) {
                    Ok(()) => {
                        self.reads.insert(ctx, ready);
                    }
                    Err(RaftError::Fatal(why)) => return Err(why),
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            }
            Input::Stop => return Ok(true),
        }
        Ok(false)
    }

    /// Persist, send, apply, serve reads: the `Ready` protocol.
    fn process_ready(&mut self, transport: &mut dyn Transport) -> Result<(), String> {
        for _ in 0..READY_ROUNDS_MAX {
            if !self.raft.has_ready() {
                return Ok(());
            }
            let mut ready = self.raft.ready().map_err(|e| e.to_string())?;
            self.persist(&ready)?;
            transport.send(std::mem::take(&mut ready.messages));
            self.apply(&ready.committed)?;
            for read in &ready.reads {
                if let Some(waiter) = self.reads.remove(&read.ctx) {
                    let _ = waiter.send(Ok(()));
                }
            }
            for ctx in &ready.reads_failed {
                if let Some(waiter) = self.reads.remove(ctx) {
                    let _ = waiter.send(Err(RaftError::NotLeader { leader: None }));
                }
            }
            self.raft.advance(&ready).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn persist(&mut self, ready: &Ready) -> Result<(), String> {
        if let Some(snapshot) = ready.snapshot {
            return Err(format!(
                "asked to install snapshot {snapshot:?}, which this version cannot receive"
            ));
        }
        let store = self.raft.store_mut();
        if !ready.entries.is_empty() {
            let started = Instant::now();
            store.persist(&ready.entries).map_err(|e| format!("WAL: {e}"))?;
            self.metrics.wal_sync(started.elapsed());
        }
        if let Some(hard_state) = ready.hard_state {
            store.save_hard_state(hard_state).map_err(|e| format!("WAL hard state: {e}"))?;
        }
        Ok(())
    }

    /// Applies committed entries in one state-file transaction and answers
    /// the clients waiting for them.
    fn apply(&mut self, committed: &[Entry]) -> Result<(), String> {
        let Some(last) = committed.last() else { return Ok(()) };
        let mut txn = self.db.begin_write().map_err(|e| format!("state file: {e}"))?;
        let mut replies = Vec::with_capacity(committed.len());
        for entry in committed {
            let reply = match entry.kind {
                EntryKind::Noop => None,
                EntryKind::Normal => Some(match Command::decode(&entry.data) {
                    Ok(command) => {
                        kv::apply(&mut txn, &command).map_err(|e| format!("state file: {e}"))?
                    }
                    Err(why) => Reply::bad_request(why),
                }),
            };
            replies.push((entry.index, entry.term, reply));
        }
        txn.commit(encode_meta(last.index, last.term), Durability::Deferred)
            .map_err(|e| format!("state file commit: {e}"))?;
        self.state_dirty = true;
        for (index, term, reply) in replies {
            let Some(pending) = self.proposals.remove(&index) else { continue };
            let reply = match reply {
                Some(reply) if pending.term == term => reply,
                _ => {
                    Reply::unavailable("leadership changed before the write committed; not applied")
                }
            };
            let _ = pending.done.send(reply);
        }
        Ok(())
    }

    fn maybe_sync_state(&mut self, now: bool) -> Result<(), String> {
        if self.state_dirty && (now || self.last_state_sync.elapsed() >= STATE_SYNC_INTERVAL) {
            self.db.sync().map_err(|e| format!("state file sync: {e}"))?;
            self.state_dirty = false;
            self.last_state_sync = Instant::now();
        }
        Ok(())
    }

    fn publish_status(&self) {
        let raft = &self.raft;
        let first = crate::raft::LogStore::first_index(raft.log().store());
        let status = Status {
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
            applied_index: raft.applied(),
            last_log_index: raft.last_index(),
            snapshot_index: first - 1,
            wal_first_index: first,
            peers: raft
                .match_indexes()
                .into_iter()
                .map(|(id, match_index)| PeerStatus { id, match_index })
                .collect(),
        };
        *self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }
}

/// The state file's user metadata: applied index and its term.
fn encode_meta(index: Index, term: Term) -> [u8; USER_META_BYTES] {
    let mut meta = [0u8; USER_META_BYTES];
    meta[..8].copy_from_slice(&index.to_le_bytes());
    meta[8..16].copy_from_slice(&term.to_le_bytes());
    meta
}

fn decode_meta(meta: [u8; USER_META_BYTES]) -> (Index, Term) {
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&meta[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    (word(0), word(8))
}

/// Election timeouts must differ between runs and nodes; they need not be
/// replayable outside the simulator.
fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() << 30 ^ u64::from(d.subsec_nanos()))
}
