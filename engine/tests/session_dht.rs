//! Sessions that find each other through the DHT alone, on loopback: a
//! bootstrap session (127.0.0.1), a seeder (127.0.0.2) and a leecher
//! (127.0.0.3) given only a magnet's info-hash (no tracker, no peer). The
//! seeder also seeds a private torrent, which its DHT never announces.
//! Every DHT datagram the sessions send is WAN overhead in their counters.
//! Garbage and a flood at the sessions' UDP ports stop neither the sessions
//! nor the download, and the flood is answered only within its limit.
//! Runs inside `unshare -n` with scripts/test (loopback only).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capwise_dht::krpc::{Body, Message, Query};
use capwise_dht::NodeId;
use tokio::net::UdpSocket;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::dht::DhtOptions;
use capwise_engine::hooks::{Direction, PeerClass};
use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};

const LIMIT: Duration = Duration::from_secs(40);

fn config(ip: &str, bootstrap: &[String], state: Option<&Path>) -> SessionConfig {
    SessionConfig {
        listen: format!("{ip}:0").parse().unwrap(),
        dht: Some(DhtOptions {
            bootstrap: bootstrap.to_vec(),
            state_file: state.map(|d| d.join("dht.dat")),
            node: None,
        }),
        ..SessionConfig::default()
    }
}

