//! Our HTTP/1.x connection handling under tide (RFC 9112).
//!
//! tide routes and runs the handlers; this module owns the connection: it
//! reads each request with [`decode::Reader`], hands it to the tide app as
//! an `http_types::Request`, and writes the response with
//! [`encode::write_response`], then reads the next one. It replaces
//! async-h1, which kept a read buffer per request (so pipelined requests
//! that arrived in one read were dropped), closed HTTP/1.0 connections
//! without an answer, and did the same to an HTTP/1.1 request without Host.
//!
//! What the client gets:
//! - HTTP/1.0 and HTTP/1.1; 1.0 closes after each response unless it sent
//!   `Connection: keep-alive`, 1.1 keeps the connection unless it sent
//!   `Connection: close`.
//! - Pipelined requests are answered one by one, in order, none dropped.
//! - `Content-Length` and `chunked` bodies, up to the body limit (413
//!   naming it; the client is told before it sends the body when it asked
//!   `Expect: 100-continue`).
//! - A request that cannot be framed (no Host in 1.1, bad lengths, a head
//!   over 64 KiB, an unknown transfer coding) gets its 4xx/5xx with a JSON
//!   body `{"error": ...}` and the connection is closed.
//! - Every error response carries a JSON body: tide's own empty 404 and 405
//!   are given one here.
//!
//! Caveats: requests on one connection are served one at a time (a
//! pipelining client gets its answers in order but not in parallel); no
//! HTTP/2 (a `PRI *` preface is a 505); `Upgrade` is ignored.

mod decode;
mod encode;
mod head;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tide::http::{Method, Request, Response, StatusCode, Url};

use decode::{ReadError, Reader};
use encode::{write_response, Exchange};
use head::{Framing, Head, Refusal};

use crate::kv::Reply;
use crate::node::NodeHandle;

pub use decode::{BodyBudget, BODY_TIMEOUT, HEAD_BYTES_MAX, HEAD_TIMEOUT, IDLE_TIMEOUT};
pub use head::HEADERS_MAX;

/// Bytes of an oversized body read and discarded before answering 413, so
/// that a client still sending it reads the answer rather than a reset.
const BODY_DRAIN_BYTES_MAX: u64 = 16 << 20;
/// After refusing a request, bytes the client may still be sending are read
/// (at most these, for at most [`LINGER`]) so that the answer is not lost
/// to a TCP reset.
const LINGER_BYTES_MAX: u64 = 1 << 20;
/// See [`LINGER_BYTES_MAX`].
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// What a connection checks per request: whether the node is draining, the
/// count of requests in flight, and the body limit.
#[derive(Clone)]
pub struct Gate {
    /// Requests being answered.
    pub in_flight: Arc<AtomicUsize>,
    /// Set once the node stops taking requests.
    pub draining: Arc<AtomicBool>,
    /// The largest request body, in bytes.
    pub body_bytes_max: usize,
    /// The bytes of bodies all connections may hold at once.
    pub budget: Arc<BodyBudget>,
    /// "https" or "http", for the request URL.
    pub scheme: &'static str,
}

/// Ends the sending half of the connection's socket (`shutdown(Write)`),
/// which closing an async stream does not do.
pub type Shutdown = dyn Fn() + Send + Sync;

/// Serves requests on `stream` until the client or the server closes it;
/// `shutdown` ends the socket's sending half.
pub async fn serve_connection<S>(
    stream: S,
    app: tide::Server<NodeHandle>,
    gate: Gate,
    shutdown: &Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = Reader::new(stream);
    loop {
        let head = match reader.read_head().await {
            Ok(head) => head,
            Err(ReadError::Gone) => return,
            Err(ReadError::Refused(refusal)) => {
                return refuse(&mut reader, &refusal, shutdown).await
            }
        };
        match serve_request(&mut reader, &app, &gate, head, shutdown).await {
            Ok(true) => {}
            Ok(false) | Err(()) => break,
        }
    }
    let _ = reader.stream_mut().close().await;
}

/// Reads one request's body, runs it and writes the response; Ok(true) if
/// the connection may carry another request.
async fn serve_request<S>(
    reader: &mut Reader<S>,
    app: &tide::Server<NodeHandle>,
    gate: &Gate,
    head: Head,
    shutdown: &Shutdown,
) -> Result<bool, ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = Exchange {
        minor_version: head.minor_version,
        keep_alive: head.keep_alive,
        head_only: head.method == "HEAD",
    };
    if let Framing::Length(length) = head.framing {
        if length > gate.body_bytes_max as u64 {
            // Tell a client waiting for 100 Continue at once; read (a bounded
            // amount of) what another is already sending, so it reads the 413.
            if !head.expect_continue && length <= BODY_DRAIN_BYTES_MAX {
                let deadline = std::time::Instant::now() + BODY_TIMEOUT;
                reader.discard(length, deadline).await;
            }
        }
    }
    if head.expect_continue && fits(&head, gate.body_bytes_max) {
        let stream = reader.stream_mut();
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(drop)?;
        stream.flush().await.map_err(drop)?;
    }
    let limit = "--body-bytes-max";
    let read = reader.read_body(head.framing, gate.body_bytes_max, limit, &gate.budget).await;
    // The reservation holds the body's bytes in the budget until answered.
    let (body, _reservation) = match read {
        Ok(read) => read,
        Err(ReadError::Gone) => return Err(()),
        Err(ReadError::Refused(refusal)) => {
            refuse(reader, &refusal, shutdown).await;
            return Err(());
        }
    };
    let response = match to_request(&head, body, gate.scheme) {
        Ok(request) => respond(app, gate, request).await,
        Err(refusal) => {
            refuse(reader, &refusal, shutdown).await;
            return Err(());
        }
    };
    write_response(reader.stream_mut(), response, exchange).await.map_err(drop)
}

