//! Serving `watch` (docs/API.md, "Watch") from this node's own history of
//! applied changes: any node serves watches, never forwarding them, and a
//! watcher sees the changes in the order this node applied them, each once.
//!
//! Two forms: a stream of newline-delimited JSON events kept open until the
//! client goes away (the first line says the watch is set up and from which
//! revision), and a long poll (`wait_ms`) answering with the changes since
//! `from_revision`, or those that come within the wait.
//!
//! Caveats: a stream ends with an error event when the watcher falls
//! behind by more than its buffer or the node installs a snapshot; the
//! client resumes with `from_revision` (410 if that is older than the
//! history).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::handle::NodeHandle;
use super::history::{Cut, Event, Filter, Subscription, WatchRefused, WATCH_BUFFER_EVENTS};
use crate::kv::{Reply, Request, WatchSpec};

/// What a POST /command body gets: an answer, or a stream of events.
#[derive(Debug)]
pub enum Answer {
    /// One answer.
    Reply(Reply),
    /// A streaming watch, set up.
    Stream(Subscription),
}

impl NodeHandle {
    /// Like [`NodeHandle::execute`] for a client's request, but a watch
    /// without `wait_ms` becomes a stream (served here, never forwarded).
    pub async fn execute_or_watch(&self, body: &[u8]) -> Answer {
        match Request::parse(body, self.limits()) {
            Ok(Request::Watch(spec)) if spec.wait_ms.is_none() => {
                let answer = self.subscribe(&spec).await;
                let status = answer.as_ref().map_or_else(|reply| reply.status, |_| 200);
                self.metrics().request("watch", status, Duration::ZERO);
                match answer {
                    Ok(subscription) => Answer::Stream(subscription),
                    Err(reply) => Answer::Reply(reply),
                }
            }
            Ok(request) => Answer::Reply(self.run(request, body, false).await),
            Err(reply) => {
                self.metrics().request("invalid", reply.status, Duration::ZERO);
                Answer::Reply(reply)
            }
        }
    }

    /// Registers a watcher once this node's history holds every write it
    /// has answered (the apply thread answers before it records them), so
    /// that the watch's starting revision is not older than a write its
    /// client was already told of.
    async fn subscribe(&self, spec: &WatchSpec) -> Result<Subscription, Reply> {
        if self.inner_history().applied() < self.answered() {
            self.commit_answered(std::time::Instant::now() + self.inner.timeout).await?;
        }
        let filter = Filter {
            collection: spec.collection.clone(),
            key: spec.key.clone(),
            prefix: spec.prefix.clone(),
        };
        self.inner_history().subscribe(filter, spec.from_revision).map_err(
            |refused| match refused {
                WatchRefused::Compacted { oldest } => Reply {
                    status: 410,
                    body: json!({"error": format!("revision {} is older than this node's history \
                                               (compacted): the oldest kept is {oldest}; read \
                                               the current state and watch from there",
                                              spec.from_revision.unwrap_or(0)),
                             "oldest_revision": oldest}),
                },
                WatchRefused::TooMany => Reply::unavailable(
                    "this node serves as many watchers as it may; retry or watch \
                                    through another node",
                ),
            },
        )
    }

    /// A long-polling watch: the changes since `from_revision` at once if
    /// there are any, else those that come within `wait_ms` (none after
    /// it). `revision` in the answer is where they reach: resume from one
    /// past it.
    pub(super) async fn watch_poll(&self, spec: &WatchSpec) -> Reply {
        let Some(wait_ms) = spec.wait_ms else {
            return Reply::bad_request(
                "a streaming watch is served by the node that receives it, over HTTP",
            );
        };
        let subscription = match self.subscribe(spec).await {
            Ok(subscription) => subscription,
            Err(reply) => return reply,
        };
        let mut events = subscription.replay.clone();
        if events.is_empty() {
            let wait = Duration::from_millis(wait_ms);
            if let Ok(Ok(first)) = async_std::future::timeout(wait, subscription.live.recv()).await
            {
                events.push(first);
            }
        }
        // Whole revisions only: stop at a revision boundary past the buffer.
        while let Ok(next) = subscription.live.try_recv() {
            let boundary = events.last().is_some_and(|last| last.revision != next.revision);
            if boundary && events.len() >= WATCH_BUFFER_EVENTS {
                break;
            }
            events.push(next);
        }
        let revision = events.last().map_or(subscription.revision, |e| e.revision);
        let revision = revision.max(subscription.revision);
        let events: Vec<Value> = events.iter().map(|event| event.to_json()).collect();
        Reply { status: 200, body: json!({"events": events, "revision": revision}) }
    }
}

/// How long a stream may stay silent: then a `{"type":"progress"}` line
/// goes out, so that a client that went away is noticed (the write fails)
/// and its watcher freed.
pub const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Events a stream sends in one piece, at most (those already queued when
/// it wakes).
const EVENTS_PER_WRITE_MAX: usize = 64;

/// The lines of a streaming watch: `{"type":"created","revision":N}`, the
/// replayed events, the live ones (a progress line after a silence), and an
/// error event if it was cut.
pub fn stream_lines(
    subscription: Subscription,
) -> impl futures::Stream<Item = Vec<u8>> + Send + Sync + Unpin + 'static {
    use futures::StreamExt as _;
    let line = |value: Value| {
        let mut bytes = value.to_string().into_bytes();
        bytes.push(b'\n');
        bytes
    };
    let created = json!({"type": "created", "revision": subscription.revision});
    let event_line = |event: Arc<Event>| event.line().to_vec();
    let pending = subscription.pending.clone();
    let live = futures::stream::unfold(subscription.live, move |live| {
        let pending = pending.clone();
        async move {
            match async_std::future::timeout(WATCH_PROGRESS_INTERVAL, live.recv()).await {
                Ok(Ok(event)) => {
                    // What else is already queued goes out in the same
                    // write: a node pays a socket write per watcher per
                    // wakeup, not per event.
                    let mut lines = event.line().to_vec();
                    pending.take(&event);
                    for _ in 1..EVENTS_PER_WRITE_MAX {
                        let Ok(next) = live.try_recv() else { break };
                        lines.extend_from_slice(next.line());
                        pending.take(&next);
                    }
                    Some((lines, live))
                }
                Ok(Err(_)) => None,
                Err(_) => Some((line(json!({"type": "progress"})), live)),
            }
        }
    });
    let cut = subscription.cut.clone();
    let ending = futures::stream::iter([()]).filter_map(move |()| {
        let cut = *cut.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        futures::future::ready(cut.map(|cut| line(cut_event(cut))))
    });
    futures::stream::iter([line(created)])
        .chain(futures::stream::iter(subscription.replay).map(event_line))
        .chain(Box::pin(live))
        .chain(ending)
}

fn cut_event(cut: Cut) -> Value {
    let error = match cut {
        Cut::Overflow => format!(
            "the watcher fell more than {WATCH_BUFFER_EVENTS} events behind; resume with \
             from_revision one past the revision of the last event received (a cut never \
             splits a revision)"
        ),
        Cut::Reset => "this node installed a snapshot and its history starts again: resume \
                       with from_revision (410 if too old: read the state and watch from there)"
            .to_string(),
    };
    json!({"type": "error", "error": error})
}
