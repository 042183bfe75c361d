//! The Cap'n Proto edge: Raft messages and forwarded client requests
//! between members (`schema/raft.capnp`).
//!
//! capnp-rpc objects are `!Send`, so the whole RPC system lives on one
//! thread with a single-threaded executor, and the rest of the node talks to
//! it through bounded channels: the event loop hands outgoing messages to a
//! [`PeerTransport`] (one bounded queue per peer; a full queue drops, which
//! Raft treats as loss), and HTTP handlers forward requests through a
//! [`PeerForwarder`]. Incoming messages go straight into the node's inbox.
//!
//! Each pair of members shares one TCP connection: the member with the lower
//! id dials, introduces itself with `hello`, and both ends then call the
//! other's `Peer` capability on it. A dialer reconnects with exponential
//! backoff. The higher id dials as well once no connection has come for
//! [`FALLBACK_DIAL_AFTER`]: a node joining the cluster knows no one, so if
//! its id is the lower, only the other side can connect. A connection that
//! sends something undecodable, claims to be someone else, or does not
//! introduce itself in time is closed; a call that takes longer than
//! [`CALL_TIMEOUT`] closes its connection too, so a peer that stalls is
//! redialed rather than waited on forever. With TLS, the stream is split
//! between capnp's reader and writer by `tls_halves.rs`, which wakes the
//! reader when the writer took its bytes off the socket.
//!
//! The members change at run time: the event loop hands every new
//! membership to [`PeerTransport::set_membership`], and the RPC thread
//! starts dialing new members and closes its connections to removed ones.

mod codec;
mod connect;
mod links;
mod outbound;
#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, clippy::unimplemented, missing_docs, unused_qualifications, dead_code)]
pub mod raft_capnp;
mod server;
mod thread;
mod tls_halves;
mod transfer;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::kv::Reply;
use crate::node::{ForwardError, Forwarder, NodeHandle, Transport};
use crate::raft::{Membership, Message, NodeId, MEMBERS_MAX};

pub use codec::{decode, encode};
pub use transfer::{CHUNK_BYTES, CHUNK_BYTES_MAX};

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_LEN_MAX: usize = 4_096;
/// Messages in one `deliver` call, at most.
pub const BATCH_MESSAGES_MAX: usize = 512;
/// Entry bytes in one `deliver` call, at most (one larger message still
/// goes alone).
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// The largest Cap'n Proto message accepted, in 8-byte words: a batch plus a
/// maximal forwarded request, with room to spare.
pub const MESSAGE_WORDS_MAX: usize = (64 << 20) / 8;
/// Forwarded requests waiting in the queue, at most.
pub const FORWARD_QUEUE_LEN_MAX: usize = 1_024;
/// Forwarded requests in flight, at most.
pub const FORWARDS_IN_FLIGHT_MAX: usize = 4_096;
/// Incoming connections open at once, at most.
pub const CONNECTIONS_MAX: usize = 64;
/// How long a call may take before its connection is closed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection has to say `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause before redialing, doubled up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest pause between dials.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long the member with the higher id waits for the lower one to
/// connect before it dials itself.
pub const FALLBACK_DIAL_AFTER: Duration = Duration::from_secs(3);
/// Peers with a send queue at once, at most (members and the leader of a
/// cluster this node is joining).
pub const PEER_QUEUES_MAX: usize = 2 * MEMBERS_MAX;
/// Control messages queued for the RPC thread, at most.
pub const CONTROL_QUEUE_LEN_MAX: usize = 256;

/// Where this member listens.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// This member.
    pub id: NodeId,
    /// The address peers reach this member at.
    pub listen: SocketAddr,
    /// A name shared by the cluster; a peer with another name is refused.
    pub cluster: String,
    /// Bytes per snapshot chunk sent (at most [`transfer::CHUNK_BYTES_MAX`]).
    pub snapshot_chunk_bytes: usize,
    /// Mutual TLS between peers, if configured.
    pub tls: Option<std::sync::Arc<crate::tls::TlsState>>,
}

/// What the event loop tells the RPC thread.
#[derive(Debug)]
enum Control {
    /// Send the messages queued here to this peer.
    Queue(NodeId, mpsc::Receiver<Message>),
    /// The members and their peer addresses (this node's own included when
    /// it is a member).
    Members(BTreeMap<NodeId, SocketAddr>),
}

/// Outgoing Raft messages, queued per peer, and snapshot transfers.
#[derive(Debug)]
pub struct PeerTransport {
    /// One bounded queue per peer, made when first needed.
    queues: HashMap<NodeId, mpsc::Sender<Message>>,
    /// New queues and memberships for the RPC thread.
    control: mpsc::Sender<Control>,
    /// Snapshot transfers for the RPC thread.
    transfers: mpsc::Sender<transfer::TransferJob>,
    /// Told when a transfer cannot even be queued.
    node: NodeHandle,
}

