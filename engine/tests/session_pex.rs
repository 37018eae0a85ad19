//! PEX (BEP 11) between real sessions on loopback (run inside `unshare -n`
//! like the other session tests): a session told only of one peer learns
//! the seeder from that peer's ut_pex message and dials it; with PEX off it
//! does not.

use std::path::Path;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};
use capwise_engine::swarm::SwarmConfig;

fn config(pex: bool) -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        swarm: SwarmConfig {
            pex,
            ..SwarmConfig::default()
        },
        ..SessionConfig::default()
    }
}

fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(data.join("f.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn start(pex: bool, serves: bool, meta: &Metainfo, dir: &Path) -> (Session, TorrentHandle) {
    let hooks = Hooks::default();
    hooks.seeding.set(serves);
    let session = Session::start(config(pex), hooks).await.unwrap();
    let handle = session
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap();
    (session, handle)
}

async fn wait_peers(handle: &TorrentHandle, n: usize, limit: Duration) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < until {
        if handle.progress().peers >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A seeder (PEX off: it dials nobody it hears of), a middle peer that
/// dialled it, speaks PEX and serves nothing (its seeding switch is off),
/// and a newcomer told only of the middle, with PEX `pex`: whether the
/// newcomer completes (it can only from the seeder).
async fn newcomer_told_of_the_middle_only(pex: bool) -> (bool, Vec<Session>) {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let (seeder, seeding) = start(false, true, &meta, tmp.path()).await;
    let mid = tmp.path().join("mid");
    std::fs::create_dir_all(mid.join("data")).unwrap();
    std::fs::copy(tmp.path().join("data/f.bin"), mid.join("data/f.bin")).unwrap();
    let (middle, middling) = start(true, false, &meta, &mid).await;
    middling.connect(&[seeder.local_addr()]);
    assert!(wait_peers(&seeding, 1, Duration::from_secs(10)).await);

    let (newcomer, mut fetching) = start(pex, true, &meta, &tmp.path().join("new")).await;
    fetching.connect(&[middle.local_addr()]);
    // The middle's first ut_pex message goes right after the handshakes.
    let done = tokio::time::timeout(Duration::from_secs(5), fetching.wait_finished()).await;
    let finished = matches!(done, Ok(Ok(())));
    drop(tmp);
    (finished, vec![seeder, middle, newcomer])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_learnt_through_pex_is_dialled() {
    let started = std::time::Instant::now();
    let (finished, sessions) = newcomer_told_of_the_middle_only(true).await;
    assert!(
        finished,
        "the newcomer dialled the seeder it heard of through PEX"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "at once, not a minute later"
    );
    for s in sessions {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pex_off_nothing_is_learnt() {
    let (finished, sessions) = newcomer_told_of_the_middle_only(false).await;
    assert!(
        !finished,
        "PEX off: the newcomer knows only the peer it was given"
    );
    for s in sessions {
        s.shutdown().await;
    }
}
