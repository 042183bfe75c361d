//! Cluster administration through the node: the members, membership
//! changes and leadership transfer, as docs/API.md ("Cluster
//! administration") specifies them. Requests arrive as (method, path, body)
//! from the HTTP edge or forwarded by a follower; everything but the member
//! list runs on the leader, and a follower forwards it there.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use serde_json::{json, Map, Value};

use super::handle::{busy, no_leader, refused, until, NodeHandle, Proposal, Target};
use super::Input;
use crate::kv::Reply;
use crate::raft::{
    Member, MemberRole, Membership, MembershipChange, NodeId, RaftError, ADDRESS_BYTES_MAX,
};

/// How long a leadership transfer may take before it is reported failed.
pub const MEMBERSHIP_WAIT: Duration = Duration::from_secs(5);
/// How often a transfer's progress is looked at.
const POLL: Duration = Duration::from_millis(10);

/// One admin request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AdminRequest {
    /// GET /admin/members.
    Members,
    /// A membership change.
    Change(MembershipChange),
    /// POST /admin/leader: hand over to a voter (0: the most caught-up).
    TransferLeader(NodeId),
}

/// The JSON of a membership: `{"members": [{id, peer, client_url, role}]}`.
pub fn members_json(membership: &Membership) -> Value {
    let members: Vec<Value> = membership
        .members()
        .iter()
        .map(|m| {
            let role = match m.role {
                MemberRole::Voter => "voter",
                MemberRole::Learner => "learner",
            };
            json!({"id": m.id, "peer": m.peer, "client_url": m.client_url, "role": role})
        })
        .collect();
    json!({ "members": members })
}

impl NodeHandle {
    /// On the leader: hands leadership to the most caught-up voter and
    /// waits up to `timeout` for another node to lead; the new leader, if
    /// one took over.
    pub async fn hand_over(&self, timeout: Duration) -> Option<NodeId> {
        let (done_tx, done) = oneshot::channel();
        self.inner.inbox.try_send(Input::TransferLeader { to: 0, done: done_tx }).ok()?;
        let deadline = Instant::now() + timeout;
        until(deadline, done).await?.ok()?.ok()?;
        while Instant::now() < deadline {
            let status = self.status();
            if status.leader != 0 && status.leader != self.id() {
                return Some(status.leader);
            }
            async_std::task::sleep(POLL).await;
        }
        None
    }

    /// Serves an admin request: `method` and `path` as received, `body` the
    /// JSON body (may be empty). `forwarded` requests came from a follower.
    pub async fn admin(&self, method: &str, path: &str, body: &[u8], forwarded: bool) -> Reply {
        let request = match parse(method, path, body) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        let deadline = Instant::now() + self.inner.timeout;
        let target = format!("{method} {path}");
        match request {
            AdminRequest::Members => self.members(),
            AdminRequest::Change(change) => {
                let proposal = Proposal::Membership(change);
                let target = Target::Admin(&target);
                let reply = self.propose(&proposal, target, body, forwarded, deadline).await;
                self.with_leader(reply)
            }
            AdminRequest::TransferLeader(to) => {
                self.transfer(to, &target, body, forwarded, deadline).await
            }
        }
    }

    /// The members as this node knows them, with the leader and term; on
    /// the leader, each member's match index.
    fn members(&self) -> Reply {
        let status = self.status();
        let mut body = members_json(&status.membership);
        if let Some(list) = body["members"].as_array_mut() {
            for member in list {
                let id = member["id"].as_u64().unwrap_or(0);
                if let Some(peer) = status.peers.iter().find(|p| p.id == id) {
                    member["match_index"] = json!(peer.match_index);
                }
            }
        }
        body["leader"] = json!(status.leader);
        body["term"] = json!(status.term);
        Reply { status: 200, body }
    }

    /// Adds the leader and term to a successful change's answer.
    fn with_leader(&self, mut reply: Reply) -> Reply {
        if reply.status == 200 {
            let status = self.status();
            reply.body["leader"] = json!(status.leader);
            reply.body["term"] = json!(status.term);
        }
        reply
    }

    /// Asks the leader to hand over, then waits until it has.
    async fn transfer(
        &self,
        to: NodeId,
        target: &str,
        body: &[u8],
        forwarded: bool,
        deadline: Instant,
    ) -> Reply {
        let (done_tx, done) = oneshot::channel();
        if self.inner.inbox.try_send(Input::TransferLeader { to, done: done_tx }).is_err() {
            return busy();
        }
        let chosen = match until(deadline, done).await {
            Some(Ok(Ok(chosen))) => chosen,
            Some(Ok(Err(RaftError::NotLeader { leader: Some(leader) }))) if !forwarded => {
                return self.forward(leader, Target::Admin(target), body, deadline).await;
            }
            Some(Ok(Err(RaftError::Membership(why)))) => return refused(&why),
            Some(Ok(Err(RaftError::Transferring))) => {
                return Reply::error(409, "a leadership transfer is already under way")
            }
            _ => return no_leader(),
        };
        let wait_until = deadline.min(Instant::now() + MEMBERSHIP_WAIT);
        while Instant::now() < wait_until {
            let status = self.status();
            if status.leader == chosen {
                return Reply { status: 200, body: json!({"leader": chosen, "term": status.term}) };
            }
            async_std::task::sleep(POLL).await;
        }
        Reply::unavailable(format!(
            "leadership did not move to {chosen} within {MEMBERSHIP_WAIT:?}; it may still, or the \
             current leader keeps it"
        ))
    }
}

