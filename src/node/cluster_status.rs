//! The whole cluster's status from any one node (`GET /cluster`, `rdb
//! status`): this node asks every member for its `/status` over the peer
//! connections it already has (a forwarded "GET /status"), so that the
//! answer needs no client URL of any member and no route from the client
//! to each of them.
//!
//! Caveats: a member this node cannot reach shows as unreachable even if
//! clients can reach it; each member's figures are its own, taken at
//! slightly different moments.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::handle::{until, NodeHandle};
use super::{members_json, ForwardError};

/// How long the cluster status waits for each member's answer.
pub const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// The forwarded request that asks a member for its status.
pub const STATUS_TARGET: &str = "GET /status";

impl NodeHandle {
    /// This node's `GET /status` body: the status and its membership.
    pub fn status_json(&self) -> Value {
        let status = self.status();
        let mut body = serde_json::to_value(&status).unwrap_or_default();
        body["members"] = members_json(&status.membership)["members"].take();
        body["requests"] = self.metrics().requests_json();
        body
    }

    /// Every member of this node's membership with its own status:
    /// `{"id": this node, "leader", "term", "members": [{"id", "peer",
    /// "client_url", "role", "reachable": bool, "status": {...} | null,
    /// "error"?: why unreachable}]}`, each member asked at once and given
    /// up after [`MEMBER_STATUS_TIMEOUT`].
    pub async fn cluster_status(&self) -> Value {
        let own = self.status_json();
        let members = own["members"].as_array().cloned().unwrap_or_default();
        let deadline = Instant::now() + MEMBER_STATUS_TIMEOUT;
        let asks = members.into_iter().map(|member| self.member_status(member, &own, deadline));
        let members = futures::future::join_all(asks).await;
        json!({"id": own["id"], "leader": own["leader"], "term": own["term"], "members": members})
    }

    async fn member_status(&self, mut member: Value, own: &Value, deadline: Instant) -> Value {
        let id = member["id"].as_u64().unwrap_or(0);
        let answer =
            if id == self.id() { Ok(own.clone()) } else { self.ask_status(id, deadline).await };
        match answer {
            Ok(mut status) => {
                status.as_object_mut().map(|fields| fields.remove("members"));
                member["reachable"] = true.into();
                member["status"] = status;
            }
            Err(why) => {
                member["reachable"] = false.into();
                member["status"] = Value::Null;
                member["error"] = why.into();
            }
        }
        member
    }

    async fn ask_status(&self, id: u64, deadline: Instant) -> Result<Value, String> {
        let Some(forwarder) = self.forwarder() else {
            return Err("peer connections are not up yet".into());
        };
        match until(deadline, forwarder.forward(id, STATUS_TARGET.into(), Vec::new())).await {
            Some(Ok(reply)) if reply.status == 200 => Ok(reply.body),
            Some(Ok(reply)) => Err(format!("answered {}: {}", reply.status, reply.body)),
            Some(Err(ForwardError::NotSent(why) | ForwardError::Unknown(why))) => Err(why),
            None => Err(format!("no answer within {MEMBER_STATUS_TIMEOUT:?}")),
        }
    }
}
