//! What the RPC thread sends: Raft messages to each peer in batches,
//! forwarded client and admin requests, and the event loop's control
//! messages (new send queues, new memberships).

use std::rc::Rc;

use futures::channel::mpsc;
use futures::StreamExt;

use super::links::Links;
use super::raft_capnp::peer;
use super::FORWARDS_IN_FLIGHT_MAX;
use super::{codec, Control, ForwardJob, BATCH_BYTES_MAX, BATCH_MESSAGES_MAX, CALL_TIMEOUT};
use crate::kv::Reply;
use crate::node::ForwardError;
use crate::raft::{Message, NodeId};

/// Takes the event loop's control messages until the process ends.
pub(super) async fn control_loop(links: Rc<Links>, mut control: mpsc::Receiver<Control>) {
    while let Some(message) = control.next().await {
        match message {
            Control::Queue(peer, queue) => links.spawn(send_loop(links.clone(), peer, queue)),
            Control::Members(members) => {
                for (peer, addr) in links.set_members(members) {
                    links.spawn(super::connect::dial_loop(links.clone(), peer, addr));
                }
            }
        }
    }
}

/// Delivers the messages queued for `peer`, in batches, on its current
/// connection; ends when the queue is dropped (the peer was removed).
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
        let metrics = links.node.metrics();
        let Some(conn) = links.link(peer) else {
            metrics.peer_delivery(peer, None);
            continue;
        };
        let Some(remote) = conn.remote.borrow().clone() else {
            metrics.peer_delivery(peer, None);
            continue;
        };
        let started = std::time::Instant::now();
        match deliver(&remote, &batch).await {
            Ok(()) => metrics.peer_delivery(peer, Some(started.elapsed())),
            Err(error) => {
                metrics.peer_delivery(peer, None);
                log::debug!("node {}: delivery to {peer} failed: {error}", links.id);
                links.close(&conn);
            }
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

/// Forwards requests to the leader, at most [`FORWARDS_IN_FLIGHT_MAX`] at
/// once.
pub(super) async fn forward_loop(links: Rc<Links>, mut jobs: mpsc::Receiver<ForwardJob>) {
    while let Some(job) = jobs.next().await {
        if links.forwards.get() >= FORWARDS_IN_FLIGHT_MAX {
            let refused = ForwardError::NotSent("too many requests are being forwarded".into());
            let _ = job.reply.send(Err(refused));
            continue;
        }
        links.forwards.set(links.forwards.get() + 1);
        let task_links = links.clone();
        links.spawn(async move {
            let result = forward(&task_links, job.to, &job.target, &job.request).await;
            let _ = job.reply.send(result);
            task_links.forwards.set(task_links.forwards.get() - 1);
        });
    }
}

async fn forward(
    links: &Links,
    to: NodeId,
    target: &str,
    body: &[u8],
) -> Result<Reply, ForwardError> {
    let not_sent = |why: String| ForwardError::NotSent(why);
    let conn = links.link(to).ok_or_else(|| not_sent(format!("no connection to member {to}")))?;
    let remote =
        conn.remote.borrow().clone().ok_or_else(|| not_sent("connection not ready".into()))?;
    let mut request = remote.forward_request();
    request.get().set_request(body);
    request.get().set_target(target);
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
