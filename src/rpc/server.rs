//! This member's `Peer` capability, one object per connection, so that it
//! knows which member is calling.

use std::rc::Rc;

use capnp::Error;

use super::codec;
use super::links::{Conn, Links};
use super::raft_capnp::peer;

/// Serves the calls that arrive on one connection.
pub(super) struct PeerServer {
    /// The RPC thread's shared state.
    pub(super) links: Rc<Links>,
    /// The connection the calls arrive on.
    pub(super) conn: Rc<Conn>,
}

impl PeerServer {
    /// Refuses the call and closes the connection: a peer that breaks the
    /// protocol gets no second chance on this connection.
    fn refuse(&self, why: String) -> Error {
        log::warn!("node {}: closing a peer connection: {why}", self.links.id);
        self.links.close(&self.conn);
        Error::failed(why)
    }

    /// The introduced peer, or a refusal.
    fn peer(&self) -> Result<u64, Error> {
        self.conn.peer.get().ok_or_else(|| self.refuse("a call before hello".into()))
    }

    fn hello(&self, params: &peer::HelloParams) -> Result<u64, Error> {
        let params = params.get()?;
        let from = params.get_from();
        let cluster = params.get_cluster()?.to_str().map_err(|e| Error::failed(e.to_string()))?;
        if cluster != self.links.cluster {
            let ours = &self.links.cluster;
            return Err(self.refuse(format!("peer from cluster {cluster:?}, not {ours:?}")));
        }
        if from == self.links.id || from == 0 {
            return Err(self.refuse(format!("hello from {from}, which is this node or no one")));
        }
        let member = self.links.members.borrow().get(&from).copied();
        let former = self.links.former.borrow().get(&from).copied();
        // A member (or one removed lately) must present a certificate naming
        // its configured address. A node that is not a member itself
        // (joining, or removed) cannot tell its peers apart: it takes any
        // peer of the cluster whose certificate names the address it
        // connects from (the API client certificate names none).
        let expected_ip = match member.or(former) {
            Some(address) => address.ip(),
            None if !self.links.is_member() => match self.conn.from {
                Some(from) => from.ip(),
                None => return Err(self.refuse("hello on a dialed connection".into())),
            },
            None => {
                return Err(
                    self.refuse(format!("hello from {from}, which is not a member of the cluster"))
                )
            }
        };
        if let Some(certificate) = &self.conn.certificate {
            if !crate::tls::names_ip(certificate, expected_ip) {
                return Err(self.refuse(format!(
                    "hello from {from}, whose certificate does not name {expected_ip}"
                )));
            }
        }
        if self.conn.peer.get().is_some() {
            return Err(self.refuse("a second hello".into()));
        }
        self.links.register(from, &self.conn);
        Ok(self.links.id)
    }

    fn deliver(&self, params: &peer::DeliverParams) -> Result<(), Error> {
        let peer = self.peer()?;
        let messages = params.get()?.get_messages()?;
        let mut decoded = Vec::with_capacity(messages.len() as usize);
        for reader in messages.iter() {
            let message =
                codec::decode(reader).map_err(|e| self.refuse(format!("bad message: {e}")))?;
            if matches!(message.body, crate::raft::Body::Snapshot { .. }) {
                return Err(self.refuse("a snapshot offer outside installSnapshot".into()));
            }
            if message.from != peer || message.to != self.links.id {
                return Err(self.refuse(format!(
                    "member {peer} sent a message from {} to {}",
                    message.from, message.to
                )));
            }
            decoded.push(message);
        }
        for message in decoded {
            self.links.node.deliver(message);
        }
        Ok(())
    }
}

impl peer::Server for PeerServer {
    async fn hello(
        self: Rc<Self>,
        params: peer::HelloParams,
        mut results: peer::HelloResults,
    ) -> Result<(), Error> {
        let id = PeerServer::hello(&self, &params)?;
        results.get().set_id(id);
        Ok(())
    }

    async fn deliver(
        self: Rc<Self>,
        params: peer::DeliverParams,
        _: peer::DeliverResults,
    ) -> Result<(), Error> {
        PeerServer::deliver(&self, &params)
    }

    async fn forward(
        self: Rc<Self>,
        params: peer::ForwardParams,
        mut results: peer::ForwardResults,
    ) -> Result<(), Error> {
        self.peer()?;
        let params = params.get()?;
        let request = params.get_request()?.to_vec();
        let target = params.get_target()?.to_str().map_err(|e| Error::failed(e.to_string()))?;
        let reply = match target.split_once(' ') {
            None if target.is_empty() => self.links.node.execute(&request, true).await,
            Some(_) if target == crate::node::STATUS_TARGET => {
                crate::kv::Reply { status: 200, body: self.links.node.status_json() }
            }
            Some((method, path)) if path.starts_with("/admin/") => {
                self.links.node.admin(method, path, &request, true).await
            }
            _ => return Err(self.refuse(format!("a forwarded request to {target:?}"))),
        };
        let mut answer = results.get();
        answer.set_status(reply.status);
        answer.set_body(&reply.body_bytes());
        Ok(())
    }

    async fn install_snapshot(
        self: Rc<Self>,
        params: peer::InstallSnapshotParams,
        mut results: peer::InstallSnapshotResults,
    ) -> Result<(), Error> {
        let peer = self.peer()?;
        let chunk = params.get()?.get_chunk()?;
        let links = self.links.clone();
        match super::transfer::receive_chunk(&links, &links.incoming, peer, chunk).await {
            Ok(accepted) => {
                results.get().set_accepted(accepted);
                Ok(())
            }
            Err(why) => Err(self.refuse(why)),
        }
    }
}
