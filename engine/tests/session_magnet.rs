//! Magnet links between two real sessions on loopback: the leecher knows
//! only the info-hash and a peer, fetches the metadata from the seeder
//! (which serves it), verifies it and downloads; a magnet torrent is
//! listed, paused and removed while it fetches.

use std::path::Path;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions, TorrentState};

const LIMIT: Duration = Duration::from_secs(60);

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    }
}

/// A torrent of many files, so that its metadata spans several 16 KiB blocks.
fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..700u32 {
        let name = format!("file-with-a-long-name-to-grow-the-info-dict-{i:04}.bin");
        std::fs::write(data.join(name), i.to_le_bytes().repeat(100 + i as usize)).unwrap();
    }
    let opts = CreateOptions {
        path: data,
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_fetches_metadata_from_a_seeder_and_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    assert!(
        meta.info_bytes.len() > 2 * 16 * 1024,
        "metadata spans blocks"
    );
    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();

    let leecher = Session::start(config(), Hooks::default()).await.unwrap();
    let dir = tmp.path().join("leech");
    let mut handle = leecher
        .add_magnet(
            Magnet::new(meta.info_hash),
            dir.clone(),
            TorrentOptions::default(),
        )
        .unwrap();
    assert_eq!(handle.state(), TorrentState::FetchingMetadata);
    assert!(handle.metainfo().is_none());
    assert_eq!(handle.name(), meta.info_hash.to_hex());
    assert_eq!(leecher.torrents().len(), 1, "listed before its metadata");
    handle.connect(&[seeder.local_addr()]);
    let fetched = tokio::time::timeout(LIMIT, handle.wait_metadata())
        .await
        .expect("metadata in time")
        .expect("not removed");
    assert_eq!(fetched.info_bytes, meta.info_bytes);
    assert_eq!(fetched.info_hash, meta.info_hash);
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    assert_eq!(handle.name(), "data");
    for (i, f) in meta.info.files.iter().enumerate().step_by(97) {
        let rel: std::path::PathBuf = f.path.iter().collect();
        assert_eq!(
            std::fs::read(dir.join(&rel)).unwrap(),
            std::fs::read(tmp.path().join(&rel)).unwrap(),
            "file {i}"
        );
    }
    // The session's own lookup now finds the torrent itself.
    let again = leecher.torrent(meta.info_hash.0).unwrap();
    assert_eq!(again.state(), TorrentState::Seeding);
    leecher.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_is_paused_resumed_and_removed_while_fetching() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let leecher = Session::start(config(), Hooks::default()).await.unwrap();
    let magnet = Magnet::parse(&format!(
        "magnet:?xt=urn:btih:{}&dn=named",
        meta.info_hash.to_hex()
    ))
    .unwrap();
    let handle = leecher
        .add_magnet(
            magnet.clone(),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .unwrap();
    assert_eq!(handle.name(), "named");
    assert!(leecher
        .add_magnet(magnet, tmp.path().join("other"), TorrentOptions::default())
        .is_err());
    assert!(leecher
        .add_torrent(
            meta.clone(),
            tmp.path().join("other"),
            TorrentOptions::default()
        )
        .await
        .is_err());
    handle.pause().await;
    assert!(handle.is_paused());
    assert_eq!(handle.state(), TorrentState::Paused);
    handle.resume().await;
    assert_eq!(handle.state(), TorrentState::FetchingMetadata);
    leecher
        .remove_torrent(meta.info_hash.0, true)
        .await
        .unwrap();
    assert!(leecher.torrents().is_empty());
    assert!(
        !tmp.path().join("leech").exists(),
        "nothing written before the metadata"
    );

    // A paused magnet fetches nothing, even with a seeder at hand.
    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let mut paused = leecher
        .add_magnet(
            Magnet::new(meta.info_hash),
            tmp.path().join("leech"),
            TorrentOptions {
                paused: true,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    paused.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(paused.metainfo().is_none());
    assert_eq!(paused.state(), TorrentState::Paused);
    paused.resume().await;
    tokio::time::timeout(LIMIT, paused.wait_metadata())
        .await
        .expect("metadata after resume")
        .unwrap();
    leecher.shutdown().await;
    seeder.shutdown().await;
}
