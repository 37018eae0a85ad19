//! Protocol encryption (MSE/PE) between real sessions on loopback, and
//! against a peer that speaks plaintext only: `require` carries the payload
//! in RC4 and refuses plaintext both ways, `prefer` falls back to plaintext
//! (and remembers the peer), a torrent we do not have is refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};
use capwise_engine::wire::PROTOCOL_HEADER;
use capwise_engine::Encryption;

const LIMIT: Duration = Duration::from_secs(60);

fn config(encryption: Encryption) -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        encryption,
        // TCP: the plaintext-only fake peers below listen on TCP only.
        transports: "tcp".parse().unwrap(),
        ..SessionConfig::default()
    }
}

fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(data.join("a.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn add(session: &Session, meta: &Metainfo, dir: &Path) -> TorrentHandle {
    session
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap()
}

/// Leecher and seeder with these modes: the download completes, and how
/// many of the leecher's peers were RC4-encrypted along the way.
async fn download(leecher_mode: Encryption, seeder_mode: Encryption) -> usize {
    download_over("tcp", leecher_mode, seeder_mode).await
}

async fn download_over(carriers: &str, leecher_mode: Encryption, seeder_mode: Encryption) -> usize {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let over = |mode| SessionConfig {
        transports: carriers.parse().unwrap(),
        ..config(mode)
    };
    let seeder = Session::start(over(seeder_mode), Hooks::default())
        .await
        .unwrap();
    add(&seeder, &meta, tmp.path()).await;
    let leecher = Session::start(over(leecher_mode), Hooks::default())
        .await
        .unwrap();
    let into = tmp.path().join("into");
    let mut handle = add(&leecher, &meta, &into).await;
    handle.connect(&[seeder.local_addr()]);
    let mut encrypted = 0;
    tokio::time::timeout(LIMIT, async {
        loop {
            let progress = handle.changed().await;
            encrypted = encrypted.max(handle.encrypted_peers());
            if progress.pieces_have == progress.piece_count {
                return;
            }
        }
    })
    .await
    .expect("download finished");
    assert_eq!(
        std::fs::read(into.join("data/a.bin")).unwrap(),
        std::fs::read(tmp.path().join("data/a.bin")).unwrap()
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
    encrypted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_on_both_sides_carries_the_payload_in_rc4() {
    assert_eq!(download(Encryption::Require, Encryption::Require).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc4_over_utp() {
    assert_eq!(
        download_over("utp", Encryption::Require, Encryption::Require).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_dials_encrypted_and_allow_accepts_it() {
    assert_eq!(download(Encryption::Prefer, Encryption::Allow).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_dials_in_plaintext() {
    assert_eq!(download(Encryption::Allow, Encryption::Prefer).await, 0);
}

/// A peer that speaks plaintext only: reads 68 bytes, answers with a
/// handshake for `info_hash` when they were one, closes. Reports whether
/// each connection opened in plaintext.
fn plaintext_peer(info_hash: [u8; 20]) -> (SocketAddr, mpsc::Receiver<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut theirs = [0u8; 68];
            if s.read_exact(&mut theirs).is_err() {
                continue;
            }
            let plaintext = theirs[..20] == PROTOCOL_HEADER;
            if plaintext {
                let mut ours = theirs;
                ours[28..48].copy_from_slice(&info_hash);
                ours[48..68].copy_from_slice(b"-TR3000-000000000009");
                let _ = s.write_all(&ours);
                std::thread::sleep(Duration::from_millis(300));
            }
            drop(s);
            if tx.send(plaintext).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_never_speaks_plaintext_to_a_plaintext_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let (peer, opened) = plaintext_peer(meta.info_hash.0);
    let session = Session::start(config(Encryption::Require), Hooks::default())
        .await
        .unwrap();
    let handle = add(&session, &meta, &tmp.path().join("into")).await;
    handle.connect(&[peer]);
    let first = opened
        .recv_timeout(Duration::from_secs(20))
        .expect("dialled");
    assert!(
        !first,
        "the first bytes were an MSE key, not a plaintext handshake"
    );
    assert!(
        opened.recv_timeout(Duration::from_secs(3)).is_err(),
        "no plaintext attempt follows"
    );
    assert_eq!(handle.progress().peers, 0);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plaintext_and_remembers_the_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let (peer, opened) = plaintext_peer(meta.info_hash.0);
    let session = Session::start(config(Encryption::Prefer), Hooks::default())
        .await
        .unwrap();
    let handle = add(&session, &meta, &tmp.path().join("into")).await;
    handle.connect(&[peer]);
    let wait = || {
        opened
            .recv_timeout(Duration::from_secs(20))
            .expect("dialled")
    };
    assert!(!wait(), "encrypted first");
    assert!(wait(), "then plaintext");
    // The peer closed with nothing held against it: it is dialled again
    // (after 5 s), in plaintext straight away.
    assert!(wait(), "the redial remembers the peer speaks plaintext");
    session.shutdown().await;
}

/// Sends a plaintext handshake for `info_hash` and reports whether the
/// session answered with one before closing.
fn answered_in_plaintext(at: SocketAddr, info_hash: [u8; 20]) -> bool {
    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut hello = [0u8; 68];
    hello[..20].copy_from_slice(&PROTOCOL_HEADER);
    hello[28..48].copy_from_slice(&info_hash);
    hello[48..68].copy_from_slice(b"-TR3000-000000000007");
    s.write_all(&hello).unwrap();
    let mut back = [0u8; 68];
    s.read_exact(&mut back).is_ok() && back[..20] == PROTOCOL_HEADER
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_plaintext_peer_is_refused_only_under_require() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    for (mode, answered) in [(Encryption::Require, false), (Encryption::Prefer, true)] {
        let session = Session::start(config(mode), Hooks::default())
            .await
            .unwrap();
        add(&session, &meta, tmp.path()).await;
        let at = session.local_addr();
        let info_hash = meta.info_hash.0;
        let got = tokio::task::spawn_blocking(move || answered_in_plaintext(at, info_hash))
            .await
            .unwrap();
        assert_eq!(got, answered, "{mode}");
        session.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_peer_for_a_torrent_we_lack_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let other = {
        let dir = tmp.path().join("other");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x"), b"another torrent").unwrap();
        let opts = CreateOptions {
            path: dir,
            ..CreateOptions::default()
        };
        Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
    };
    let seeder = Session::start(config(Encryption::Require), Hooks::default())
        .await
        .unwrap();
    add(&seeder, &meta, tmp.path()).await;
    let leecher = Session::start(config(Encryption::Require), Hooks::default())
        .await
        .unwrap();
    let handle = add(&leecher, &other, &tmp.path().join("into")).await;
    handle.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.progress().peers, 0);
    leecher.shutdown().await;
    seeder.shutdown().await;
}
