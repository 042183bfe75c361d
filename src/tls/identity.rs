//! Which member a peer connection may speak for.
//!
//! Every node's certificate, and the HTTP API's client certificate, is
//! signed by the cluster CA, so "signed by the cluster CA" alone would let
//! any holder of any of them (an application's API credential, say) claim
//! any member id in `hello` and then vote or append as that member. So the
//! accepting end remembers the certificate the handshake verified
//! ([`RecordingVerifier`]), and `hello` from member `m` is accepted only if
//! that certificate names `m`'s configured peer IP address
//! ([`names_ip`]): the same check the dialing end makes of the certificate
//! it is shown, made the other way round.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use rustls::client::HandshakeSignatureValid;
use rustls::server::{ClientCertVerified, ClientCertVerifier};
use rustls::{Certificate, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// A client-certificate verifier that delegates every decision to `inner`
/// and keeps the end-entity certificate it accepted, for the connection
/// whose handshake it serves.
pub(crate) struct RecordingVerifier {
    /// Makes every decision (the cluster CA check).
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    /// The accepted certificate, set once per handshake.
    pub(crate) accepted: Arc<OnceLock<Certificate>>,
}

impl ClientCertVerifier for RecordingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn client_auth_root_subjects(&self) -> &[DistinguishedName] {
        self.inner.client_auth_root_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &Certificate,
        intermediates: &[Certificate],
        now: SystemTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let _ = self.accepted.set(end_entity.clone());
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &Certificate,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &Certificate,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Whether `cert` (already verified against the cluster CA) names `ip` in
/// its subject alternative names. An unparsable certificate names nothing.
pub fn names_ip(cert: &Certificate, ip: IpAddr) -> bool {
    let Ok(parsed) = webpki::EndEntityCert::try_from(cert.0.as_slice()) else { return false };
    let ip = ip.to_string();
    let Ok(name) = webpki::SubjectNameRef::try_from_ascii_str(&ip) else { return false };
    parsed.verify_is_valid_for_subject_name(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> Certificate {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        Certificate(params.self_signed(&key).expect("cert").der().to_vec())
    }

    #[test]
    fn a_certificate_names_exactly_the_ip_addresses_in_its_alternative_names() {
        let node = self_signed(&["127.0.0.1", "rdb1"]);
        assert!(names_ip(&node, "127.0.0.1".parse().expect("ip")));
        assert!(!names_ip(&node, "127.0.0.2".parse().expect("ip")));
        assert!(!names_ip(&node, "::1".parse().expect("ip")));
        let client = self_signed(&["rdb-client"]);
        assert!(!names_ip(&client, "127.0.0.1".parse().expect("ip")), "a DNS name is not an IP");
        assert!(!names_ip(
            &Certificate(vec![0x30, 0x03, 1, 2, 3]),
            "127.0.0.1".parse().expect("ip")
        ));
    }
}
