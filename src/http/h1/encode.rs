//! Writing HTTP/1.1 responses (RFC 9112 §4, §6, §9).
//!
//! A body of known length goes out with `Content-Length`, head and body in
//! one write. A body of unknown length (a stream) goes out chunked to an
//! HTTP/1.1 client and close-delimited to an HTTP/1.0 one, each piece
//! flushed as it comes, so a client sees a stream live.
//!
//! The status line always says HTTP/1.1, as RFC 9110 §6.2 asks of a server
//! (an HTTP/1.0 client reads it as 1.0); what changes with the client's
//! version is how the body is delimited and whether the connection stays.

use std::io::Write as _;
use std::time::SystemTime;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tide::http::{Response, StatusCode};

/// Bytes read from a streamed body before each chunk is written.
const STREAM_CHUNK_BYTES: usize = 16 << 10;
/// A body of known length up to this goes out in one write with its head;
/// a longer one (a snapshot download) is copied piece by piece, so that
/// serving it never holds it whole in memory.
const INLINE_BODY_BYTES_MAX: usize = 1 << 20;

/// The longest one write of a response may wait for the client to take
/// its bytes: a client that reads nothing for this long (a stalled watcher)
/// is disconnected, and what its stream held is freed.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `write_all` then `flush`, within [`WRITE_TIMEOUT`] (else `TimedOut`).
async fn write_within<W>(stream: &mut W, bytes: &[u8]) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    write_within_timeout(stream, bytes, WRITE_TIMEOUT).await
}

async fn write_within_timeout<W>(
    stream: &mut W,
    bytes: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    async_std::io::timeout(timeout, write).await
}

/// What the request asked of the response's framing.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the request allows the connection to be kept.
    pub keep_alive: bool,
    /// A HEAD request: the head only.
    pub head_only: bool,
}

