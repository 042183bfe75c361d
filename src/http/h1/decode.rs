//! Reading HTTP/1.0 and HTTP/1.1 requests off a byte stream (RFC 9112).
//!
//! A [`Reader`] owns the connection's read side and one buffer that lives
//! as long as the connection, so bytes read past the end of one request
//! (the next pipelined request, say) stay in the buffer for the next call.
//! That is the fault this module exists to avoid: a per-request buffer drops
//! whatever a client sent ahead.
//!
//! Every limit is checked before the bytes it guards are held: a request
//! head is at most [`HEAD_BYTES_MAX`] with at most [`HEADERS_MAX`] fields
//! (else 431), a body at most the configured `body_bytes_max` (else 413),
//! and each wait for the client has a timeout.
//!
//! Caveats: only the `chunked` transfer coding is understood (others are
//! 501); chunk extensions and trailer fields are read and ignored; a request
//! with both `Content-Length` and `Transfer-Encoding` is refused (400), as
//! RFC 9112 §6.1 allows, because it is the shape of request smuggling.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt};

/// Bytes of a request head (request line and header fields), at most.
pub const HEAD_BYTES_MAX: usize = 64 << 10;
/// Header fields in a request head, at most.
pub const HEADERS_MAX: usize = 100;
/// Bytes of a chunk-size line (with its extensions), at most.
const CHUNK_LINE_BYTES_MAX: usize = 4 << 10;
/// Bytes asked of the socket per read.
const READ_BYTES: usize = 16 << 10;
/// How long an idle keep-alive connection waits for a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the rest of a request (head or body) may take once begun.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What a request says about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (no header: 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method, as sent (a token).
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Every header field, in order (names as sent, values ASCII).
    pub headers: Vec<(String, String)>,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the client wants the connection kept after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request with a body.
    pub expect_continue: bool,
    /// The `Host` header, if any.
    pub host: Option<String>,
}

/// A request the server must refuse: answered with `status` and `message`,
/// then the connection is closed (its framing can no longer be trusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// What was wrong, for the client.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into() }
    }
}

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

/// The read side of a connection, with its buffer.
pub struct Reader<S> {
    /// The connection.
    stream: S,
    /// Bytes read from `stream` and not yet consumed.
    buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// A reader on `stream`.
    pub fn new(stream: S) -> Self {
        Reader { stream, buf: Vec::new() }
    }

