//! The RPC thread's shared state: who the members are and where, the
//! current connection to each peer, the snapshot being received. Everything
//! here runs on one single-threaded executor, so shared state is
//! `Rc<RefCell<..>>`. The tasks that use it live in `connect.rs`
//! (connections), `outbound.rs` (sending, forwarding, membership updates)
//! and `transfer.rs` (snapshots); `thread.rs` starts them. This file imports
//! none of them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use async_executor::LocalExecutor;
use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::Disconnector;
use futures::Future;

use super::raft_capnp::peer;
use super::RpcConfig;
use crate::node::snapshot_dir::Receiving;
use crate::node::NodeHandle;
use crate::raft::{NodeId, Position};
use crate::tls::TlsState;

/// Removed members whose connections are still accepted, at most.
const FORMER_MAX: usize = crate::raft::MEMBERS_MAX;

/// One live connection, seen from this end.
pub(super) struct Conn {
    /// Tells connections apart when a peer reconnects.
    pub(super) number: u64,
    /// The peer's capability on this connection.
    pub(super) remote: RefCell<Option<peer::Client>>,
    /// Closes the connection (taken once).
    pub(super) disconnector: RefCell<Option<Disconnector<Side>>>,
    /// The member at the other end, once introduced.
    pub(super) peer: Cell<Option<NodeId>>,
    /// The client certificate an accepted TLS connection was verified with;
    /// `hello` checks that it names the member claimed.
    pub(super) certificate: Option<rustls::Certificate>,
    /// Where an accepted connection comes from.
    pub(super) from: Option<SocketAddr>,
}

/// A transfer being received.
pub(super) struct Incoming {
    /// The sending leader.
    pub(super) from: NodeId,
    /// Which snapshot.
    pub(super) meta: Position,
    /// The leader's term.
    pub(super) term: u64,
    /// The file being received.
    pub(super) receiving: Receiving,
}

/// State shared by every task of the RPC thread.
pub(super) struct Links {
    /// This member.
    pub(super) id: NodeId,
    /// The cluster name peers must present.
    pub(super) cluster: String,
    /// Every member's peer address, by id (this node's own included when it
    /// is a member), as of the newest membership.
    pub(super) members: RefCell<BTreeMap<NodeId, SocketAddr>>,
    /// The address each running dial loop dials, by peer.
    pub(super) dialing: RefCell<BTreeMap<NodeId, SocketAddr>>,
    /// Members removed lately (at most [`FORMER_MAX`]), with the address
    /// they had: a leader that removed itself still needs to reach the
    /// others until its removal commits.
    pub(super) former: RefCell<BTreeMap<NodeId, SocketAddr>>,
    /// The node, for incoming messages and forwarded requests.
    pub(super) node: NodeHandle,
    /// Runs the RPC thread's tasks.
    executor: Rc<LocalExecutor<'static>>,
    /// The current connection to each peer.
    links: RefCell<HashMap<NodeId, Rc<Conn>>>,
    /// Numbers connections.
    pub(super) next_number: Cell<u64>,
    /// Accepted connections open now.
    pub(super) accepted: Cell<usize>,
    /// Forwarded requests in flight.
    pub(super) forwards: Cell<usize>,
    /// The snapshot being received, if any.
    pub(super) incoming: RefCell<Option<Incoming>>,
    /// A received snapshot is being verified and published: a new transfer
    /// must not reuse (truncate) its file meanwhile.
    pub(super) finishing: Cell<bool>,
    /// Bytes per snapshot chunk sent.
    pub(super) chunk_bytes: usize,
    /// Mutual TLS, if configured.
    pub(super) tls: Option<Arc<TlsState>>,
}

impl Links {
    /// The state of a node's RPC thread, its tasks run by `executor`;
    /// snapshot chunks of `chunk_bytes` are sent.
    pub(super) fn new(
        config: &RpcConfig,
        node: NodeHandle,
        executor: Rc<LocalExecutor<'static>>,
        chunk_bytes: usize,
    ) -> Rc<Self> {
        Rc::new(Links {
            id: config.id,
            cluster: config.cluster.clone(),
            members: RefCell::new(BTreeMap::new()),
            dialing: RefCell::new(BTreeMap::new()),
            former: RefCell::new(BTreeMap::new()),
            node,
            executor,
            links: RefCell::new(HashMap::new()),
            next_number: Cell::new(1),
            accepted: Cell::new(0),
            forwards: Cell::new(0),
            incoming: RefCell::new(None),
            finishing: Cell::new(false),
            chunk_bytes,
            tls: config.tls.clone(),
        })
    }

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

    /// The current connection to `peer`.
    pub(super) fn link(&self, peer: NodeId) -> Option<Rc<Conn>> {
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

    /// Whether this node is in the membership it knows (a joining or a
    /// removed node is not, and cannot tell who its peers are).
    pub(super) fn is_member(&self) -> bool {
        self.members.borrow().contains_key(&self.id)
    }

    /// Takes a new membership: stops dialing removed members and returns
    /// the new ones, which the caller starts dialing. Connections to removed
    /// members stay open (a leader that removed itself needs them until its
    /// removal commits and it hands over); nothing is sent to them any more.
    pub(super) fn set_members(
        &self,
        members: BTreeMap<NodeId, SocketAddr>,
    ) -> Vec<(NodeId, SocketAddr)> {
        let old = std::mem::replace(&mut *self.members.borrow_mut(), members.clone());
        {
            let mut former = self.former.borrow_mut();
            for (id, addr) in old.into_iter().filter(|(id, _)| !members.contains_key(id)) {
                former.insert(id, addr);
            }
            former.retain(|id, _| !members.contains_key(id));
            while former.len() > FORMER_MAX {
                former.pop_first();
            }
        }
        let mut dialing = self.dialing.borrow_mut();
        dialing.retain(|id, addr| members.get(id) == Some(addr));
        let mut new = Vec::new();
        for (&peer, &addr) in &members {
            if peer != self.id && !dialing.contains_key(&peer) {
                dialing.insert(peer, addr);
                new.push((peer, addr));
            }
        }
        new
    }
}
