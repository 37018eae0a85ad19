//! uTP on loopback: two drivers moving a stream through the shared UDP
//! socket (every wire byte counted once, each way), and two sessions that
//! speak nothing but uTP transferring a torrent (no TCP listener at all).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{Classifier, Counters, Direction, PeerClass, Switch};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};
use capwise_engine::transport::utp_driver::{UtpDriver, UtpHooks};
use capwise_engine::transport::{utp, Carrier, Transport, TransportKind, Transports};
use capwise_engine::udp::UdpEndpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);

struct AllLan;

impl Classifier for AllLan {
    fn classify(&self, _: IpAddr) -> PeerClass {
        PeerClass::Lan
    }
}

struct Node {
    _udp: UdpEndpoint,
    driver: UtpDriver,
    accepted: tokio::sync::mpsc::Receiver<Transport>,
    counters: Arc<Counters>,
}

async fn node() -> Node {
    let counters = Arc::new(Counters::default());
    let (udp, receivers) = UdpEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        counters.clone(),
        capwise_dht::krpc::MAX_PACKET,
    )
    .await
    .unwrap();
    let hooks = UtpHooks {
        counters: counters.clone(),
        classifier: Arc::new(AllLan),
        wan: Switch::new(true),
    };
    let (driver, accepted) =
        UtpDriver::spawn(udp.socket(), receivers.utp, Default::default(), hooks).unwrap();
    Node {
        _udp: udp,
        driver,
        accepted,
        counters,
    }
}

fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 11;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_crosses_and_every_wire_byte_is_counted_once() {
    let mut a = node().await;
    let mut b = node().await;
    let to_b = b.driver.local_addr();
    let dialled = utp::connect(&a.driver, to_b, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(dialled.kind(), TransportKind::Utp);
    assert_eq!(dialled.remote_addr(), to_b);
    // The acceptor's transport exists only once the initiator's first
    // packet confirmed the SYN exchange: the dialler speaks first.
    let data = pattern(8 * 1024 * 1024 + 77);
    let (mut a_read, mut a_write) = dialled.into_split();
    let sending = {
        let data = data.clone();
        tokio::spawn(async move {
            a_write.write_all(&data).await.unwrap();
            a_write.shutdown().await.unwrap();
            a_write
        })
    };
    let accepted = tokio::time::timeout(LIMIT, b.accepted.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(accepted.kind(), TransportKind::Utp);
    assert_eq!(accepted.remote_addr().port(), a.driver.local_addr().port());
    let wire_b = accepted.wire().clone();
    let (mut b_read, mut b_write) = accepted.into_split();
    let mut got = Vec::new();
    tokio::time::timeout(LIMIT, b_read.read_to_end(&mut got))
        .await
        .expect("stream in time")
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
    // And back: the acceptor answers, then closes; the dialler reads to EOF.
    b_write.write_all(b"thanks").await.unwrap();
    b_write.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, a_read.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"thanks");
    let a_write = sending.await.unwrap();
    drop((a_write, a_read, b_write, b_read));

    let payload = data.len() as u64;
    let (received, sent) = (wire_b.received(), wire_b.sent());
    // Every data packet carries a 20-byte header; fewer than 1400 payload
    // bytes each (a conservative MTU).
    let packets = payload / 1400;
    assert!(
        received >= payload + packets * 20,
        "headers counted: {received} for {payload} of payload"
    );
    assert!(
        received < payload + payload / 10,
        "no byte counted twice: {received} for {payload} of payload"
    );
    // The acceptor's ACKs (20+ bytes each; the driver sends one per batch
    // of datagrams it takes in, like a delayed ACK) and its answer.
    assert!(sent >= 6 + 20 * 10, "ACKs counted: {sent}");
    // Nothing went to no connection, so the demux and driver counted
    // nothing outside the transports.
    assert_eq!(b.counters.overhead(Direction::Down, PeerClass::Wan), 0);
    assert_eq!(a.counters.overhead(Direction::Down, PeerClass::Wan), 0);
    // Both ends finish their FIN exchange and forget the connection.
    for _ in 0..100 {
        if a.driver.connection_count() == 0 && b.driver.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.driver.connection_count(), 0, "dialler's connection gone");
    assert_eq!(b.driver.connection_count(), 0, "acceptor's connection gone");
    drop(a.accepted.try_recv());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_to_a_silent_port_times_out() {
    let a = node().await;
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = utp::connect(
        &a.driver,
        silent.local_addr().unwrap(),
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

fn make_payload(dir: &Path) -> Metainfo {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("a.bin"), pattern(5 * 1024 * 1024 + 321)).unwrap();
    std::fs::write(data_dir.join("b.bin"), pattern(700_001)).unwrap();
    let opts = CreateOptions {
        path: data_dir,
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

fn utp_only() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transports: Transports::new([Carrier::Utp]).unwrap(),
        ..SessionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_transfer_a_torrent_over_utp_only() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path());
    let total = meta.info.total_length;
    let seeder = Session::start(utp_only(), Hooks::default()).await.unwrap();
    let seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let at: SocketAddr = seeder.local_addr();
    assert_ne!(at.port(), 0);
    // No TCP listener: a TCP connect to the session's port is refused.
    let tcp = tokio::net::TcpStream::connect(at).await;
    assert!(tcp.is_err(), "a uTP-only session must not listen on TCP");

    let leecher = Session::start(utp_only(), Hooks::default()).await.unwrap();
    let leech_dir = tmp.path().join("leech");
    let mut handle = leecher
        .add_torrent(meta.clone(), leech_dir.clone(), TorrentOptions::default())
        .await
        .unwrap();
    handle.connect(&[at]);
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    for f in ["a.bin", "b.bin"] {
        assert!(
            std::fs::read(tmp.path().join("data").join(f)).unwrap()
                == std::fs::read(leech_dir.join("data").join(f)).unwrap(),
            "{f} differs"
        );
    }
    let down = handle.counters();
    let payload = down.payload(Direction::Down, PeerClass::Lan);
    assert!(payload >= total, "received {payload} of {total}");
    // uTP's headers, on top of the wire protocol's own framing.
    let overhead = down.overhead(Direction::Down, PeerClass::Lan);
    assert!(
        overhead >= total / 1400 * 20,
        "uTP headers counted as overhead: {overhead}"
    );
    let up = seeding.counters();
    assert!(up.payload(Direction::Up, PeerClass::Lan) >= total);
    leecher.shutdown().await;
    seeder.shutdown().await;
}
