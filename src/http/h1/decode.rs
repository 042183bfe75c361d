//! Reading HTTP/1.0 and HTTP/1.1 requests off a byte stream (RFC 9112).
//!
//! A [`Reader`] owns the connection's read side and one buffer that lives
//! as long as the connection, so bytes read past the end of one request
//! (the next pipelined request, say) stay in the buffer for the next call.
//! That is the fault this module exists to avoid: a per-request buffer drops
//! whatever a client sent ahead.
//!
//! Every limit is checked before the bytes it guards are held: a request
//! head is at most [`HEAD_BYTES_MAX`] with at most
//! [`HEADERS_MAX`](super::head::HEADERS_MAX) fields (else 431), a body at most the configured `body_bytes_max` (else 413),
//! all bodies held at once at most a [`BodyBudget`] (else 503), and each
//! wait for the client has a deadline: a head must arrive whole within
//! [`HEAD_TIMEOUT`] of its first byte, a body within [`BODY_TIMEOUT`]
//! (a client that trickles bytes is cut off like a silent one).
//!
//! Caveats: only the `chunked` transfer coding is understood (others are
//! 501); chunk extensions and trailer fields are read and ignored; a request
//! with both `Content-Length` and `Transfer-Encoding` is refused (400), as
//! RFC 9112 §6.1 allows, because it is the shape of request smuggling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt};

use super::head::{parse_head, Framing, Head, Refusal};

/// Bytes of a request head (request line and header fields), at most.
pub const HEAD_BYTES_MAX: usize = 64 << 10;
/// Bytes of a chunk-size line (with its extensions), at most.
const CHUNK_LINE_BYTES_MAX: usize = 4 << 10;
/// Hex digits of a chunk size, at most (16 would pass 2^64).
const CHUNK_SIZE_DIGITS_MAX: usize = 15;
/// Bytes asked of the socket per read.
const READ_BYTES: usize = 16 << 10;
/// How long an idle keep-alive connection waits for a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request head may take, from its first byte to its end.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request body may take, whole.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed, went silent or the socket failed: nothing to answer.
    Gone,
    /// The request is refused: answer it, then close.
    Refused(Refusal),
}

impl From<Refusal> for ReadError {
    fn from(refusal: Refusal) -> Self {
        ReadError::Refused(refusal)
    }
}

/// The bytes of request bodies every connection of a node holds at once,
/// at most: a body is refused with 503 rather than held past it.
#[derive(Debug)]
pub struct BodyBudget {
    /// Bytes held now.
    used: AtomicUsize,
    /// The limit.
    max: usize,
}

impl BodyBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(BodyBudget { used: AtomicUsize::new(0), max })
    }

    /// Takes `bytes` out of the budget until the reservation is dropped.
    fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let wanted = used.checked_add(bytes).filter(|&total| total <= self.max)?;
            match self.used.compare_exchange(used, wanted, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Reservation { budget: self.clone(), bytes }),
                Err(now) => used = now,
            }
        }
    }
}

/// Bytes of a [`BodyBudget`] held by one request.
#[derive(Debug)]
pub struct Reservation {
    /// Where they go back.
    budget: Arc<BodyBudget>,
    /// How many.
    bytes: usize,
}

