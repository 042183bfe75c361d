//! The RPC thread: connections to peers, the per-peer send loops and the
//! forwarding of client requests. Everything here runs on one
//! single-threaded executor, so shared state is `Rc<RefCell<..>>`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;

use async_executor::LocalExecutor;
use async_std::net::{TcpListener, TcpStream};
use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, Disconnector, RpcSystem};
use futures::channel::mpsc;
use futures::{AsyncReadExt, Future, StreamExt};

use super::raft_capnp::peer;
use super::server::PeerServer;
use super::transfer::{transfer_loop, Incoming, TransferJob, CHUNK_BYTES_MAX};
use super::{
    codec, ForwardJob, RpcConfig, BACKOFF_MAX, BACKOFF_MIN, BATCH_BYTES_MAX, BATCH_MESSAGES_MAX,
    CALL_TIMEOUT, CONNECTIONS_MAX, FORWARDS_IN_FLIGHT_MAX, HELLO_TIMEOUT, MESSAGE_WORDS_MAX,
};
use crate::kv::Reply;
use crate::node::{ForwardError, NodeHandle};
use crate::raft::{Message, NodeId};
use crate::tls::TlsState;
use std::sync::{Arc, OnceLock};

/// One live connection, seen from this end.
pub(super) struct Conn {
    /// Tells connections apart when a peer reconnects.
    pub(super) number: u64,
    /// The peer's capability on this connection.
    pub(super) remote: RefCell<Option<peer::Client>>,
    /// Closes the connection (taken once).
    disconnector: RefCell<Option<Disconnector<Side>>>,
    /// The member at the other end, once introduced.
    pub(super) peer: Cell<Option<NodeId>>,
    /// The client certificate an accepted TLS connection was verified with;
    /// `hello` checks that it names the member claimed.
    pub(super) certificate: Option<rustls::Certificate>,
}

/// State shared by every task of the RPC thread.
pub(super) struct Links {
    /// This member.
    pub(super) id: NodeId,
    /// The cluster name peers must present.
    pub(super) cluster: String,
    /// Every member's peer address, by id.
    pub(super) members: BTreeMap<NodeId, SocketAddr>,
    /// The node, for incoming messages and forwarded requests.
    pub(super) node: NodeHandle,
    /// Runs the RPC thread's tasks.
    executor: Rc<LocalExecutor<'static>>,
    /// The current connection to each peer.
    links: RefCell<HashMap<NodeId, Rc<Conn>>>,
    /// Numbers connections.
    next_number: Cell<u64>,
    /// Accepted connections open now.
    accepted: Cell<usize>,
    /// Forwarded requests in flight.
    forwards: Cell<usize>,
    /// The snapshot being received, if any.
    pub(super) incoming: RefCell<Option<Incoming>>,
    /// Bytes per snapshot chunk sent.
    pub(super) chunk_bytes: usize,
    /// Mutual TLS, if configured.
    tls: Option<Arc<TlsState>>,
}

impl Links {
    /// Spawns `task` on the RPC thread.
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.executor.spawn(task).detach();
    }

    /// Makes `conn` the connection to `peer`.
    pub(super) fn register(&self, peer: NodeId, conn: &Rc<Conn>) {
        conn.peer.set(Some(peer));
        // The map's borrow must end before `close`, which borrows it again
        // (inside `if let`, the temporary borrow would live through the body:
        // the panic killed the task serving the new connection, so a peer
        // whose old connection was still registered could not reconnect).
        let old = self.links.borrow_mut().insert(peer, conn.clone());
        if let Some(old) = old.filter(|old| old.number != conn.number) {
            self.close(&old);
        }
        log::info!("node {}: connected to peer {peer}", self.id);
    }

    fn link(&self, peer: NodeId) -> Option<Rc<Conn>> {
        self.links.borrow().get(&peer).cloned()
    }

    /// The peer's capability on the current connection to it.
    pub(super) fn remote(&self, peer: NodeId) -> Option<peer::Client> {
        self.link(peer).and_then(|conn| conn.remote.borrow().clone())
    }

    /// Closes `conn` (its tasks end when the connection does).
    pub(super) fn close(&self, conn: &Conn) {
        if let Some(peer) = conn.peer.get() {
            let mut links = self.links.borrow_mut();
            if links.get(&peer).is_some_and(|current| current.number == conn.number) {
                links.remove(&peer);
            }
        }
        if let Some(disconnector) = conn.disconnector.borrow_mut().take() {
            self.spawn(async move {
                let _ = disconnector.await;
            });
        }
    }
}

