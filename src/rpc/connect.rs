//! Connections between members: accepting (with the TLS handshake when
//! configured), dialing with backoff, and the `hello` that says who is at
//! each end. See the module docs of [`crate::rpc`] for who dials whom.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_std::net::{TcpListener, TcpStream};
use capnp::message::ReaderOptions;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};

use super::links::{Conn, Links};
use super::raft_capnp::peer;
use super::server::PeerServer;
use super::tls_halves::{self, Counted};
use super::{
    BACKOFF_MAX, BACKOFF_MIN, CALL_TIMEOUT, CONNECTIONS_MAX, FALLBACK_DIAL_AFTER, HELLO_TIMEOUT,
    MESSAGE_WORDS_MAX,
};
use crate::raft::NodeId;

/// How often a dial loop looks whether its peer is connected.
const LINK_CHECK: Duration = Duration::from_millis(100);

/// Accepts peer connections until the process ends.
pub(super) async fn accept_loop(links: Rc<Links>, listener: TcpListener) {
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
        run_connection(links, stream.clone(), stream, Side::Server, Peer::Unknown(None, from))
            .await;
        return;
    };
    let accepted = Arc::new(OnceLock::new());
    let config = match tls.configs().peer_server(accepted.clone()) {
        Ok(config) => config,
        Err(error) => return log::warn!("node {}: peer TLS: {error}", links.id),
    };
    let acceptor = async_tls::TlsAcceptor::from(config);
    let socket = Counted::new(stream);
    let read_bytes = socket.read_bytes();
    match async_std::future::timeout(HELLO_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = tls_halves::split(stream, read_bytes);
            let certificate = accepted.get().cloned();
            run_connection(links, reader, writer, Side::Server, Peer::Unknown(certificate, from))
                .await;
        }
        Ok(Err(error)) => {
            log::warn!("node {}: refused peer connection from {from}: {error}", links.id)
        }
        Err(_) => {
            log::warn!("node {}: refused peer connection from {from}: no TLS handshake", links.id)
        }
    }
}

/// Keeps a connection to `peer` at `addr` while it is a member there. The
/// lower id dials at once; the higher only once no connection has come for
/// [`FALLBACK_DIAL_AFTER`] (the lower may not know this node yet).
pub(super) async fn dial_loop(links: Rc<Links>, peer: NodeId, addr: SocketAddr) {
    let eager = peer > links.id;
    let mut backoff = BACKOFF_MIN;
    let mut missing_since = Instant::now();
    loop {
        if links.dialing.borrow().get(&peer) != Some(&addr) {
            return; // removed, or moved to another address (a new loop dials it)
        }
        if links.link(peer).is_some() {
            missing_since = Instant::now();
            async_std::task::sleep(LINK_CHECK).await;
            continue;
        }
        if !eager && missing_since.elapsed() < FALLBACK_DIAL_AFTER {
            async_std::task::sleep(LINK_CHECK).await;
            continue;
        }
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
                missing_since = Instant::now();
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
    let socket = Counted::new(stream);
    let read_bytes = socket.read_bytes();
    let handshake = connector.connect(addr.ip().to_string(), socket);
    match async_std::future::timeout(HELLO_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = tls_halves::split(stream, read_bytes);
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
    /// Someone who dialed this end from an address, to be introduced by
    /// `hello`; with TLS, the client certificate its handshake was verified
    /// with.
    Unknown(Option<rustls::Certificate>, SocketAddr),
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
            Peer::Unknown(certificate, _) => certificate.clone(),
            Peer::Dialed(_) => None,
        },
        from: match &peer {
            Peer::Unknown(_, from) => Some(*from),
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
        Peer::Unknown(..) => links.spawn(expect_hello(links.clone(), conn.clone())),
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
    match id {
        Some(id) if id == peer => links.register(peer, &conn),
        Some(id) => {
            log::warn!("node {}: the member expected as {peer} answered as {id}", links.id);
            links.close(&conn);
        }
        None => {
            log::warn!("node {}: the member expected as {peer} did not introduce itself", links.id);
            links.close(&conn);
        }
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
