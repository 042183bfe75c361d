//! TLS settings: HTTPS for clients, mutual TLS between peers.
//!
//! One certificate and key serve both roles of a node: the HTTPS server,
//! and both ends of its peer connections. Peers verify each other against
//! the cluster CA (`tls_ca`): a peer connection is accepted only from a
//! client certificate signed by that CA, and a node dials a peer only if the
//! peer's certificate is signed by it and names the address dialed (IP or
//! host name in its subject alternative names). Clients of the HTTP API may
//! be required to present a certificate from `client_ca`.
//!
//! A peer's certificate must also name the IP address its member is
//! configured at, checked by both ends (`identity.rs` says why).
//!
//! The files are read at start and again on every [`TlsState::reload`]
//! (SIGHUP): new connections use the new certificates, open ones keep theirs.

mod identity;

pub use identity::names_ip;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use rustls::server::{AllowAnyAuthenticatedClient, ClientCertVerifier};
use rustls::{Certificate, ClientConfig, PrivateKey, RootCertStore, ServerConfig};

use identity::RecordingVerifier;

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The cluster CA that signs every node's certificate.
    pub ca: PathBuf,
    /// If set, HTTP clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// The rustls configurations built from [`TlsFiles`].
#[derive(Clone)]
pub struct TlsConfigs {
    /// For the HTTPS listener.
    pub http: Arc<ServerConfig>,
    /// For dialed peer connections (presents this node's certificate).
    pub peer_client: Arc<ClientConfig>,
    /// This node's certificate chain, for accepted peer connections.
    chain: Vec<Certificate>,
    /// Its key.
    key: PrivateKey,
    /// Requires peers' client certificates from the cluster CA.
    peer_verifier: Arc<dyn ClientCertVerifier>,
}

impl TlsConfigs {
    /// The server side of one accepted peer connection: a client
    /// certificate from the cluster CA is required, and the one accepted is
    /// kept in `accepted` (so that `hello` can check whom it names).
    pub fn peer_server(
        &self,
        accepted: Arc<OnceLock<Certificate>>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let verifier = RecordingVerifier { inner: self.peer_verifier.clone(), accepted };
        ServerConfig::builder()
            .with_safe_defaults()
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(self.chain.clone(), self.key.clone())
            .map(Arc::new)
    }
}

/// A TLS file that does not load: the operator fixes the file named (on a
/// reload, the certificates loaded before stay in use meanwhile).
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// An [`Error`] about `path`.
fn fail(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |reason| Error { path: path.to_path_buf(), reason }
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfigs")
    }
}

/// The current configurations, replaceable at run time.
#[derive(Debug)]
pub struct TlsState {
    /// Where to read them from.
    files: TlsFiles,
    /// What was read last.
    current: RwLock<TlsConfigs>,
}

impl TlsState {
    /// Reads the files; the error names the file at fault.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, Error> {
        let configs = build(&files)?;
        Ok(Arc::new(TlsState { files, current: RwLock::new(configs) }))
    }

    /// Reads the files again; on an error the previous certificates stay.
    pub fn reload(&self) -> Result<(), Error> {
        let configs = build(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = configs;
        Ok(())
    }

    /// The configurations for a new connection.
    pub fn configs(&self) -> TlsConfigs {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn build(files: &TlsFiles) -> Result<TlsConfigs, Error> {
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let cluster_ca = read_roots(&files.ca)?;
    let tls_error = |e: rustls::Error| fail(&files.cert)(format!("TLS certificate: {e}"));
    let http = match &files.client_ca {
        Some(path) => ServerConfig::builder()
            .with_safe_defaults()
            .with_client_cert_verifier(AllowAnyAuthenticatedClient::new(read_roots(path)?).boxed())
            .with_single_cert(chain.clone(), key.clone()),
        None => ServerConfig::builder()
            .with_safe_defaults()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone()),
    }
    .map_err(tls_error)?;
    let peer_verifier = AllowAnyAuthenticatedClient::new(cluster_ca.clone()).boxed();
    let peer_client = ClientConfig::builder()
        .with_safe_defaults()
        .with_root_certificates(cluster_ca)
        .with_client_auth_cert(chain.clone(), key.clone())
        .map_err(tls_error)?;
    let configs = TlsConfigs {
        http: Arc::new(http),
        peer_client: Arc::new(peer_client),
        chain,
        key,
        peer_verifier,
    };
    // Fail at start (or reload), not at the first peer connection.
    configs.peer_server(Arc::new(OnceLock::new())).map_err(tls_error)?;
    Ok(configs)
}

fn open(path: &Path) -> Result<BufReader<File>, Error> {
    File::open(path).map(BufReader::new).map_err(|e| fail(path)(e.to_string()))
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<Certificate>, Error> {
    let certs = rustls_pemfile::certs(&mut open(path)?).map_err(|e| fail(path)(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail(path)("no PEM certificate in it".into()));
    }
    Ok(certs.into_iter().map(Certificate).collect())
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKey, Error> {
    let items =
        rustls_pemfile::read_all(&mut open(path)?).map_err(|e| fail(path)(e.to_string()))?;
    items
        .into_iter()
        .find_map(|item| match item {
            rustls_pemfile::Item::PKCS8Key(der)
            | rustls_pemfile::Item::RSAKey(der)
            | rustls_pemfile::Item::ECKey(der) => Some(PrivateKey(der)),
            _ => None,
        })
        .ok_or_else(|| fail(path)("no PEM private key in it".into()))
}

pub(crate) fn read_roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(&cert).map_err(|e| fail(path)(e.to_string()))?;
    }
    Ok(roots)
}
