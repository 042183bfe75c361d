//! A TLS stream split between capnp's reader and writer without a lost
//! wake-up.
//!
//! Cap'n Proto's two-party network reads and writes a connection from two
//! futures, each woken on its own (sub-futures of the connection's task).
//! A plain TCP stream can be shared as is, but a TLS stream is one state
//! machine for both directions, and async-tls's write side reads too:
//! while it has records to send, `poll_write`, `poll_flush` and
//! `poll_close` run rustls's IO loop (`complete_inner_io` in async-tls's
//! `rusttls/stream.rs`), which after writing reads what TLS records have
//! arrived on the socket (whenever rustls `wants_read`: its plaintext
//! buffer is empty) and decrypts them into that buffer. If the reader was
//! parked waiting for those bytes, nothing wakes it: they are gone from the
//! socket, so the reactor's level-triggered readiness check, run after,
//! finds none, and the plaintext waits in rustls until the socket is
//! readable again.
//!
//! On a busy link more bytes come soon. On a quiet one they may never: a
//! peer whose `deliver` call waits for an answer sends nothing else on the
//! link (its send loop waits for each call), and the answer is the
//! plaintext nobody reads. The link stands still until this end happens to
//! write again. This is the likely cause of a forwarded put that timed out
//! (504) after 5 s in a three-node test cluster with peer TLS (once in CI,
//! twice in ~30 runs on a loaded development VM): each time the cluster
//! stood still for the whole 5 s and went on the moment the client's next
//! request made the follower forward again. Under `rdb bench put` with TLS
//! a node's write side takes bytes off the socket several hundred times a
//! second, so the window is opened often; the reactor losing the race for
//! them is rare.
//!
//! So the socket under the TLS stream counts the bytes read from it
//! ([`Counted`]), and whenever a write-side call read any, the reader is
//! woken ([`WriteHalf`]). A spurious wake costs the reader one poll.
//!
//! Caveats: both halves must live on one thread (they share an `Rc`); the
//! RPC thread's executor is single-threaded, so they do. While the socket's
//! send buffer is full, a pending flush and a pending read each replace the
//! other's write-readiness waker in async-io, which wakes the one replaced:
//! the two take turns polling until the buffer drains (as with
//! `futures::AsyncReadExt::split` before; not measured).

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures::{AsyncRead, AsyncWrite};

/// A byte stream that counts what is read from it.
pub(super) struct Counted<S> {
    inner: S,
    read_bytes: Rc<Cell<u64>>,
}

impl<S> Counted<S> {
    /// Wraps `inner`; the count starts at 0.
    pub(super) fn new(inner: S) -> Self {
        Counted { inner, read_bytes: Rc::new(Cell::new(0)) }
    }

