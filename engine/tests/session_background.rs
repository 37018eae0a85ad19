//! A torrent's own carrier order (`TorrentOptions::transports`): a
//! background torrent dials uTP first and keeps to it with a peer that
//! speaks it, takes TCP from a peer without uTP, and a torrent without an
//! order of its own dials as the session does (TCP first).

use std::path::Path;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::Switch;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};
use capwise_engine::transport::Transports;

const LIMIT: Duration = Duration::from_secs(60);

fn payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 77u32)
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

fn config(transports: Transports) -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transports,
        ..SessionConfig::default()
    }
}

/// Downloads `meta` from a seeder speaking `seeder_speaks` into a leecher
/// on the default carriers (TCP, then uTP) with `leecher_order` for the
/// torrent; returns the leecher's uTP peers and peers once connected (the
/// seeder holds its uploads until then: two seeds part at the end).
async fn fetch(seeder_speaks: Transports, leecher_order: Option<Transports>) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path());
    let seeding_switch = Switch::new(false);
    let hooks = Hooks {
        seeding: seeding_switch.clone(),
        ..Hooks::default()
    };
    let seeder = Session::start(config(seeder_speaks), hooks).await.unwrap();
    let _seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let leecher = Session::start(config(Transports::default()), Hooks::default())
        .await
        .unwrap();
    let leech_dir = tmp.path().join("leech");
    let options = TorrentOptions {
        transports: leecher_order,
        ..TorrentOptions::default()
    };
    let mut handle = leecher
        .add_torrent(meta, leech_dir.clone(), options)
        .await
        .unwrap();
    handle.connect(&[seeder.local_addr()]);
    let mut seen = None;
    for _ in 0..(LIMIT.as_millis() / 20) {
        if handle.progress().peers > 0 {
            seen = Some((handle.utp_peers(), handle.progress().peers));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.expect("the leecher connects to the seeder");
    seeding_switch.set(true);
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    assert_eq!(
        std::fs::read(tmp.path().join("data/a.bin")).unwrap(),
        std::fs::read(leech_dir.join("data/a.bin")).unwrap()
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_torrent_reaches_a_utp_peer_over_utp() {
    let (utp, peers) = fetch(Transports::default(), Some(Transports::background())).await;
    assert_eq!((utp, peers), (1, 1), "the one peer is carried by uTP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torrent_without_its_own_order_dials_as_the_session_does() {
    let (utp, peers) = fetch(Transports::default(), None).await;
    assert_eq!((utp, peers), (0, 1), "TCP first, as the session says");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_torrent_takes_tcp_from_a_peer_without_utp() {
    let (utp, peers) = fetch(Transports::tcp_only(), Some(Transports::background())).await;
    assert_eq!((utp, peers), (0, 1), "TCP after uTP got no answer");
}