impl PeerTransport {
    /// The queue to `to`, made (and handed to the RPC thread) if needed.
    fn queue(&mut self, to: NodeId) -> Option<&mut mpsc::Sender<Message>> {
        if !self.queues.contains_key(&to) {
            if self.queues.len() >= PEER_QUEUES_MAX {
                return None;
            }
            let (sender, receiver) = mpsc::channel(PEER_QUEUE_LEN_MAX);
            self.control.try_send(Control::Queue(to, receiver)).ok()?;
            self.queues.insert(to, sender);
        }
        self.queues.get_mut(&to)
    }
}

impl Transport for PeerTransport {
    fn send_snapshot(&mut self, message: Message, path: std::path::PathBuf) {
        let to = message.to;
        if self.transfers.try_send(transfer::TransferJob { message, path }).is_err() {
            self.node.snapshot_sent(to, false, 0);
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if let Some(queue) = self.queue(message.to) {
                let _ = queue.try_send(message);
            }
        }
    }

    fn set_membership(&mut self, membership: &Membership) {
        let mut addresses = BTreeMap::new();
        for member in membership.members() {
            match member.peer.parse::<SocketAddr>() {
                Ok(addr) => {
                    addresses.insert(member.id, addr);
                }
                Err(_) => log::warn!(
                    "member {} has no usable peer address ({:?}); it cannot be dialed",
                    member.id,
                    member.peer
                ),
            }
        }
        // Queues to removed members end (their send loops with them).
        self.queues.retain(|id, _| membership.contains(*id));
        if self.control.try_send(Control::Members(addresses)).is_err() {
            log::error!("the RPC thread did not take the new membership");
        }
    }
}

/// A request to forward, and where its answer goes.
#[derive(Debug)]
struct ForwardJob {
    /// The member to ask.
    to: NodeId,
    /// Empty for POST /command, else "METHOD /admin/...".
    target: String,
    /// The request body.
    request: Vec<u8>,
    /// The answer.
    reply: oneshot::Sender<Result<Reply, ForwardError>>,
}

/// Forwards client requests over the peer connections.
#[derive(Debug, Clone)]
pub struct PeerForwarder {
    /// Into the RPC thread.
    jobs: mpsc::Sender<ForwardJob>,
}

impl Forwarder for PeerForwarder {
    fn forward(
        &self,
        to: NodeId,
        target: String,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Reply, ForwardError>> {
        let (reply, answer) = oneshot::channel();
        let queued = self.jobs.clone().try_send(ForwardJob { to, target, request, reply });
        async move {
            if queued.is_err() {
                return Err(ForwardError::NotSent("too many requests are being forwarded".into()));
            }
            // Dropped by the RPC thread: it may have been sent already.
            answer
                .await
                .unwrap_or_else(|_| Err(ForwardError::Unknown("the RPC system stopped".into())))
        }
        .boxed()
    }
}

/// Why the peer RPC could not start: the port is taken (or not ours to
/// bind), or the thread could not be made. The node cannot run without it.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct StartError {
    /// What could not be done.
    pub what: String,
    /// The system's error.
    #[source]
    pub source: std::io::Error,
}

/// Binds the peer port and starts the RPC thread.
pub fn start(
    config: RpcConfig,
    node: NodeHandle,
) -> Result<(PeerTransport, PeerForwarder), StartError> {
    let listen = config.listen;
    let listener = std::net::TcpListener::bind(listen).map_err(|source| StartError {
        what: format!("cannot listen for peers on {listen}"),
        source,
    })?;
    let (control, control_receiver) = mpsc::channel(CONTROL_QUEUE_LEN_MAX);
    let (jobs, job_receiver) = mpsc::channel(FORWARD_QUEUE_LEN_MAX);
    let (transfers, transfer_receiver) = mpsc::channel(transfer::TRANSFER_QUEUE_LEN_MAX);
    let rpc_node = node.clone();
    let channels = thread::Channels {
        control: control_receiver,
        jobs: job_receiver,
        transfers: transfer_receiver,
    };
    std::thread::Builder::new()
        .name(format!("rdb-rpc-{}", config.id))
        .spawn(move || thread::run(&config, rpc_node, listener, channels))
        .map_err(|source| StartError { what: "cannot start the RPC thread".into(), source })?;
    let transport = PeerTransport { queues: HashMap::new(), control, transfers, node };
    Ok((transport, PeerForwarder { jobs }))
}
