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

use super::h1::{serve_connection, Gate};
use crate::node::NodeHandle;
use crate::tls::TlsState;

/// Client connections served at once, at most; more wait in the kernel's
/// accept queue.
pub const HTTP_CONNECTIONS_MAX: usize = 4_096;

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
    let draining = Arc::new(AtomicBool::new(false));
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
        if open.load(Ordering::Relaxed) >= HTTP_CONNECTIONS_MAX {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (app, open, tls) = (app.clone(), open.clone(), tls.clone());
        let gate = Gate {
            in_flight: in_flight.clone(),
            draining: draining.clone(),
            body_bytes_max,
            scheme,
        };
        open.fetch_add(1, Ordering::Relaxed);
        async_std::task::spawn(async move {
            match tls {
                None => serve_connection(stream, app, gate).await,
                Some(tls) => match async_tls::TlsAcceptor::from(tls.configs().http)
                    .accept(stream)
                    .await
                {
                    Ok(stream) => serve_connection(stream, app, gate).await,
                    Err(error) => log::warn!("refused a client connection from {peer}: {error}"),
                },
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
