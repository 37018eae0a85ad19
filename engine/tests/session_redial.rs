//! A peer we dialled that closes the connection itself, with nothing held
//! against it, is dialled again (after 5 s): Transmission closes every
//! connection of a magnet once it has the metadata and never dials 127.x
//! peers, so without this it waits for the next announce. A peer that
//! broke the protocol is not dialled again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        // The fake peers speak plaintext only: an encrypted attempt first
        // would be one more connection for them to count.
        encryption: capwise_engine::Encryption::Allow,
        ..SessionConfig::default()
    }
}

/// A listener that answers each connection's handshake, then sends
/// `after` (nothing: a clean close) and closes; reports each connection.
/// Each fake peer has its own `peer_id`: a second connection with the id of
/// a peer still linked is refused, which is not what this test is about.
fn fake_peer(
    info_hash: [u8; 20],
    peer_id: &'static [u8; 20],
    after: &'static [u8],
) -> (SocketAddr, mpsc::Receiver<()>) {
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
            let mut ours = theirs;
            ours[28..48].copy_from_slice(&info_hash);
            ours[48..68].copy_from_slice(peer_id);
            let _ = s.write_all(&ours);
            let _ = s.write_all(after);
            std::thread::sleep(Duration::from_millis(100));
            drop(s);
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn torrent(dir: &std::path::Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.bin"), vec![7u8; 100_000]).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_is_dialled_again_and_a_violator_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = torrent(tmp.path());
    let session = Session::start(config(), Hooks::default()).await.unwrap();
    let handle = session
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();

    let (quiet, closed) = fake_peer(meta.info_hash.0, b"-TR3000-000000000001", b"");
    // A message of length 0xFFFF_FFF0: a protocol violation.
    let (rude, broke) = fake_peer(
        meta.info_hash.0,
        b"-TR3000-000000000002",
        &[0xFF, 0xFF, 0xFF, 0xF0, 7, 0, 0],
    );
    handle.connect(&[quiet, rude]);
    let wait = |rx: &mpsc::Receiver<()>, secs| rx.recv_timeout(Duration::from_secs(secs));
    wait(&closed, 10).expect("the first connection");
    wait(&broke, 10).expect("the violator's connection");
    wait(&closed, 15).expect("dialled again after the peer closed");
    assert!(
        wait(&broke, 8).is_err(),
        "a peer that broke the protocol is not dialled again"
    );
    session.shutdown().await;
}
