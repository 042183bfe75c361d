//! The node as the front ends see it: execute a client request, deliver a
//! peer message, read the status.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use super::error::Error;
use super::history::History;
use super::metrics::Metrics;
use super::snapshot_dir::{SnapshotDir, SnapshotFile};
use super::state_cell::StateCell;
use super::status::{over_quota, Status, ALARM_NOSPACE};
use super::{ForwardError, Forwarder, Input, NodeConfig, SnapshotHeader};
use crate::kv::{Command, Consistency, Limits, Query, Reply, Request};
use crate::raft::{MembershipChange, MembershipError, Message, NodeId, RaftError};

/// Pause before retrying a request while no leader is known.
const RETRY_PAUSE: Duration = Duration::from_millis(25);
/// Times one request is forwarded, at most (the leader may change).
const FORWARDS_MAX: usize = 3;
/// How long a follower waits to hear of a new leader after the old one
/// answered 503.
const REFORWARD_WAIT: Duration = Duration::from_millis(500);

/// A cheap, cloneable handle on a running node.
#[derive(Clone)]
pub struct NodeHandle {
    /// Shared by every clone.
    pub(super) inner: Arc<Inner>,
}

/// What every clone shares.
pub(super) struct Inner {
    /// This node.
    id: NodeId,
    /// The event loop's inbox.
    pub(super) inbox: SyncSender<Input>,
    /// The state file, for reads on the caller's thread.
    state: StateCell,
    /// Published by the loop after each round.
    status: Arc<Mutex<Status>>,
    /// Request and storage metrics.
    metrics: Arc<Metrics>,
    /// Forwards to the leader; set once the RPC edge is up.
    forwarder: OnceLock<Box<dyn Forwarder>>,
    /// The request timeout.
    pub(super) timeout: Duration,
    /// What clients may send.
    limits: Limits,
    /// `<data-dir>/snapshots`.
    snapshots: SnapshotDir,
    /// The space guard's limit (0: none).
    state_bytes_max: u64,
    /// Holds wal/, state/ and snapshots/.
    data_dir: std::path::PathBuf,
    /// Recent changes and watchers.
    pub(super) history: Arc<History>,
    /// Lease deadlines, while this node leads.
    lease_clock: super::lease_clock::LeaseClock,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("id", &self.inner.id).finish_non_exhaustive()
    }
}

impl NodeHandle {
    pub(super) fn new(
        config: &NodeConfig,
        inbox: SyncSender<Input>,
        (state, status, history): (StateCell, Arc<Mutex<Status>>, Arc<History>),
        metrics: Arc<Metrics>,
        snapshots: SnapshotDir,
    ) -> Self {
        let inner = Inner {
            id: config.id,
            inbox,
            state,
            status,
            metrics,
            forwarder: OnceLock::new(),
            timeout: config.request_timeout,
            limits: config.limits,
            snapshots,
            state_bytes_max: config.state_bytes_max,
            data_dir: config.data_dir.clone(),
            history,
            lease_clock: super::lease_clock::LeaseClock::default(),
        };
        NodeHandle { inner: Arc::new(inner) }
    }

    /// Installs the way to reach the leader (once).
    pub fn set_forwarder(&self, forwarder: Box<dyn Forwarder>) {
        let _ = self.inner.forwarder.set(forwarder);
    }