/// Checks an admin request; the error is the answer.
fn parse(method: &str, path: &str, body: &[u8]) -> Result<AdminRequest, Reply> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET" | "HEAD", ["", "admin", "members"]) => Ok(AdminRequest::Members),
        ("POST", ["", "admin", "members"]) => add_member(&object(body)?),
        ("POST", ["", "admin", "members", id, "promote"]) => {
            Ok(AdminRequest::Change(MembershipChange::Promote(member_id(id)?)))
        }
        ("DELETE", ["", "admin", "members", id]) => {
            Ok(AdminRequest::Change(MembershipChange::Remove(member_id(id)?)))
        }
        ("POST", ["", "admin", "leader"]) => {
            let fields = object(body)?;
            only(&fields, &["to"])?;
            let to = match fields.get("to") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => n.as_u64().filter(|&id| id > 0).ok_or_else(bad_id)?,
                Some(_) => return Err(bad_id()),
            };
            Ok(AdminRequest::TransferLeader(to))
        }
        _ => Err(Reply::error(404, format!("no admin endpoint {method} {path}; see docs/API.md"))),
    }
}

/// `POST /admin/members`: `{id, peer, client_url, learner}`.
fn add_member(fields: &Map<String, Value>) -> Result<AdminRequest, Reply> {
    only(fields, &["id", "peer", "client_url", "learner"])?;
    let id = match fields.get("id") {
        Some(Value::Number(n)) => n.as_u64().filter(|&id| id > 0).ok_or_else(bad_id)?,
        Some(_) => return Err(bad_id()),
        None => return Err(Reply::bad_request("missing \"id\"")),
    };
    let peer = match fields.get("peer") {
        Some(Value::String(peer)) => peer.parse::<SocketAddr>().map_err(|e| {
            Reply::bad_request(format!("\"peer\" {peer:?} is not an IP address and port: {e}"))
        })?,
        Some(_) => return Err(Reply::bad_request("\"peer\" must be a string \"ip:port\"")),
        None => return Err(Reply::bad_request("missing \"peer\" (the address its peers dial)")),
    };
    let client_url = match fields.get("client_url") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(url))
            if url.len() <= ADDRESS_BYTES_MAX
                && (url.starts_with("http://") || url.starts_with("https://")) =>
        {
            url.clone()
        }
        Some(_) => {
            return Err(Reply::bad_request(
                "\"client_url\" must be an http:// or https:// URL of at most 255 bytes",
            ))
        }
    };
    let learner = match fields.get("learner") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(learner)) => *learner,
        Some(_) => return Err(Reply::bad_request("\"learner\" must be true or false")),
    };
    let role = if learner { MemberRole::Learner } else { MemberRole::Voter };
    let member = Member { id, role, peer: peer.to_string(), client_url };
    Ok(AdminRequest::Change(MembershipChange::Add(member)))
}

/// The body as a JSON object (empty: `{}`).
fn object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match crate::kv::strict_json(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(Reply::bad_request("the body must be a JSON object")),
        Err(e) => Err(Reply::bad_request(format!("malformed JSON: {e}"))),
    }
}

fn only(fields: &Map<String, Value>, allowed: &[&str]) -> Result<(), Reply> {
    match fields.keys().find(|field| !allowed.contains(&field.as_str())) {
        None => Ok(()),
        Some(field) => Err(Reply::bad_request(format!(
            "unknown field {field:?}; it takes {}",
            allowed.join(", ")
        ))),
    }
}

fn member_id(text: &str) -> Result<NodeId, Reply> {
    text.parse::<NodeId>().ok().filter(|&id| id > 0).ok_or_else(bad_id)
}

fn bad_id() -> Reply {
    Reply::bad_request("a member id is a positive integer")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(method: &str, path: &str, body: &str) -> Result<AdminRequest, u16> {
        parse(method, path, body.as_bytes()).map_err(|reply| reply.status)
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(status_of("GET", "/admin/members", ""), Ok(AdminRequest::Members));
        let add = status_of("POST", "/admin/members", r#"{"id":4,"peer":"10.0.0.4:9081"}"#);
        let Ok(AdminRequest::Change(MembershipChange::Add(member))) = add else {
            panic!("{add:?}")
        };
        assert_eq!((member.id, member.role), (4, MemberRole::Learner));
        assert_eq!(
            status_of("POST", "/admin/members/4/promote", ""),
            Ok(AdminRequest::Change(MembershipChange::Promote(4)))
        );
        assert_eq!(
            status_of("DELETE", "/admin/members/3/", ""),
            Ok(AdminRequest::Change(MembershipChange::Remove(3)))
        );
        assert_eq!(status_of("POST", "/admin/leader", ""), Ok(AdminRequest::TransferLeader(0)));
        assert_eq!(
            status_of("POST", "/admin/leader", r#"{"to":2}"#),
            Ok(AdminRequest::TransferLeader(2))
        );
        for (method, path, body) in [
            ("POST", "/admin/members", r#"{"id":0,"peer":"10.0.0.4:9081"}"#),
            ("POST", "/admin/members", r#"{"id":4,"peer":"nowhere"}"#),
            ("POST", "/admin/members", r#"{"id":4,"peer":"10.0.0.4:9081","learnr":true}"#),
            ("POST", "/admin/members", r#"{"id":4,"peer":"10.0.0.4:9081","client_url":"ftp://x"}"#),
            ("POST", "/admin/members", r#"{"id":"4","peer":"10.0.0.4:9081"}"#),
            ("POST", "/admin/members", r#"{"id":4,"id":5,"peer":"10.0.0.4:9081"}"#),
            ("DELETE", "/admin/members/x", ""),
            ("POST", "/admin/leader", r#"{"to":-1}"#),
        ] {
            assert_eq!(status_of(method, path, body).err(), Some(400), "{method} {path} {body}");
        }
        assert_eq!(status_of("PUT", "/admin/members", "").err(), Some(404));
    }
}
