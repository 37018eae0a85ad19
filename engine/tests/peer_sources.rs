//! Every connected peer records where we learnt of it: a peer a tracker
//! listed is `tracker`, one named by the caller (`--peer`, or a transport
//! the caller made) is `manual`, one that dialled us is `incoming`. Real
//! sessions on loopback (run inside `unshare -n` like the other session
//! tests) and an in-memory pipe.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capwise_engine::class::{PeerSource, PeerSources};
use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::hooks::{ByteGate, Direction, GateFuture, PeerClass};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};
use capwise_engine::transport::memory;
use capwise_engine::wire::BLOCK_SIZE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(30);

/// Payload never comes down: a leecher stays interested in the seeder, and
/// connected, for as long as the test looks. A debit under one block (a
/// magnet's small metadata) passes; payload credit is a block or more.
struct NoDownloads;

impl ByteGate for NoDownloads {
    fn acquire(&self, direction: Direction, _: PeerClass, bytes: u64) -> GateFuture<'_> {
        match direction {
            Direction::Down if bytes >= BLOCK_SIZE as u64 => Box::pin(std::future::pending()),
            _ => Box::pin(std::future::ready(())),
        }
    }
}

/// No PEX: the sessions here would tell each other of the peers they
/// have, and the counts would include `pex`.
fn config() -> SessionConfig {
    let mut config = SessionConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SessionConfig::default()
    };
    config.swarm.pex = false;
    config
}

fn payload(dir: &Path) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("a.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

/// An HTTP tracker that lists `peer` to everyone (compact, BEP 23).
async fn tracker_listing(peer: SocketAddr) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let SocketAddr::V4(v4) = peer else {
        panic!("an IPv4 peer")
    };
    let mut compact = v4.ip().octets().to_vec();
    compact.extend_from_slice(&v4.port().to_be_bytes());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let compact = compact.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut body = format!("d8:intervali1800e5:peers{}:", compact.len()).into_bytes();
                body.extend_from_slice(&compact);
                body.push(b'e');
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                reply.extend_from_slice(&body);
                let _ = conn.write_all(&reply).await;
            });
        }
    });
    url
}

fn no_downloads() -> Hooks {
    Hooks {
        gate: Arc::new(NoDownloads),
        ..Hooks::default()
    }
}

async fn leecher(meta: &Metainfo, dir: &Path) -> (Session, TorrentHandle) {
    let session = Session::start(config(), no_downloads()).await.unwrap();
    let handle = session
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap();
    (session, handle)
}

/// Waits until `handle` counts exactly `want` (and its progress as many peers).
async fn until_sources(handle: &TorrentHandle, want: &[(PeerSource, usize)], who: &str) {
    let expected = {
        let mut e = PeerSources::default();
        for &(source, n) in want {
            for _ in 0..n {
                e.add(source);
            }
        }
        e
    };
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let now = handle.peer_sources();
        if now == expected && handle.progress().peers == expected.total() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{who}: peers by source {now:?}, wanted {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_peers_are_counted_by_where_they_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path());
    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    let seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    until_sources(&seeding, &[], "seeder alone").await;

    // Found through a tracker.
    let mut tracked = meta.clone();
    tracked.trackers = vec![vec![tracker_listing(seeder.local_addr()).await]];
    let (_by_tracker, from_tracker) = leecher(&tracked, &tmp.path().join("t")).await;
    until_sources(
        &from_tracker,
        &[(PeerSource::Tracker, 1)],
        "tracker leecher",
    )
    .await;

    // Named by the user (`--peer`).
    let (_by_hand, from_peer_flag) = leecher(&meta, &tmp.path().join("m")).await;
    from_peer_flag.connect(&[seeder.local_addr()]);
    until_sources(
        &from_peer_flag,
        &[(PeerSource::Manual, 1)],
        "--peer leecher",
    )
    .await;

    // Over a transport the caller made.
    let (_by_pipe, over_pipe) = leecher(&meta, &tmp.path().join("p")).await;
    let (ours, theirs) = memory::pair(
        "127.0.0.1:50011".parse().unwrap(),
        "127.0.0.1:50012".parse().unwrap(),
        64 * 1024,
    );
    seeder.accept(theirs);
    over_pipe.connect_transport(ours);
    until_sources(&over_pipe, &[(PeerSource::Manual, 1)], "pipe leecher").await;

    // Each of them dialled the seeder.
    until_sources(&seeding, &[(PeerSource::Incoming, 3)], "seeder").await;
    assert_eq!(
        from_tracker.progress().pieces_have,
        0,
        "nothing was let down"
    );
}

/// A magnet's peers keep the source they were found by in its metadata
/// phase: a `tr=` tracker's peer is `tracker`, an `x.pe=` peer `manual`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnets_peers_keep_their_source_once_the_metadata_is_in() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path());
    let seeder = Session::start(config(), Hooks::default()).await.unwrap();
    let _seeding = seeder
        .add_torrent(
            meta.clone(),
            tmp.path().to_path_buf(),
            TorrentOptions::default(),
        )
        .await
        .unwrap();
    let hash = meta.info_hash.to_hex();
    let tracker = tracker_listing(seeder.local_addr()).await;
    let links = [
        (
            format!("magnet:?xt=urn:btih:{hash}&tr={tracker}"),
            PeerSource::Tracker,
        ),
        (
            format!("magnet:?xt=urn:btih:{hash}&x.pe={}", seeder.local_addr()),
            PeerSource::Manual,
        ),
    ];
    for (i, (link, source)) in links.into_iter().enumerate() {
        let session = Session::start(config(), no_downloads()).await.unwrap();
        let mut handle = session
            .add_magnet(
                capwise_engine::magnet::Magnet::parse(&link).unwrap(),
                tmp.path().join(format!("magnet{i}")),
                TorrentOptions::default(),
            )
            .unwrap();
        tokio::time::timeout(LIMIT, handle.wait_metadata())
            .await
            .expect("metadata in time")
            .expect("not removed");
        until_sources(&handle, &[(source, 1)], &link).await;
        session.shutdown().await;
    }
}