    /// The stream, for writing responses.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Reads the next request head, waiting up to [`IDLE_TIMEOUT`] for it
    /// to begin.
    pub async fn read_head(&mut self) -> Result<Head, ReadError> {
        loop {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            let blank = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
            self.buf.drain(..blank);
            if !self.buf.is_empty() {
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
            let timeout = if self.buf.is_empty() { IDLE_TIMEOUT } else { REQUEST_READ_TIMEOUT };
            if self.fill(timeout).await? == 0 {
                if self.buf.is_empty() {
                    return Err(ReadError::Gone);
                }
                return Err(
                    Refusal::new(400, "the connection ended inside the request head").into()
                );
            }
        }
    }

    /// Reads a whole body of `framing`, refusing (413) one over
    /// `bytes_max`; `limit_name` names the setting in the refusal.
    pub async fn read_body(
        &mut self,
        framing: Framing,
        bytes_max: usize,
        limit_name: &str,
    ) -> Result<Vec<u8>, ReadError> {
        match framing {
            Framing::Length(length) => {
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > bytes_max {
                    return Err(too_large(&format!("{length} bytes"), bytes_max, limit_name).into());
                }
                let mut body = Vec::with_capacity(length);
                self.read_exact_into(&mut body, length).await?;
                Ok(body)
            }
            Framing::Chunked => self.read_chunked(bytes_max, limit_name).await,
        }
    }

    /// Reads and discards up to `bytes` of body, so that a client still
    /// sending gets to read the answer; false if it stopped early.
    pub async fn discard(&mut self, bytes: u64) -> bool {
        let mut left = bytes;
        loop {
            let taken = self.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            self.buf.drain(..taken);
            left -= taken as u64;
            if left == 0 {
                return true;
            }
            if !matches!(self.fill(REQUEST_READ_TIMEOUT).await, Ok(n) if n > 0) {
                return false;
            }
        }
    }

    async fn read_chunked(
        &mut self,
        bytes_max: usize,
        limit_name: &str,
    ) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let size = self.chunk_size().await?;
            if size == 0 {
                self.skip_trailers().await?;
                return Ok(body);
            }
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if size > bytes_max.saturating_sub(body.len()) {
                return Err(too_large("a chunked body", bytes_max, limit_name).into());
            }
            self.read_exact_into(&mut body, size).await?;
            let mut crlf = Vec::with_capacity(2);
            self.read_exact_into(&mut crlf, 2).await?;
            if crlf != b"\r\n" {
                return Err(Refusal::new(400, "a chunk is not followed by CRLF").into());
            }
        }
    }

    /// Reads a chunk-size line; answers the size.
    async fn chunk_size(&mut self) -> Result<u64, ReadError> {
        loop {
            match httparse::parse_chunk_size(&self.buf) {
                Ok(httparse::Status::Complete((consumed, size))) => {
                    self.buf.drain(..consumed);
                    return Ok(size);
                }
                Ok(httparse::Status::Partial) if self.buf.len() <= CHUNK_LINE_BYTES_MAX => {}
                Ok(httparse::Status::Partial) | Err(_) => {
                    return Err(Refusal::new(400, "malformed chunk size line").into())
                }
            }
            self.fill_or_refuse().await?;
        }
    }

    /// Reads trailer fields up to the empty line that ends the body.
    async fn skip_trailers(&mut self) -> Result<(), ReadError> {
        let mut skipped = 0;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                self.buf.drain(..end + 2);
                if end == 0 {
                    return Ok(());
                }
                skipped += end;
            } else if self.buf.len() + skipped > HEAD_BYTES_MAX {
                return Err(Refusal::new(431, "the trailer fields are too large").into());
            } else {
                self.fill_or_refuse().await?;
            }
        }
    }

    /// Moves `length` bytes of body into `out`: the buffered ones first,
    /// then straight from the stream.
    async fn read_exact_into(&mut self, out: &mut Vec<u8>, length: usize) -> Result<(), ReadError> {
        let buffered = self.buf.len().min(length);
        out.extend(self.buf.drain(..buffered));
        let start = out.len();
        let rest = length - buffered;
        if rest == 0 {
            return Ok(());
        }
        out.resize(start + rest, 0);
        let read = self.stream.read_exact(&mut out[start..]);
        match async_std::io::timeout(REQUEST_READ_TIMEOUT, read).await {
            Ok(()) => Ok(()),
            Err(_) => Err(ReadError::Gone),
        }
    }

    async fn fill_or_refuse(&mut self) -> Result<(), ReadError> {
        match self.fill(REQUEST_READ_TIMEOUT).await? {
            0 => Err(Refusal::new(400, "the connection ended inside the body").into()),
            _ => Ok(()),
        }
    }

    /// Reads once from the stream into the buffer; 0 at the end of the
    /// stream.
    async fn fill(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        let Reader { stream, buf } = self;
        let len = buf.len();
        buf.resize(len + READ_BYTES, 0);
        let read = async_std::io::timeout(timeout, stream.read(&mut buf[len..])).await;
        let n = *read.as_ref().unwrap_or(&0);
        buf.truncate(len + n);
        read.map_err(|_: io::Error| ReadError::Gone)
    }
}

fn too_large(what: &str, bytes_max: usize, limit_name: &str) -> Refusal {
    Refusal::new(
        413,
        format!("the body ({what}) is over the limit of {bytes_max} bytes ({limit_name})"),
    )
}

/// Parses a complete head at the start of `buf`: the head and the bytes it
/// took, or None if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut fields);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(431, format!("more than {HEADERS_MAX} header fields")))
        }
        Err(httparse::Error::Version) => {
            return Err(Refusal::new(505, "only HTTP/1.0 and HTTP/1.1 are supported"))
        }
        Err(error) => return Err(Refusal::new(400, format!("malformed request: {error}"))),
    };
    let mut headers = Vec::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let value = std::str::from_utf8(field.value)
            .ok()
            .filter(|value| value.is_ascii())
            .ok_or_else(|| Refusal::new(400, format!("header {:?} is not ASCII", field.name)))?;
        headers.push((field.name.to_string(), value.trim().to_string()));
    }
    let head = Head {
        method: request.method.unwrap_or_default().to_string(),
        target: request.path.unwrap_or_default().to_string(),
        minor_version: request.version.unwrap_or(1),
        framing: Framing::Length(0),
        keep_alive: false,
        expect_continue: false,
        host: None,
        headers,
    };
    Ok(Some((check_head(head)?, consumed)))
}