impl Reservation {
    /// Adds `bytes` more, if the budget has them.
    fn grow(&mut self, bytes: usize) -> bool {
        match self.budget.reserve(bytes) {
            Some(more) => {
                self.bytes += more.bytes;
                std::mem::forget(more);
                true
            }
            None => false,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The read side of a connection, with its buffer.
pub struct Reader<S> {
    /// The connection.
    stream: S,
    /// Bytes read from `stream` and not yet consumed.
    buf: Vec<u8>,
    /// Where each read lands before its bytes join `buf`: zeroed once per
    /// connection, not before every read (growing `buf` by a zeroed
    /// [`READ_BYTES`] for each read was 2% of a loaded node's HTTP thread).
    scratch: Box<[u8]>,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// A reader on `stream`.
    pub fn new(stream: S) -> Self {
        Reader { stream, buf: Vec::new(), scratch: vec![0; READ_BYTES].into_boxed_slice() }
    }

    /// The stream, for writing responses.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Reads the next request head, waiting up to [`IDLE_TIMEOUT`] for it
    /// to begin and [`HEAD_TIMEOUT`] for the rest.
    pub async fn read_head(&mut self) -> Result<Head, ReadError> {
        let mut deadline = None;
        loop {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            let blank = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            self.buf.drain(..blank);
            if !self.buf.is_empty() {
                deadline.get_or_insert_with(|| Instant::now() + HEAD_TIMEOUT);
                let parsed = parse_head(&self.buf)?;
                let used = parsed.as_ref().map_or(self.buf.len(), |(_, used)| *used);
                if used > HEAD_BYTES_MAX {
                    let message = format!("the request head is over {HEAD_BYTES_MAX} bytes");
                    return Err(Refusal::new(431, message).into());
                }
                if let Some((head, used)) = parsed {
                    self.buf.drain(..used);
                    return Ok(head);
                }
            }
            let until = deadline.unwrap_or_else(|| Instant::now() + IDLE_TIMEOUT);
            if self.fill(until).await? == 0 {
                if self.buf.is_empty() {
                    return Err(ReadError::Gone);
                }
                return Err(
                    Refusal::new(400, "the connection ended inside the request head").into()
                );
            }
        }
    }

    /// Reads a whole body of `framing`, refusing one over `bytes_max` (413;
    /// `limit_name` names the setting) or one `budget` cannot hold (503).
    /// The reservation keeps its bytes out of the budget until dropped.
    pub async fn read_body(
        &mut self,
        framing: Framing,
        bytes_max: usize,
        limit_name: &str,
        budget: &Arc<BodyBudget>,
    ) -> Result<(Vec<u8>, Reservation), ReadError> {
        let deadline = Instant::now() + BODY_TIMEOUT;
        match framing {
            Framing::Length(length) => {
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > bytes_max {
                    return Err(too_large(&format!("{length} bytes"), bytes_max, limit_name).into());
                }
                let reservation = budget.reserve(length).ok_or_else(over_budget)?;
                let mut body = Vec::with_capacity(length);
                self.read_exact_into(&mut body, length, deadline).await?;
                Ok((body, reservation))
            }
            Framing::Chunked => {
                let mut reservation = budget.reserve(0).ok_or_else(over_budget)?;
                let body =
                    self.read_chunked(bytes_max, limit_name, &mut reservation, deadline).await?;
                Ok((body, reservation))
            }
        }
    }

    /// Reads and discards up to `bytes` of body, so that a client still
    /// sending gets to read the answer; false if it stopped early.
    pub async fn discard(&mut self, bytes: u64, deadline: Instant) -> bool {
        let mut left = bytes;
        loop {
            let taken = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.buf.drain(..taken);
            left -= taken as u64;
            if left == 0 {
                return true;
            }
            self.buf.clear();
            if !matches!(self.fill(deadline).await, Ok(n) if n > 0) {
                return false;
            }
        }
    }

    async fn read_chunked(
        &mut self,
        bytes_max: usize,
        limit_name: &str,
        reservation: &mut Reservation,
        deadline: Instant,
    ) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let size = self.chunk_size(deadline).await?;
            if size == 0 {
                self.skip_trailers(deadline).await?;
                return Ok(body);
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > bytes_max.saturating_sub(body.len()) {
                return Err(too_large("a chunked body", bytes_max, limit_name).into());
            }
            if !reservation.grow(size) {
                return Err(over_budget().into());
            }
            self.read_exact_into(&mut body, size, deadline).await?;
            let mut crlf = Vec::with_capacity(2);
            self.read_exact_into(&mut crlf, 2, deadline).await?;
            if crlf != b"\r\n" {
                return Err(Refusal::new(400, "a chunk is not followed by CRLF").into());
            }
        }
    }

    /// Reads a chunk-size line: hex digits, then optional extensions
    /// (`;name[=value]`, whitespace allowed only before a `;`), then CRLF.
    async fn chunk_size(&mut self, deadline: Instant) -> Result<u64, ReadError> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size = parse_chunk_size(&self.buf[..end])
                    .ok_or_else(|| Refusal::new(400, "malformed chunk size line"))?;
                self.buf.drain(..end + 2);
                return Ok(size);
            }
            if self.buf.len() > CHUNK_LINE_BYTES_MAX {
                return Err(Refusal::new(400, "a chunk size line is too long").into());
            }
            self.fill_or_refuse(deadline).await?;
        }
    }

    /// Reads trailer fields (`name: value` lines) up to the empty line that
    /// ends the body.
    async fn skip_trailers(&mut self, deadline: Instant) -> Result<(), ReadError> {
        let mut skipped = 0;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line_ok = end == 0
                    || self.buf[..end]
                        .iter()
                        .position(|&b| b == b':')
                        .is_some_and(|colon| colon > 0);
                if !line_ok {
                    return Err(Refusal::new(400, "a malformed trailer field").into());
                }
                self.buf.drain(..end + 2);
                if end == 0 {
                    return Ok(());
                }
                skipped += end;
            } else if self.buf.len() + skipped > HEAD_BYTES_MAX {
                return Err(Refusal::new(431, "the trailer fields are too large").into());
            } else {
                self.fill_or_refuse(deadline).await?;
            }
        }
    }

    /// Moves `length` bytes of body into `out`: the buffered ones first,
    /// then straight from the stream.
    async fn read_exact_into(
        &mut self,
        out: &mut Vec<u8>,
        length: usize,
        deadline: Instant,
    ) -> Result<(), ReadError> {
        let buffered = self.buf.len().min(length);
        out.extend(self.buf.drain(..buffered));
        let start = out.len();
        let rest = length - buffered;
        if rest == 0 {
            return Ok(());
        }
        out.resize(start + rest, 0);
        let left = deadline.saturating_duration_since(Instant::now());
        match async_std::io::timeout(left, self.stream.read_exact(&mut out[start..])).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(Refusal::new(400, "the connection ended inside the body").into())
            }
            Err(_) => Err(ReadError::Gone),
        }
    }

    async fn fill_or_refuse(&mut self, deadline: Instant) -> Result<(), ReadError> {
        match self.fill(deadline).await? {
            0 => Err(Refusal::new(400, "the connection ended inside the body").into()),
            _ => Ok(()),
        }
    }

    /// Reads once from the stream into the buffer, by `deadline`; 0 at the
    /// end of the stream.
    async fn fill(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        let Reader { stream, buf, scratch } = self;
        let left = deadline.saturating_duration_since(Instant::now());
        let read = async_std::io::timeout(left, stream.read(scratch)).await;
        let n = *read.as_ref().unwrap_or(&0);
        buf.extend_from_slice(&scratch[..n]);
        read.map_err(|_| ReadError::Gone)
    }
}

