//! QUIC between capwise agents on loopback: two sessions meet over TCP,
//! move onto QUIC (the lower agent id dials, pinned to the other's key)
//! and the download runs there, the TCP connection closed; a peer that
//! offers QUIC under a key its endpoint does not hold is refused and the
//! TCP connection goes on; with an allow-list, a listed agent moves onto
//! QUIC and unlisted ones stay on TCP, whichever side would dial.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::ext::quic::{peer_offer, QuicOffer};
use capwise_engine::hooks::{ByteGate, Direction, GateFuture, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};
use capwise_engine::transport::allow_list::AllowList;
use capwise_engine::transport::identity::{AgentId, Identity};
use capwise_engine::transport::quic::QuicEndpoint;
use capwise_engine::transport::{TransportKind, Transports};
use capwise_engine::wire::{self, Handshake, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);

/// Holds every download until opened: no payload moves before the test
/// has seen the connection move onto QUIC.
struct HeldGate(tokio::sync::watch::Sender<bool>);

impl ByteGate for HeldGate {
    fn acquire(&self, _: Direction, _: PeerClass, _: u64) -> GateFuture<'_> {
        let mut open = self.0.subscribe();
        Box::pin(async move {
            let _ = open.wait_for(|o| *o).await;
        })
    }
}

fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 7;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

