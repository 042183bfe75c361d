//! The node: the one place that does IO for Raft.
//!
//! A node is a Raft core ([`crate::raft`]) over the WAL, a state file for the
//! replicated key-value state ([`crate::kv`]), and two threads that own
//! them. Everything else talks to them through a bounded inbox: the peer RPC
//! edge delivers Raft messages into it, and the HTTP edge submits proposals
//! and read requests through a [`NodeHandle`].
//!
//! The event loop works in rounds. It waits for the first input or the next
//! tick, then drains whatever else has arrived (up to a limit), so that every
//! proposal that came in while the previous round was busy is appended to
//! the WAL and made durable by one fsync: group commit. Then, in the order
//! Raft's `Ready` prescribes, it sends messages and hands committed entries,
//! with the clients waiting for them, to the apply thread, followed by the
//! linearizable reads they cover. A leader's fsync runs on a thread of its
//! own (`wal_sync.rs`) while the loop goes on; its entries are applied only
//! once synced.
//!
//! The apply thread (`applier.rs`) applies committed entries into a
//! state-file transaction that carries the applied index and term, answers
//! each client as its entry is applied, and commits the transaction within
//! a few milliseconds, at once when reads wait for it; then it releases the
//! reads. Its commits are deferred and synced
//! every few hundred milliseconds, off the consensus path: the WAL already
//! holds every applied entry, and a restart replays the WAL past the state
//! file's applied index.
//!
//! A storage error in either thread stops the node (the process exits with a
//! message naming the error) rather than let it diverge from its peers.

mod admin;
mod applier;
mod cluster_status;
mod error;
mod event_loop;
mod handle;
mod history;
mod lease_clock;
mod leases;
mod metrics;
mod recovery;
pub mod snapshot_dir;
pub mod snapshot_file;
mod snapshots;
mod state_cell;
pub mod state_file;
mod state_sync;
mod status;
mod upgrade;
mod wal_store;
mod wal_sync;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::BoxFuture;

pub use admin::{members_json, MEMBERSHIP_WAIT};
pub use cluster_status::{MEMBER_STATUS_TIMEOUT, STATUS_TARGET};
pub use handle::NodeHandle;
pub use history::{Event, WATCHERS_MAX, WATCH_BUFFER_BYTES, WATCH_BUFFER_EVENTS};
pub use leases::{expire_leases, LEASE_CHECK_INTERVAL};
pub use metrics::Metrics;
pub use status::{
    PeerStatus, Status, ALARM_CORRUPT, ALARM_NOSPACE, GIT_COMMIT, HEALTHY_APPLY_LAG_MAX,
    LIVENESS_STALL_MAX, VERSION,
};
pub use upgrade::{
    cluster_version_max, members_ready, raise_cluster_version, CLUSTER_VERSION_MAX_VAR,
    UPGRADE_CHECK_INTERVAL,
};
pub use wal_store::{split_record, WalStore};
pub use watch::{stream_lines, Answer, WATCH_PROGRESS_INTERVAL};

pub use error::Error;
pub use snapshot_dir::{SnapshotDir, SnapshotFile};
pub use snapshot_file::SnapshotHeader;
pub use state_cell::StateCell;

use crate::kv::Reply;
use crate::raft::{Membership, MembershipChange, Message, NodeId, RaftError};

/// The snapshot directory's name inside the data directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshots";
/// Inputs queued for the event loop, at most this many.
pub const INBOX_LEN_MAX: usize = 65_536;
/// Inputs handled per round before the loop persists and sends.
pub const ROUND_INPUTS_MAX: usize = 4_096;

/// Where a node's membership comes from when its data directory holds none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialMembership {
    /// The initial members of a new cluster (`--peers`).
    Bootstrap(Membership),
    /// None: the node joins an existing cluster, whose leader adds it
    /// (`--join`).
    Join,
}

/// Settings of one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (never 0).
    pub id: NodeId,
    /// The membership to start with if the data directory records none.
    pub initial: InitialMembership,
    /// Holds `wal/` and `state/`.
    pub data_dir: PathBuf,
    /// The Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before an election (randomized up to twice).
    pub election_ticks: u32,
    /// How long a client request may take before it is answered 503 or 504.
    pub request_timeout: Duration,
    /// The WAL is compacted below the durable state file after this many
    /// entries applied since the last compaction (etcd's `--snapshot-count`;
    /// no snapshot file is written for it).
    pub snapshot_entries: u64,
    /// ... or after the WAL has grown this many bytes since the last.
    pub snapshot_wal_bytes: u64,
    /// Entries kept in the WAL below the compaction point, for slightly
    /// slow followers.
    pub compaction_margin_entries: u64,
    /// The WAL's segment size limit (compaction deletes whole segments).
    pub wal_segment_bytes: u64,
    /// What clients may send.
    pub limits: crate::kv::Limits,
    /// Where the WAL, the state file and the snapshots are read and written
    /// (the real file system; the simulated disk in tests).
    pub disk: Arc<dyn rdb_storage::disk::Disk>,
    /// The URL clients reach this node at, shown in its status (empty:
    /// not known).
    pub client_url: String,
    /// The space guard: writes that may grow the state are refused (507)
    /// while its live data exceeds this many bytes (0: no guard).
    pub state_bytes_max: u64,
    /// Changes kept for watchers resuming from a revision, at most (0: no
    /// history and no watches)...
    pub watch_history_events: usize,
    /// ... and at most this many bytes of them.
    pub watch_history_bytes: usize,
}

/// The default space guard: 8 GiB of live data, etcd's suggested largest
/// backend quota.
pub const STATE_BYTES_MAX_DEFAULT: u64 = 8 << 30;

