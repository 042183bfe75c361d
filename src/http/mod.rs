//! The HTTP edge (tide on async-std): POST /command, GET /health,
//! GET /status and GET /metrics, as docs/API.md specifies them, and the
//! admin endpoints: /admin/snapshot, /admin/members, /admin/leader.
//!
//! Handlers only translate: a request body goes to [`NodeHandle::execute`],
//! which parses, proposes or reads, forwards to the leader when needed and
//! times out; its [`Reply`] becomes the status and JSON body. Connections
//! are ours (`h1`): each request's body is read whole, within the node's
//! body limit, before a handler runs, so an oversized request is refused
//! (413) without being held in memory.

mod exposition;
mod h1;
mod listener;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use futures::channel::oneshot;
use tide::{Body, Request, Response, StatusCode};

use crate::kv::Reply;
use crate::node::NodeHandle;
use crate::tls::TlsState;

pub use h1::{BODY_TIMEOUT, HEADERS_MAX, HEAD_BYTES_MAX, HEAD_TIMEOUT, IDLE_TIMEOUT};
pub use listener::{bind, ACCEPT_BACKLOG, BODY_BUDGET_BYTES, HTTP_CONNECTIONS_MAX};
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
    let body_bytes_max = node.limits().body_bytes_max;
    let mut app = tide::with_state(node);
    // Keep in step with `allowed_methods`.
    app.at("/command").all(command);
    app.at("/health").get(health);
    app.at("/livez").get(livez);
    app.at("/readyz").get(readyz);
    app.at("/status").get(status);
    app.at("/cluster").get(cluster);
    app.at("/").get(dashboard);
    app.at("/ui").get(dashboard);
    app.at("/metrics").get(metrics);
    app.at("/admin/snapshot").post(admin_snapshot).get(download_snapshot);
    app.at("/admin/members").get(admin).post(admin);
    app.at("/admin/members/:id").delete(admin);
    app.at("/admin/members/:id/promote").post(admin);
    app.at("/admin/leader").post(admin);
    listener::accept_loop(listener, app, tls, stop, in_flight, body_bytes_max).await;
}

/// The methods an endpoint takes (the `Allow` header of a 405), if it
/// exists.
pub(crate) fn allowed_methods(path: &str) -> Option<&'static str> {
    match path.trim_end_matches('/') {
        "/command" | "/admin/leader" => Some("POST"),
        "/admin/snapshot" => Some("GET, HEAD, POST"),
        "" | "/ui" | "/health" | "/livez" | "/readyz" | "/status" | "/cluster" | "/metrics" => {
            Some("GET, HEAD")
        }
        "/admin/members" => Some("GET, HEAD, POST"),
        other if other.starts_with("/admin/members/") && other.ends_with("/promote") => {
            Some("POST")
        }
        other if other.starts_with("/admin/members/") => Some("DELETE"),
        _ => None,
    }
}

/// The membership and leadership endpoints (docs/API.md, "Cluster
/// administration"); the node checks and runs them.
async fn admin(mut request: Request<NodeHandle>) -> tide::Result {
    let body = match request.body_bytes().await {
        Ok(body) => body,
        Err(error) => {
            return Ok(respond(&Reply::bad_request(format!("cannot read the body: {error}"))))
        }
    };
    let method = request.method().to_string();
    let path = request.url().path().to_string();
    let reply = request.state().admin(&method, &path, &body, false).await;
    Ok(respond(&reply))
}

async fn command(mut request: Request<NodeHandle>) -> tide::Result {
    if request.method() != tide::http::Method::Post {
        let mut response = respond(&Reply::error(405, "use POST on /command"));
        response.insert_header("Allow", "POST");
        return Ok(response);
    }
    // The connection has read the whole body, within the body limit.
    let body = match request.body_bytes().await {
        Ok(body) => body,
        Err(error) => {
            return Ok(respond(&Reply::bad_request(format!("cannot read the body: {error}"))))
        }
    };
    match request.state().execute_or_watch(&body).await {
        crate::node::Answer::Reply(reply) => Ok(respond(&reply)),
        crate::node::Answer::Stream(subscription) => {
            use futures::TryStreamExt as _;
            let lines = crate::node::stream_lines(subscription);
            let reader = futures::StreamExt::map(lines, Ok::<_, std::io::Error>).into_async_read();
            let mut response = Response::new(StatusCode::Ok);
            response.set_body(Body::from_reader(reader, None));
            response.set_content_type("application/x-ndjson");
            Ok(response)
        }
    }
}

/// A JSON body, with a newline after it so that curl's output ends its
/// line.
pub(crate) fn json_body(value: &serde_json::Value) -> Body {
    let mut text = value.to_string();
    text.push('\n');
    let mut body = Body::from_string(text);
    body.set_mime(tide::http::mime::JSON);
    body
}

/// A reply as an HTTP response.
fn respond(reply: &Reply) -> Response {
    let status = StatusCode::try_from(reply.status).unwrap_or(StatusCode::InternalServerError);
    let mut response = Response::new(status);
    response.set_body(json_body(&reply.body));
    if reply.status == 503 {
        response.insert_header("Retry-After", RETRY_AFTER_S);
    }
    response
}