fn make_payload(dir: &Path, len: usize) -> Metainfo {
    let data_dir = dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("a.bin"), pattern(len)).unwrap();
    let opts = CreateOptions {
        path: data_dir,
        piece_length: Some(256 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

fn with_quic() -> SessionConfig {
    SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        transports: "tcp,quic".parse::<Transports>().unwrap(),
        ..SessionConfig::default()
    }
}

/// A session with QUIC under `identity`, accepting only `allow` if given;
/// without PEX, so that leechers meet the seeder only.
fn with_quic_as(identity: Arc<Identity>, allow: Option<Arc<AllowList>>) -> SessionConfig {
    let mut config = SessionConfig {
        quic_identity: Some(identity),
        quic_allow: allow,
        ..with_quic()
    };
    config.swarm.pex = false;
    config
}

/// A new identity whose id's first byte is in the middle half (0x40 to
/// 0xbf), so that a quarter of all keys lie on either side of it and
/// [`identity_beside`] finds one soon (half of all keys are: 64 tries
/// fail once in 2^64).
fn identity_in_the_middle() -> Arc<Identity> {
    for _ in 0..64 {
        let identity = Identity::ephemeral().unwrap();
        if (0x40..0xc0).contains(&identity.id().0[0]) {
            return Arc::new(identity);
        }
    }
    panic!("no key in the middle half");
}

/// A new identity whose id is on the `lower` side of `than`; for `than`
/// from [`identity_in_the_middle`] at least a quarter of all keys are (64
/// tries fail about once in 10^8).
fn identity_beside(than: AgentId, lower: bool) -> Arc<Identity> {
    for _ in 0..64 {
        let identity = Identity::ephemeral().unwrap();
        if (identity.id() < than) == lower {
            return Arc::new(identity);
        }
    }
    panic!("no key on that side of {than}");
}

/// Waits (bounded) until `what` holds.
/// Every carrier seen on `handle`'s peers until its wanted data is in
/// (bounded: the LIMIT), sampled every 10 ms.
fn watch_carriers(
    handle: capwise_engine::session::TorrentHandle,
) -> tokio::task::JoinHandle<std::collections::HashSet<TransportKind>> {
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..(LIMIT.as_millis() / 10) {
            for p in handle.peer_list() {
                seen.insert(p.transport);
            }
            if handle.progress().wanted_have >= handle.progress().wanted_length {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    })
}

async fn until(what: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The seeder and a friend list each other; of two strangers, the one
/// with the lower id than the seeder's dials it and is refused by its
/// client-certificate check, the one with the higher id is never dialled
/// (the seeder's allow-list does not name it). All three downloads finish:
/// the friend's over QUIC, the strangers' over TCP, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_moves_listed_agents_onto_quic_and_leaves_others_on_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 2 * 1024 * 1024 + 77);
    let seeder_key = identity_in_the_middle();
    let friend_key = Arc::new(Identity::ephemeral().unwrap());
    let list = Arc::new(AllowList::new([seeder_key.id(), friend_key.id()]));
    let seeder_id = seeder_key.id();
    let seeder = Session::start(
        with_quic_as(seeder_key, Some(list.clone())),
        Hooks::default(),
    )
    .await
    .unwrap();
    let seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let (open, _) = tokio::sync::watch::channel(false);
    let gate = Arc::new(HeldGate(open));
    let mut leechers = Vec::new();
    for (name, key, allow) in [
        ("friend", friend_key, Some(list)),
        ("low", identity_beside(seeder_id, true), None),
        ("high", identity_beside(seeder_id, false), None),
    ] {
        let hooks = Hooks {
            gate: gate.clone(),
            ..Hooks::default()
        };
        let session = Session::start(with_quic_as(key, allow), hooks)
            .await
            .unwrap();
        let dir = tmp.path().join(name);
        let handle = session
            .add_torrent(meta.clone(), dir.clone(), TorrentOptions::default())
            .await
            .unwrap();
        handle.connect(&[seeder.local_addr()]);
        leechers.push((name, session, handle, dir));
    }
    let transports = |h: &capwise_engine::session::TorrentHandle| {
        h.peer_list()
            .iter()
            .map(|p| p.transport)
            .collect::<Vec<_>>()
    };
    let friend = leechers[0].2.clone();
    assert!(
        until(|| transports(&friend) == [TransportKind::Quic]).await,
        "the friend moved onto QUIC: {:?}",
        transports(&friend)
    );
    assert!(
        until(|| seeder.quic_refused_agents() == 1).await,
        "the low stranger dialled and its key was refused"
    );
    // The high stranger's offer came in long ago: the seeder did not dial.
    assert!(until(|| seeding.peer_list().len() == 3).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut kinds: Vec<_> = seeding.peer_list().iter().map(|p| p.transport).collect();
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        kinds,
        vec![TransportKind::Quic, TransportKind::Tcp, TransportKind::Tcp]
    );
    assert_eq!(seeder.quic_refused_agents(), 1, "nobody else was refused");
    for (name, _, handle, _) in &leechers {
        let expected = if *name == "friend" {
            TransportKind::Quic
        } else {
            TransportKind::Tcp
        };
        assert_eq!(transports(handle), vec![expected], "{name}");
    }

    // Every carrier each leecher shows while its payload moves (bounded:
    // the LIMIT), watched from before the gate opens.
    let watchers: Vec<_> = leechers
        .iter()
        .map(|(_, _, handle, _)| {
            let watcher = handle.clone();
            tokio::spawn(async move {
                let mut seen = std::collections::BTreeSet::new();
                for _ in 0..(LIMIT.as_millis() / 10) {
                    let progress = watcher.progress();
                    if progress.wanted_have >= progress.wanted_length {
                        break;
                    }
                    seen.extend(
                        watcher
                            .peer_list()
                            .iter()
                            .map(|p| format!("{:?}", p.transport)),
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                seen
            })
        })
        .collect();
    gate.0.send_replace(true);
    for ((name, session, mut handle, dir), watching) in leechers.into_iter().zip(watchers) {
        tokio::time::timeout(LIMIT, handle.wait_finished())
            .await
            .unwrap_or_else(|_| panic!("{name}: download in time"))
            .expect("no error");
        let seen = watching.await.unwrap();
        let expected = if name == "friend" { "Quic" } else { "Tcp" };
        assert!(seen.iter().eq([expected]), "{name}: carriers seen {seen:?}");
        assert!(
            std::fs::read(dir.join("data/a.bin")).unwrap()
                == std::fs::read(tmp.path().join("data/a.bin")).unwrap(),
            "{name}: the bytes differ"
        );
        session.shutdown().await;
    }
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_meet_over_tcp_and_finish_over_quic() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 6 * 1024 * 1024 + 123);
    let total = meta.info.total_length;
    let seeder = Session::start(with_quic(), Hooks::default()).await.unwrap();
    let seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let (open, _) = tokio::sync::watch::channel(false);
    let gate = Arc::new(HeldGate(open));
    let hooks = Hooks {
        gate: gate.clone(),
        ..Hooks::default()
    };
    let leecher = Session::start(with_quic(), hooks).await.unwrap();
    assert!(leecher.quic_addr().is_some() && seeder.agent_id().is_some());
    assert_ne!(leecher.agent_id(), seeder.agent_id());
    let leech_dir = tmp.path().join("leech");
    let mut handle = leecher
        .add_torrent(meta.clone(), leech_dir.clone(), TorrentOptions::default())
        .await
        .unwrap();
    // Only TCP is dialled: QUIC needs the offer.
    let at: SocketAddr = seeder.local_addr();
    handle.connect(&[at]);

    // Both ends move the one peer onto QUIC, whichever of them dialled it.
    let mut moved = false;
    for _ in 0..100 {
        let (ours, theirs) = (handle.peer_list(), seeding.peer_list());
        if ours.len() == 1
            && theirs.len() == 1
            && ours[0].transport == TransportKind::Quic
            && theirs[0].transport == TransportKind::Quic
        {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peers = handle.peer_list();
    assert!(
        moved,
        "not moved onto QUIC: {:?}",
        peers.iter().map(|p| p.transport).collect::<Vec<_>>()
    );
    // The QUIC connection keeps the address the peer is known (and dialled) at.
    assert_eq!(peers[0].addr, at);
    assert_eq!(
        handle.counters().payload(Direction::Down, PeerClass::Lan),
        0,
        "no payload moved before the gate opened"
    );

    // Only now may payload move, and there is no TCP connection left to
    // carry it.
    gate.0.send_replace(true);
    let watching = watch_carriers(handle.clone());
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    let seen = watching.await.unwrap();
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![TransportKind::Quic],
        "only QUIC carried the download"
    );
    assert!(
        std::fs::read(tmp.path().join("data/a.bin")).unwrap()
            == std::fs::read(leech_dir.join("data/a.bin")).unwrap(),
        "the bytes differ"
    );
    let down = handle.counters();
    let payload = down.payload(Direction::Down, PeerClass::Lan);
    assert!(payload >= total, "received {payload} of {total}");
    // QUIC's headers and ACKs beyond the peer wire's own framing (13 bytes
    // a block): at least 20 bytes a datagram of at most 1500.
    let overhead = down.overhead(Direction::Down, PeerClass::Lan);
    assert!(
        overhead >= total / 1500 * 20,
        "QUIC overhead counted: {overhead} for {total}"
    );
    let up = seeding.counters();
    assert!(up.payload(Direction::Up, PeerClass::Lan) >= total);
    leecher.shutdown().await;
    seeder.shutdown().await;
}

/// A peer over TCP that offers QUIC under a key its endpoint does not
/// hold: the session dials, refuses the certificate, and the TCP
/// connection goes on (it answers a ut_metadata request over it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_fingerprint_is_refused_and_tcp_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 300_000);
    let seeder = Session::start(with_quic(), Hooks::default()).await.unwrap();
    let seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    // A real endpoint with a key of its own, offered under another id: the
    // highest there is, so the seeder is the side that dials.
    let (impostor, mut streams) = QuicEndpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Identity::ephemeral().unwrap()),
    )
    .unwrap();
    let offer = QuicOffer {
        port: impostor.local_addr().unwrap().port(),
        fingerprint: [0xff; 32],
    };

    let mut tcp = tokio::net::TcpStream::connect(seeder.local_addr())
        .await
        .unwrap();
    let ours = Handshake::new(meta.info_hash.0, *b"-XX0001-impostor0001");
    tcp.write_all(&ours.encode()).await.unwrap();
    let mut theirs = [0u8; 68];
    tokio::time::timeout(LIMIT, tcp.read_exact(&mut theirs))
        .await
        .unwrap()
        .unwrap();
    assert!(Handshake::decode(&theirs).unwrap().supports_extensions());
    let ext = capwise_engine::wire::extension::our_handshake_offering(
        0,
        250,
        None,
        &[],
        None,
        Some(&offer),
    );
    let mut out = BytesMut::new();
    wire::encode(
        &Message::Extended {
            id: 0,
            payload: Bytes::from(ext),
        },
        &mut out,
    );
    tcp.write_all(&out).await.unwrap();

    // The seeder's own offer names its endpoint and agent id.
    let mut buf = BytesMut::new();
    let mut seeder_metadata_id = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seeder_metadata_id.is_none() {
        let msg = tokio::time::timeout_at(deadline, next_message(&mut tcp, &mut buf))
            .await
            .expect("the seeder's extension handshake in time");
        if let Message::Extended { id: 0, payload } = msg {
            let offered = peer_offer(&payload).expect("the seeder offers QUIC");
            assert_eq!(Some(offered.port), seeder.quic_addr().map(|a| a.port()));
            assert_eq!(Some(offered.fingerprint), seeder.agent_id().map(|id| id.0));
            seeder_metadata_id = capwise_engine::wire::extension::peer_ut_metadata(&payload).0;
        }
    }

    // It dialled the impostor, whose key it refused: no stream got through.
    for _ in 0..100 {
        if impostor.failed_handshakes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        impostor.failed_handshakes(),
        1,
        "the seeder dialled and refused the key"
    );
    assert!(streams.try_recv().is_err(), "no stream over a refused key");
    let kinds: Vec<_> = seeding.peer_list().iter().map(|p| p.transport).collect();
    assert_eq!(kinds, vec![TransportKind::Tcp]);

    // And TCP goes on: the seeder answers a metadata request over it.
    let mut out = BytesMut::new();
    wire::encode(
        &Message::Extended {
            id: seeder_metadata_id.expect("the seeder speaks ut_metadata"),
            payload: Bytes::from_static(b"d8:msg_typei0e5:piecei0ee"),
        },
        &mut out,
    );
    tcp.write_all(&out).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, next_message(&mut tcp, &mut buf))
            .await
            .expect("a metadata answer over TCP in time");
        if let Message::Extended { id, payload } = msg {
            if id != 0 {
                assert!(
                    payload.starts_with(b"d8:msg_typei1e"),
                    "metadata data: {:?}",
                    &payload[..payload.len().min(40)]
                );
                break;
            }
        }
    }
    seeder.shutdown().await;
}

