//! The metadata phase (BEP 9) over the transport seam: a magnet fetches
//! its metadata over an in-memory pipe, dialled (`connect_transport`) or
//! accepted (`Session::accept`), its requests wait at the byte gate and
//! its bytes are counted as exactly what crossed the transport; the WAN
//! switch keeps a WAN peer silent and closes one that was connected.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{ByteGate, Counters, Direction, GateFuture, PeerClass};
use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{
    Hooks, Session, SessionConfig, SubnetClassifier, TorrentHandle, TorrentOptions, TorrentState,
};
use capwise_engine::transport::memory;

const LIMIT: Duration = Duration::from_secs(60);

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    }
}

fn wan(n: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, n], 6881))
}

/// A torrent of many files: its metadata spans several 16 KiB blocks.
fn make_payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..500u32 {
        let name = format!("file-with-a-long-name-to-grow-the-info-dict-{i:04}.bin");
        std::fs::write(data.join(name), i.to_le_bytes().repeat(10 + i as usize)).unwrap();
    }
    let opts = CreateOptions {
        path: data,
        piece_length: Some(16 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

/// Holds downloads until opened; records what it admitted and what came.
#[derive(Default)]
struct HeldGate {
    open: AtomicBool,
    waiting: AtomicU64,
    admitted_wan_down: AtomicU64,
    arrived: AtomicU64,
}

impl ByteGate for HeldGate {
    fn acquire(&self, direction: Direction, class: PeerClass, bytes: u64) -> GateFuture<'_> {
        Box::pin(async move {
            if direction == Direction::Down {
                self.waiting.fetch_add(1, Ordering::Relaxed);
                // Bounded: every test opens the gate within seconds.
                for _ in 0..6000 {
                    if self.open.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                if class == PeerClass::Wan {
                    self.admitted_wan_down.fetch_add(bytes, Ordering::Relaxed);
                }
            }
        })
    }
    fn arrived(&self, _: PeerClass, bytes: u64) {
        self.arrived.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn hooks(gate: Arc<HeldGate>) -> Hooks {
    Hooks {
        gate,
        // No subnet is local: loopback is LAN, the test's addresses WAN.
        classifier: Arc::new(SubnetClassifier::with_subnets(Vec::new())),
        ..Hooks::default()
    }
}

fn total(c: &Counters, d: Direction) -> u64 {
    [PeerClass::Lan, PeerClass::Wan]
        .into_iter()
        .map(|class| c.payload(d, class) + c.overhead(d, class))
        .sum()
}

async fn seeder_of(meta: &Metainfo, dir: &Path) -> Session {
    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    seeder
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap();
    seeder
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_fetches_over_a_transport_only_through_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let len = meta.info_bytes.len() as u64;
    assert!(len > 2 * 16 * 1024, "metadata spans blocks");
    let seeder = seeder_of(&meta, tmp.path()).await;
    let gate = Arc::new(HeldGate::default());
    let leecher = Session::start(config(), hooks(gate.clone())).await.unwrap();
    let mut handle = leecher
        .add_magnet(
            Magnet::new(meta.info_hash),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .unwrap();

    let (ours, theirs) = memory::pair(wan(2), wan(1), 64 * 1024);
    let wire = ours.wire().clone();
    seeder.accept(theirs);
    handle.connect_transport(ours);
    // The requests wait at the closed gate: no metadata block moves.
    wait_for("a request at the gate", || {
        gate.waiting.load(Ordering::Relaxed) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handle.state(), TorrentState::FetchingMetadata);
    assert!(
        wire.received() < 16 * 1024,
        "no metadata block crossed a closed gate ({} bytes came)",
        wire.received()
    );
    assert_eq!(gate.arrived.load(Ordering::Relaxed), 0);

    gate.open.store(true, Ordering::Relaxed);
    let fetched = tokio::time::timeout(LIMIT, handle.wait_metadata())
        .await
        .expect("metadata in time")
        .expect("not removed");
    assert_eq!(fetched.info_bytes, meta.info_bytes);
    // Every block was debited before it was asked for, and its arrival told.
    assert!(gate.admitted_wan_down.load(Ordering::Relaxed) >= len);
    assert!(gate.arrived.load(Ordering::Relaxed) >= len);
    // The phase's connection closes; what the counters hold (WAN overhead)
    // is then exactly what crossed the pipe, each way.
    wait_for("the counters to match the pipe", || {
        total(&leecher.counters(), Direction::Down) == wire.received()
            && total(&leecher.counters(), Direction::Up) == wire.sent()
            && wire.received() > len
    })
    .await;
    let counters = leecher.counters();
    assert!(counters.overhead(Direction::Down, PeerClass::Wan) > len);
    assert_eq!(counters.overhead(Direction::Down, PeerClass::Lan), 0);
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// Before its metadata a torrent also takes incoming peers: the seeder
/// dials the magnet's session and the metadata comes that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_peer_gives_a_fetching_magnet_its_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let seeder = seeder_of(&meta, tmp.path()).await;
    let seeding = seeder.torrent(meta.info_hash.0).unwrap();
    let gate = Arc::new(HeldGate::default());
    gate.open.store(true, Ordering::Relaxed);
    let leecher = Session::start(config(), hooks(gate.clone())).await.unwrap();
    let mut handle = leecher
        .add_magnet(
            Magnet::new(meta.info_hash),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .unwrap();
    let dial_in = |seeding: &TorrentHandle| {
        let (ours, theirs) = memory::pair(wan(1), wan(2), 64 * 1024);
        leecher.accept(theirs);
        seeding.connect_transport(ours);
    };
    dial_in(&seeding);
    let fetched = tokio::time::timeout(LIMIT, handle.wait_metadata())
        .await
        .expect("metadata from the incoming peer in time")
        .expect("not removed");
    assert_eq!(fetched.info_hash, meta.info_hash);
    assert!(gate.admitted_wan_down.load(Ordering::Relaxed) >= meta.info_bytes.len() as u64);
    // The torrent now exists; the peer comes again and the data follows.
    wait_for("the torrent to start", || {
        handle.state() != TorrentState::FetchingMetadata
    })
    .await;
    wait_for("the phase's connection to close", || {
        seeding.progress().peers == 0
    })
    .await;
    dial_in(&seeding);
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// With the WAN off not even a handshake goes to a WAN peer, and a WAN
/// peer connected while fetching is dropped when the WAN goes off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wan_switch_silences_the_metadata_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let seeder = seeder_of(&meta, tmp.path()).await;
    let gate = Arc::new(HeldGate::default());
    let hooks = hooks(gate.clone());
    let leecher = Session::start(config(), hooks.clone()).await.unwrap();
    let handle = leecher
        .add_magnet(
            Magnet::new(meta.info_hash),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .unwrap();

    hooks.wan.set(false);
    let (ours, theirs) = memory::pair(wan(2), wan(1), 64 * 1024);
    let silent = ours.wire().clone();
    seeder.accept(theirs);
    handle.connect_transport(ours);
    // An incoming WAN peer is refused too.
    let (incoming, _from) = memory::pair(wan(3), wan(4), 64 * 1024);
    let refused = incoming.wire().clone();
    leecher.accept(incoming);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        silent.sent(),
        0,
        "nothing sent to a WAN peer while the WAN is off"
    );
    assert_eq!(refused.sent(), 0, "nothing answered to a WAN peer");
    assert_eq!(handle.progress().peers, 0);

    hooks.wan.set(true);
    let (ours, theirs) = memory::pair(wan(2), wan(1), 64 * 1024);
    seeder.accept(theirs);
    handle.connect_transport(ours);
    // The gate stays closed: the connection waits in the phase.
    wait_for("the connection", || handle.progress().peers == 1).await;
    hooks.wan.set(false);
    wait_for("the WAN connection to close", || {
        handle.progress().peers == 0
    })
    .await;
    assert_eq!(handle.state(), TorrentState::FetchingMetadata);
    gate.open.store(true, Ordering::Relaxed);
    leecher.shutdown().await;
    seeder.shutdown().await;
}