/// Whether a body of this framing fits the limit, as far as the head says.
fn fits(head: &Head, body_bytes_max: usize) -> bool {
    match head.framing {
        Framing::Length(length) => length <= body_bytes_max as u64,
        Framing::Chunked => true,
    }
}

/// Runs a request through the app, or answers 503 while draining.
async fn respond(app: &tide::Server<NodeHandle>, gate: &Gate, request: Request) -> Response {
    if gate.draining.load(Ordering::Acquire) {
        let reply = Reply::unavailable("the node is shutting down; retry on another node");
        let mut response: Response = super::respond(&reply).into();
        response.insert_header("Connection", "close");
        return response;
    }
    let (method, path) = (request.method(), request.url().path().to_string());
    gate.in_flight.fetch_add(1, Ordering::AcqRel);
    let response = app.respond::<_, Response>(request).await;
    gate.in_flight.fetch_sub(1, Ordering::AcqRel);
    let response = response.unwrap_or_else(|error| {
        let reply = Reply::error(500, format!("internal error: {error}"));
        super::respond(&reply).into()
    });
    with_error_body(response, method, &path)
}

/// Gives an error response without a body (tide's 404 and 405) one.
fn with_error_body(mut response: Response, method: Method, path: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.len() != Some(0) {
        return response;
    }
    let message = match status {
        StatusCode::NotFound => format!("no endpoint {path:?}; see docs/API.md"),
        StatusCode::MethodNotAllowed => format!("{method} is not allowed on {path}"),
        _ => status.canonical_reason().to_string(),
    };
    let reply = Reply::error(u16::from(status), message);
    response.set_body(super::json_body(&reply.body));
    if status == StatusCode::MethodNotAllowed && response.header("allow").is_none() {
        if let Some(allowed) = super::allowed_methods(path) {
            response.insert_header("Allow", allowed);
        }
    }
    response
}

/// The request as tide takes it.
fn to_request(head: &Head, body: Vec<u8>, scheme: &str) -> Result<Request, Refusal> {
    let method: Method = head.method.parse().map_err(|_| Refusal {
        status: 501,
        message: format!("method {:?} is not implemented", head.method),
    })?;
    let url = url_of(head, scheme)?;
    let mut request = Request::new(method, url);
    // Fields with bytes beyond ASCII are read by no handler: left out.
    for (name, value) in head.headers.iter().filter(|(_, value)| value.is_ascii()) {
        request.append_header(name.as_str(), value.as_str());
    }
    request.set_body(body);
    Ok(request)
}

/// The URL tide routes on: the request target's path and query under a
/// fixed authority (RFC 9112 §3.2, §3.3). Neither the Host header nor an
/// absolute-form target's authority can change the path.
fn url_of(head: &Head, scheme: &str) -> Result<Url, Refusal> {
    let bad = || Refusal::new(400, format!("bad request target {:?}", head.target));
    let target = head.target.as_str();
    let lower = target.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let origin_form = if lower.starts_with("http://") || lower.starts_with("https://") {
        let absolute = Url::parse(target).map_err(|_| bad())?;
        match absolute.query() {
            Some(query) => format!("{}?{query}", absolute.path()),
            None => absolute.path().to_string(),
        }
    } else if target.starts_with('/') {
        target.to_string()
    } else {
        return Err(bad());
    };
    let url = Url::parse(&format!("{scheme}://localhost{origin_form}")).map_err(|_| bad())?;
    if url.host_str() != Some("localhost") || url.fragment().is_some() {
        return Err(bad());
    }
    Ok(url)
}

/// Answers a request that cannot be served, then the connection closes.
async fn refuse<S>(reader: &mut Reader<S>, refusal: &Refusal, shutdown: &Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply = Reply::error(refusal.status, refusal.message.clone());
    let response: Response = super::respond(&reply).into();
    let exchange = Exchange { minor_version: 1, keep_alive: false, head_only: false };
    let stream = reader.stream_mut();
    if write_response(stream, response, exchange).await.is_err() {
        return;
    }
    // Close our side, then read (a bounded amount of) what the client may
    // still send, so that its kernel does not answer it with a reset that
    // could destroy our answer before it is read.
    let _ = stream.close().await;
    shutdown();
    reader.discard(LINGER_BYTES_MAX, std::time::Instant::now() + LINGER).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str, host: Option<&str>) -> Head {
        Head {
            method: "GET".into(),
            target: target.into(),
            minor_version: 1,
            headers: Vec::new(),
            framing: Framing::Length(0),
            keep_alive: true,
            expect_continue: false,
            host: host.map(str::to_string),
        }
    }

    #[test]
    fn request_targets() {
        let url = |target, host| url_of(&head(target, host), "http").map(|u| u.path().to_string());
        assert_eq!(url("/status?x=1", Some("a:8081")).unwrap(), "/status");
        assert_eq!(url("/status", None).unwrap(), "/status");
        assert_eq!(url("http://b/health", Some("a")).unwrap(), "/health");
        assert_eq!(url("HTTP://b/health?q", Some("a")).unwrap(), "/health");
        assert_eq!(url("health", Some("a")).unwrap_err().status, 400);
        assert_eq!(url("*", Some("a")).unwrap_err().status, 400);
        assert_eq!(url("/health#x", Some("a")).unwrap_err().status, 400);
        assert_eq!(
            url("//evil/command", Some("a")).unwrap(),
            "//evil/command",
            "a path, not a host"
        );
    }
}
