//! The transport seam, end to end: two sessions whose only connection is
//! an in-memory pipe (`transport::memory::pair`), not a socket. The peer
//! code, the handshakes and the counters run over it unchanged; the
//! counters add up to the bytes the transport says crossed it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{Counters, Direction, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{
    Hooks, Session, SessionConfig, SubnetClassifier, TorrentHandle, TorrentOptions,
};
use capwise_engine::transport::{memory, Transport, TransportKind};

const LIMIT: Duration = Duration::from_secs(60);
const LEN: usize = 3 * 1024 * 1024 + 777;

fn config() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    }
}

fn payload(dir: &Path) -> (Metainfo, Vec<u8>) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut x = 11u32;
    let bytes: Vec<u8> = (0..LEN)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(data.join("a.bin"), &bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    (
        Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap(),
        bytes,
    )
}

async fn add(session: &Session, meta: &Metainfo, dir: &Path) -> TorrentHandle {
    session
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap()
}

/// Payload plus overhead, one direction, both classes.
fn total(c: &Counters, d: Direction) -> u64 {
    [PeerClass::Lan, PeerClass::Wan]
        .into_iter()
        .map(|class| c.payload(d, class) + c.overhead(d, class))
        .sum()
}

/// A seeder and a leecher joined only by a memory pipe between these two
/// addresses; `lan` says how the sessions are to classify them.
async fn download_over_memory(seeder_at: SocketAddr, leecher_at: SocketAddr, lan: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, bytes) = payload(tmp.path());
    // No subnet is local: loopback counts as LAN, anything else as WAN.
    let hooks = || Hooks {
        classifier: Arc::new(SubnetClassifier::with_subnets(Vec::new())),
        ..Hooks::default()
    };
    let seeder = Session::start(config(), hooks()).await.unwrap();
    let _seeding = add(&seeder, &meta, tmp.path()).await;
    let leecher = Session::start(config(), hooks()).await.unwrap();
    let mut leeching = add(&leecher, &meta, &tmp.path().join("leech")).await;

    let (ours, theirs) = memory::pair(leecher_at, seeder_at, 64 * 1024);
    assert_eq!(ours.kind(), TransportKind::Memory);
    let (leech_wire, seed_wire) = (ours.wire().clone(), theirs.wire().clone());
    seeder.accept(theirs);
    leeching.connect_transport(ours);

    tokio::time::timeout(LIMIT, leeching.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    let got = std::fs::read(tmp.path().join("leech/data/a.bin")).unwrap();
    assert!(got == bytes, "the file arrived intact");

    let class = if lan { PeerClass::Lan } else { PeerClass::Wan };
    let other = if lan { PeerClass::Wan } else { PeerClass::Lan };
    let counters = leeching.counters();
    assert_eq!(counters.payload(Direction::Down, class), LEN as u64);
    assert_eq!(counters.payload(Direction::Down, other), 0);
    // Once nothing is in flight, what the counters hold is exactly what
    // crossed the transport, each way, on each side.
    let settled = || {
        let leech = leecher.counters();
        let seed = seeder.counters();
        [
            (total(&leech, Direction::Down), leech_wire.received()),
            (total(&leech, Direction::Up), leech_wire.sent()),
            (total(&seed, Direction::Down), seed_wire.received()),
            (total(&seed, Direction::Up), seed_wire.sent()),
        ]
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pairs = settled();
        // The writer counts a write once it returned, which may be just after
        // the reader took the bytes: what was received is read first.
        let received = leech_wire.received();
        let carried = seed_wire.sent() >= received;
        if carried && pairs.iter().all(|(counted, wire)| counted == wire) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counters (counted, wire) never matched the transport, or the seed sent less than \
             the leecher received ({} < {received}): {pairs:?}",
            seed_wire.sent()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The seeder counts a batch once its write returned, which may be just
    // after the leecher saw the last block: asked only once settled.
    assert!(
        leech_wire.received() > LEN as u64,
        "the pipe carried the payload and its framing"
    );
    assert_eq!(seeder.counters().payload(Direction::Up, class), LEN as u64);
    leecher.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_peer_downloads_over_an_in_memory_transport() {
    download_over_memory(
        "127.0.0.1:50001".parse().unwrap(),
        "127.0.0.1:50002".parse().unwrap(),
        true,
    )
    .await;
}

/// WAN peers take the other write path: a bounded batch and a wait for
/// room in the carrier before each block, which this kind grants at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wan_peer_downloads_over_an_in_memory_transport() {
    download_over_memory(
        "192.0.2.1:6881".parse().unwrap(),
        "198.51.100.7:51413".parse().unwrap(),
        false,
    )
    .await;
}

/// A connection whose local address went away is closed at once and its
/// peer dialled again, from an address that works: here the first
/// connection is a pipe whose local end is 10.1.2.3, the seeder's address
/// its real TCP listener, so the redial arrives over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_from_a_vanished_address_is_closed_and_the_peer_redialled() {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, bytes) = payload(tmp.path());
    // The seeder serves nothing until the test says so: no transfer can
    // finish over the pipe.
    let seed_hooks = Hooks::default();
    seed_hooks.seeding.set(false);
    let seeder = Session::start(config(), seed_hooks.clone()).await.unwrap();
    let _seeding = add(&seeder, &meta, tmp.path()).await;
    let leecher = Session::start(config(), Hooks::default()).await.unwrap();
    let mut leeching = add(&leecher, &meta, &tmp.path().join("leech")).await;

    let gone: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let (ours, theirs) = memory::pair(gone, seeder.local_addr(), 64 * 1024);
    let pipe = ours.wire().clone();
    seeder.accept(theirs);
    leeching.connect_transport(ours);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while leeching.progress().peers == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        let _ = tokio::time::timeout(Duration::from_millis(100), leeching.changed()).await;
    }

    let here = leecher.local_addr().ip();
    assert_eq!(leecher.close_connections_from(here), 0, "nothing from here");
    assert_eq!(
        leecher.local_addresses_changed(&[here]),
        1,
        "the pipe closed"
    );
    // The pipe's connection goes, a TCP one to the seeder's address comes.
    let received = pipe.received();
    seed_hooks.seeding.set(true);
    tokio::time::timeout(LIMIT, leeching.wait_finished())
        .await
        .expect("download in time over the redialled connection")
        .expect("no error");
    let got = std::fs::read(tmp.path().join("leech/data/a.bin")).unwrap();
    assert!(got == bytes, "the file arrived intact");
    // The close is asked of the connection's tasks: a message already on
    // its way (the seeder's unchoke, 5 bytes) may still be read before they
    // end, but no block.
    assert!(
        pipe.received() - received < 1024,
        "nothing but a message in flight came over the pipe: {} B",
        pipe.received() - received
    );
    assert!(
        received < LEN as u64 / 4,
        "the payload did not come over the pipe"
    );
    assert_eq!(
        leecher.local_addresses_changed(&[here]),
        0,
        "the new connection is from an address we have"
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A connection whose path dies with our address: `ours` and `theirs` as
/// [`memory::pair`] gives them, but once our end is gone the far end hears
/// nothing, neither the close nor a byte (what it sends is lost), as a
/// remote peer does when a TCP connection's local address went away and
/// its FIN never arrives. The relay tasks keep the far end open.
fn dying_pair(ours: SocketAddr, theirs: SocketAddr) -> (Transport, Transport) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (near, relay_near) = memory::pair(ours, theirs, 64 * 1024);
    let (relay_far, far) = memory::pair(ours, theirs, 64 * 1024);
    let (mut from_near, mut to_near) = relay_near.into_split();
    let (mut from_far, mut to_far) = relay_far.into_split();
    tokio::spawn(async move {
        let mut buf = vec![0; 16 * 1024];
        while let Ok(n @ 1..) = from_near.read(&mut buf).await {
            if to_far.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
        // Our end closed: the far end is never told.
        std::future::pending::<()>().await;
        drop(to_far);
    });
    tokio::spawn(async move {
        let mut buf = vec![0; 16 * 1024];
        let mut near_open = true;
        while let Ok(n @ 1..) = from_far.read(&mut buf).await {
            if near_open {
                near_open = to_near.write_all(&buf[..n]).await.is_ok();
            }
        }
    });
    (near, far)
}

/// After a move, a peer that still holds our dead connection (it cannot
/// hear that it ended) must take the redial: capwise, like libtorrent,
/// refuses a second connection with the same peer id, so the redial comes
/// with a new one. Before the session took a new peer id on closing
/// connections from a vanished address, the seeder refused the redial
/// and the download never went on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holding_the_dead_connection_takes_the_redial() {
    let tmp = tempfile::tempdir().unwrap();
    let (meta, bytes) = payload(tmp.path());
    let seed_hooks = Hooks::default();
    seed_hooks.seeding.set(false);
    let seeder = Session::start(config(), seed_hooks.clone()).await.unwrap();
    let seeding = add(&seeder, &meta, tmp.path()).await;
    let leecher = Session::start(config(), Hooks::default()).await.unwrap();
    let mut leeching = add(&leecher, &meta, &tmp.path().join("leech")).await;

    let gone: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let (ours, theirs) = dying_pair(gone, seeder.local_addr());
    seeder.accept(theirs);
    leeching.connect_transport(ours);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while leeching.progress().peers == 0 || seeding.progress().peers == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        let _ = tokio::time::timeout(Duration::from_millis(100), leeching.changed()).await;
    }

    let here = leecher.local_addr().ip();
    assert_eq!(
        leecher.local_addresses_changed(&[here]),
        1,
        "the pipe closed"
    );
    seed_hooks.seeding.set(true);
    tokio::time::timeout(Duration::from_secs(20), leeching.wait_finished())
        .await
        .expect("the seeder took the redial: download in time")
        .expect("no error");
    let got = std::fs::read(tmp.path().join("leech/data/a.bin")).unwrap();
    assert!(got == bytes, "the file arrived intact");
    leecher.shutdown().await;
    seeder.shutdown().await;
}
