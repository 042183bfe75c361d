//! Raw HTTP/1.x over a TCP socket, for tests that must send exactly what a
//! client sends (HTTP/1.0, pipelining, chunked bodies, broken framing) and
//! read exactly what comes back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long a test waits for any answer, at most.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header fields, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A client connection.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects to 127.0.0.1:`port`.
    pub fn open(port: u16) -> Self {
        Self::from_stream(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
    }

    /// A client on a connected `stream`.
    pub fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        RawConn { stream, buf: Vec::new() }
    }

    /// Writes `bytes` in one write.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads more bytes; false at the end of the stream.
    fn fill(&mut self, deadline: Instant) -> bool {
        let mut chunk = [0u8; 16384];
        loop {
            assert!(
                Instant::now() < deadline,
                "no answer within {ANSWER_TIMEOUT:?}: {:?}",
                self.text()
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return false,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads one response (of a request that was not HEAD).
    pub fn response(&mut self) -> RawResponse {
        self.response_to(false)
    }

    /// Reads one response; `head` if it answers a HEAD request.
    pub fn response_to(&mut self, head: bool) -> RawResponse {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let (status, headers, used) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(used) =
                parsed.parse(&self.buf).expect("a response head")
            {
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())
                    })
                    .collect::<Vec<_>>();
                break (parsed.code.expect("code"), headers, used);
            }
            assert!(
                self.fill(deadline),
                "the connection closed before a response: {:?}",
                self.text()
            );
        };
        self.buf.drain(..used);
        let mut response = RawResponse { status, headers, body: Vec::new() };
        if head || status == 100 || status == 204 || status == 304 {
            return response;
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("a length");
            while self.buf.len() < length {
                assert!(self.fill(deadline), "the body was cut: {:?}", self.text());
            }
            response.body = self.buf.drain(..length).collect();
        } else if response.header("transfer-encoding") == Some("chunked") {
            response.body = self.chunked(deadline);
        } else {
            while self.fill(deadline) {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    fn chunked(&mut self, deadline: Instant) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let (used, size) = loop {
                if let Ok(httparse::Status::Complete(found)) = httparse::parse_chunk_size(&self.buf)
                {
                    break found;
                }
                assert!(self.fill(deadline), "the chunked body was cut");
            };
            let size = usize::try_from(size).expect("small");
            while self.buf.len() < used + size + 2 {
                assert!(self.fill(deadline), "the chunked body was cut");
            }
            body.extend_from_slice(&self.buf[used..used + size]);
            self.buf.drain(..used + size + 2);
            if size == 0 {
                return body;
            }
        }
    }

    /// Whether the server has begun to answer (or closed) within `wait`;
    /// what it sent stays to be read as a response.
    #[allow(dead_code, reason = "not every test binary uses every helper")]
    pub fn answered_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while self.buf.is_empty() && Instant::now() < deadline {
            if self.read_some() == Some(false) {
                return true;
            }
        }
        !self.buf.is_empty()
    }

    /// One read into the buffer: Some(true) if bytes came, Some(false) at
    /// the end of the stream (or an error), None if the read timed out.
    fn read_some(&mut self) -> Option<bool> {
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Some(false),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(_) => Some(false),
        }
    }

    /// Whether the server closed the connection (reads until the end or
    /// ANSWER_TIMEOUT), with nothing more sent.
    pub fn closed(&mut self) -> bool {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while Instant::now() < deadline {
            if self.read_some() == Some(false) {
                return self.buf.is_empty();
            }
        }
        false
    }
}

/// A POST /command request as bytes.
pub fn post(version: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /command {version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}