/// Applies RFC 9112's rules on Host, framing, Connection and Expect.
fn check_head(mut head: Head) -> Result<Head, Refusal> {
    let values = |name: &str| -> Vec<String> {
        head.headers
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .collect()
    };
    let hosts = values("host");
    if head.minor_version == 1 && hosts.len() != 1 {
        let message =
            format!("an HTTP/1.1 request needs exactly one Host header ({} given)", hosts.len());
        return Err(Refusal::new(400, message));
    }
    let (lengths, codings) = (values("content-length"), values("transfer-encoding"));
    let connection = values("connection").join(",").to_ascii_lowercase();
    let has_token = |token: &str| connection.split(',').any(|t| t.trim() == token);
    head.keep_alive = match head.minor_version {
        0 => has_token("keep-alive"),
        _ => !has_token("close"),
    };
    head.framing = framing(head.minor_version, &lengths, &codings)?;
    let has_body = head.framing != Framing::Length(0);
    let expects = values("expect");
    match expects.as_slice() {
        [] => {}
        [expect] if expect.eq_ignore_ascii_case("100-continue") => {
            head.expect_continue = head.minor_version == 1 && has_body;
        }
        _ => return Err(Refusal::new(417, format!("cannot meet Expect: {}", expects.join(", ")))),
    }
    head.host = hosts.into_iter().next();
    Ok(head)
}

/// How the body is delimited (RFC 9112 §6).
fn framing(minor_version: u8, lengths: &[String], codings: &[String]) -> Result<Framing, Refusal> {
    if !codings.is_empty() {
        if minor_version == 0 {
            return Err(Refusal::new(400, "Transfer-Encoding is not allowed in HTTP/1.0"));
        }
        if !lengths.is_empty() {
            return Err(Refusal::new(400, "both Content-Length and Transfer-Encoding are given"));
        }
        let coding = codings.join(",");
        if !coding.trim().eq_ignore_ascii_case("chunked") {
            let message = format!("Transfer-Encoding {coding:?} is not supported (only chunked)");
            return Err(Refusal::new(501, message));
        }
        return Ok(Framing::Chunked);
    }
    let mut length = None;
    for value in lengths.iter().flat_map(|value| value.split(',')) {
        let value = value.trim();
        let parsed = (!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
            .then(|| value.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                Refusal::new(400, format!("Content-Length {value:?} is not a number"))
            })?;
        if length.is_some_and(|length| length != parsed) {
            return Err(Refusal::new(400, "Content-Length is given with different values"));
        }
        length = Some(parsed);
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Refusal> {
        parse_head(text.as_bytes()).map(|parsed| parsed.map(|(head, _)| head))
    }

    fn refused(text: &str) -> u16 {
        head(text).expect_err("refused").status
    }

    #[test]
    fn versions_and_keep_alive() {
        let h = head("GET /a HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.minor_version, h.keep_alive), (0, false));
        let h = head("GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(h.keep_alive);
        let h = head("GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert!(h.keep_alive);
        let h =
            head("GET /a HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n").unwrap();
        assert!(!h.unwrap().keep_alive);
        assert_eq!(refused("GET /a HTTP/2.0\r\n\r\n"), 505);
        assert!(head("GET /a HTTP/1.1\r\nHost: x\r\n").unwrap().is_none(), "partial");
    }

    #[test]
    fn host_rules() {
        assert_eq!(refused("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert!(head("GET / HTTP/1.0\r\n\r\n").unwrap().is_some(), "1.0 needs no Host");
    }

    #[test]
    fn framing_rules() {
        let body = |text: &str| head(text).unwrap().unwrap().framing;
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"),
            Framing::Length(12)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            body("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Framing::Chunked
        );
        for bad in [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(refused(bad), 400, "{bad:?}");
        }
        assert_eq!(
            refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
    }

    #[test]
    fn expect_rules() {
        let h =
            head("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(h.unwrap().unwrap().expect_continue);
        let h = head("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n");
        assert!(!h.unwrap().unwrap().expect_continue, "no body, nothing to continue");
        assert_eq!(refused("POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n"), 417);
    }

    #[test]
    fn malformed_heads() {
        assert_eq!(refused("GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"), 400);
        assert_eq!(refused("GET / HTTP/1.1\r\nHost: \u{e9}\r\n\r\n"), 400);
        let many: String = (0..=HEADERS_MAX).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(refused(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")), 431);
    }

    fn read_all(bytes: &[u8], bytes_max: usize) -> (Vec<Result<Vec<u8>, u16>>, Vec<u8>) {
        let mut reader = Reader::new(futures::io::Cursor::new(bytes.to_vec()));
        let mut bodies = Vec::new();
        async_std::task::block_on(async {
            for _ in 0..8 {
                match reader.read_head().await {
                    Ok(head) => match reader.read_body(head.framing, bytes_max, "limit").await {
                        Ok(body) => bodies.push(Ok(body)),
                        Err(ReadError::Refused(r)) => {
                            bodies.push(Err(r.status));
                            break;
                        }
                        Err(ReadError::Gone) => break,
                    },
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
        assert_eq!(read_all(cut, 10).0, Vec::<Result<Vec<u8>, u16>>::new(), "client gone");
    }
}