/// The RPC thread's body: runs until the process ends.
pub(super) fn run(
    config: &RpcConfig,
    node: NodeHandle,
    listener: std::net::TcpListener,
    peers: Vec<(NodeId, SocketAddr, mpsc::Receiver<Message>)>,
    jobs: mpsc::Receiver<ForwardJob>,
    transfers: mpsc::Receiver<TransferJob>,
) {
    // async-io's block_on lets this thread wait on the socket reactor
    // itself, so a peer's bytes wake it directly rather than through
    // async-io's helper thread (one context switch less per message).
    let executor = Rc::new(LocalExecutor::new());
    let links = Rc::new(Links {
        id: config.id,
        cluster: config.cluster.clone(),
        members: config.members.clone(),
        node,
        executor: executor.clone(),
        links: RefCell::new(HashMap::new()),
        next_number: Cell::new(1),
        accepted: Cell::new(0),
        forwards: Cell::new(0),
        incoming: RefCell::new(None),
        chunk_bytes: config.snapshot_chunk_bytes.clamp(1, CHUNK_BYTES_MAX),
        tls: config.tls.clone(),
    });
    links.spawn(accept_loop(links.clone(), TcpListener::from(listener)));
    for (peer, addr, queue) in peers {
        if peer > config.id {
            links.spawn(dial_loop(links.clone(), peer, addr));
        }
        links.spawn(send_loop(links.clone(), peer, queue));
    }
    links.spawn(forward_loop(links.clone(), jobs));
    links.spawn(transfer_loop(links.clone(), transfers));
    async_io::block_on(executor.run(futures::future::pending::<()>()));
}

async fn accept_loop(links: Rc<Links>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) if links.accepted.get() < CONNECTIONS_MAX => {
                let _ = stream.set_nodelay(true);
                links.accepted.set(links.accepted.get() + 1);
                let task_links = links.clone();
                links.spawn(async move {
                    accept_connection(task_links.clone(), stream, from).await;
                    task_links.accepted.set(task_links.accepted.get() - 1);
                    log::debug!("peer connection from {from} closed");
                });
            }
            Ok((_, from)) => log::warn!("refused peer connection from {from}: too many open"),
            Err(error) => {
                log::warn!("accepting a peer connection failed: {error}");
                async_std::task::sleep(BACKOFF_MIN).await;
            }
        }
    }
}

/// Serves an accepted connection, after the TLS handshake if configured
/// (keeping the client certificate it was verified with).
async fn accept_connection(links: Rc<Links>, stream: TcpStream, from: SocketAddr) {
    let Some(tls) = links.tls.clone() else {
        run_connection(links, stream.clone(), stream, Side::Server, Peer::Unknown(None)).await;
        return;
    };
    let accepted = Arc::new(OnceLock::new());
    let config = match tls.configs().peer_server(accepted.clone()) {
        Ok(config) => config,
        Err(error) => return log::warn!("node {}: peer TLS: {error}", links.id),
    };
    let acceptor = async_tls::TlsAcceptor::from(config);
    match async_std::future::timeout(HELLO_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = stream.split();
            let certificate = accepted.get().cloned();
            run_connection(links, reader, writer, Side::Server, Peer::Unknown(certificate)).await;
        }
        Ok(Err(error)) => {
            log::warn!("node {}: refused peer connection from {from}: {error}", links.id)
        }
        Err(_) => {
            log::warn!("node {}: refused peer connection from {from}: no TLS handshake", links.id)
        }
    }
}

