//! Request heads (RFC 9112 §2-§7): parsing with httparse, then the rules
//! that decide how a request is framed and whether it may be served: the
//! method, Host, Content-Length or Transfer-Encoding, Connection, Expect.
//! Anything that would let a request mean two things (two lengths, a
//! length and a coding, a Host that looks like a path) is refused.

/// Header fields in a request head, at most.
pub const HEADERS_MAX: usize = 100;

/// The methods served; names are case-sensitive (RFC 9110 §9.1).
const METHODS: [&str; 9] =
    ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"];

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
    /// A refusal with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal { status, message: message.into() }
    }
}

/// Parses a complete head at the start of `buf`: the head and the bytes it
/// took, or None if more bytes are needed.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Refusal> {
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
    // Values may carry any bytes (obs-text, RFC 9110 §5.5): kept lossily;
    // the fields rdb reads must be ASCII to pass their own checks, and the
    // others are passed on only if they are ASCII.
    let headers = request
        .headers
        .iter()
        .map(|field| {
            let value = String::from_utf8_lossy(field.value).trim().to_string();
            (field.name.to_string(), value)
        })
        .collect();
    let method = request.method.unwrap_or_default();
    if !METHODS.contains(&method) {
        // Method names are case-sensitive (RFC 9110 §9.1).
        return Err(Refusal::new(501, format!("method {method:?} is not implemented")));
    }
    let head = Head {
        method: method.to_string(),
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
    if hosts.len() > 1 {
        return Err(Refusal::new(400, "more than one Host header"));
    }
    if let Some(host) = hosts.iter().find(|host| !valid_host(host)) {
        return Err(Refusal::new(400, format!("Host {host:?} is not a host and optional port")));
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

/// Whether `host` is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986
/// §3.2.2): a registered name or IPv4 address of unreserved, sub-delims
/// and %-escaped characters, or an IP literal in brackets, then digits.
/// Nothing in it may act as a path, query, fragment or user info.
pub(super) fn valid_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(literal) => match literal.split_once(']') {
            Some((inside, rest)) => {
                let ok = !inside.is_empty()
                    && inside.bytes().all(|b| b.is_ascii_hexdigit() || b":.".contains(&b));
                if !ok {
                    return false;
                }
                ("", rest.strip_prefix(':').map_or(Some(rest), Some))
            }
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let name_ok =
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    let port_ok = match port {
        None => true,
        Some("") => !host.starts_with('[') || host.ends_with(']'),
        Some(port) => port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()),
    };
    name_ok && port_ok
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
    fn host_values() {
        for good in
            ["", "a", "a:80", "10.0.0.1:8081", "[::1]", "[::1]:8081", "rdb-1.example.com", "a%20b"]
        {
            assert!(valid_host(good), "{good:?}");
        }
        for bad in [
            "x/command#",
            "x/admin/snapshot?",
            "a b",
            "@@@",
            "[::1",
            "a:notaport",
            "u@h",
            "a:123456",
            "[]",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }

    #[test]
    fn host_rules() {
        assert_eq!(refused("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(refused("GET /health HTTP/1.1\r\nHost: x/command#\r\n\r\n"), 400);
        assert_eq!(refused("GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
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
        let h = head("GET / HTTP/1.1\r\nHost: x\r\nX-Name: h\u{e9}llo\r\n\r\n").unwrap().unwrap();
        assert!(!h.headers[1].1.is_ascii(), "a non-ASCII value is kept, not refused");
        assert_eq!(
            refused("post / HTTP/1.1\r\nHost: x\r\n\r\n"),
            501,
            "methods are case-sensitive"
        );
        let many: String = (0..=HEADERS_MAX).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(refused(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")), 431);
    }
}
