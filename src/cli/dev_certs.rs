//! Throwaway certificates for `rdb dev --tls`: a CA and one certificate for
//! 127.0.0.1 (and localhost), shared by the dev nodes, plus a client
//! certificate. Never for production: deploy/gen-certs.sh makes real ones.

use super::error::Error;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Where the dev certificates are written.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate (for `curl --cacert`).
    pub ca: PathBuf,
    /// The nodes' certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// Makes the certificates in `dir` (replacing earlier ones).
pub fn make(dir: &Path) -> Result<DevCerts, Error> {
    let fail = |e: rcgen::Error| Error::System(format!("making dev certificates: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| Error::System(format!("{}: {e}", dir.display())))?;
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca_params = CertificateParams::new(Vec::new()).map_err(fail)?;
    ca_params.distinguished_name.push(DnType::CommonName, "rdb dev CA (throwaway)");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
    let node_key = KeyPair::generate().map_err(fail)?;
    let mut node_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(fail)?;
    node_params.distinguished_name.push(DnType::CommonName, "rdb dev node");
    node_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node_params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let node = node_params.signed_by(&node_key, &ca, &ca_key).map_err(fail)?;
    let certs = DevCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node-key.pem"),
    };
    for (path, pem) in
        [(&certs.ca, ca.pem()), (&certs.cert, node.pem()), (&certs.key, node_key.serialize_pem())]
    {
        std::fs::write(path, pem).map_err(|e| Error::System(format!("{}: {e}", path.display())))?;
    }
    Ok(certs)
}