/// Writes `response`; answers whether the connection may stay open.
pub async fn write_response<W>(
    stream: &mut W,
    mut response: Response,
    exchange: Exchange,
) -> std::io::Result<bool>
where
    W: AsyncWrite + Unpin,
{
    let status = response.status();
    let mut body = response.take_body();
    let length = body.len();
    let no_body = status.is_informational()
        || status == StatusCode::NoContent
        || status == StatusCode::NotModified;
    let asked_close = response
        .header("connection")
        .is_some_and(|values| values.iter().any(|v| v.as_str().eq_ignore_ascii_case("close")));
    let streamed = length.is_none() && !no_body;
    let keep_alive =
        exchange.keep_alive && !asked_close && !(streamed && exchange.minor_version == 0);

    let inline = length.is_some_and(|length| length <= INLINE_BODY_BYTES_MAX);
    let mut out = Vec::with_capacity(256 + if inline { length.unwrap_or(0) } else { 0 });
    let reason = status.canonical_reason();
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", u16::from(status));
    for (name, values) in response.iter() {
        let name = name.as_str();
        if ["connection", "content-length", "transfer-encoding", "date"].contains(&name) {
            continue;
        }
        for value in values.iter() {
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
    let _ = write!(out, "date: {}\r\n", httpdate::fmt_http_date(SystemTime::now()));
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if exchange.minor_version == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    match length {
        _ if no_body => {}
        Some(length) => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        None if exchange.minor_version == 1 => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n")
        }
        None => {}
    }
    out.extend_from_slice(b"\r\n");
    if no_body || exchange.head_only {
        stream.write_all(&out).await?;
    } else {
        write_body(stream, out, &mut body, length, exchange.minor_version).await?;
    }
    stream.flush().await?;
    Ok(keep_alive)
}

/// Writes `head` and the body: in one write if it is short and of known
/// length, else piece by piece (chunked for a stream to an HTTP/1.1 client).
async fn write_body<W>(
    stream: &mut W,
    mut head: Vec<u8>,
    body: &mut tide::http::Body,
    length: Option<usize>,
    minor_version: u8,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    match length {
        Some(length) if length <= INLINE_BODY_BYTES_MAX => {
            body.read_to_end(&mut head).await?;
            write_within(stream, &head).await
        }
        Some(length) => {
            write_within(stream, &head).await?;
            // Never more than the head promised.
            write_stream(stream, &mut body.take(length as u64), false).await
        }
        None => {
            write_within(stream, &head).await?;
            write_stream(stream, body, minor_version == 1).await
        }
    }
}

/// Copies a body of unknown length, chunked or as it is (or a long body of
/// known length, as it is), flushing each piece; a piece the client does
/// not take within [`WRITE_TIMEOUT`] ends it (`TimedOut`).
async fn write_stream<W, R>(stream: &mut W, body: &mut R, chunked: bool) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let mut piece = vec![0; STREAM_CHUNK_BYTES];
    loop {
        let n = body.read(&mut piece).await?;
        if n == 0 {
            if chunked {
                write_within(stream, b"0\r\n\r\n").await?;
            }
            return Ok(());
        }
        if chunked {
            let mut framed = Vec::with_capacity(n + 16);
            let _ = write!(framed, "{n:x}\r\n");
            framed.extend_from_slice(&piece[..n]);
            framed.extend_from_slice(b"\r\n");
            write_within(stream, &framed).await?;
        } else {
            write_within(stream, &piece[..n]).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tide::http::Body;

    /// A client that never takes a byte.
    struct Stalled;

    impl AsyncWrite for Stalled {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
    }

    #[test]
    fn a_write_the_client_never_takes_times_out() {
        let timeout = std::time::Duration::from_millis(50);
        let written = async_std::task::block_on(write_within_timeout(&mut Stalled, b"x", timeout));
        assert_eq!(written.map_err(|e| e.kind()), Err(std::io::ErrorKind::TimedOut));
        let mut out = Vec::new();
        let written = async_std::task::block_on(write_within_timeout(&mut out, b"x", timeout));
        assert!(written.is_ok() && out == b"x");
    }

    fn written(
        response: Response,
        minor_version: u8,
        keep_alive: bool,
        head_only: bool,
    ) -> (String, bool) {
        let mut out = Vec::new();
        let exchange = Exchange { minor_version, keep_alive, head_only };
        let kept = async_std::task::block_on(write_response(&mut out, response, exchange))
            .expect("written");
        (String::from_utf8(out).expect("text"), kept)
    }

    fn json(status: u16) -> Response {
        let mut response = Response::new(StatusCode::try_from(status).expect("status"));
        response.set_body(Body::from_string("{\"a\":1}".into()));
        response
    }

    #[test]
    fn known_length_bodies() {
        let (text, kept) = written(json(200), 1, true, false);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("content-length: 7\r\n") && text.ends_with("\r\n\r\n{\"a\":1}"),
            "{text}"
        );
        assert!(kept && !text.contains("connection:"));
        let (text, kept) = written(json(200), 0, false, false);
        assert!(!kept && text.contains("connection: close\r\n"), "{text}");
        let (text, kept) = written(json(200), 0, true, false);
        assert!(kept && text.contains("connection: keep-alive\r\n"), "{text}");
        let (text, _) = written(json(200), 1, true, true);
        assert!(
            text.contains("content-length: 7\r\n") && text.ends_with("\r\n\r\n"),
            "HEAD: {text}"
        );
        let mut closing = json(503);
        closing.insert_header("Connection", "close");
        let (text, kept) = written(closing, 1, true, false);
        assert!(!kept && text.matches("connection: close").count() == 1, "{text}");
    }

    #[test]
    fn streamed_bodies() {
        let streamed = |minor| {
            let mut response = Response::new(StatusCode::Ok);
            let reader = futures::io::Cursor::new(b"line one\nline two\n".to_vec());
            response.set_body(Body::from_reader(futures::io::BufReader::new(reader), None));
            written(response, minor, true, false)
        };
        let (text, kept) = streamed(1);
        assert!(kept && text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n12\r\nline one\nline two\n\r\n0\r\n\r\n"), "{text:?}");
        let (text, kept) = streamed(0);
        assert!(!kept && text.ends_with("\r\n\r\nline one\nline two\n"), "{text:?}");
    }

    #[test]
    fn a_long_body_of_known_length_is_copied_whole_and_no_further() {
        let long: Vec<u8> =
            (0..INLINE_BODY_BYTES_MAX + 40_000).map(|i| (i % 251).to_le_bytes()[0]).collect();
        let mut response = Response::new(StatusCode::Ok);
        // The reader has more than the length the head promises.
        let mut source = long.clone();
        source.extend_from_slice(b"EXTRA");
        let reader = futures::io::Cursor::new(source);
        response.set_body(Body::from_reader(futures::io::BufReader::new(reader), Some(long.len())));
        let mut out = Vec::new();
        let exchange = Exchange { minor_version: 1, keep_alive: true, head_only: false };
        let kept = async_std::task::block_on(write_response(&mut out, response, exchange))
            .expect("written");
        let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        let head = String::from_utf8_lossy(&out[..head_end]);
        assert!(head.contains(&format!("content-length: {}\r\n", long.len())), "{head}");
        assert!(!head.contains("chunked") && kept, "{head}");
        assert!(out[head_end..] == long[..], "the body, exactly");
    }
}
