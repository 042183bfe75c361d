//! One keep-alive HTTP/1.1 connection of `rdb bench`, plain or TLS: a
//! request out in one write, the answer's head parsed and its body read by
//! `Content-Length` (what rdb's `/command` always sends), so many requests
//! share one connection as a real client's do.
//!
//! A watch (`Conn::stream`) is asked in HTTP/1.0, so its answer comes
//! unchunked and ends when the node closes it.
//!
//! Caveats: no pipelining (one request in flight per connection, like wrk
//! and etcd's clients' unary calls); a chunked answer is an error, as are
//! bytes after an answer that no request asked for.

use std::sync::Arc;
use std::time::Duration;

use std::net::TcpStream;

use async_io::Async;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cli::client::ClientError;

/// The most bytes an answer's head may take.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// The largest answer body read (a get of the largest value, with room).
const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The largest body sent in the same write as its head (larger ones are
/// written from their parts, uncopied).
const ONE_WRITE_BYTES_MAX: usize = 64 * 1024;
/// The most bytes one read takes.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// The time a connection may take to open (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream an answer can be read from and a request written to.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The connection's bytes: TCP itself, or TLS over it.
enum Transport {
    Plain(Async<TcpStream>),
    Tls(Box<dyn Stream>),
}

/// Where requests go.
#[derive(Clone)]
pub struct Target {
    /// `host:port`, as dialed and as the Host header.
    pub authority: String,
    /// The host alone, for TLS's server name.
    host: String,
    /// Set for `https://` endpoints.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", if self.tls.is_some() { "https" } else { "http" }, self.authority)
    }
}