    /// The running count of bytes read, shared with the halves.
    pub(super) fn read_bytes(&self) -> Rc<Cell<u64>> {
        self.read_bytes.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.read_bytes.set(self.read_bytes.get() + n as u64);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// What both halves share.
struct Shared<T> {
    stream: T,
    /// The reader's waker, from its last poll.
    reader: Option<Waker>,
}

/// The reading half.
pub(super) struct ReadHalf<T>(Rc<RefCell<Shared<T>>>);

/// The writing half: wakes the reader when a write-side call read bytes
/// from the socket.
pub(super) struct WriteHalf<T> {
    shared: Rc<RefCell<Shared<T>>>,
    read_bytes: Rc<Cell<u64>>,
}

/// Splits `stream` (built over a [`Counted`] socket whose count is
/// `read_bytes`) into halves for two futures of one thread.
pub(super) fn split<T>(stream: T, read_bytes: Rc<Cell<u64>>) -> (ReadHalf<T>, WriteHalf<T>) {
    let shared = Rc::new(RefCell::new(Shared { stream, reader: None }));
    (ReadHalf(shared.clone()), WriteHalf { shared, read_bytes })
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadHalf<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = self.0.borrow_mut();
        if !shared.reader.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            shared.reader = Some(cx.waker().clone());
        }
        Pin::new(&mut shared.stream).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> WriteHalf<T> {
    /// Runs a write-side call, then wakes the reader if it read anything.
    fn write_side<R>(&self, call: impl FnOnce(Pin<&mut T>) -> R) -> R {
        let before = self.read_bytes.get();
        let (result, reader) = {
            let mut shared = self.shared.borrow_mut();
            let result = call(Pin::new(&mut shared.stream));
            let read = self.read_bytes.get() != before;
            (result, if read { shared.reader.clone() } else { None })
        };
        if let Some(reader) = reader {
            reader.wake();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteHalf<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_side(|stream| stream.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_side(|stream| stream.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_side(|stream| stream.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    //! A stand-in for a TLS stream: its write side moves whatever waits on
    //! the "socket" into its own read buffer, as async-tls's does, without
    //! waking anyone.
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// Moves what `from` holds into `buf`; pending when it holds nothing
    /// (no one is woken later: the test plays the reactor).
    fn take(from: &mut VecDeque<u8>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if from.is_empty() {
            return Poll::Pending;
        }
        let n = buf.len().min(from.len());
        for (slot, byte) in buf.iter_mut().zip(from.drain(..n)) {
            *slot = byte;
        }
        Poll::Ready(Ok(n))
    }

    /// The "socket": bytes that arrived.
    #[derive(Default)]
    struct Socket(VecDeque<u8>);

    impl AsyncRead for Socket {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            take(&mut self.0, buf)
        }
    }

    /// The stream over it: reads serve its buffer first; writes (and
    /// flushes) also read the socket into that buffer.
    struct FakeTls {
        socket: Counted<Socket>,
        plaintext: VecDeque<u8>,
    }

    impl FakeTls {
        fn read_ahead(&mut self, cx: &mut Context<'_>) {
            let mut buf = [0u8; 64];
            if let Poll::Ready(Ok(n)) = Pin::new(&mut self.socket).poll_read(cx, &mut buf) {
                self.plaintext.extend(&buf[..n]);
            }
        }
    }

    impl AsyncRead for FakeTls {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.plaintext.is_empty() {
                self.read_ahead(cx);
            }
            take(&mut self.plaintext, buf)
        }
    }

    impl AsyncWrite for FakeTls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.read_ahead(cx);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.read_ahead(cx);
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_read_by_the_write_side_wakes_the_parked_reader() {
        let socket = Counted::new(Socket::default());
        let read_bytes = socket.read_bytes();
        let tls = FakeTls { socket, plaintext: VecDeque::new() };
        let (mut reader, mut writer) = split(tls, read_bytes);
        let (reader_wakes, reader_waker) = counting();
        let (_, writer_waker) = counting();
        let mut buf = [0u8; 16];
        let polled =
            Pin::new(&mut reader).poll_read(&mut Context::from_waker(&reader_waker), &mut buf);
        assert!(polled.is_pending(), "nothing arrived yet");

        // The answer arrives, and the writer's flush takes it off the socket
        // before the reactor would have told the reader.
        reader.0.borrow_mut().stream.socket.inner.0.extend(b"answer");
        let mut cx = Context::from_waker(&writer_waker);
        assert!(Pin::new(&mut writer).poll_flush(&mut cx).is_ready());
        assert_eq!(reader_wakes.0.load(Ordering::SeqCst), 1, "the reader is woken");
        let polled =
            Pin::new(&mut reader).poll_read(&mut Context::from_waker(&reader_waker), &mut buf);
        assert!(matches!(polled, Poll::Ready(Ok(6))), "{polled:?}");
        assert_eq!(&buf[..6], b"answer");

        // A write that reads nothing wakes no one.
        assert!(Pin::new(&mut writer).poll_write(&mut cx, b"x").is_ready());
        assert_eq!(reader_wakes.0.load(Ordering::SeqCst), 1);
    }
}
