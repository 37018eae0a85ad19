//! A blocklisted peer on loopback (127.0.0.2; 127/8 is all loopback) is
//! never dialled and is closed at once when it dials in, while 127.0.0.3,
//! not on the list, is answered and dialled: the same session, the same
//! torrent. Run inside `unshare -n` like the other session tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::blocklist::Blocklist;
use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};
use capwise_engine::wire::Handshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

const BLOCKED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const WAIT: Duration = Duration::from_secs(5);

fn torrent(dir: &std::path::Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.bin"), vec![7u8; 300_000]).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

/// Dials the session from `from` and sends a handshake for `info_hash`;
/// the number of bytes the session answered with before it closed or
/// `WAIT` passed.
async fn dial_in(from: Ipv4Addr, to: SocketAddr, info_hash: [u8; 20]) -> usize {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut conn = socket.connect(to).await.unwrap();
    // The peer may be closed on before it writes: a failed write is fine.
    let _ = conn
        .write_all(&Handshake::new(info_hash, *b"-XX0000-blocklisttst").encode())
        .await;
    let mut got = 0;
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(WAIT, async {
        while got < 68 {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn blocklisted_peers_are_refused_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = torrent(tmp.path());
    let parsed = Blocklist::parse(b"# test\nloopback two:127.0.0.2-127.0.0.2\n");
    assert_eq!(parsed.bad_lines, 0);
    let config = SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        blocklist: Arc::new(parsed.list),
        ..SessionConfig::default()
    };
    let session = Session::start(config, Hooks::default()).await.unwrap();
    let handle = session
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let to = session.local_addr();

    // Incoming: the allowed address gets the handshake back, the blocked one nothing.
    assert!(
        dial_in(ALLOWED, to, meta.info_hash.0).await >= 68,
        "127.0.0.3 got no handshake"
    );
    assert_eq!(
        dial_in(BLOCKED, to, meta.info_hash.0).await,
        0,
        "127.0.0.2 was answered"
    );
    assert_eq!(session.blocked_peers(), 1);

    // Outgoing: the session is told of both; only the allowed one sees a dial.
    let blocked = TcpListener::bind((BLOCKED, 0)).await.unwrap();
    let allowed = TcpListener::bind((ALLOWED, 0)).await.unwrap();
    handle.connect(&[blocked.local_addr().unwrap(), allowed.local_addr().unwrap()]);
    let dialled = tokio::time::timeout(WAIT, allowed.accept()).await;
    assert!(dialled.is_ok(), "127.0.0.3 was never dialled");
    let not = tokio::time::timeout(Duration::from_millis(500), blocked.accept()).await;
    assert!(not.is_err(), "127.0.0.2 was dialled");
    assert_eq!(session.blocked_peers(), 2);
}
