//! An agent's identity for QUIC: a long-lived key pair, a self-signed
//! certificate made from it at each start, and the agent id, the SHA-256
//! of the certificate's SubjectPublicKeyInfo.
//!
//! The id hashes the public key rather than the certificate, so that a
//! certificate made again (new serial, new validity) keeps the same id:
//! peers that pinned it still find us. The key lives in one file (PKCS#8
//! DER, mode 0600) in the caller's state directory, made on first use.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// An agent id: the SHA-256 of its certificate's public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub [u8; 32]);

impl AgentId {
    /// The id of the key in `spki` (a DER SubjectPublicKeyInfo).
    pub fn of_public_key(spki: &[u8]) -> Self {
        AgentId(Sha256::digest(spki).into())
    }

    /// The id of the certificate `cert` (DER), or why it cannot be read.
    pub fn of_certificate(cert: &[u8]) -> Result<Self, IdentityError> {
        let der = CertificateDer::from(cert);
        let parsed = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
        Ok(Self::of_public_key(&parsed.subject_public_key_info()))
    }

    /// Lower-case hex, as logs and the API show it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AgentId({})", self.to_hex())
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why an identity could not be had.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("QUIC identity key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// The key file holds something that is not a PKCS#8 key we can use:
    /// move it aside and a new identity is made (peers see a new agent id).
    #[error("QUIC identity key {path} is not a usable PKCS#8 key ({reason}); move it aside to make a new one")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Making the key or the certificate failed.
    #[error("cannot make the QUIC certificate: {0}")]
    Generate(String),
    /// A peer's certificate could not be parsed.
    #[error("cannot read the certificate: {0}")]
    Certificate(String),
}

/// A key pair and its self-signed certificate.
pub struct Identity {
    key: PrivatePkcs8KeyDer<'static>,
    cert: CertificateDer<'static>,
    id: AgentId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new identity kept nowhere (tests, or a session without a state
    /// directory: its id changes at each start).
    pub fn ephemeral() -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::generate().map_err(|e| IdentityError::Generate(e.to_string()))?;
        Self::from_key(&key)
    }

    /// The identity whose key is in `path`, made there (mode 0600) when
    /// the file does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        let io_err = |source| IdentityError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read(path) {
            Ok(der) => {
                let key = rcgen::KeyPair::try_from(der.as_slice()).map_err(|e| {
                    IdentityError::BadKey {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    }
                })?;
                Self::from_key(&key)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate()
                    .map_err(|e| IdentityError::Generate(e.to_string()))?;
                write_private(path, &key.serialize_der()).map_err(io_err)?;
                Self::from_key(&key)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn from_key(key: &rcgen::KeyPair) -> Result<Self, IdentityError> {
        // Peers pin the key, not a name: the name is only there because a
        // certificate needs one.
        let params = rcgen::CertificateParams::new(vec!["capwise".to_string()])
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Self {
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            cert: cert.der().clone(),
            id: AgentId::of_public_key(&key.public_key_der()),
        })
    }

    /// Our agent id.
    pub fn id(&self) -> AgentId {
        self.id
    }

    /// Our certificate (DER).
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// Our private key, for rustls.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// Writes `bytes` to a new file at `path` readable by its owner only;
/// refuses to replace one that appeared meanwhile.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_made_once_private_and_keeps_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quic-key");
        let first = Identity::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Identity::load_or_create(&path).unwrap();
        assert_eq!(first.id(), again.id());
        // The id read back from the certificate is the one the key gives.
        assert_eq!(
            AgentId::of_certificate(&again.certificate()).unwrap(),
            first.id()
        );
        assert_ne!(Identity::ephemeral().unwrap().id(), first.id());
    }

    #[test]
    fn a_bad_key_file_says_so_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quic-key");
        std::fs::write(&path, b"not a key").unwrap();
        let err = Identity::load_or_create(&path).unwrap_err();
        assert!(matches!(err, IdentityError::BadKey { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
        assert!(AgentId::of_certificate(b"junk").is_err());
    }
}
