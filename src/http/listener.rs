//! The accept loop: plain TCP or TLS connections, each served by async-h1
//! with the tide app; a count of requests in flight; and a stop signal that
//! closes the listener so that a shutdown can drain.
//!
//! The loop is ours rather than tide's for three reasons: every connection
//! gets `TCP_NODELAY` (a response goes out in more than one write, and with
//! Nagle's algorithm the second would wait for the client's delayed ACK,
//! 40 ms); TLS comes from async-tls with certificates that can be replaced
//! at run time; and the loop must stop on request.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::channel::oneshot;
use futures::{AsyncRead, AsyncWrite, FutureExt};

use crate::kv::Reply;
use crate::node::NodeHandle;
use crate::tls::TlsState;

/// Client connections served at once, at most; more wait in the kernel's
/// accept queue.
pub const HTTP_CONNECTIONS_MAX: usize = 4_096;

/// Serves `app` on `listener` until `stop` fires (or is dropped).
/// `in_flight` counts requests being answered, for draining.
pub(super) async fn accept_loop(
    listener: std::net::TcpListener,
    app: tide::Server<NodeHandle>,
    tls: Option<Arc<TlsState>>,
    mut stop: oneshot::Receiver<()>,
    in_flight: Arc<AtomicUsize>,
) {
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
        let gate = Gate { in_flight: in_flight.clone(), draining: draining.clone() };
        open.fetch_add(1, Ordering::Relaxed);
        async_std::task::spawn(async move {
            match tls {
                None => serve_connection(stream, app, gate).await,
                Some(tls) => match async_tls::TlsAcceptor::from(tls.configs().http)
                    .accept(stream)
                    .await
                {
                    Ok(stream) => serve_connection(Shared::new(stream), app, gate).await,
                    Err(error) => log::warn!("refused a client connection from {peer}: {error}"),
                },
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// What a connection checks per request: whether the node is draining, and
/// the count of requests in flight.
#[derive(Clone)]
struct Gate {
    /// Requests being answered.
    in_flight: Arc<AtomicUsize>,
    /// Set once the node stops taking requests.
    draining: Arc<AtomicBool>,
}

async fn serve_connection<S>(stream: S, app: tide::Server<NodeHandle>, gate: Gate)
where
    S: AsyncRead + AsyncWrite + Clone + Send + Sync + Unpin + 'static,
{
    let served = async_h1::accept(stream, |request| {
        let (app, gate) = (app.clone(), gate.clone());
        async move {
            if gate.draining.load(Ordering::Acquire) {
                let reply = Reply::unavailable("the node is shutting down; retry on another node");
                let mut response = super::respond(&reply);
                response.insert_header("Connection", "close");
                return Ok(response.into());
            }
            gate.in_flight.fetch_add(1, Ordering::AcqRel);
            let response = app.respond::<_, tide::http::Response>(request).await;
            gate.in_flight.fetch_sub(1, Ordering::AcqRel);
            response
        }
    });
    if let Err(error) = served.await {
        log::debug!("client connection ended: {error}");
    }
}

/// A TLS stream shared by the reading and the writing half of async-h1
/// (which wants a `Clone` stream); they take turns through a lock.
struct Shared<S>(Arc<Mutex<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S> Shared<S> {
    fn new(stream: S) -> Self {
        Shared(Arc::new(Mutex::new(stream)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Shared<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut stream = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Pin::new(&mut *stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Shared<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut stream = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Pin::new(&mut *stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut stream = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Pin::new(&mut *stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut stream = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Pin::new(&mut *stream).poll_close(cx)
    }
}
