//! LAN or WAN follows the network: a laptop on an office LAN (10.20.0.0/16)
//! downloads from a peer at 10.20.9.9, free; then it moves to a carrier's
//! CGNAT (10.64.1.1/30). The same peer address is now beyond the LAN: from
//! the change on, every byte from it is gated and counted as WAN, and its
//! connection is made again as a WAN one. Two sessions over an in-memory
//! pipe with those addresses (run inside `unshare -n`: the redial of
//! 10.20.9.9 over TCP finds no route there).

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{ByteGate, Classifier, Direction, GateFuture, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, SubnetClassifier, TorrentOptions};
use capwise_engine::transport::memory;

const LIMIT: Duration = Duration::from_secs(60);
const LEN: usize = 4 * 1024 * 1024;
/// Requests admitted before the gate holds the rest back (the move comes then).
const BEFORE_MOVE: u64 = 1024 * 1024;

/// Lets download requests through until [`BEFORE_MOVE`] bytes, then holds
/// them until released; records the class of every request asked for
/// after `moved` is set.
#[derive(Default)]
struct MoveGate {
    asked: AtomicU64,
    holding: AtomicBool,
    released: AtomicBool,
    moved: AtomicBool,
    after_move: Mutex<Vec<PeerClass>>,
}

impl ByteGate for MoveGate {
    fn acquire(&self, direction: Direction, class: PeerClass, bytes: u64) -> GateFuture<'_> {
        if direction == Direction::Up {
            return Box::pin(std::future::ready(()));
        }
        if self.moved.load(Ordering::Acquire) {
            self.after_move.lock().unwrap().push(class);
        }
        if self.asked.fetch_add(bytes, Ordering::AcqRel) + bytes > BEFORE_MOVE {
            self.holding.store(true, Ordering::Release);
        }
        Box::pin(async move {
            while self.holding.load(Ordering::Acquire) && !self.released.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }
}

fn payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..LEN as u32)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    std::fs::write(data.join("a.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    }
}

fn subnet(ip: &str, mask: &str) -> (IpAddr, IpAddr) {
    (ip.parse().unwrap(), mask.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_from_an_office_lan_to_a_carriers_10_net_makes_the_same_peer_wan() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path());
    let seeder_at = "10.20.9.9:6881".parse().unwrap();
    let leecher_at = "10.20.3.4:50000".parse().unwrap();

    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();

    // The office: 10.20.0.0/16 is the LAN.
    let subnets = SubnetClassifier::with_subnets(vec![subnet("10.20.3.4", "255.255.0.0")]);
    let gate = Arc::new(MoveGate::default());
    let leecher = Session::start(
        config(),
        Hooks {
            gate: gate.clone(),
            classifier: Arc::new(subnets.clone()),
            ..Hooks::default()
        },
    )
    .await
    .unwrap();
    let mut leeching = leecher
        .add_torrent(meta, tmp.path().join("leech"), TorrentOptions::default())
        .await
        .unwrap();
    let (ours, theirs) = memory::pair(leecher_at, seeder_at, 64 * 1024);
    seeder.accept(theirs);
    leeching.connect_transport(ours);

    let counters = leeching.counters();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !(gate.holding.load(Ordering::Acquire)
        && counters.payload(Direction::Down, PeerClass::Lan) > 0)
    {
        assert!(tokio::time::Instant::now() < deadline, "no download began");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters.payload(Direction::Down, PeerClass::Wan), 0);

    // The move: a carrier's CGNAT address, a /30 of 10.64/16.
    subnets.set_subnets(vec![subnet("10.64.1.1", "255.255.255.252")]);
    let peer = seeder_at.ip();
    assert_eq!(subnets.classify(peer), PeerClass::Wan, "the same address");
    gate.moved.store(true, Ordering::Release);
    assert_eq!(leecher.reclassify(), 1, "the connected peer changed class");
    let lan_at_move = counters.payload(Direction::Down, PeerClass::Lan);
    assert_eq!(leecher.reclassify(), 0, "nothing changes twice");

    // The old connection goes; the peer comes again (here over a new pipe:
    // the redial over TCP has no route) and is a WAN peer.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while leeching.progress().peers > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old connection stayed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.released.store(true, Ordering::Release);
    let (ours, theirs) = memory::pair(leecher_at, seeder_at, 64 * 1024);
    seeder.accept(theirs);
    leeching.connect_transport(ours);
    tokio::time::timeout(LIMIT, leeching.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");

    let lan = counters.payload(Direction::Down, PeerClass::Lan);
    let wan = counters.payload(Direction::Down, PeerClass::Wan);
    assert_eq!(lan, lan_at_move, "nothing counted as LAN after the move");
    assert!(wan > 0, "the rest came as WAN");
    assert!(lan + wan >= LEN as u64, "lan {lan} + wan {wan} < {LEN}");
    let asked = gate.after_move.lock().unwrap().clone();
    assert!(!asked.is_empty(), "requests were asked for after the move");
    assert!(
        asked.iter().all(|&c| c == PeerClass::Wan),
        "requests gated as LAN after the move: {asked:?}"
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
}
