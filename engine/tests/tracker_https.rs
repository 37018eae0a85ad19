//! HTTPS trackers: reqwest over rustls (no OpenSSL) with the system's trust
//! store, read by rustls-native-certs, which honours `SSL_CERT_FILE`. This
//! binary points `SSL_CERT_FILE` at a certificate it generates (rcgen) before
//! the first announce builds the shared client; a second certificate is
//! left out of it, so it stands for one the client does not trust. Both
//! servers listen on 127.0.0.1 (run inside `unshare -n`, as scripts/test does).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use capwise_engine::tracker::{announce, AnnounceEvent, AnnounceRequest, TrackerError};
use rcgen::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

const TIMEOUT: Duration = Duration::from_secs(5);
/// The peer the tracker hands out: 127.0.0.9:6881.
const PEER: [u8; 6] = [127, 0, 0, 9, 0x1a, 0xe1];

/// A self-signed certificate for 127.0.0.1 and localhost.
fn certificate() -> CertifiedKey {
    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("rcgen makes a certificate")
}

/// The certificate the client trusts (the only one in `SSL_CERT_FILE`),
/// written before any client exists.
fn trusted() -> &'static CertifiedKey {
    static TRUSTED: OnceLock<CertifiedKey> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        let cert = certificate();
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("roots.pem");
        std::fs::write(&path, cert.cert.pem()).unwrap();
        std::env::set_var("SSL_CERT_FILE", &path);
        cert
    })
}

/// An HTTPS tracker on 127.0.0.1 presenting `cert`: it sends the request
/// line of each announce it reads to the channel and answers with one peer.
async fn https_tracker(cert: &CertifiedKey) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let chain = vec![CertificateDer::from(cert.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(line);
                let mut body = b"d8:intervali1800e5:peers6:".to_vec();
                body.extend_from_slice(&PEER);
                body.push(b'e');
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, rx)
}

fn request() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: [0x5a; 20],
        peer_id: *b"-CW0001-https0000001",
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 1000,
        event: AnnounceEvent::Started,
        num_want: Some(50),
        key: 7,
    }
}

#[tokio::test]
async fn https_tracker_with_a_trusted_certificate_answers() {
    let cert = trusted();
    let (addr, mut requests) = https_tracker(cert).await;
    let reply = announce(&format!("https://{addr}/announce"), &request(), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("announce over HTTPS: {e}"));
    assert_eq!(reply.peers, vec![SocketAddr::from(([127, 0, 0, 9], 6881))]);
    assert_eq!(reply.interval, Duration::from_secs(1800));
    let line = requests.recv().await.unwrap();
    assert!(line.starts_with("GET /announce?"), "{line}");
    assert!(
        line.contains(&"%5A".repeat(20)) || line.contains(&"Z".repeat(20)),
        "{line}"
    );
    assert!(line.contains("port=6881"), "{line}");
}

#[tokio::test]
async fn https_tracker_with_an_untrusted_certificate_is_a_tracker_error() {
    let _ = trusted();
    let stranger = certificate();
    let (addr, mut requests) = https_tracker(&stranger).await;
    let err = announce(&format!("https://{addr}/announce"), &request(), TIMEOUT)
        .await
        .expect_err("a certificate outside the trust store must not be accepted");
    match &err {
        TrackerError::Http(text) => assert!(
            text.to_lowercase().contains("certificate"),
            "the error should name the certificate: {text}"
        ),
        other => panic!("expected an HTTP tracker error, got {other:?}"),
    }
    // No announce reached the server.
    assert!(requests.try_recv().is_err());
}
