//! Who a QUIC peer must be. The dialler pins the agent id the peer's
//! extension handshake offered (`ext/quic.rs`), so a certificate with any
//! other public key is refused, whatever names or issuers it shows
//! ([`PinnedServer`]). With an allow-list (`allow_list.rs`) the listener
//! asks the dialler for its certificate too and refuses a key that is not
//! listed ([`AllowedClients`]). Either way the TLS handshake's signatures
//! are still checked against the key, so only the holder of the private
//! key passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::allow_list::AllowList;
use super::identity::AgentId;

/// A server certificate verifier that accepts exactly one public key.
#[derive(Debug)]
pub(crate) struct PinnedServer {
    expected: AgentId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServer {
    pub(crate) fn new(expected: AgentId, provider: &Arc<rustls::crypto::CryptoProvider>) -> Self {
        Self {
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // No expiry check: the certificate is only a wrapper for the key,
        // and an agent's clock is no reason to refuse the key we pinned.
        let id = AgentId::of_certificate(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if id == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::debug!(expected = %self.expected, got = %id, "QUIC peer shows another key");
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // QUIC is TLS 1.3 only (RFC 9001).
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client certificate verifier that requires a certificate and accepts
/// the keys of an allow-list only. Refusing one is
/// `ApplicationVerificationFailure`, which TLS sends as the alert
/// `access_denied` (so the dialler can tell it from a broken handshake).
#[derive(Debug)]
pub(crate) struct AllowedClients {
    allowed: Arc<AllowList>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Diallers refused because their key is not listed, so far.
    refused: Arc<AtomicU64>,
}

impl AllowedClients {
    pub(crate) fn new(
        allowed: Arc<AllowList>,
        provider: &Arc<rustls::crypto::CryptoProvider>,
        refused: Arc<AtomicU64>,
    ) -> Self {
        Self {
            allowed,
            algorithms: provider.signature_verification_algorithms,
            refused,
        }
    }
}

impl ClientCertVerifier for AllowedClients {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No issuer to hint at: the key itself is what is listed.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // No expiry check, as for the server's: the certificate only wraps
        // the key.
        let id = AgentId::of_certificate(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.allowed.contains(&id) {
            Ok(ClientCertVerified::assertion())
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                agent = %id,
                "refused a QUIC connection: this agent is not on the allow-list ([quic] allow); its TCP or uTP connection goes on"
            );
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::identity::Identity;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn a_listed_key_passes_and_another_is_refused_and_counted() {
        let (listed, stranger) = (
            Identity::ephemeral().unwrap(),
            Identity::ephemeral().unwrap(),
        );
        let refused = Arc::new(AtomicU64::new(0));
        let verifier = AllowedClients::new(
            Arc::new(AllowList::new([listed.id()])),
            &provider(),
            refused.clone(),
        );
        assert!(verifier.offer_client_auth() && verifier.client_auth_mandatory());
        assert!(verifier.root_hint_subjects().is_empty());
        let now = UnixTime::now();
        assert!(verifier
            .verify_client_cert(&listed.certificate(), &[], now)
            .is_ok());
        let err = verifier
            .verify_client_cert(&stranger.certificate(), &[], now)
            .unwrap_err();
        assert_eq!(
            err,
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        );
        assert_eq!(refused.load(Ordering::Relaxed), 1);
        // Garbage is not a key at all.
        let junk = CertificateDer::from(&b"junk"[..]);
        assert_eq!(
            verifier.verify_client_cert(&junk, &[], now).unwrap_err(),
            Error::InvalidCertificate(CertificateError::BadEncoding)
        );
        assert_eq!(refused.load(Ordering::Relaxed), 1, "only keys not listed");
        // An empty list lets nobody in.
        let none = AllowedClients::new(Arc::new(AllowList::new([])), &provider(), refused);
        assert!(none
            .verify_client_cert(&listed.certificate(), &[], now)
            .is_err());
    }

    #[test]
    fn the_pinned_server_takes_its_key_only() {
        let (pinned, other) = (
            Identity::ephemeral().unwrap(),
            Identity::ephemeral().unwrap(),
        );
        let verifier = PinnedServer::new(pinned.id(), &provider());
        let name = ServerName::try_from("capwise").unwrap();
        let now = UnixTime::now();
        assert!(verifier
            .verify_server_cert(&pinned.certificate(), &[], &name, &[], now)
            .is_ok());
        assert!(verifier
            .verify_server_cert(&other.certificate(), &[], &name, &[], now)
            .is_err());
    }
}
