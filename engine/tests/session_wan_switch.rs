//! The WAN switch on real sessions over loopback, with a classifier that
//! calls every address WAN: while it is off the seeder announces to no
//! tracker and takes no WAN peer; switched on, both happen; switched off
//! mid-download, the open WAN connection is closed and nothing more moves.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{ByteGate, Classifier, Direction, GateFuture, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const LEN: u64 = 1024 * 1024 + 321;
const LIMIT: Duration = Duration::from_secs(30);

struct EverythingIsWan;

impl Classifier for EverythingIsWan {
    fn classify(&self, _: IpAddr) -> PeerClass {
        PeerClass::Wan
    }
}

/// Uploads one block per 30 ms, so a download lasts a couple of seconds.
struct SlowUploads;

impl ByteGate for SlowUploads {
    fn acquire(&self, direction: Direction, _: PeerClass, _: u64) -> GateFuture<'_> {
        match direction {
            Direction::Up => Box::pin(tokio::time::sleep(Duration::from_millis(30))),
            Direction::Down => Box::pin(std::future::ready(())),
        }
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    }
}

/// A tracker that counts the connections it gets and answers each with no
/// peers and a long interval.
async fn counting_tracker() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        // Bounded: the test makes a handful of announces.
        for _ in 0..100 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let body = b"d8:intervali1800e5:peers0:e";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body).await;
        }
    });
    (addr, count)
}

fn payload(dir: &std::path::Path, tracker: SocketAddr) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut x = 11u32;
    let bytes: Vec<u8> = (0..LEN)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(data.join("a.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        trackers: vec![format!("http://{tracker}/announce")],
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn add(session: &Session, meta: &Metainfo, dir: &std::path::Path) -> TorrentHandle {
    session
        .add_torrent(
            meta.clone(),
            dir.to_path_buf(),
            TorrentOptions { paused: false },
        )
        .await
        .unwrap()
}

/// Waits (bounded) until `done` holds for the handle's progress.
async fn wait_for(
    handle: &TorrentHandle,
    what: &str,
    done: impl Fn(&capwise_engine::session::Progress) -> bool,
) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut h = handle.clone();
    loop {
        let p = h.progress();
        if done(&p) {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{what}: not within {LIMIT:?}: {p:?}");
        let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), h.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switched_off_wan_carries_no_announce_and_no_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (tracker, announces) = counting_tracker().await;
    let meta = payload(tmp.path(), tracker);

    let seed_hooks = Hooks {
        classifier: Arc::new(EverythingIsWan),
        gate: Arc::new(SlowUploads),
        ..Hooks::default()
    };
    seed_hooks.wan.set(false);
    let seeder = Session::start(config(), seed_hooks.clone()).await.unwrap();
    let _seeding = add(&seeder, &meta, tmp.path()).await;

    // The leecher knows no tracker: every announce the tracker sees is the seeder's.
    let mut quiet_meta = meta.clone();
    quiet_meta.trackers.clear();
    let leecher = Session::start(config(), Hooks::default()).await.unwrap();
    let leeching = add(&leecher, &quiet_meta, &tmp.path().join("leech")).await;
    leeching.connect(&[seeder.local_addr()]);

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        announces.load(Ordering::SeqCst),
        0,
        "announced with the WAN off"
    );
    let p = leeching.progress();
    assert_eq!(p.bytes_have, 0, "a WAN peer got data with the WAN off");
    assert_eq!(p.peers, 0, "a WAN peer was taken with the WAN off");

    seed_hooks.wan.set(true);
    for _ in 0..100 {
        if announces.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        announces.load(Ordering::SeqCst) > 0,
        "no announce within 5 s of the WAN coming back"
    );
    leeching.connect(&[seeder.local_addr()]);
    wait_for(&leeching, "the first bytes over the WAN", |p| {
        p.bytes_have > 0
    })
    .await;

    // Off mid-download: the seeder closes the WAN connection within its 1 s
    // beat, and nothing more arrives.
    seed_hooks.wan.set(false);
    wait_for(&leeching, "the WAN connection to close", |p| p.peers == 0).await;
    let have = leeching.progress().bytes_have;
    assert!(have < LEN, "finished before the switch went off");
    leeching.connect(&[seeder.local_addr()]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = leeching.progress();
    assert_eq!(
        (p.bytes_have, p.peers),
        (have, 0),
        "data moved with the WAN off"
    );

    seed_hooks.wan.set(true);
    leeching.connect(&[seeder.local_addr()]);
    wait_for(&leeching, "the rest over the WAN", |p| {
        p.bytes_have == p.total_length
    })
    .await;
}