/// The size of a chunk-size line (without its CRLF), if well formed.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > CHUNK_SIZE_DIGITS_MAX {
        return None;
    }
    let rest = &line[digits..];
    let after_space = rest.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(rest.len());
    let rest = &rest[after_space..];
    if !(rest.is_empty() && after_space == 0) && rest.first() != Some(&b';') {
        return None;
    }
    if rest.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

fn too_large(what: &str, bytes_max: usize, limit_name: &str) -> Refusal {
    Refusal::new(
        413,
        format!("the body ({what}) is over the limit of {bytes_max} bytes ({limit_name})"),
    )
}

fn over_budget() -> Refusal {
    Refusal::new(503, "too many request bodies are being read at once; retry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        for (line, size) in [
            ("5", 5),
            ("1A", 26),
            ("0", 0),
            ("00a", 10),
            ("5;ext=1", 5),
            ("5 ;e", 5),
            ("5\t; e=\"q\"", 5),
        ] {
            assert_eq!(parse_chunk_size(line.as_bytes()), Some(size), "{line:?}");
        }
        for line in ["", " 5", "5 ", "-1", "+5", "0x5", "5x", "1234567890abcdef", "5;\u{1}"] {
            assert_eq!(parse_chunk_size(line.as_bytes()), None, "{line:?}");
        }
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(10);
        let mut a = budget.reserve(6).expect("fits");
        assert!(budget.reserve(5).is_none());
        assert!(a.grow(4) && !a.grow(1));
        drop(a);
        assert!(budget.reserve(10).is_some());
    }

    fn read_all(bytes: &[u8], bytes_max: usize) -> (Vec<Result<Vec<u8>, u16>>, Vec<u8>) {
        read_within(bytes, bytes_max, &BodyBudget::new(1 << 20))
    }

    fn read_within(
        bytes: &[u8],
        bytes_max: usize,
        budget: &Arc<BodyBudget>,
    ) -> (Vec<Result<Vec<u8>, u16>>, Vec<u8>) {
        let mut reader = Reader::new(futures::io::Cursor::new(bytes.to_vec()));
        let mut bodies = Vec::new();
        async_std::task::block_on(async {
            for _ in 0..8 {
                match reader.read_head().await {
                    Ok(head) => {
                        match reader.read_body(head.framing, bytes_max, "limit", budget).await {
                            Ok((body, _)) => bodies.push(Ok(body)),
                            Err(ReadError::Refused(r)) => {
                                bodies.push(Err(r.status));
                                break;
                            }
                            Err(ReadError::Gone) => break,
                        }
                    }
                    Err(ReadError::Refused(r)) => {
                        bodies.push(Err(r.status));
                        break;
                    }
                    Err(ReadError::Gone) => break,
                }
            }
        });
        (bodies, reader.buf)
    }

    #[test]
    fn pipelined_requests_all_come_out_in_order() {
        let bytes = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
                      POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                      2;ext=1\r\nde\r\n1\r\nf\r\n0\r\nTrailer: t\r\n\r\n\
                      \r\nGET /c HTTP/1.0\r\n\r\n";
        let (bodies, rest) = read_all(bytes, 100);
        assert_eq!(bodies, vec![Ok(b"abc".to_vec()), Ok(b"def".to_vec()), Ok(Vec::new())]);
        assert!(rest.is_empty());
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        let (bodies, _) = read_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", 10);
        assert_eq!(bodies, vec![Err(413)]);
        let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n";
        assert_eq!(read_all(chunked, 10).0, vec![Err(413)]);
        let bad = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(read_all(bad, 10).0, vec![Err(400)]);
        let cut = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        assert_eq!(read_all(cut, 10).0, vec![Err(400)], "a body cut short is answered");
        let short = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}";
        assert_eq!(read_all(short, 1000).0, vec![Err(400)]);
        // An empty size line is not the last chunk (a smuggling opening).
        let empty = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(read_all(empty, 100).0, vec![Err(400)]);
        let trailer = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a field\r\n\r\n";
        assert_eq!(read_all(trailer, 100).0, vec![Err(400)]);
    }

    #[test]
    fn bodies_past_the_budget_are_refused() {
        let budget = BodyBudget::new(5);
        let held = budget.reserve(3).expect("fits");
        let request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(read_within(request, 100, &budget).0, vec![Err(503)]);
        drop(held);
        assert_eq!(read_within(request, 100, &budget).0, vec![Ok(b"abc".to_vec())]);
    }
}
