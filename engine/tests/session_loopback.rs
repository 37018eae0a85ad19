//! Two real sessions on loopback: a download, a restart from resume data that
//! downloads nothing again, and a file changed on disk that is re-checked.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{Direction, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{
    FileResumeStore, Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions, TorrentState,
};

const LIMIT: Duration = Duration::from_secs(60);

fn config(state: &Path) -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        resume: Some(Arc::new(FileResumeStore::new(state.join("resume")))),
        ..SessionConfig::default()
    }
}

fn make_payload(dir: &Path) -> Metainfo {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(data_dir.join("sub")).unwrap();
    let mut x: u32 = 7;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    };
    std::fs::write(data_dir.join("a.bin"), bytes(3 * 1024 * 1024 + 123)).unwrap();
    std::fs::write(data_dir.join("sub/b.bin"), bytes(2 * 1024 * 1024 + 7)).unwrap();
    std::fs::write(data_dir.join("empty"), b"").unwrap();
    let opts = CreateOptions {
        path: data_dir,
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

/// A session seeding `meta` from `tmp`, with its own state directory.
async fn start_seeder(tmp: &Path, meta: &Metainfo, hooks: Hooks) -> (Session, TorrentHandle) {
    let seeder = Session::start(config(&tmp.join("seed-state")), hooks)
        .await
        .unwrap();
    let handle = seeder
        .add_torrent(meta.clone(), tmp.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap();
    (seeder, handle)
}

fn same_tree(a: &Path, b: &Path) {
    for f in ["a.bin", "sub/b.bin", "empty"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
}

async fn download(seeder: &Session, meta: &Metainfo, dir: &Path, state: &Path) -> (u64, u32) {
    let leecher = Session::start(config(state), Hooks::default())
        .await
        .unwrap();
    let mut handle = leecher
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap();
    let had_at_start = handle.progress().pieces_have;
    handle.connect(&[seeder.local_addr()]);
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    let counters = handle.counters();
    let received = counters.payload(Direction::Down, PeerClass::Lan);
    assert_eq!(
        counters.payload(Direction::Down, PeerClass::Wan),
        0,
        "loopback is LAN"
    );
    leecher.shutdown().await;
    (received, had_at_start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_resume_and_recheck() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let total = meta.info.total_length;

    let (seeder, seeding) = start_seeder(tmp.path(), &meta, Hooks::default()).await;
    assert_eq!(
        seeding.progress().state,
        TorrentState::Seeding,
        "seeder verified its data"
    );

    let leech_dir = tmp.path().join("leech");
    let state = tmp.path().join("leech-state");
    let (received, had) = download(&seeder, &meta, &leech_dir, &state).await;
    assert_eq!(had, 0);
    assert!(received >= total, "received {received} of {total}");
    same_tree(&tmp.path().join("data"), &leech_dir.join("data"));

    // Restart: resume data vouches for every piece, nothing is fetched again.
    let (received, had) = download(&seeder, &meta, &leech_dir, &state).await;
    assert_eq!(had, meta.info.piece_count());
    assert_eq!(
        received, 0,
        "a complete torrent downloads nothing after a restart"
    );

    // Change a byte of b.bin (its mtime moves): its pieces are re-checked and
    // only the damaged one is fetched again.
    let b = leech_dir.join("data/sub/b.bin");
    let mut bytes = std::fs::read(&b).unwrap();
    bytes[1000] ^= 0xff;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&b, &bytes).unwrap();
    let (received, had) = download(&seeder, &meta, &leech_dir, &state).await;
    assert_eq!(
        had,
        meta.info.piece_count() - 1,
        "exactly the damaged piece is missing"
    );
    assert_eq!(received, 256 * 1024, "only that piece is fetched again");
    same_tree(&tmp.path().join("data"), &leech_dir.join("data"));

    // The seeder counted what it sent, as LAN payload.
    let sent = seeding.counters().payload(Direction::Up, PeerClass::Lan);
    assert!(sent >= total + 256 * 1024, "seeder sent {sent}");
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_switch_off_sends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let hooks = Hooks::default();
    hooks.seeding.set(false);
    let (seeder, seeding) = start_seeder(tmp.path(), &meta, hooks.clone()).await;
    let leecher = Session::start(config(&tmp.path().join("l")), Hooks::default())
        .await
        .unwrap();
    let mut handle = leecher
        .add_torrent(
            meta.clone(),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    handle.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        seeding.counters().payload(Direction::Up, PeerClass::Lan),
        0,
        "no payload while the switch is off"
    );
    assert_eq!(handle.progress().pieces_have, 0);
    // Turned on again, the download completes.
    hooks.seeding.set(true);
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A torrent whose only tracker refuses connections says so: the announce
/// outcome is a failure since the first try, with the error, so that the
/// agent can tell why the torrent has no peers.
#[tokio::test]
async fn an_unreachable_tracker_is_reported_with_its_error_and_since_when() {
    use capwise_engine::session::AnnounceOutcome;
    let tmp = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens, connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("a.bin"), vec![7u8; 100_000]).unwrap();
    let opts = CreateOptions {
        path: data_dir,
        trackers: vec![format!("http://127.0.0.1:{port}/announce")],
        ..CreateOptions::default()
    };
    let meta = Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap();
    let session = Session::start(config(&tmp.path().join("state")), Hooks::default())
        .await
        .unwrap();
    let before = std::time::SystemTime::now();
    let handle = session
        .add_torrent(meta, tmp.path().join("leech"), TorrentOptions::default())
        .await
        .unwrap();
    assert_eq!(
        handle.announce_outcome(),
        None,
        "nothing said before the first try"
    );
    let outcome = tokio::time::timeout(LIMIT, async {
        loop {
            if let Some(outcome) = handle.announce_outcome() {
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("an announce outcome within the limit");
    let AnnounceOutcome::Failed { since, error } = outcome else {
        panic!("the tracker answered? {outcome:?}");
    };
    assert!(since >= before - Duration::from_secs(1), "{since:?}");
    assert!(!error.is_empty());
    assert_eq!(handle.progress().peers, 0);
    assert_eq!(handle.progress().download_rate, 0.0);
    session.shutdown().await;
}
