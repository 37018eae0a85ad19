//! Sessions that find each other through the DHT alone, on loopback: a
//! bootstrap session (127.0.0.1), a seeder (127.0.0.2) and a leecher
//! (127.0.0.3) given only a magnet's info-hash (no tracker, no peer). The
//! seeder also seeds a private torrent, which its DHT never announces.
//! Every DHT datagram the sessions send is WAN overhead in their counters.
//! Runs inside `unshare -n` with scripts/test (loopback only).

use std::path::Path;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::dht::DhtOptions;
use capwise_engine::hooks::{Direction, PeerClass};
use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};

const LIMIT: Duration = Duration::from_secs(40);

fn config(ip: &str, bootstrap: &[String], state: Option<&Path>) -> SessionConfig {
    SessionConfig {
        listen: format!("{ip}:0").parse().unwrap(),
        dht: Some(DhtOptions {
            bootstrap: bootstrap.to_vec(),
            state_file: state.map(|d| d.join("dht.dat")),
            node: None,
        }),
        ..SessionConfig::default()
    }
}

fn make_payload(dir: &Path, name: &str, private: bool) -> Metainfo {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..4u32 {
        std::fs::write(
            data.join(format!("f{i}.bin")),
            (i + u32::from(private)).to_le_bytes().repeat(40_000),
        )
        .unwrap();
    }
    let opts = CreateOptions {
        path: data,
        piece_length: Some(32 * 1024),
        private,
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_finds_its_seeder_through_the_dht_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let public = make_payload(tmp.path(), "public", false);
    let private = make_payload(tmp.path(), "private", true);

    let boot = Session::start(config("127.0.0.1", &[], None), Hooks::default())
        .await
        .unwrap();
    let bootstrap = vec![boot.local_addr().to_string()];
    let seed_state = tmp.path().join("seed-state");
    std::fs::create_dir_all(&seed_state).unwrap();
    let seeder = Session::start(
        config("127.0.0.2", &bootstrap, Some(&seed_state)),
        Hooks::default(),
    )
    .await
    .unwrap();
    for meta in [&public, &private] {
        seeder
            .add_torrent(
                meta.clone(),
                tmp.path().to_path_buf(),
                TorrentOptions::default(),
            )
            .await
            .unwrap();
    }

    // The seeder's announce reached the bootstrap node (else the leecher's
    // first lookup could come too early and the next is minutes away).
    tokio::time::timeout(LIMIT, async {
        while boot.dht_snapshot().await.unwrap().stored.0 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the seeder announced");

    let leecher = Session::start(config("127.0.0.3", &bootstrap, None), Hooks::default())
        .await
        .unwrap();
    let mut handle = leecher
        .add_magnet(
            Magnet::new(public.info_hash),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .unwrap();
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("found through the DHT and downloaded in time")
        .expect("no error");
    let got = std::fs::read(tmp.path().join("leech/public/f3.bin")).unwrap();
    assert_eq!(
        got,
        std::fs::read(tmp.path().join("public/f3.bin")).unwrap()
    );

    // The bootstrap node holds announces for the public torrent (from the
    // seeder, and the leecher once it had a port to announce) and never the
    // private one: at most one info-hash.
    let snapshot = boot.dht_snapshot().await.expect("boot runs a DHT");
    assert_eq!(snapshot.stored.0, 1, "{snapshot:?}");
    // Every DHT datagram is WAN overhead (the payload went over loopback, LAN).
    let c = seeder.counters();
    assert!(c.overhead(Direction::Up, PeerClass::Wan) > 0);

    // The seeder's node id is written at shutdown and read at the next start.
    let id = seeder.dht_snapshot().await.unwrap().id;
    seeder.shutdown().await;
    assert!(seed_state.join("dht.dat").exists());
    let again = Session::start(
        config("127.0.0.2", &bootstrap, Some(&seed_state)),
        Hooks::default(),
    )
    .await
    .unwrap();
    assert_eq!(again.dht_snapshot().await.unwrap().id, id);
}

#[tokio::test]
async fn a_session_without_dht_options_runs_no_dht() {
    let session = Session::start(
        SessionConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..SessionConfig::default()
        },
        Hooks::default(),
    )
    .await
    .unwrap();
    assert!(session.dht_snapshot().await.is_none());
    // No UDP socket on the listen port either.
    let port = session.local_addr().port();
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
}