impl Target {
    /// `http://host:port` or `https://host:port` (scheme in any case; the
    /// port defaults to 80 or 443; an IPv6 host in brackets; a trailing `/`
    /// allowed, no other path, query, fragment or user); `tls` is needed
    /// for `https`.
    pub fn parse(
        endpoint: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint.trim();
        let bad = |why: &str| ClientError::Usage(format!("{endpoint:?}: {why}"));
        let (scheme, rest) = endpoint
            .split_once("://")
            .ok_or_else(|| bad("an endpoint is http://host:port or https://host:port"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme is http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad("an endpoint is a scheme, a host and a port: no path, query or user"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("a bad host or port"))?;
        let port = port.unwrap_or(if secure { 443 } else { 80 });
        let tls = match (secure, tls) {
            (true, Some(tls)) => Some(tls),
            (true, None) => return Err(bad("https needs TLS settings")),
            (false, _) => None,
        };
        let authority =
            if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(Target { authority, host, tls })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` into the host (brackets
/// removed) and the port; `None` if either is malformed or the host empty.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let valid_host = !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
    };
    valid_host.then(|| (host.to_string(), port))
}

/// What one request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The server will close the connection after it.
    pub closing: bool,
}

/// An open connection.
pub struct Conn {
    transport: Transport,
    /// Bytes read past the last answer (none, without pipelining; kept for
    /// correctness).
    buffer: Vec<u8>,
    /// The request being written (small requests whole; a large one's
    /// head only, its body written from the caller's parts).
    request: Vec<u8>,
    /// Where reads land (on the heap: a request's future stays small, as
    /// it is moved into its timeout each time).
    read_chunk: Vec<u8>,
    host_header: String,
}

impl Conn {
    /// Opens a connection to `target` (TCP_NODELAY, as every latency-minded
    /// client sets), within `limit`.
    pub async fn open(target: &Target, limit: Duration) -> std::io::Result<Conn> {
        let dial = async {
            let address = async_std::net::ToSocketAddrs::to_socket_addrs(&target.authority)
                .await?
                .next()
                .ok_or_else(|| invalid("the host has no address"))?;
            let tcp = Async::<TcpStream>::connect(address).await?;
            tcp.get_ref().set_nodelay(true)?;
            Ok::<_, std::io::Error>(match &target.tls {
                None => Transport::Plain(tcp),
                Some(config) => {
                    let connector = async_tls::TlsConnector::from(config.clone());
                    Transport::Tls(Box::new(connector.connect(&target.host, tcp).await?))
                }
            })
        };
        let transport =
            async_std::future::timeout(limit.min(CONNECT_TIMEOUT), dial).await.map_err(
                |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            )??;
        Ok(Conn {
            transport,
            buffer: Vec::with_capacity(4096),
            request: Vec::with_capacity(512),
            read_chunk: vec![0; READ_CHUNK_BYTES],
            host_header: target.authority.clone(),
        })
    }

    /// Sends `POST /command` with the body made of `parts` and reads the
    /// answer. A small request goes out in one write; a large one as its
    /// head and then each part, so a large shared value is never copied.
    pub async fn command(&mut self, parts: &[&[u8]]) -> std::io::Result<Answer> {
        self.send(parts, "1.1").await?;
        self.read_answer(None).await
    }

    /// Like [`Conn::command`], and the answer's body is appended to `body`.
    pub async fn command_keeping(
        &mut self,
        parts: &[&[u8]],
        body: &mut Vec<u8>,
    ) -> std::io::Result<Answer> {
        self.send(parts, "1.1").await?;
        self.read_answer(Some(body)).await
    }

    /// Sends a streaming request (a watch) as HTTP/1.0, so the answer comes
    /// unchunked and ends when the server closes, and hands each line of
    /// its body to `on_line` until it returns false, the server closes
    /// (`Ok`), or `idle` passes with nothing read (then `on_line` gets an
    /// empty line, to check for a stop). An answer other than 200 is an
    /// error naming its status.
    pub async fn stream(
        &mut self,
        body: &[u8],
        idle: Duration,
        mut on_line: impl FnMut(&[u8]) -> bool,
    ) -> std::io::Result<()> {
        self.send(&[body], "1.0").await?;
        let head_bytes = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if self.buffer.len() > HEAD_BYTES_MAX {
                return Err(invalid("an answer's head is too large"));
            }
            self.fill().await?;
        };
        if !self.buffer.starts_with(b"HTTP/1.0 200") && !self.buffer.starts_with(b"HTTP/1.1 200") {
            let line = self.buffer.split(|&b| b == b'\r').next().unwrap_or_default();
            return Err(invalid(&format!("the watch answered {}", String::from_utf8_lossy(line))));
        }
        self.buffer.drain(..head_bytes);
        loop {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                if !on_line(&self.buffer[..end]) {
                    return Ok(());
                }
                self.buffer.drain(..=end);
            }
            if self.buffer.len() > BODY_BYTES_MAX {
                return Err(invalid("a watch event line is too long"));
            }
            match async_std::future::timeout(idle, self.fill()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) if !on_line(b"") => return Ok(()),
                Err(_) => {}
            }
        }
    }

    /// Writes `POST /command` in HTTP/`version` with the body made of `parts`.
    async fn send(&mut self, parts: &[&[u8]], version: &str) -> std::io::Result<()> {
        let body_bytes: usize = parts.iter().map(|p| p.len()).sum();
        self.request.clear();
        self.request.extend_from_slice(b"POST /command HTTP/");
        self.request.extend_from_slice(version.as_bytes());
        self.request.extend_from_slice(b"\r\nhost: ");
        self.request.extend_from_slice(self.host_header.as_bytes());
        self.request.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        self.request.extend_from_slice(body_bytes.to_string().as_bytes());
        self.request.extend_from_slice(b"\r\n\r\n");
        let whole = body_bytes <= ONE_WRITE_BYTES_MAX;
        if whole {
            parts.iter().for_each(|part| self.request.extend_from_slice(part));
        }
        let stream: &mut dyn Stream = match &mut self.transport {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => tls.as_mut(),
        };
        stream.write_all(&self.request).await?;
        if !whole {
            for part in parts {
                stream.write_all(part).await?;
            }
        }
        stream.flush().await?;
        if let Transport::Plain(tcp) = &self.transport {
            // The answer cannot be there yet: wait for it rather than try a
            // read that would find nothing.
            tcp.readable().await?;
        }
        Ok(())
    }

    /// Reads one answer: its head, then its body, dropped as it arrives
    /// (or appended to `keep`). Interim (1xx) answers are skipped; bytes
    /// after the answer, which no request asked for, are an error.
    async fn read_answer(&mut self, mut keep: Option<&mut Vec<u8>>) -> std::io::Result<Answer> {
        loop {
            let Some((head_bytes, answer, body_bytes)) = parse_head(&self.buffer)? else {
                if self.buffer.len() > HEAD_BYTES_MAX {
                    return Err(invalid("an answer's head is too large"));
                }
                self.fill().await?;
                continue;
            };
            self.buffer.drain(..head_bytes);
            let mut left = body_bytes;
            loop {
                let taken = left.min(self.buffer.len());
                if let Some(keep) = keep.as_mut() {
                    keep.extend_from_slice(&self.buffer[..taken]);
                }
                self.buffer.drain(..taken);
                left -= taken;
                if left == 0 {
                    break;
                }
                self.fill().await?;
            }
            if (100..200).contains(&answer.status) {
                continue;
            }
            if !self.buffer.is_empty() {
                return Err(invalid("the server sent bytes after the answer"));
            }
            return Ok(answer);
        }
    }

    /// Reads more bytes into the buffer; end of stream is an error.
    async fn fill(&mut self) -> std::io::Result<()> {
        let chunk = &mut self.read_chunk;
        let n = match &mut self.transport {
            Transport::Plain(tcp) => tcp.read(chunk).await?,
            Transport::Tls(tls) => tls.read(chunk).await?,
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

/// Parses an answer's head from the front of `bytes`: its length, the
/// answer, and the body's length; `None` if the head is not all there.
fn parse_head(bytes: &[u8]) -> std::io::Result<Option<(usize, Answer, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_bytes = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("a malformed answer: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let mut body_bytes = None;
    let mut closing = response.version == Some(0);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<usize>().map_err(|_| invalid("bad content-length"))?;
            if body_bytes.replace(n).is_some() {
                return Err(invalid("an answer with two content-length headers"));
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("a chunked answer (rdb bench reads Content-Length bodies)"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            closing = value.eq_ignore_ascii_case("close");
        }
    }
    let body_bytes = match body_bytes {
        Some(n) if n <= BODY_BYTES_MAX => n,
        Some(_) => return Err(invalid("an answer's body is too large")),
        None if status == 204 || status == 304 || (100..200).contains(&status) => 0,
        None => return Err(invalid("an answer without Content-Length")),
    };
    Ok(Some((head_bytes, Answer { status, closing }, body_bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_or_are_refused_clearly() {
        let t = Target::parse("http://127.0.0.1:8081/", None).unwrap();
        assert_eq!(t.authority, "127.0.0.1:8081");
        assert_eq!(Target::parse("http://db.example", None).unwrap().authority, "db.example:80");
        assert_eq!(Target::parse("http://[::1]:8081", None).unwrap().host, "::1");
        for bad in ["127.0.0.1:8081", "http://h:x", "http://h:1/command", "https://h:1", "http://"]
        {
            assert!(Target::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_framed_by_content_length() {
        let bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1";
        let (head, answer, body) = parse_head(bytes).unwrap().unwrap();
        assert_eq!((answer.status, answer.closing, body), (200, false, 2));
        assert_eq!(&bytes[head..head + body], b"{}");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-len").unwrap().is_none());
        let closing = b"HTTP/1.1 503 x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_head(closing).unwrap().unwrap().1.closing);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        let twice = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n";
        assert!(parse_head(twice).is_err());
    }
}
