//! The DHT driver over real UDP sockets on loopback (127.0.0.1-3): a
//! bootstrap node and two nodes; one announces, the other finds it. Every
//! datagram goes through the gate and the counters, nothing is sent while
//! the WAN switch is off or the gate holds it, a read-only node answers no
//! query, the node id survives a restart through its state file, and
//! garbage does not stop a node. Runs inside `unshare -n` with scripts/test
//! (loopback only).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capwise_dht::krpc::{Body, Message, Query};
use capwise_dht::{Event, NodeId};
use capwise_engine::dht::{spawn, DhtHandle, DhtHooks, DhtOptions};
use capwise_engine::hooks::{ByteGate, Counters, Direction, GateFuture, PeerClass, Switch};
use capwise_engine::metainfo::InfoHash;
use capwise_engine::udp::UdpEndpoint;
use capwise_proto::privacy::PublicTorrent;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Counts what it admits; holds everything while `closed`.
#[derive(Default)]
struct Gate {
    admitted: AtomicU64,
    closed: AtomicBool,
}

impl ByteGate for Gate {
    fn acquire(&self, direction: Direction, class: PeerClass, bytes: u64) -> GateFuture<'_> {
        assert_eq!((direction, class), (Direction::Up, PeerClass::Wan));
        if self.closed.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        self.admitted.fetch_add(bytes, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
}

struct Node {
    handle: DhtHandle,
    events: mpsc::Receiver<Event>,
    gate: Arc<Gate>,
    counters: Arc<Counters>,
    wan: Switch,
    read_only: Switch,
    addr: SocketAddr,
    _endpoint: UdpEndpoint,
}

impl Node {
    fn sent(&self) -> u64 {
        self.counters.overhead(Direction::Up, PeerClass::Wan)
    }
}

async fn node_with(
    ip: &str,
    bootstrap: &[SocketAddr],
    state_file: Option<PathBuf>,
    gate: Arc<Gate>,
) -> Node {
    let counters = Arc::new(Counters::default());
    let (endpoint, receivers) = UdpEndpoint::bind(
        format!("{ip}:0").parse().unwrap(),
        counters.clone(),
        capwise_dht::krpc::MAX_PACKET,
    )
    .await
    .unwrap();
    let wan = Switch::new(true);
    let read_only = Switch::new(false);
    let hooks = DhtHooks {
        gate: gate.clone(),
        counters: counters.clone(),
        wan: wan.clone(),
        read_only: read_only.clone(),
    };
    let options = DhtOptions {
        bootstrap: bootstrap.iter().map(|a| a.to_string()).collect(),
        state_file,
        node: None,
    };
    let (handle, events) = spawn(endpoint.socket(), receivers.dht, options, hooks);
    Node {
        handle,
        events,
        gate,
        counters,
        wan,
        read_only,
        addr: endpoint.local_addr().unwrap(),
        _endpoint: endpoint,
    }
}

async fn node(ip: &str, bootstrap: &[SocketAddr]) -> Node {
    node_with(ip, bootstrap, None, Arc::new(Gate::default())).await
}

async fn wait_for(node: &mut Node, want: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = node.events.recv().await.expect("driver running");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event in time")
}

fn public() -> PublicTorrent {
    PublicTorrent::check(false).unwrap()
}

/// Sends a ping from a plain socket; the answer, if one comes within 500 ms.
async fn ping(to: SocketAddr) -> Option<Body> {
    let socket = UdpSocket::bind("127.0.0.9:0").await.unwrap();
    let msg = Message {
        tid: b"pg".to_vec(),
        read_only: false,
        body: Body::Query {
            id: NodeId([9; 20]),
            query: Query::Ping,
        },
    };
    socket.send_to(&msg.encode(), to).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(Message::decode(&buf[..n]).ok()?.body)
}

#[tokio::test]
async fn two_drivers_find_each_other_through_a_bootstrap_node() {
    let boot = node("127.0.0.1", &[]).await;
    let mut a = node("127.0.0.2", &[boot.addr]).await;
    wait_for(&mut a, |e| matches!(e, Event::Bootstrapped { .. })).await;
    let mut b = node("127.0.0.3", &[boot.addr]).await;
    wait_for(&mut b, |e| matches!(e, Event::Bootstrapped { .. })).await;

    let h = InfoHash([0x77; 20]);
    a.handle.announce(h, public(), Some(7000)).await;
    let done = wait_for(&mut a, |e| matches!(e, Event::LookupDone { .. })).await;
    assert!(
        matches!(done, Event::LookupDone { announced, .. } if announced >= 1),
        "{done:?}"
    );
    b.handle.get_peers(h, public()).await;
    let Event::Peers { peers, .. } = wait_for(&mut b, |e| matches!(e, Event::Peers { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(peers, vec![SocketAddr::from(([127, 0, 0, 2], 7000))]);

    // Every datagram was debited, then counted; what arrived was counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in [&a, &b, &boot] {
        assert!(n.sent() > 0);
        assert_eq!(n.gate.admitted.load(Ordering::SeqCst), n.sent());
        assert!(n.counters.overhead(Direction::Down, PeerClass::Wan) > 0);
        assert_eq!(n.counters.overhead(Direction::Up, PeerClass::Lan), 0);
    }

    // WAN off: nothing leaves, even for a new lookup, and pings go unanswered.
    b.wan.set(false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = b.sent();
    b.handle.get_peers(InfoHash([0x78; 20]), public()).await;
    assert_eq!(ping(b.addr).await, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.sent(), before);
    // On again: the waiting lookup goes on and ends.
    b.wan.set(true);
    wait_for(
        &mut b,
        |e| matches!(e, Event::LookupDone { info_hash, .. } if info_hash.0 == [0x78; 20]),
    )
    .await;
    assert!(b.sent() > before);
    assert!(matches!(ping(b.addr).await, Some(Body::Response(_))));

    // Read-only (BEP 43): queries go unanswered, lookups still work.
    b.read_only.set(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ping(b.addr).await, None);
    assert!(b.handle.inspect().await.unwrap().read_only);
    b.handle.get_peers(h, public()).await;
    let found = wait_for(&mut b, |e| matches!(e, Event::Peers { .. })).await;
    assert!(matches!(found, Event::Peers { peers, .. } if peers.len() == 1));
    b.read_only.set(false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(ping(b.addr).await, Some(Body::Response(_))));
}

#[tokio::test]
async fn a_held_gate_sends_nothing_and_the_node_still_answers_its_handle() {
    let boot = node("127.0.0.1", &[]).await;
    let gate = Arc::new(Gate {
        closed: AtomicBool::new(true),
        ..Gate::default()
    });
    let held = node_with("127.0.0.2", &[boot.addr], None, gate).await;
    // Its bootstrap query waits at the gate past its time-out and is dropped.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let snapshot = held.handle.inspect().await.expect("driver running");
    assert_eq!(snapshot.nodes, 0);
    assert_eq!(held.sent(), 0);
    assert_eq!(boot.counters.overhead(Direction::Down, PeerClass::Wan), 0);
}

#[tokio::test]
async fn the_node_id_and_table_survive_a_restart_and_a_damaged_file_means_a_fresh_id() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dht.dat");
    let boot = node("127.0.0.1", &[]).await;
    let mut first = node_with(
        "127.0.0.2",
        &[boot.addr],
        Some(file.clone()),
        Arc::new(Gate::default()),
    )
    .await;
    wait_for(&mut first, |e| matches!(e, Event::Bootstrapped { .. })).await;
    let id = first.handle.inspect().await.unwrap().id;
    first.handle.shutdown().await;
    assert!(first.handle.inspect().await.is_none(), "the driver stopped");
    drop(first);

    // No bootstrap this time: the saved table is all it knows.
    let again = node_with(
        "127.0.0.2",
        &[],
        Some(file.clone()),
        Arc::new(Gate::default()),
    )
    .await;
    let snapshot = again.handle.inspect().await.unwrap();
    assert_eq!(snapshot.id, id);
    assert!(snapshot.nodes >= 1, "{snapshot:?}");
    again.handle.shutdown().await;
    drop(again);

    std::fs::write(&file, b"d2:id3:abce garbage").unwrap();
    let fresh = node_with(
        "127.0.0.2",
        &[],
        Some(file.clone()),
        Arc::new(Gate::default()),
    )
    .await;
    let snapshot = fresh.handle.inspect().await.unwrap();
    assert_ne!(snapshot.id, id);
    assert_eq!(snapshot.nodes, 0);
    // The fresh id replaces the damaged file at shutdown.
    fresh.handle.shutdown().await;
    let saved = std::fs::read(&file).unwrap();
    assert!(capwise_dht::Dht::restore(
        &saved,
        capwise_dht::Config::default(),
        std::time::Instant::now()
    )
    .is_ok());
}

#[tokio::test]
async fn garbage_and_a_flood_do_not_stop_a_node() {
    let boot = node("127.0.0.1", &[]).await;
    let socket = UdpSocket::bind("127.0.0.5:0").await.unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        b"d".to_vec(),
        b"de".to_vec(),
        b"d1:y1:qe".to_vec(),
        b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe".to_vec(),
        b"d1:ai5e1:q4:ping1:t2:aa1:y1:qe".to_vec(),
        b"d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa5:nodesi3ee1:t2:zz1:y1:re".to_vec(),
        vec![b'd'; 60_000],
        vec![0xff; 1500],
    ];
    junk.extend((0..50).map(|i| (0..(i * 37 % 1400)).map(|j| (i * 31 + j) as u8).collect()));
    for d in &junk {
        socket.send_to(d, boot.addr).await.unwrap();
    }
    // A flood of valid pings from one address: answered within its limit.
    let ping = Message {
        tid: b"fl".to_vec(),
        read_only: false,
        body: Body::Query {
            id: NodeId([5; 20]),
            query: Query::Ping,
        },
    }
    .encode();
    for _ in 0..2000 {
        socket.send_to(&ping, boot.addr).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snapshot = boot.handle.inspect().await.expect("node running");
    assert!(snapshot.stats.malformed >= 5, "{snapshot:?}");
    assert!(snapshot.stats.answered <= 20, "{snapshot:?}");
    assert!(snapshot.stats.rate_limited > 100, "{snapshot:?}");
    // And it still serves an honest node.
    let mut honest = node("127.0.0.2", &[boot.addr]).await;
    let done = wait_for(&mut honest, |e| matches!(e, Event::Bootstrapped { .. })).await;
    assert!(matches!(done, Event::Bootstrapped { nodes } if nodes >= 1));
}