/// POST /admin/snapshot: takes a snapshot now and answers where it is.
async fn admin_snapshot(request: Request<NodeHandle>) -> tide::Result {
    let reply = match request.state().take_snapshot().await {
        Ok((path, header)) => {
            let bytes = request.state().snapshots().file_bytes(&path);
            Reply {
                status: 200,
                body: serde_json::json!({"index": header.meta.index, "term": header.meta.term,
                                         "file": path.display().to_string(), "bytes": bytes,
                                         "state_bytes": header.content_bytes}),
            }
        }
        Err(why) if why.is_retryable() => Reply::unavailable(format!("snapshot not taken: {why}")),
        Err(why) => Reply::error(500, format!("snapshot failed: {why}")),
    };
    Ok(respond(&reply))
}

/// GET /admin/snapshot: takes a snapshot now and sends the file (`rdb
/// snapshot save`). The headers name its index, term and file name; the
/// file checks itself (SHA-256 inside), so the client verifies it on
/// arrival. The file is open before it is sent, so a newer snapshot
/// pruning it meanwhile does not cut the download.
async fn download_snapshot(request: Request<NodeHandle>) -> tide::Result {
    let node = request.state();
    // A HEAD asks what a GET would get, not for a snapshot to be taken.
    if request.method() == tide::http::Method::Head {
        let mut response = Response::new(StatusCode::Ok);
        response.set_content_type("application/octet-stream");
        return Ok(response);
    }
    let (path, header) = match node.take_snapshot().await {
        Ok(taken) => taken,
        Err(why) if why.is_retryable() => {
            return Ok(respond(&Reply::unavailable(format!("snapshot not taken: {why}"))))
        }
        Err(why) => return Ok(respond(&Reply::error(500, format!("snapshot failed: {why}")))),
    };
    let opened = async_std::fs::File::open(&path).await;
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            let why = format!("cannot open {}: {e}", path.display());
            return Ok(respond(&Reply::error(500, why)));
        }
    };
    let bytes = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(e) => return Ok(respond(&Reply::error(500, format!("{}: {e}", path.display())))),
    };
    let mut response = Response::new(StatusCode::Ok);
    let length = usize::try_from(bytes).ok();
    response.set_body(Body::from_reader(async_std::io::BufReader::new(file), length));
    response.set_content_type("application/octet-stream");
    let name = header.file_name();
    response.insert_header("Content-Disposition", format!("attachment; filename=\"{name}\""));
    response.insert_header("Rdb-Snapshot-Index", header.meta.index.to_string());
    response.insert_header("Rdb-Snapshot-Term", header.meta.term.to_string());
    Ok(response)
}

/// How long `GET /readyz` waits for a read index.
pub const READYZ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// GET /livez: the process answers and its event loop has run a round
/// lately (Kubernetes' and etcd's liveness probe: restart it if not).
async fn livez(request: Request<NodeHandle>) -> tide::Result {
    let status = request.state().status();
    let reply = if status.live(std::time::Instant::now()) {
        Reply { status: 200, body: serde_json::json!({"status": "ok", "id": status.id}) }
    } else {
        let error = format!(
            "the event loop has not run for over {} s",
            crate::node::LIVENESS_STALL_MAX.as_secs()
        );
        Reply {
            status: 503,
            body: serde_json::json!({"status": "unavailable", "id": status.id, "error": error}),
        }
    };
    Ok(respond(&reply))
}

/// GET /readyz: a linearizable read could be served now (a quorum confirms
/// a read index within [`READYZ_TIMEOUT`]); the readiness probe (send it
/// traffic, or not).
async fn readyz(request: Request<NodeHandle>) -> tide::Result {
    let node = request.state();
    let reply = match node.read_ready(READYZ_TIMEOUT).await {
        Ok(()) => {
            Reply { status: 200, body: serde_json::json!({"status": "ok", "id": node.status().id}) }
        }
        Err(mut refusal) => {
            refusal.body["status"] = "unavailable".into();
            refusal.body["id"] = node.status().id.into();
            refusal
        }
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
                                     "leader": status.leader, "term": status.term,
                                     "role": status.role,
                                     "error": health_error(&status)}),
        }
    };
    Ok(respond(&reply))
}

/// Why a node is not healthy.
fn health_error(status: &crate::node::Status) -> &'static str {
    if status.alarms.contains(&crate::node::ALARM_CORRUPT) {
        "this node's log lost entries it acknowledged (alarm CORRUPT): replace the member \
         (docs/OPERATIONS.md, \"A node will not start\")"
    } else {
        "no known leader, or applying too far behind"
    }
}

async fn status(request: Request<NodeHandle>) -> tide::Result {
    Ok(respond(&Reply { status: 200, body: request.state().status_json() }))
}

/// GET / and GET /ui: the dashboard, one self-contained page that polls
/// `/cluster` (no other fetches, so it works without internet access).
async fn dashboard(_: Request<NodeHandle>) -> tide::Result {
    let mut response = Response::new(StatusCode::Ok);
    response.set_body(include_str!("dashboard.html"));
    response.set_content_type("text/html; charset=utf-8");
    response.insert_header("Cache-Control", "no-cache");
    Ok(response)
}

/// GET /cluster: every member's status, gathered by this node.
async fn cluster(request: Request<NodeHandle>) -> tide::Result {
    Ok(respond(&Reply { status: 200, body: request.state().cluster_status().await }))
}

async fn metrics(request: Request<NodeHandle>) -> tide::Result {
    let mut response = Response::new(StatusCode::Ok);
    response.set_body(exposition::render(request.state()));
    response.set_content_type("text/plain; version=0.0.4");
    Ok(response)
}
