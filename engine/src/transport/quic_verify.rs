//! Who a QUIC peer must be: the dialler pins the agent id the peer's
//! extension handshake offered (`ext/quic.rs`), so a certificate with any
//! other public key is refused, whatever names or issuers it shows. The
//! TLS handshake's signatures are still checked against that key, so only
//! the holder of the private key passes.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

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
