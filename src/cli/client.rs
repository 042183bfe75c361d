//! The HTTP client behind the operator subcommands (`rdb member`, `rdb
//! leader`): one or more endpoints tried in order until one answers, TLS
//! options named as curl's, and exit codes a script can use.
//!
//! Exit codes: 0 done; 1 refused (404 not found, 409 conflict, 507 no
//! space: the space guard); 2 usage or
//! a bad request (400); 3 unavailable (no endpoint answered, 503, 504).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The time one request may take, per endpoint.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The time a download (a snapshot) may take.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a subcommand's failure means to a script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The cluster refused it (exit 1).
    #[error("{0}")]
    Refused(String),
    /// The command or request was malformed (exit 2).
    #[error("{0}")]
    Usage(String),
    /// No endpoint could do it now (exit 3).
    #[error("{0}")]
    Unavailable(String),
}

impl ClientError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Refused(_) => 1,
            ClientError::Usage(_) => 2,
            ClientError::Unavailable(_) => 3,
        }
    }

    /// The message for stderr.
    pub fn message(&self) -> &str {
        match self {
            ClientError::Refused(m) | ClientError::Usage(m) | ClientError::Unavailable(m) => m,
        }
    }
}

/// Where and how to reach the cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Endpoints to try in order (http://host:port or https://host:port,
    /// comma-separated).
    #[arg(
        long,
        global = true,
        alias = "endpoint",
        env = "RDB_ENDPOINTS",
        default_value = "http://127.0.0.1:8081",
        value_delimiter = ','
    )]
    pub endpoints: Vec<String>,
    /// The CA certificate (PEM) to verify HTTPS endpoints with, as curl's
    /// --cacert.
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM), for nodes that require one.
    #[arg(long, global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Print the JSON answers instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A client of the cluster's HTTP API.
#[derive(Debug)]
pub struct Client {
    /// The HTTP agent (TLS as configured).
    agent: ureq::Agent,
    /// Tried in order.
    endpoints: Vec<String>,
}