fn make_payload(dir: &Path, name: &str, private: bool) -> Metainfo {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..4u32 {
        std::fs::write(
            data.join(format!("f{i}.bin")),
            (i + u32::from(private)).to_le_bytes().repeat(40_000),
        )
        .unwrap();
    }
    let opts = CreateOptions {
        path: data,
        piece_length: Some(32 * 1024),
        private,
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_finds_its_seeder_through_the_dht_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let public = make_payload(tmp.path(), "public", false);
    let private = make_payload(tmp.path(), "private", true);

    let boot = Session::start(config("127.0.0.1", &[], None), Hooks::default())
        .await
        .unwrap();
    let bootstrap = vec![boot.local_addr().to_string()];
    let seed_state = tmp.path().join("seed-state");
    std::fs::create_dir_all(&seed_state).unwrap();
    let seeder = Session::start(
        config("127.0.0.2", &bootstrap, Some(&seed_state)),
        Hooks::default(),
    )
    .await
    .unwrap();
    for meta in [&public, &private] {
        seeder
            .add_torrent(
                meta.clone(),
                tmp.path().to_path_buf(),
                TorrentOptions::default(),
            )
            .await
            .unwrap();
    }

    // The seeder's announce reached the bootstrap node (else the leecher's
    // first lookup could come too early and the next is minutes away).
    tokio::time::timeout(LIMIT, async {
        while boot.dht_snapshot().await.unwrap().stored.0 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the seeder announced");

    let leecher = Session::start(config("127.0.0.3", &bootstrap, None), Hooks::default())
        .await
        .unwrap();
    let mut handle = leecher
        .add_magnet(
            Magnet::new(public.info_hash),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .unwrap();
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("found through the DHT and downloaded in time")
        .expect("no error");
    let got = std::fs::read(tmp.path().join("leech/public/f3.bin")).unwrap();
    assert_eq!(
        got,
        std::fs::read(tmp.path().join("public/f3.bin")).unwrap()
    );

    // The bootstrap node holds announces for the public torrent (from the
    // seeder, and the leecher once it had a port to announce) and never the
    // private one: at most one info-hash.
    let snapshot = boot.dht_snapshot().await.expect("boot runs a DHT");
    assert_eq!(snapshot.stored.0, 1, "{snapshot:?}");
    // Every DHT datagram is WAN overhead (the payload went over loopback, LAN).
    let c = seeder.counters();
    assert!(c.overhead(Direction::Up, PeerClass::Wan) > 0);

    // The seeder's node id is written at shutdown and read at the next start.
    let id = seeder.dht_snapshot().await.unwrap().id;
    seeder.shutdown().await;
    assert!(seed_state.join("dht.dat").exists());
    let again = Session::start(
        config("127.0.0.2", &bootstrap, Some(&seed_state)),
        Hooks::default(),
    )
    .await
    .unwrap();
    assert_eq!(again.dht_snapshot().await.unwrap().id, id);
}

#[tokio::test]
async fn a_session_without_dht_options_runs_no_dht() {
    // Without uTP either (which shares the DHT's socket).
    let session = Session::start(
        SessionConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            transports: capwise_engine::transport::Transports::tcp_only(),
            ..SessionConfig::default()
        },
        Hooks::default(),
    )
    .await
    .unwrap();
    assert!(session.dht_snapshot().await.is_none());
    // No UDP socket on the listen port.
    let port = session.local_addr().port();
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
}

/// What no honest node sends: not bencode, cut short, wrongly typed or
/// missing fields, bogus tokens and ports, answers to no query, nesting far
/// past the decoder's depth, uTP-looking bytes, and datagrams far past the
/// largest KRPC packet.
fn hostile_datagrams() -> Vec<Vec<u8>> {
    let id = "i".repeat(20);
    let hash = "h".repeat(20);
    let mut out: Vec<Vec<u8>> = [
        String::new(),
        "d".into(),
        "de".into(),
        "d1:y1:qe".into(),
        "d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe".into(),
        "d1:ai5e1:q4:ping1:t2:aa1:y1:qe".into(),
        format!("d1:ad2:id20:{id}e1:q4:ping1:t2:aa1:y1:xe"),
        format!("d1:ad2:id20:{id}e1:q4:ping1:ti7e1:y1:qe"),
        format!("d1:ad2:id20:{id}e1:qi4e1:t2:aa1:y1:qe"),
        format!("d1:ad2:id20:{id}9:info_hash19:{}e1:q9:get_peers1:t2:aa1:y1:qe", "h".repeat(19)),
        format!("d1:ad2:id20:{id}6:target2:xxe1:q9:find_node1:t2:aa1:y1:qe"),
        format!("d1:ad2:id20:{id}9:info_hash20:{hash}4:porti99999999999999999999e5:token3:abce1:q13:announce_peer1:t2:aa1:y1:qe"),
        format!("d1:ad2:id20:{id}9:info_hash20:{hash}4:port4:68815:tokeni1ee1:q13:announce_peer1:t2:aa1:y1:qe"),
        format!("d1:ad2:id20:{id}9:info_hash20:{hash}4:porti6881e5:token8:forgede1:q13:announce_peer1:t2:aa1:y1:qe"),
        format!("d1:rd2:id20:{id}5:nodes25:{}e1:t2:zz1:y1:re", "n".repeat(25)),
        format!("d1:rd2:id20:{id}6:valuesi3ee1:t2:zz1:y1:re"),
        format!("d1:rd2:id20:{id}6:valuesl3:abc7:abcdefgee1:t2:zz1:y1:re"),
        format!("d1:rd2:id20:{id}5:tokendee1:t2:zz1:y1:re"),
        "d1:e4:oops1:t2:zz1:y1:ee".into(),
        "d1:eli201e3:abce1:t2:zz1:y1:ee".into(),
        format!("d1:ad2:id20:{id}e1:q4:ping1:t{}:{}1:y1:qe", 40, "t".repeat(40)),
        format!("d1:a{}{}e1:q4:ping1:t2:aa1:y1:qe", "l".repeat(900), "e".repeat(900)),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    out.push([b"d".as_slice(), &[b'x'; 60_000]].concat());
    out.push([0x41u8; 20].to_vec());
    out.push(vec![0xff; 1500]);
    out.extend((0..40u32).map(|i| {
        let mut d = vec![b'd'];
        d.extend((0..(i * 37 % 1400)).map(|j| (i * 31 + j) as u8));
        d
    }));
    out
}

/// A valid query from node `id` (a flood's unit).
fn query(id: u8, q: Query) -> Vec<u8> {
    Message {
        tid: vec![id, 1],
        read_only: false,
        body: Body::Query {
            id: NodeId([id; 20]),
            query: q,
        },
    }
    .encode()
}

/// A leecher finds its seeder through the DHT while one address sends its
/// DHT port, and the bootstrap node's, garbage and a flood of valid queries
/// (pings, get_peers, unknown methods) the whole time: neither session
/// stops, the magnet is fetched and downloaded, and the flooding address
/// gets no more answers from each than the per-source limit allows
/// (burst 10, then 5 a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_and_a_flood_do_not_stop_a_dht_download() {
    let tmp = tempfile::tempdir().unwrap();
    let public = make_payload(tmp.path(), "public", false);
    let boot = Session::start(config("127.0.0.1", &[], None), Hooks::default())
        .await
        .unwrap();
    let bootstrap = vec![boot.local_addr().to_string()];
    let seeder = Session::start(config("127.0.0.2", &bootstrap, None), Hooks::default())
        .await
        .unwrap();
    seeder
        .add_torrent(
            public.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    tokio::time::timeout(LIMIT, async {
        while boot.dht_snapshot().await.unwrap().stored.0 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the seeder announced");
    let leecher = Session::start(config("127.0.0.3", &bootstrap, None), Hooks::default())
        .await
        .unwrap();
    let targets = [
        leecher.dht_snapshot().await.unwrap().addr.unwrap(),
        boot.dht_snapshot().await.unwrap().addr.unwrap(),
    ];

    let hostile = hostile_datagrams();
    let flood: Vec<Vec<u8>> = (0..100u8)
        .map(|i| query(i, Query::Ping))
        .chain((0..20u8).map(|i| query(i, Query::GetPeers { info_hash: [i; 20] })))
        .chain((0..10u8).map(|i| {
            query(
                i,
                Query::Unknown {
                    method: b"vote".to_vec(),
                },
            )
        }))
        .collect();
    let attacker = Arc::new(UdpSocket::bind("127.0.0.5:0").await.unwrap());
    let answers: Arc<[AtomicU64; 2]> = Arc::default();
    let listen = tokio::spawn({
        let (socket, answers) = (attacker.clone(), answers.clone());
        async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                // Answers only: a node may also query us, as a node it heard of.
                let answer =
                    Message::decode(&buf[..n]).is_ok_and(|m| !matches!(m.body, Body::Query { .. }));
                if let Some(i) = targets.iter().position(|t| *t == from) {
                    if answer {
                        answers[i].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (first_round, started) = tokio::sync::oneshot::channel();
    let attack = tokio::spawn({
        let (socket, stop) = (attacker.clone(), stop.clone());
        async move {
            let mut first_round = Some(first_round);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for to in targets {
                    for d in hostile.iter().chain(&flood) {
                        // A datagram too large for the socket is refused
                        // here, not sent: that is fine.
                        if socket.send_to(d, to).await.is_ok() {
                            sent += 1;
                        }
                    }
                }
                if let Some(tx) = first_round.take() {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        }
    });
    started.await.unwrap();
    let attack_began = std::time::Instant::now();
    // A second of flood before the lookup: the queues are full when it starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut handle = leecher
        .add_magnet(
            Magnet::new(public.info_hash),
            tmp.path().join("leech"),
            TorrentOptions::default(),
        )
        .unwrap();
    tokio::time::timeout(LIMIT, handle.wait_finished())
        .await
        .expect("found through the DHT and downloaded in time, under fire")
        .expect("no error");
    // The flood lasts long enough for the refill rate to count, not just the burst.
    tokio::time::sleep_until((attack_began + Duration::from_secs(3)).into()).await;
    stop.store(true, Ordering::Relaxed);
    let sent = attack.await.unwrap();
    let attacked_for = attack_began.elapsed().as_secs_f64();
    // Answers still on their way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    listen.abort();
    assert_eq!(
        std::fs::read(tmp.path().join("leech/public/f3.bin")).unwrap(),
        std::fs::read(tmp.path().join("public/f3.bin")).unwrap()
    );

    // Both nodes still run, saw the garbage and refused most of the flood.
    let allowed = 10 + (5.0 * (attacked_for + 0.5)).ceil() as u64;
    for (i, session) in [&leecher, &boot].into_iter().enumerate() {
        let s = session.dht_snapshot().await.expect("the DHT still runs");
        let got = answers[i].load(Ordering::Relaxed);
        eprintln!(
            "target {i}: sent {sent} in {attacked_for:.1}s; answered {got}; stats {:?}",
            s.stats
        );
        assert!(s.stats.malformed >= 20, "{s:?}");
        assert!(s.stats.rate_limited >= 5000, "{s:?}");
        assert!(got >= 1, "the limit lets a few through: {got}");
        assert!(
            got <= allowed,
            "{got} answers to one address in {attacked_for:.1}s (at most {allowed})"
        );
    }
}
