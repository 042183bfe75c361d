//! The HTTP edge (tide on async-std): POST /command, GET /health,
//! GET /status and GET /metrics, as API.md specifies them, and
//! POST /admin/snapshot.
//!
//! Handlers only translate: a request body goes to [`NodeHandle::execute`],
//! which parses, proposes or reads, forwards to the leader when needed and
//! times out; its [`Reply`] becomes the status and JSON body. The body is
//! read with a hard limit, so an oversized request is refused without being
//! held in memory (what is left of it is drained, up to a bound, so that the
//! client reads the 413).

mod listener;

use std::fmt::Write as _;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use futures::channel::oneshot;
use futures::AsyncReadExt;
use tide::{Body, Request, Response, StatusCode};

use crate::kv::{Reply, BODY_BYTES_MAX};
use crate::node::NodeHandle;
use crate::tls::TlsState;

pub use listener::HTTP_CONNECTIONS_MAX;

/// Bytes of an oversized body read and discarded before answering 413.
const BODY_DRAIN_BYTES_MAX: u64 = 16 << 20;
/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_S: &str = "1";

/// Serves the API on `listener` (over TLS when `tls` is given) until `stop`
/// fires; `in_flight` counts the requests being answered.
pub async fn serve(
    listener: std::net::TcpListener,
    node: NodeHandle,
    tls: Option<Arc<TlsState>>,
    stop: oneshot::Receiver<()>,
    in_flight: Arc<AtomicUsize>,
) {
    let mut app = tide::with_state(node);
    app.at("/command").all(command);
    app.at("/health").get(health);
    app.at("/status").get(status);
    app.at("/metrics").get(metrics);
    app.at("/admin/snapshot").post(admin_snapshot);
    listener::accept_loop(listener, app, tls, stop, in_flight).await;
}

async fn command(mut request: Request<NodeHandle>) -> tide::Result {
    if request.method() != tide::http::Method::Post {
        let mut response = respond(&Reply::error(405, "use POST on /command"));
        response.insert_header("Allow", "POST");
        return Ok(response);
    }
    let limit = u64::try_from(BODY_BYTES_MAX).unwrap_or(u64::MAX) + 1;
    let mut reader = request.take_body();
    let mut body = Vec::new();
    if let Err(error) = (&mut reader).take(limit).read_to_end(&mut body).await {
        return Ok(respond(&Reply::bad_request(format!("cannot read the body: {error}"))));
    }
    if body.len() > BODY_BYTES_MAX {
        // Read (a bounded amount of) what the client is still sending, so
        // that it gets to read the answer instead of a reset connection.
        let drain = (&mut reader).take(BODY_DRAIN_BYTES_MAX);
        let _ = futures::io::copy(drain, &mut futures::io::sink()).await;
        let mut response = respond(&too_large());
        response.insert_header("Connection", "close");
        return Ok(response);
    }
    let reply = request.state().execute(&body, false).await;
    Ok(respond(&reply))
}

fn too_large() -> Reply {
    Reply::error(413, format!("the body is larger than {BODY_BYTES_MAX} bytes"))
}

/// A reply as an HTTP response.
fn respond(reply: &Reply) -> Response {
    let status = StatusCode::try_from(reply.status).unwrap_or(StatusCode::InternalServerError);
    let mut response = Response::new(status);
    response.set_body(Body::from_json(&reply.body).unwrap_or_else(|_| Body::empty()));
    if reply.status == 503 {
        response.insert_header("Retry-After", RETRY_AFTER_S);
    }
    response
}

/// POST /admin/snapshot: takes a snapshot now and answers where it is.
async fn admin_snapshot(request: Request<NodeHandle>) -> tide::Result {
    let reply = match request.state().take_snapshot().await {
        Ok((path, header)) => {
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            Reply {
                status: 200,
                body: serde_json::json!({"index": header.meta.index, "term": header.meta.term,
                                         "file": path.display().to_string(), "bytes": bytes,
                                         "state_bytes": header.content_bytes}),
            }
        }
        Err(why) => Reply::error(500, format!("snapshot failed: {why}")),
    };
    Ok(respond(&reply))
}

async fn health(request: Request<NodeHandle>) -> tide::Result {
    let status = request.state().status();
    let reply = if status.healthy() {
        Reply {
            status: 200,
            body: serde_json::json!({"status": "ok", "id": status.id, "leader": status.leader,
                                     "term": status.term, "role": status.role}),
        }
    } else {
        Reply {
            status: 503,
            body: serde_json::json!({"status": "unavailable", "id": status.id,
                                     "leader": status.leader, "role": status.role,
                                     "error": "no known leader, or applying too far behind"}),
        }
    };
    Ok(respond(&reply))
}

async fn status(request: Request<NodeHandle>) -> tide::Result {
    let status = request.state().status();
    let body = serde_json::to_value(&status).unwrap_or_default();
    Ok(respond(&Reply { status: 200, body }))
}

async fn metrics(request: Request<NodeHandle>) -> tide::Result {
    let node = request.state();
    let status = node.status();
    let mut out = String::new();
    node.metrics().render(&mut out);
    let gauges = [
        ("rdb_raft_term", "The current Raft term.", status.term),
        ("rdb_raft_leader", "The leader's id (0: none known).", status.leader),
        ("rdb_raft_commit_index", "The highest committed index.", status.commit_index),
        ("rdb_raft_applied_index", "The highest applied index.", status.applied_index),
        ("rdb_raft_last_log_index", "The last index in the log.", status.last_log_index),
        ("rdb_snapshot_index", "The index of the newest snapshot.", status.snapshot_index),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    out.push_str("# HELP rdb_raft_role 1 for this node's role.\n# TYPE rdb_raft_role gauge\n");
    for role in ["follower", "pre-candidate", "candidate", "leader"] {
        let _ = writeln!(out, "rdb_raft_role{{role=\"{role}\"}} {}", u8::from(role == status.role));
    }
    let mut response = Response::new(StatusCode::Ok);
    response.set_body(out);
    response.set_content_type("text/plain; version=0.0.4");
    Ok(response)
}