impl Client {
    /// A client for `args`; a TLS file that cannot be read is a usage error.
    pub fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        use ureq::tls::{ClientCert, PemItem, RootCerts, TlsConfig};
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))
        };
        let mut tls = TlsConfig::builder();
        if let Some(path) = &args.cacert {
            let pem = read(path)?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(ClientError::Usage(format!("{}: no certificate", path.display())));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            let (cert_pem, key_pem) = (read(cert)?, read(key)?);
            let chain: Vec<_> = ureq::tls::parse_pem(&cert_pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            let key = ureq::tls::parse_pem(&key_pem)
                .find_map(|item| match item {
                    Ok(PemItem::PrivateKey(key)) => Some(key),
                    _ => None,
                })
                .ok_or_else(|| ClientError::Usage(format!("{}: no private key", key.display())))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .tls_config(tls.build())
            .build()
            .into();
        let endpoints: Vec<String> = args
            .endpoints
            .iter()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::Usage("no endpoint given (--endpoints)".into()));
        }
        if let Some(bad) =
            endpoints.iter().find(|e| !e.starts_with("http://") && !e.starts_with("https://"))
        {
            return Err(ClientError::Usage(format!(
                "endpoint {bad:?} must start with http:// or https:// (http://{bad}, say)"
            )));
        }
        Ok(Client { agent, endpoints })
    }

    /// Sends `method path` with `body` to the first endpoint that answers;
    /// the status and the JSON answer. An endpoint that cannot be reached
    /// or answers 503 is skipped for the next (503 means nothing happened).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        self.send(method, path, body, false)
    }

    /// Like [`Client::request`], for a write that must not be made twice:
    /// the next endpoint is tried only when the request cannot have reached
    /// a node (no connection, 503); an error after it was sent means its
    /// outcome is unknown ([`ClientError::Unavailable`], exit 3).
    pub fn write(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ClientError> {
        self.send(method, path, body, true)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        once: bool,
    ) -> Result<(u16, Value), ClientError> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let request = ureq::http::Request::builder()
                .method(method)
                .uri(format!("{endpoint}{path}"))
                .header("content-type", "application/json")
                .body(body.map(Value::to_string).unwrap_or_default())
                .map_err(|e| ClientError::Usage(format!("{endpoint}: {e}")))?;
            match self.agent.run(request) {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if status == 503 {
                        failures.push(format!("{endpoint}: 503 {}", error_of(&answer)));
                        continue;
                    }
                    return Ok((status, answer));
                }
                Err(error) if once && !not_sent(&error) => {
                    failures.push(format!("{endpoint}: {error}"));
                    let tried = failures.join("; ");
                    return Err(ClientError::Unavailable(format!(
                        "the write's outcome is unknown (read before retrying it): {tried}"
                    )));
                }
                Err(error) => failures.push(format!("{endpoint}: {error}")),
            }
        }
        Err(ClientError::Unavailable(format!("no endpoint could answer: {}", failures.join("; "))))
    }

    /// GETs `path` from the first endpoint that answers 200 and copies the
    /// body into `sink`, however long (up to [`DOWNLOAD_TIMEOUT`]); the
    /// response's headers. An endpoint that cannot be reached or answers
    /// 503 is skipped for the next; a body cut short is an error.
    pub fn download(
        &self,
        path: &str,
        sink: &mut dyn std::io::Write,
    ) -> Result<ureq::http::HeaderMap, ClientError> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let url = format!("{endpoint}{path}");
            let request =
                self.agent.get(&url).config().timeout_global(Some(DOWNLOAD_TIMEOUT)).build();
            match request.call() {
                Ok(mut response) if response.status() == 200 => {
                    std::io::copy(&mut response.body_mut().as_reader(), sink).map_err(|e| {
                        ClientError::Unavailable(format!("{endpoint}: download cut short: {e}"))
                    })?;
                    return Ok(response.headers().clone());
                }
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    let error = format!("{endpoint}: {status} {}", error_of(&answer));
                    if status != 503 {
                        return Err(ClientError::Unavailable(error));
                    }
                    failures.push(error);
                }
                Err(error) => failures.push(format!("{endpoint}: {error}")),
            }
        }
        Err(ClientError::Unavailable(format!("no endpoint could answer: {}", failures.join("; "))))
    }

    /// Like [`Client::request`], with a status other than 200 as the error
    /// it means.
    pub fn expect_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, answer) = self.request(method, path, body)?;
        let error = format!("{status}: {}", error_of(&answer));
        match status {
            200 => Ok(answer),
            404 | 409 | 507 => Err(ClientError::Refused(error)),
            400 | 405 | 413 => Err(ClientError::Usage(error)),
            _ => Err(ClientError::Unavailable(error)),
        }
    }
}

/// True when `error` happened before the request could reach a node, so
/// that sending it elsewhere cannot make a write twice.
fn not_sent(error: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match error {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::BadUri(_) => true,
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => true,
        // A TLS handshake fails before the request is written.
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => true,
        ureq::Error::Io(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotFound
        ),
        _ => false,
    }
}

/// The `error` of an answer, or the answer itself.
fn error_of(answer: &Value) -> String {
    answer["error"].as_str().map_or_else(|| answer.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::not_sent;

    /// Only errors before the request reached a node let a write be sent
    /// to the next endpoint.
    #[test]
    fn a_write_goes_elsewhere_only_if_it_cannot_have_arrived() {
        let io = |kind| ureq::Error::Io(std::io::Error::from(kind));
        assert!(not_sent(&io(std::io::ErrorKind::ConnectionRefused)));
        assert!(not_sent(&ureq::Error::Timeout(ureq::Timeout::Connect)));
        assert!(not_sent(&ureq::Error::HostNotFound));
        assert!(!not_sent(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!not_sent(&ureq::Error::Timeout(ureq::Timeout::RecvResponse)));
        assert!(!not_sent(&ureq::Error::Timeout(ureq::Timeout::Global)));
    }
}
