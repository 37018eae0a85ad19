//! A bound address is the address others see: a session listening on a
//! specific local address announces to trackers and dials peers from that
//! address, so that those who learn it from a tracker can reach it.
//!
//! On loopback, which has all of 127/8: a seeder bound to 127.0.0.2 and
//! trackers on 127.0.0.1 (left to itself the kernel would send from
//! 127.0.0.1, where the seeder does not listen). Run inside `unshare -n`
//! like the other session tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capwise_engine::create::{create_torrent, CreateOptions};
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const LIMIT: Duration = Duration::from_secs(30);
const SEEDER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Who announced, as the tracker saw them: source address and the port
/// they said they listen on.
type Seen = Arc<Mutex<Vec<SocketAddr>>>;

/// These IPv4 peers in the compact form (BEP 23).
fn compact(seen: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in seen {
        if let SocketAddr::V4(v4) = a {
            out.extend_from_slice(&v4.ip().octets());
            out.extend_from_slice(&v4.port().to_be_bytes());
        }
    }
    out
}

/// Records an announcer's source IP with the `port` it gave, and returns
/// everyone recorded so far, compact.
fn record(seen: &Seen, from: IpAddr, port: u16) -> Vec<u8> {
    let mut seen = seen.lock().unwrap();
    let me = SocketAddr::new(from, port);
    if !seen.contains(&me) {
        seen.push(me);
    }
    compact(&seen)
}

/// An HTTP tracker on 127.0.0.1 (BEP 3, compact replies).
async fn http_tracker() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let seen = Seen::default();
    let record_in = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, from)) = listener.accept().await else {
                return;
            };
            let seen = record_in.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let port = head
                    .split(['?', '&', ' '])
                    .find_map(|kv| kv.strip_prefix("port="))
                    .and_then(|p| p.parse::<u16>().ok())
                    .unwrap_or(0);
                let peers = record(&seen, from.ip(), port);
                let mut body = format!("d8:intervali1800e5:peers{}:", peers.len()).into_bytes();
                body.extend_from_slice(&peers);
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
    (url, seen)
}

/// A UDP tracker on 127.0.0.1 (BEP 15).
async fn udp_tracker() -> (String, Seen) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = format!("udp://{}/announce", socket.local_addr().unwrap());
    let seen = Seen::default();
    let record_in = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let packet = &buf[..n];
            if n < 16 {
                continue;
            }
            let action = u32::from_be_bytes(packet[8..12].try_into().unwrap());
            let tid = &packet[12..16];
            let mut reply = Vec::new();
            match action {
                0 => {
                    reply.extend_from_slice(&0u32.to_be_bytes());
                    reply.extend_from_slice(tid);
                    reply.extend_from_slice(&0x5eed_u64.to_be_bytes());
                }
                1 if n >= 98 => {
                    let port = u16::from_be_bytes(packet[96..98].try_into().unwrap());
                    let peers = record(&record_in, from.ip(), port);
                    reply.extend_from_slice(&1u32.to_be_bytes());
                    reply.extend_from_slice(tid);
                    for word in [1800u32, 0, 1] {
                        reply.extend_from_slice(&word.to_be_bytes());
                    }
                    reply.extend_from_slice(&peers);
                }
                _ => continue,
            }
            let _ = socket.send_to(&reply, from).await;
        }
    });
    (url, seen)
}

fn payload(dir: &Path, tracker: &str) -> Metainfo {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let bytes: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("a.bin"), bytes).unwrap();
    let opts = CreateOptions {
        path: data,
        trackers: vec![tracker.to_owned()],
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    Metainfo::from_bytes(&create_torrent(&opts).unwrap()).unwrap()
}

async fn session_at(listen: &str) -> Session {
    let config = SessionConfig {
        listen: listen.parse().unwrap(),
        ..SessionConfig::default()
    };
    Session::start(config, Hooks::default()).await.unwrap()
}

async fn add(session: &Session, meta: &Metainfo, dir: &Path) -> TorrentHandle {
    session
        .add_torrent(meta.clone(), dir.to_path_buf(), TorrentOptions::default())
        .await
        .unwrap()
}

/// The tracker's record of `port`, once it has one.
async fn seen_with_port(seen: &Seen, port: u16) -> SocketAddr {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(a) = seen.lock().unwrap().iter().find(|a| a.port() == port) {
            return *a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no announce for port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A seeder bound to 127.0.0.2 is seen there by the tracker, and a leecher
/// that learns it from the tracker alone downloads from it.
async fn seeder_is_found_where_it_listens(url: String, seen: Seen) {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path(), &url);
    let seeder = session_at("127.0.0.2:0").await;
    let _seeding = add(&seeder, &meta, tmp.path()).await;
    let port = seeder.local_addr().port();
    assert_eq!(
        seen_with_port(&seen, port).await,
        SocketAddr::new(SEEDER_IP.into(), port),
        "the tracker saw the seeder's announce from the address it listens on"
    );

    let leecher = session_at("127.0.0.1:0").await;
    let mut leeching = add(&leecher, &meta, &tmp.path().join("leech")).await;
    tokio::time::timeout(LIMIT, leeching.wait_finished())
        .await
        .expect("the leecher reached the seeder the tracker named")
        .expect("no error");
    leecher.shutdown().await;
    seeder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_announce_leaves_from_the_listen_address() {
    let (url, seen) = http_tracker().await;
    seeder_is_found_where_it_listens(url, seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_announce_leaves_from_the_listen_address() {
    let (url, seen) = udp_tracker().await;
    seeder_is_found_where_it_listens(url, seen).await;
}

/// A peer we dial sees the connection come from our listen address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialled_peer_sees_the_listen_address() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = payload(tmp.path(), "http://127.0.0.1:9/announce");
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leecher = session_at("127.0.0.3:0").await;
    let leeching = add(&leecher, &meta, &tmp.path().join("leech")).await;
    leeching.connect(&[peer.local_addr().unwrap()]);
    let (_conn, from) = tokio::time::timeout(LIMIT, peer.accept())
        .await
        .expect("dialled in time")
        .unwrap();
    assert_eq!(from.ip(), IpAddr::from([127, 0, 0, 3]));
    leecher.shutdown().await;
}
