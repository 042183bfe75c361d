//! The accept loop: plain TCP or TLS connections, each served by our
//! HTTP/1.x connection handling ([`super::h1`]) with the tide app; a count
//! of requests in flight; and a stop signal that closes the listener so
//! that a shutdown can drain.
//!
//! The loop is ours rather than tide's for three reasons: every connection
//! gets `TCP_NODELAY` (a response goes out in more than one write, and with
//! Nagle's algorithm the second would wait for the client's delayed ACK,
//! 40 ms); TLS comes from async-tls with certificates that can be replaced
//! at run time; and the loop must stop on request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::channel::oneshot;
use futures::FutureExt;

use super::h1::{serve_connection, BodyBudget, Gate};
use crate::node::NodeHandle;
use crate::tls::TlsState;

/// Client connections served at once, at most; more are answered 503.
pub const HTTP_CONNECTIONS_MAX: usize = 4_096;
/// Connections past [`HTTP_CONNECTIONS_MAX`] being answered 503 at once, at
/// most; past this they are closed unanswered.
const TURNED_AWAY_MAX: usize = 256;
/// How long answering a connection 503 may take.
const TURN_AWAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Bytes of request bodies held by all connections at once, at least (four
/// maximal bodies if `--body-bytes-max` is larger).
pub const BODY_BUDGET_BYTES: usize = 64 << 20;

/// Connections the kernel queues for `accept`, at most (std's 128 drops
/// the SYNs of a burst of clients, which then retry after a second).
pub const ACCEPT_BACKLOG: i32 = 1_024;

/// A listening socket on `addr` with an [`ACCEPT_BACKLOG`] backlog.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(ACCEPT_BACKLOG)?;
    Ok(socket.into())
}

/// Serves `app` on `listener` until `stop` fires (or is dropped).
/// `in_flight` counts requests being answered, for draining; bodies over
/// `body_bytes_max` are refused.
pub(super) async fn accept_loop(
    listener: std::net::TcpListener,
    app: tide::Server<NodeHandle>,
    tls: Option<Arc<TlsState>>,
    mut stop: oneshot::Receiver<()>,
    in_flight: Arc<AtomicUsize>,
    body_bytes_max: usize,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = async_std::net::TcpListener::from(listener);
    let open = Arc::new(AtomicUsize::new(0));
    let turned_away = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicBool::new(false));
    let budget = BodyBudget::new(BODY_BUDGET_BYTES.max(4 * body_bytes_max));
    loop {
        let accepted = futures::select! {
            accepted = listener.accept().fuse() => accepted,
            _ = stop => {
                // Requests arriving on open keep-alive connections from now
                // on are turned away; those already in flight finish.
                draining.store(true, Ordering::Release);
                return;
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                log::warn!("accepting a client connection failed: {error}");
                async_std::task::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if open.load(Ordering::Relaxed) >= HTTP_CONNECTIONS_MAX {
            turn_away(stream, tls.is_some(), &turned_away);
            continue;
        }
        let (app, open, tls) = (app.clone(), open.clone(), tls.clone());
        let gate = Gate {
            in_flight: in_flight.clone(),
            draining: draining.clone(),
            body_bytes_max,
            budget: budget.clone(),
            scheme,
        };
        open.fetch_add(1, Ordering::Relaxed);
        let tcp = stream.clone();
        let shutdown = move || {
            let _ = tcp.shutdown(std::net::Shutdown::Write);
        };
        async_std::task::spawn(async move {
            match tls {
                None => serve_connection(stream, app, gate, &shutdown).await,
                Some(tls) => match async_tls::TlsAcceptor::from(tls.configs().http)
                    .accept(stream)
                    .await
                {
                    Ok(stream) => serve_connection(stream, app, gate, &shutdown).await,
                    Err(error) => log::warn!("refused a client connection from {peer}: {error}"),
                },
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Answers a connection over the limit with 503 (plain HTTP; over TLS the
/// handshake would cost more than the refusal is worth, so it is closed).
fn turn_away(stream: async_std::net::TcpStream, tls: bool, turned_away: &Arc<AtomicUsize>) {
    if tls || turned_away.fetch_add(1, Ordering::AcqRel) >= TURNED_AWAY_MAX {
        turned_away.fetch_sub(usize::from(!tls), Ordering::AcqRel);
        return;
    }
    let turned_away = turned_away.clone();
    async_std::task::spawn(async move {
        let body = "{\"error\":\"the node serves too many connections; retry\"}\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = stream;
        let write = futures::AsyncWriteExt::write_all(&mut stream, answer.as_bytes());
        let _ = async_std::future::timeout(TURN_AWAY_TIMEOUT, write).await;
        turned_away.fetch_sub(1, Ordering::AcqRel);
    });
}
