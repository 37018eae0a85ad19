//! A torrent's own WAN window (`TorrentOptions::wan_window`): while it is
//! shut no payload moves to or from a WAN peer, in either direction, and
//! LAN peers go on; opened, the download completes.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{Classifier, PeerClass, Switch};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};

const LIMIT: Duration = Duration::from_secs(60);
const LEN: u64 = 2 * 1024 * 1024 + 77;

/// Calls every address WAN, so a loopback peer is a WAN peer.
struct EverythingIsWan;

impl Classifier for EverythingIsWan {
    fn classify(&self, _: IpAddr) -> PeerClass {
        PeerClass::Wan
    }
}

fn payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(data.join("a.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn session(wan: bool) -> Session {
    let hooks = if wan {
        Hooks {
            classifier: Arc::new(EverythingIsWan),
            ..Hooks::default()
        }
    } else {
        // Loopback is LAN for the system classifier.
        Hooks::default()
    };
    let config = SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    };
    Session::start(config, hooks).await.unwrap()
}

async fn add(
    session: &Session,
    meta: &Metainfo,
    dir: &Path,
    window: Option<Switch>,
) -> TorrentHandle {
    let options = TorrentOptions {
        wan_window: window,
        ..TorrentOptions::default()
    };
    session
        .add_torrent(meta.clone(), dir.to_path_buf(), options)
        .await
        .unwrap()
}

async fn wait_until(handle: &TorrentHandle, what: &str, done: impl Fn(u64, usize) -> bool) {
    for _ in 0..(LIMIT.as_millis() / 20) {
        let p = handle.progress();
        if done(p.bytes_have, p.peers) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}: {:?}", handle.progress());
}

/// The leecher's window is shut and its seeder is WAN: connected, yet
/// nothing arrives; the window opens and the rest follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_window_takes_nothing_from_a_wan_peer_until_it_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path());
    let seeder = session(false).await;
    let _seeding = add(&seeder, &meta, tmp.path(), None).await;
    let leecher = session(true).await;
    let window = Switch::new(false);
    let leeching = add(
        &leecher,
        &meta,
        &tmp.path().join("leech"),
        Some(window.clone()),
    )
    .await;
    leeching.connect(&[seeder.local_addr()]);
    wait_until(&leeching, "the WAN peer to connect", |_, peers| peers > 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        leeching.progress().bytes_have,
        0,
        "payload came from a WAN peer through a shut window"
    );
    window.set(true);
    wait_until(
        &leeching,
        "the download once the window opened",
        |have, _| have == LEN,
    )
    .await;
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A seeder whose window is shut sends nothing to a WAN leecher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_window_sends_nothing_to_a_wan_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path());
    let seeder = session(true).await;
    let window = Switch::new(false);
    let _seeding = add(&seeder, &meta, tmp.path(), Some(window.clone())).await;
    let leecher = session(false).await;
    let leeching = add(&leecher, &meta, &tmp.path().join("leech"), None).await;
    leeching.connect(&[seeder.local_addr()]);
    wait_until(&leeching, "the seeder to connect", |_, peers| peers > 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        leeching.progress().bytes_have,
        0,
        "the seeder uploaded to a WAN peer through a shut window"
    );
    window.set(true);
    wait_until(&leeching, "the upload once the window opened", |have, _| {
        have == LEN
    })
    .await;
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// LAN sharing goes on at any time: a shut window does not hold a LAN peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_window_leaves_lan_peers_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path());
    let seeder = session(false).await;
    let _seeding = add(&seeder, &meta, tmp.path(), Some(Switch::new(false))).await;
    let leecher = session(false).await;
    let leeching = add(
        &leecher,
        &meta,
        &tmp.path().join("leech"),
        Some(Switch::new(false)),
    )
    .await;
    leeching.connect(&[seeder.local_addr()]);
    wait_until(&leeching, "the download over the LAN", |have, _| {
        have == LEN
    })
    .await;
    leecher.shutdown().await;
    seeder.shutdown().await;
}
