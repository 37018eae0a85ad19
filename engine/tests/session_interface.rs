//! A session bound to one interface (`SessionConfig::interface`): on the
//! loopback device it downloads as any other, TCP and uTP both; bound to a
//! device that does not exist it still starts, says the device is missing,
//! and nothing leaves it: its dials fail and its listener takes no one.
//! Run inside `unshare -n` like the other session tests (the namespaced
//! test with two routes is `tests/tests/wan.rs`).

use std::path::Path;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{
    Hooks, InterfaceState, Session, SessionConfig, TorrentOptions, TorrentState,
};
use capwise_engine::transport::Transports;

const LIMIT: Duration = Duration::from_secs(30);

fn torrent(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("a.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

fn config(interface: Option<&str>, transports: Transports) -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        interface: interface.map(str::to_owned),
        transports,
        ..SessionConfig::default()
    }
}

async fn seeder(tmp: &Path, meta: &Metainfo, transports: Transports) -> Session {
    let seeder = Session::start(config(None, transports), Hooks::default())
        .await
        .unwrap();
    let handle = seeder
        .add_torrent(meta.clone(), tmp.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap();
    assert_eq!(handle.progress().state, TorrentState::Seeding);
    seeder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_to_loopback_it_downloads_over_tcp_and_utp() {
    for transports in [Transports::tcp_only(), "utp".parse().unwrap()] {
        let tmp = tempfile::tempdir().unwrap();
        let meta = torrent(tmp.path());
        let seeder = seeder(tmp.path(), &meta, transports.clone()).await;
        let leecher = Session::start(config(Some("lo"), transports.clone()), Hooks::default())
            .await
            .unwrap();
        let status = leecher.interface().expect("bound to an interface");
        assert_eq!(
            (status.name.as_str(), &status.state),
            ("lo", &InterfaceState::Up)
        );
        assert_eq!(status.problem(), None);
        let mut handle = leecher
            .add_torrent(
                meta.clone(),
                tmp.path().join("leech"),
                TorrentOptions::default(),
            )
            .await
            .unwrap();
        handle.connect(&[seeder.local_addr()]);
        tokio::time::timeout(LIMIT, handle.wait_finished())
            .await
            .unwrap_or_else(|_| panic!("{transports}: download in time"))
            .expect("no error");
        assert_eq!(
            std::fs::read(tmp.path().join("data/a.bin")).unwrap(),
            std::fs::read(tmp.path().join("leech/data/a.bin")).unwrap()
        );
        leecher.shutdown().await;
        seeder.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_to_a_missing_interface_it_starts_and_nothing_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = torrent(tmp.path());
    let seeder = seeder(tmp.path(), &meta, Transports::default()).await;
    let leecher = Session::start(
        config(Some("cw-absent0"), Transports::default()),
        Hooks::default(),
    )
    .await
    .expect("a session starts while its interface is missing");
    let status = leecher.interface().unwrap();
    assert_eq!(status.state, InterfaceState::Missing);
    assert_eq!(status.state_word(), "missing");
    let problem = status.problem().unwrap();
    assert!(
        problem.contains("cw-absent0 is missing") && problem.contains("no BitTorrent traffic"),
        "{problem}"
    );
    // Its listener is on no device: nothing reaches it.
    assert!(tokio::net::TcpStream::connect(leecher.local_addr())
        .await
        .is_err());
    let handle = leecher
        .add_torrent(
            meta.clone(),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    handle.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.progress().pieces_have, 0, "nothing was downloaded");
    assert!(handle.peer_list().is_empty(), "no peer was connected");
    // A look at the devices changes nothing: it is still missing.
    leecher.network_changed();
    assert_eq!(leecher.interface().unwrap().state, InterfaceState::Missing);
    leecher.shutdown().await;
    seeder.shutdown().await;
}
