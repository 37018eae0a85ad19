//! The remote listener's certificate: `[api] tls_cert` and `tls_key` (PEM)
//! when given, else a self-signed one made once with rcgen and kept in the
//! state directory (`api-tls-cert.pem`, and `api-tls-key.pem` 0600), so its
//! fingerprint stays the same across restarts and an administrator can pin
//! it. rustls with the ring provider: no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;
use tokio_rustls::rustls;

use crate::config::Config;

/// The self-signed certificate's file name in the state directory.
pub const SELF_SIGNED_CERT: &str = "api-tls-cert.pem";
/// Its private key's (0600).
pub const SELF_SIGNED_KEY: &str = "api-tls-key.pem";

/// The certificate chain and key in use.
pub struct Material {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// Whether capwise made it (no `[api] tls_cert`).
    pub self_signed: bool,
    /// The chain, the server's own certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Material {
    /// The SHA-256 fingerprint of the server's certificate, as browsers
    /// show it (`AB:CD:…`).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }

    /// The DNS names the certificate is for (its subject alternative
    /// names), which the listener takes as its own `Host` names.
    pub fn dns_names(&self) -> Vec<String> {
        webpki::EndEntityCert::try_from(&self.chain[0])
            .map(|c| c.valid_dns_names().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The rustls server configuration (TLS 1.2 and 1.3, HTTP/1.1).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .with_context(|| {
                format!(
                    "the key does not fit the certificate {}",
                    self.cert_path.display()
                )
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// `AB:CD:…`: SHA-256 of a certificate's DER, in upper-case hex pairs.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = sha2::Sha256::digest(cert.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The certificate the configuration names, or the self-signed one of
/// `state_dir` (made now if there is none).
pub fn load_or_create(config: &Config, state_dir: &Path) -> Result<Material> {
    match (&config.api.tls_cert, &config.api.tls_key) {
        (Some(cert), Some(key)) => load(cert, key, false),
        (None, None) => {
            let cert = state_dir.join(SELF_SIGNED_CERT);
            let key = state_dir.join(SELF_SIGNED_KEY);
            if !cert.exists() {
                create_self_signed(&cert, &key)?;
            }
            load(&cert, &key, true)
        }
        (Some(_), None) | (None, Some(_)) => bail!(
            "[api] tls_cert and tls_key go together: give both (PEM files), or neither for a self-signed certificate"
        ),
    }
}

fn load(cert_path: &Path, key_path: &Path, self_signed: bool) -> Result<Material> {
    let (cert_key, key_key) = if self_signed {
        ("the self-signed certificate", "its key")
    } else {
        ("[api] tls_cert", "[api] tls_key")
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{cert_key} = {}: {e}", cert_path.display()))?;
    if chain.is_empty() {
        bail!(
            "{cert_key} = {}: no PEM certificate in it",
            cert_path.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        anyhow::anyhow!(
            "{key_key} = {}: no PEM private key in it ({e})",
            key_path.display()
        )
    })?;
    Ok(Material {
        cert_path: cert_path.to_path_buf(),
        self_signed,
        chain,
        key,
    })
}

/// The names a self-signed certificate is made for: this machine's host
/// name and the loopback ones. Made once, so it cannot follow address
/// changes; the administrator pins its fingerprint instead.
fn self_signed_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    names
}

fn create_self_signed(cert_path: &Path, key_path: &Path) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let made = rcgen::generate_simple_self_signed(self_signed_names())
        .context("cannot make a self-signed certificate")?;
    // The key first and the certificate last (by rename): a certificate on
    // disk always has its key beside it.
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key_path)
        .with_context(|| format!("cannot create {}", key_path.display()))?;
    key.write_all(made.key_pair.serialize_pem().as_bytes())
        .and_then(|()| key.sync_all())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    let temp = cert_path.with_extension("pem.new");
    std::fs::write(&temp, made.cert.pem())
        .and_then(|()| std::fs::rename(&temp, cert_path))
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    tracing::info!(cert = %cert_path.display(), "made a self-signed certificate for the dashboard");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_is_made_once_and_keeps_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        let first = load_or_create(&config, dir.path()).unwrap();
        assert!(first.self_signed);
        let fp = first.fingerprint();
        assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
        assert!(first.dns_names().iter().any(|n| n == "localhost"));
        let again = load_or_create(&config, dir.path()).unwrap();
        assert_eq!(again.fingerprint(), fp);
        first.server_config().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(SELF_SIGNED_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn given_files_are_used_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let made =
            rcgen::generate_simple_self_signed(vec!["branch-12.example.org".into()]).unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        let mut config = Config::default();
        config.api.tls_cert = Some(cert.clone());
        config.api.tls_key = Some(key.clone());
        let m = load_or_create(&config, dir.path()).unwrap();
        assert!(!m.self_signed);
        assert_eq!(m.dns_names(), vec!["branch-12.example.org".to_string()]);
        assert_eq!(m.fingerprint(), fingerprint(made.cert.der()));
        assert!(!dir.path().join(SELF_SIGNED_CERT).exists());

        config.api.tls_key = None;
        let e = format!("{:#}", load_or_create(&config, dir.path()).err().unwrap());
        assert!(e.contains("tls_cert and tls_key"), "{e}");
        config.api.tls_key = Some(cert.clone());
        let e = format!("{:#}", load_or_create(&config, dir.path()).err().unwrap());
        assert!(e.contains("[api] tls_key"), "{e}");
        std::fs::write(&cert, "not a certificate").unwrap();
        config.api.tls_key = Some(key);
        let e = format!("{:#}", load_or_create(&config, dir.path()).err().unwrap());
        assert!(e.contains("[api] tls_cert") && e.contains("c.pem"), "{e}");
    }
}