    /// The way to reach other members, once the RPC edge is up.
    pub(super) fn forwarder(&self) -> Option<&dyn Forwarder> {
        self.inner.forwarder.get().map(AsRef::as_ref)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The status after the loop's latest round.
    pub fn status(&self) -> Status {
        self.inner.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// What clients may send to this node.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Whether the space guard refuses writes that may grow the state.
    pub fn over_quota(&self) -> bool {
        over_quota(self.inner.state.get().space(), self.inner.state_bytes_max)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// Recent changes and watchers.
    pub(super) fn inner_history(&self) -> &History {
        &self.inner.history
    }

    /// Lease deadlines (the leader's).
    pub(super) fn lease_clock(&self) -> &super::lease_clock::LeaseClock {
        &self.inner.lease_clock
    }

    /// The current state file.
    pub(super) fn state(&self) -> rdb_storage::btree::Db {
        self.inner.state.get()
    }

    /// Watchers this node serves now.
    pub fn watchers(&self) -> usize {
        self.inner.history.watchers()
    }

    /// The space guard's limit in bytes (0: none).
    pub fn state_bytes_max(&self) -> u64 {
        self.inner.state_bytes_max
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Queues a peer's message; when the inbox is full it is dropped, which
    /// Raft treats as a lost message.
    pub fn deliver(&self, message: Message) {
        let _ = self.inner.inbox.try_send(Input::Peer(message));
    }

    /// Whether a linearizable read could be served now: Ok once this
    /// node has confirmed a read index with a quorum and applied up to it,
    /// within `timeout`; otherwise the 503 a read would get.
    pub async fn read_ready(&self, timeout: Duration) -> Result<(), Reply> {
        self.read_barrier(Instant::now() + timeout).await
    }

    /// Takes a snapshot now; answers with its file and header.
    pub async fn take_snapshot(&self) -> Result<SnapshotFile, Arc<Error>> {
        let (done, answer) = oneshot::channel();
        self.inner
            .inbox
            .try_send(Input::TakeSnapshot { done })
            .map_err(|_| Arc::new(Error::Busy("the node is overloaded")))?;
        answer.await.unwrap_or_else(|_| Err(Arc::new(Error::Stopped("the node stopped".into()))))
    }

    /// Hands a verified snapshot from the leader to the loop.
    pub fn snapshot_received(&self, path: PathBuf, header: SnapshotHeader, message: Message) {
        let _ = self.inner.inbox.try_send(Input::SnapshotReceived { path, header, message });
    }

    /// Reports the end of a snapshot transfer to a follower.
    pub fn snapshot_sent(&self, to: NodeId, ok: bool, bytes: u64) {
        let _ = self.inner.inbox.try_send(Input::SnapshotSent { to, ok, bytes });
    }

    /// Where this node keeps its snapshots.
    pub fn snapshots(&self) -> &SnapshotDir {
        &self.inner.snapshots
    }

    /// Asks the loop to stop.
    pub fn stop(&self) {
        let _ = self.inner.inbox.try_send(Input::Stop);
    }

    /// Executes a POST /command body. `forwarded` requests came from a
    /// follower and are not forwarded again.
    pub async fn execute(&self, body: &[u8], forwarded: bool) -> Reply {
        match Request::parse(body, &self.inner.limits) {
            Err(reply) => {
                self.inner.metrics.request("invalid", reply.status, Duration::ZERO);
                reply
            }
            Ok(request) => self.run(request, body, forwarded).await,
        }
    }

    /// Runs a parsed request (its `body`, to forward a write as is).
    pub(super) async fn run(&self, request: Request, body: &[u8], forwarded: bool) -> Reply {
        let started = Instant::now();
        let action = request.action();
        let deadline = started + self.inner.timeout;
        let reply = match request {
            Request::Write(command) => self.write(command, body, forwarded, deadline).await,
            Request::Read { query, consistency } => self.read(&query, consistency, deadline).await,
            Request::Watch(spec) => self.watch_poll(&spec).await,
            Request::LeaseKeepalive(id) => {
                self.lease_keepalive(id, body, forwarded, deadline).await
            }
            Request::Leases => self.leases_list(body, forwarded, deadline).await,
        };
        self.inner.metrics.request(action, reply.status, started.elapsed());
        reply
    }

    async fn write(
        &self,
        command: Command,
        body: &[u8],
        forwarded: bool,
        deadline: Instant,
    ) -> Reply {
        // Most commands need no version check: keep the status clone off
        // the write path.
        let needed = command.cluster_version_needed();
        let version = if needed > 1 { self.status().cluster_version } else { needed };
        if needed > version {
            let needed = command.cluster_version_needed();
            let outcome = crate::kv::Outcome::NeedsVersion { needed, current: version };
            return self.failed("refused", Reply::from(outcome));
        }
        if command.may_grow() && self.over_quota() {
            let why = format!(
                "no space: the state holds more than --state-bytes-max ({} bytes) of live data \
                 (alarm {ALARM_NOSPACE}); reads, deletes and drops still work",
                self.inner.state_bytes_max
            );
            return self.failed("no_space", Reply::error(507, why));
        }
        let proposal = Proposal::Command(command.encode());
        self.propose(&proposal, Target::Command, body, forwarded, deadline).await
    }

    /// Proposes a command of this node's own (never a client's) on this
    /// node only, within the request timeout: the cluster version.
    pub(super) async fn propose_internal(&self, command: &Command) -> Reply {
        let deadline = Instant::now() + self.inner.timeout;
        let proposal = Proposal::Command(command.encode());
        self.propose(&proposal, Target::Command, &[], true, deadline).await
    }

    /// Proposes until applied, refused, forwarded to the leader or out of
    /// time. A forwarded request goes out as `target` with `body`.
    pub(super) async fn propose(
        &self,
        proposal: &Proposal,
        target: Target<'_>,
        body: &[u8],
        forwarded: bool,
        deadline: Instant,
    ) -> Reply {
        loop {
            let accepted = Arc::new(AtomicBool::new(false));
            let (done_tx, done) = oneshot::channel();
            let input = proposal.input(accepted.clone(), done_tx);
            if self.inner.inbox.try_send(input).is_err() {
                return self.failed("busy", busy());
            }
            let outcome = until(deadline, done).await;
            let accepted = accepted.load(Ordering::Acquire);
            let (reason, reply) = match outcome {
                Some(Ok(Ok(reply))) => return reply,
                Some(Ok(Err(RaftError::NotLeader { leader: Some(leader) }))) if !forwarded => {
                    return self.forward(leader, target, body, deadline).await;
                }
                Some(Ok(Err(RaftError::Invalid(why)))) => ("invalid", Reply::bad_request(why)),
                Some(Ok(Err(RaftError::Membership(why)))) => ("refused", refused(&why)),
                Some(Ok(Err(RaftError::Busy | RaftError::Transferring)))
                    if Instant::now() + RETRY_PAUSE < deadline =>
                {
                    async_std::task::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Some(Ok(Err(_))) if !forwarded && Instant::now() + RETRY_PAUSE < deadline => {
                    async_std::task::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Some(Ok(Err(_))) => ("no_leader", no_leader()),
                Some(Err(_)) if accepted => {
                    ("stopped", Reply::error(504, "the node stopped; the outcome is unknown"))
                }
                Some(Err(_)) => {
                    ("stopped", Reply::unavailable("the node stopped; nothing was proposed"))
                }
                None if accepted => {
                    ("timeout", Reply::error(504, "proposed, but not applied within the timeout"))
                }
                None => ("no_leader", no_leader()),
            };
            return self.failed(reason, reply);
        }
    }

    /// Counts a proposal that failed here for `reason`, and answers `reply`.
    fn failed(&self, reason: &'static str, reply: Reply) -> Reply {
        self.inner.metrics.proposal_failed(reason);
        reply
    }

    /// Sends the request to the leader and relays its answer. A leader
    /// that answers 503 (nothing happened) because it just handed over is
    /// not the last word: once this node hears of the new leader (within
    /// [`REFORWARD_WAIT`] and the deadline) the request goes there, at most
    /// [`FORWARDS_MAX`] times in all.
    pub(super) async fn forward(
        &self,
        leader: NodeId,
        target: Target<'_>,
        body: &[u8],
        deadline: Instant,
    ) -> Reply {
        let mut leader = leader;
        let mut reply = self.forward_once(leader, target, body, deadline).await;
        for _ in 1..FORWARDS_MAX {
            if reply.status != 503 {
                break;
            }
            let Some(next) = self.new_leader(leader, deadline).await else { break };
            leader = next;
            reply = self.forward_once(leader, target, body, deadline).await;
        }
        reply
    }

    /// A leader other than `old` (and this node), once this node knows one.
    async fn new_leader(&self, old: NodeId, deadline: Instant) -> Option<NodeId> {
        let wait_until = deadline.min(Instant::now() + REFORWARD_WAIT);
        loop {
            let leader = self.status().leader;
            if leader != 0 && leader != old && leader != self.id() {
                return Some(leader);
            }
            if Instant::now() + RETRY_PAUSE >= wait_until {
                return None;
            }
            async_std::task::sleep(RETRY_PAUSE).await;
        }
    }

    async fn forward_once(
        &self,
        leader: NodeId,
        target: Target<'_>,
        body: &[u8],
        deadline: Instant,
    ) -> Reply {
        let Some(forwarder) = self.inner.forwarder.get() else { return no_leader() };
        let target = match target {
            Target::Command => String::new(),
            Target::Admin(target) => target.to_string(),
        };
        match until(deadline, forwarder.forward(leader, target, body.to_vec())).await {
            Some(Ok(reply)) => reply,
            Some(Err(ForwardError::NotSent(why))) => {
                Reply::unavailable(format!("leader {leader} unreachable: {why}"))
            }
            Some(Err(ForwardError::Unknown(why))) => {
                Reply::error(504, format!("sent to leader {leader}, answer lost: {why}"))
            }
            None => Reply::error(504, format!("leader {leader} did not answer within the timeout")),
        }
    }

    async fn read(&self, query: &Query, consistency: Consistency, deadline: Instant) -> Reply {
        let txn = match consistency {
            Consistency::Linearizable => match self.read_barrier(deadline).await {
                Ok(()) => self.inner.state.get().begin_read(),
                Err(reply) => return reply,
            },
            Consistency::Serializable => match self.answered_state(deadline).await {
                Ok(txn) => txn,
                Err(reply) => return reply,
            },
        };
        // The revision a read reflects: the state's applied index.
        let revision = super::state_file::applied_of(&txn).index;
        match query.run(&txn) {
            Ok(outcome) => Reply::from(outcome).with_revision(revision),
            Err(error) => Reply::error(500, format!("state file: {error}")),
        }
    }

    /// A read of the state file once it shows every write this node has
    /// answered (the apply thread answers a write before the transaction
    /// holding it commits; a client must still see its own write on its next
    /// read).
    pub(super) async fn answered_state(
        &self,
        deadline: Instant,
    ) -> Result<rdb_storage::btree::ReadTxn, Reply> {
        let txn = self.inner.state.get().begin_read();
        if super::state_file::applied_of(&txn).index >= self.inner.state.answered() {
            return Ok(txn);
        }
        drop(txn);
        self.commit_answered(deadline).await?;
        Ok(self.inner.state.get().begin_read())
    }

    /// The newest index whose result this node has sent, or is sending, to
    /// a client.
    pub(super) fn answered(&self) -> u64 {
        self.inner.state.answered()
    }

    /// Makes the apply thread commit everything it has applied (and so
    /// answered), and waits for that.
    pub(super) async fn commit_answered(&self, deadline: Instant) -> Result<(), Reply> {
        let (ready_tx, ready) = oneshot::channel();
        if self.inner.inbox.try_send(Input::Visible { ready: ready_tx }).is_err() {
            return Err(busy());
        }
        match until(deadline, ready).await {
            Some(Ok(Ok(()))) => Ok(()),
            _ => Err(Reply::unavailable("the state file did not catch up within the timeout")),
        }
    }

    /// Waits until this node's state file reflects every write acknowledged
    /// before now (ReadIndex, thesis §6.4).
    async fn read_barrier(&self, deadline: Instant) -> Result<(), Reply> {
        loop {
            let (ready_tx, ready) = oneshot::channel();
            if self.inner.inbox.try_send(Input::Read { ready: ready_tx }).is_err() {
                return Err(busy());
            }
            match until(deadline, ready).await {
                Some(Ok(Ok(()))) => return Ok(()),
                Some(Ok(Err(_))) if Instant::now() + RETRY_PAUSE < deadline => {
                    async_std::task::sleep(RETRY_PAUSE).await;
                }
                _ => return Err(no_leader()),
            }
        }
    }
}

/// What a proposal proposes.
#[derive(Debug, Clone)]
pub(super) enum Proposal {
    /// An encoded client command.
    Command(Vec<u8>),
    /// A membership change.
    Membership(MembershipChange),
}

impl Proposal {
    /// The event-loop input that proposes it.
    fn input(
        &self,
        accepted: Arc<AtomicBool>,
        done: oneshot::Sender<Result<Reply, RaftError>>,
    ) -> Input {
        match self {
            Proposal::Command(payload) => {
                Input::Propose { payload: payload.clone(), accepted, done }
            }
            Proposal::Membership(change) => {
                Input::ChangeMembership { change: change.clone(), accepted, done }
            }
        }
    }
}

/// Where a request goes when it is forwarded to the leader.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<'a> {
    /// POST /command.
    Command,
    /// An admin endpoint: "METHOD /path".
    Admin(&'a str),
}

/// Awaits `future` until `deadline`; None if the deadline passed first.
pub(super) async fn until<F: std::future::Future>(
    deadline: Instant,
    future: F,
) -> Option<F::Output> {
    let left = deadline.saturating_duration_since(Instant::now());
    async_std::future::timeout(left, future).await.ok()
}

pub(super) fn no_leader() -> Reply {
    Reply::unavailable("no leader with a quorum within the request timeout; retry")
}

pub(super) fn busy() -> Reply {
    Reply::unavailable("the node is overloaded; retry")
}

/// The answer to a change Raft refused.
pub(super) fn refused(error: &MembershipError) -> Reply {
    let status = match error {
        MembershipError::UnknownMember(_) => 404,
        MembershipError::Invalid(_) => 400,
        _ => 409,
    };
    let mut reply = Reply::error(status, error.to_string());
    if let MembershipError::LearnerBehind { behind, .. } = error {
        reply.body["behind_entries"] = serde_json::json!(behind);
    }
    reply
}