impl NodeConfig {
    /// Defaults for everything but identity, membership and place.
    pub fn new(id: NodeId, initial: InitialMembership, data_dir: PathBuf) -> Self {
        NodeConfig {
            id,
            initial,
            data_dir,
            tick: Duration::from_millis(50),
            election_ticks: 10,
            request_timeout: Duration::from_secs(5),
            snapshot_entries: 100_000,
            snapshot_wal_bytes: 64 << 20,
            compaction_margin_entries: 10_000,
            wal_segment_bytes: 64 << 20,
            limits: crate::kv::Limits::default(),
            disk: Arc::new(rdb_storage::disk::RealDisk),
            client_url: String::new(),
            state_bytes_max: STATE_BYTES_MAX_DEFAULT,
            watch_history_events: 10_000,
            watch_history_bytes: 64 << 20,
        }
    }
}

/// Sends Raft messages to peers. Delivery is best effort: Raft retries.
pub trait Transport: Send + 'static {
    /// Queues `messages` for their receivers.
    fn send(&mut self, messages: Vec<Message>);
    /// Streams the snapshot file at `path` to `message.to`, then has the
    /// receiver step `message` (a `Body::Snapshot`); the outcome comes back
    /// as [`Input::SnapshotSent`].
    fn send_snapshot(&mut self, message: Message, path: PathBuf);
    /// The membership in force changed: connect to its members (at their
    /// peer addresses) and drop the others.
    fn set_membership(&mut self, membership: &Membership);
}

/// Why a forwarded request has no answer, by what the client may assume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardError {
    /// It never left this node: nothing happened (503).
    NotSent(String),
    /// It was sent and the answer was lost: it may have happened (504).
    Unknown(String),
}

/// Carries a client request to another member (the leader) and brings back
/// its answer.
pub trait Forwarder: Send + Sync + 'static {
    /// Forwards the raw request body to member `to`: a POST /command body
    /// when `target` is empty, else an admin request to `target`
    /// ("METHOD /path").
    fn forward(
        &self,
        to: NodeId,
        target: String,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Reply, ForwardError>>;
}

/// What the event loop is asked to do.
#[derive(Debug)]
pub enum Input {
    /// A Raft message from a peer.
    Peer(Message),
    /// A client write. The loop sets `accepted` once Raft has the proposal
    /// in its log (so that a timeout can tell "never proposed", 503, from
    /// "outcome unknown", 504, without a second wake-up of the client), and
    /// answers `done` with the applied result or with why Raft refused it.
    Propose {
        /// The encoded command.
        payload: Vec<u8>,
        /// Set when the proposal is in the leader's log.
        accepted: Arc<AtomicBool>,
        /// The applied result, or the refusal.
        done: oneshot::Sender<Result<Reply, RaftError>>,
    },
    /// A linearizable read: answered once the state file is at least as new
    /// as the read index.
    Read {
        /// Ok when the read may be served; an error says retry or forward.
        ready: oneshot::Sender<Result<(), RaftError>>,
    },
    /// A local read that must see every write this node has answered:
    /// answered once all that the apply thread applied before it is
    /// committed (the apply thread answers writes before their commit).
    Visible {
        /// Ok once the state file shows every answered write.
        ready: oneshot::Sender<Result<(), RaftError>>,
    },
    /// The WAL sync thread finished a sync (the loop polls for it; this
    /// only wakes it).
    WalSynced,
    /// A snapshot was written (or failed) on the snapshot thread.
    SnapshotTaken(Result<SnapshotFile, Arc<Error>>),
    /// Take a snapshot now (POST /admin/snapshot).
    TakeSnapshot {
        /// Answered when the file is written.
        done: oneshot::Sender<Result<SnapshotFile, Arc<Error>>>,
    },
    /// A snapshot from the leader arrived whole and verified at `path`; the
    /// loop steps `message` (its `Body::Snapshot`) and installs it.
    SnapshotReceived {
        /// The verified file.
        path: PathBuf,
        /// Its header.
        header: SnapshotHeader,
        /// The leader's message that goes with it.
        message: Message,
    },
    /// A snapshot transfer to a follower ended.
    SnapshotSent {
        /// The follower.
        to: NodeId,
        /// Whether every chunk was accepted.
        ok: bool,
        /// Bytes sent.
        bytes: u64,
    },
    /// A membership change (the leader proposes it); answered once it is
    /// applied, like a write.
    ChangeMembership {
        /// The change.
        change: MembershipChange,
        /// Set when the change is in the leader's log.
        accepted: Arc<AtomicBool>,
        /// The new membership (as a reply), or why Raft refused.
        done: oneshot::Sender<Result<Reply, RaftError>>,
    },
    /// Hand leadership to voter `to` (0: the most caught-up one); answered
    /// with the voter chosen once the transfer has begun.
    TransferLeader {
        /// The voter, or 0.
        to: NodeId,
        /// The voter chosen, or why not.
        done: oneshot::Sender<Result<NodeId, RaftError>>,
    },
    /// Stop the loop after this round.
    Stop,
}

/// Opens the node's storage and returns its handle and the loop, not yet
/// running: the RPC edge needs the handle before the loop needs the
/// transport.
pub fn open(config: NodeConfig) -> Result<(NodeHandle, event_loop::EventLoop), Error> {
    let (inbox, receiver) = std::sync::mpsc::sync_channel(INBOX_LEN_MAX);
    let metrics = Arc::new(Metrics::default());
    let event_loop =
        event_loop::EventLoop::open(&config, receiver, inbox.clone(), metrics.clone())?;
    let snapshots = event_loop.snapshot_dir();
    let handle = NodeHandle::new(
        &config,
        inbox,
        (event_loop.cell(), event_loop.status(), event_loop.history()),
        metrics,
        snapshots,
    );
    Ok((handle, event_loop))
}

pub use event_loop::EventLoop;