async fn dial_loop(links: Rc<Links>, peer: NodeId, addr: SocketAddr) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Ok(Ok(stream)) =
            async_std::future::timeout(CALL_TIMEOUT, TcpStream::connect(addr)).await
        {
            let _ = stream.set_nodelay(true);
            // Only a connection that got as far as hello resets the backoff:
            // a peer that accepts and then fails the handshake or hello (a
            // wrong certificate, another cluster) is redialled ever more
            // slowly, not 20 times a second with a warning each time.
            if dialed_connection(links.clone(), stream, peer, addr).await {
                backoff = BACKOFF_MIN;
            }
            log::info!("node {}: connection to peer {peer} at {addr} closed", links.id);
        }
        async_std::task::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Serves a dialed connection, after the TLS handshake if configured (the
/// peer's certificate must name the address dialed). Returns whether the
/// peer was introduced.
async fn dialed_connection(
    links: Rc<Links>,
    stream: TcpStream,
    peer: NodeId,
    addr: SocketAddr,
) -> bool {
    let Some(tls) = links.tls.clone() else {
        return run_connection(links, stream.clone(), stream, Side::Client, Peer::Dialed(peer))
            .await;
    };
    let connector = async_tls::TlsConnector::from(tls.configs().peer_client);
    let handshake = connector.connect(addr.ip().to_string(), stream);
    match async_std::future::timeout(HELLO_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = stream.split();
            run_connection(links, reader, writer, Side::Client, Peer::Dialed(peer)).await
        }
        Ok(Err(error)) => {
            log::warn!("node {}: TLS to peer {peer} at {addr} failed: {error}", links.id);
            false
        }
        Err(_) => {
            log::warn!("node {}: TLS to peer {peer} at {addr} timed out", links.id);
            false
        }
    }
}

/// Who is at the other end of a new connection.
enum Peer {
    /// The member this end dialed (and must introduce itself to).
    Dialed(NodeId),
    /// Someone who dialed this end, to be introduced by `hello`; with TLS,
    /// the client certificate its handshake was verified with.
    Unknown(Option<rustls::Certificate>),
}

/// Serves one connection until it closes; returns whether the peer was
/// introduced (`hello` went through) on it.
async fn run_connection<R, W>(
    links: Rc<Links>,
    reader: R,
    writer: W,
    side: Side,
    peer: Peer,
) -> bool
where
    R: futures::AsyncRead + Unpin + 'static,
    W: futures::AsyncWrite + Unpin + 'static,
{
    let number = links.next_number.get();
    links.next_number.set(number + 1);
    let conn = Rc::new(Conn {
        number,
        remote: RefCell::new(None),
        disconnector: RefCell::new(None),
        peer: Cell::new(None),
        certificate: match &peer {
            Peer::Unknown(certificate) => certificate.clone(),
            Peer::Dialed(_) => None,
        },
    });
    let local: peer::Client =
        capnp_rpc::new_client(PeerServer { links: links.clone(), conn: conn.clone() });
    let mut options = ReaderOptions::new();
    options.traversal_limit_in_words(Some(MESSAGE_WORDS_MAX));
    let network = twoparty::VatNetwork::new(reader, writer, side, options);
    let mut system = RpcSystem::new(Box::new(network), Some(local.client));
    let other_side = if side == Side::Client { Side::Server } else { Side::Client };
    let remote: peer::Client = system.bootstrap(other_side);
    *conn.remote.borrow_mut() = Some(remote.clone());
    *conn.disconnector.borrow_mut() = Some(system.get_disconnector());
    match peer {
        Peer::Dialed(peer) => links.spawn(introduce(links.clone(), conn.clone(), remote, peer)),
        Peer::Unknown(_) => links.spawn(expect_hello(links.clone(), conn.clone())),
    }
    if let Err(error) = system.await {
        log::debug!("node {}: peer connection failed: {error}", links.id);
    }
    links.close(&conn);
    conn.peer.get().is_some()
}