async fn next_message(tcp: &mut tokio::net::TcpStream, buf: &mut BytesMut) -> Message {
    loop {
        if let Some(msg) = wire::decode(buf, 1 << 20).unwrap() {
            return msg;
        }
        let n = tcp.read_buf(buf).await.unwrap();
        assert!(n > 0, "the seeder closed the TCP connection");
    }
}

/// A background torrent (its own carriers: uTP, then TCP) is not moved
/// onto QUIC, whose controller is CUBIC: between two QUIC-capable agents
/// it finishes on the carrier it started on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_torrent_stays_off_quic() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = make_payload(tmp.path(), 2 * 1024 * 1024 + 7);
    let seeder = Session::start(with_quic(), Hooks::default()).await.unwrap();
    seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let leecher = Session::start(with_quic(), Hooks::default()).await.unwrap();
    let mut handle = leecher
        .add_torrent(
            meta.clone(),
            tmp.path().join("leech"),
            TorrentOptions {
                transports: Some(Transports::background()),
                ..TorrentOptions::default()
            },
        )
        .await
        .unwrap();
    handle.connect(&[seeder.local_addr()]);
    let watching = watch_carriers(handle.clone());
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("download in time")
        .expect("no error");
    let seen = watching.await.unwrap();
    assert!(!seen.is_empty(), "no peer seen");
    assert!(
        !seen.contains(&TransportKind::Quic),
        "a background torrent moved onto QUIC: {seen:?}"
    );
    leecher.shutdown().await;
    seeder.shutdown().await;
}