/// The dialing end's `hello`.
async fn introduce(links: Rc<Links>, conn: Rc<Conn>, remote: peer::Client, peer: NodeId) {
    let mut request = remote.hello_request();
    request.get().set_from(links.id);
    request.get().set_cluster(links.cluster.as_str());
    let answer = async_std::future::timeout(HELLO_TIMEOUT, request.send().promise).await;
    let id = match answer {
        Ok(Ok(response)) => response.get().map(|r| r.get_id()).ok(),
        Ok(Err(error)) => {
            log::warn!("node {}: peer {peer} refused hello: {error}", links.id);
            None
        }
        Err(_) => None,
    };
    if id == Some(peer) {
        links.register(peer, &conn);
    } else {
        log::warn!("node {}: the member expected as {peer} answered as {id:?}", links.id);
        links.close(&conn);
    }
}

/// Closes an accepted connection that has not introduced itself in time.
async fn expect_hello(links: Rc<Links>, conn: Rc<Conn>) {
    async_std::task::sleep(HELLO_TIMEOUT).await;
    let open = conn.disconnector.borrow().is_some();
    if open && conn.peer.get().is_none() {
        log::warn!("node {}: closing a peer connection that never said hello", links.id);
        links.close(&conn);
    }
}

async fn send_loop(links: Rc<Links>, peer: NodeId, mut queue: mpsc::Receiver<Message>) {
    while let Some(first) = queue.next().await {
        let mut bytes = first.size_bytes();
        let mut batch = vec![first];
        while batch.len() < BATCH_MESSAGES_MAX && bytes < BATCH_BYTES_MAX {
            let Ok(message) = queue.try_recv() else { break };
            bytes += message.size_bytes();
            batch.push(message);
        }
        // Without a connection the batch is dropped: Raft resends.
        let Some(conn) = links.link(peer) else { continue };
        let Some(remote) = conn.remote.borrow().clone() else { continue };
        if let Err(error) = deliver(&remote, &batch).await {
            log::debug!("node {}: delivery to {peer} failed: {error}", links.id);
            links.close(&conn);
        }
    }
}

async fn deliver(remote: &peer::Client, batch: &[Message]) -> Result<(), String> {
    let mut request = remote.deliver_request();
    let count = u32::try_from(batch.len()).map_err(|_| "batch too long".to_string())?;
    let mut list = request.get().init_messages(count);
    for (at, message) in (0..count).zip(batch) {
        codec::encode(message, list.reborrow().get(at)).map_err(|e| e.to_string())?;
    }
    match async_std::future::timeout(CALL_TIMEOUT, request.send().promise).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

async fn forward_loop(links: Rc<Links>, mut jobs: mpsc::Receiver<ForwardJob>) {
    while let Some(job) = jobs.next().await {
        if links.forwards.get() >= FORWARDS_IN_FLIGHT_MAX {
            let refused = ForwardError::NotSent("too many requests are being forwarded".into());
            let _ = job.reply.send(Err(refused));
            continue;
        }
        links.forwards.set(links.forwards.get() + 1);
        let task_links = links.clone();
        links.spawn(async move {
            let result = forward(&task_links, job.to, &job.request).await;
            let _ = job.reply.send(result);
            task_links.forwards.set(task_links.forwards.get() - 1);
        });
    }
}

async fn forward(links: &Links, to: NodeId, body: &[u8]) -> Result<Reply, ForwardError> {
    let not_sent = |why: String| ForwardError::NotSent(why);
    let conn = links.link(to).ok_or_else(|| not_sent(format!("no connection to member {to}")))?;
    let remote =
        conn.remote.borrow().clone().ok_or_else(|| not_sent("connection not ready".into()))?;
    let mut request = remote.forward_request();
    request.get().set_request(body);
    // From here on the request may have reached the leader: any failure
    // leaves its outcome unknown.
    let unknown = |why: String| ForwardError::Unknown(why);
    let response = async_std::future::timeout(CALL_TIMEOUT, request.send().promise)
        .await
        .map_err(|_| unknown(format!("no answer within {CALL_TIMEOUT:?}")))?
        .map_err(|e| unknown(e.to_string()))?;
    let answer = response.get().map_err(|e| unknown(e.to_string()))?;
    let body = answer.get_body().map_err(|e| unknown(e.to_string()))?;
    let body = serde_json::from_slice(body)
        .map_err(|e| unknown(format!("leader sent a bad body: {e}")))?;
    Ok(Reply { status: answer.get_status(), body })
}
