//! Tracker clients against a real opentracker and against hostile servers,
//! all on loopback.
//!
//! The opentracker tests skip (with a note on stderr) when
//! `/usr/bin/opentracker` is not installed (`apt-get install -y opentracker`).

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capwise_engine::tracker::{
    announce, AnnounceEvent, AnnounceRequest, AnnounceResponse, TrackerError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const OPENTRACKER: &str = "/usr/bin/opentracker";
const TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// opentracker

/// A running opentracker, killed when dropped so no test leaves one behind,
/// even when it fails.
struct OpenTracker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (opentracker uses the same
/// number for both here). Racy by nature, but the window is tiny.
fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts opentracker on loopback, tracking only `hashes`; `None` when it is
/// not installed.
fn start_opentracker(hashes: &[[u8; 20]]) -> Option<OpenTracker> {
    if !Path::new(OPENTRACKER).exists() {
        assert!(
            std::env::var_os("CAPWISE_REQUIRE_TOOLS").is_none(),
            "{OPENTRACKER} not found and CAPWISE_REQUIRE_TOOLS is set"
        );
        eprintln!("note: {OPENTRACKER} not found, skipping (apt-get install -y opentracker)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    // opentracker chroots into the directory and drops to user `nobody`
    // before reading the whitelist, so both must be world-readable.
    let mut list = std::fs::File::create(dir.path().join("whitelist")).unwrap();
    // The probe hash goes last: once it is accepted, the list is loaded.
    for h in hashes.iter().chain([&PROBE_HASH]) {
        writeln!(list, "{}", hex(h)).unwrap();
    }
    drop(list);
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.path().join("whitelist"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let port = free_port();
    let port_arg = port.to_string();
    // `-i` must precede `-p`/`-P`, or the ports bind on every interface.
    let child = Command::new(OPENTRACKER)
        .args(["-i", "127.0.0.1", "-p", &port_arg, "-P", &port_arg, "-d"])
        .arg(dir.path())
        .args(["-w", "whitelist"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn opentracker");
    let mut tracker = OpenTracker {
        child,
        port,
        _dir: dir,
    };
    // Wait (bounded) until it listens AND has loaded the whitelist, which it
    // does after it starts accepting connections.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for _ in 0..100 {
        if let Ok(Some(status)) = tracker.child.try_wait() {
            panic!("opentracker exited early: {status}");
        }
        if probe_accepted(addr) {
            return Some(tracker);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("opentracker on {addr} did not become ready");
}

/// A whitelisted hash used only to see whether the whitelist is loaded.
const PROBE_HASH: [u8; 20] = [0xee; 20];

/// Whether opentracker answers an announce for [`PROBE_HASH`] without a
/// failure. It must be a real join (`started`): opentracker answers a
/// `stopped` announce without consulting the whitelist. The probe peer only
/// ever joins the probe torrent.
fn probe_accepted(addr: SocketAddr) -> bool {
    use std::io::Read as _;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let hash: String = PROBE_HASH.iter().map(|b| format!("%{b:02X}")).collect();
    let request = format!(
        "GET /announce?info_hash={hash}&peer_id=-CW0001-probeprobepr&port=1&uploaded=0\
         &downloaded=0&left=0&event=started&compact=1 HTTP/1.0\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut reply);
    reply.starts_with(b"HTTP/1.")
        && !reply.windows(14).any(|w| w == b"failure reason")
        && reply.windows(8).any(|w| w == b"interval")
}

fn request(info_hash: [u8; 20], id: u8, port: u16, event: AnnounceEvent) -> AnnounceRequest {
    let mut peer_id = *b"-CW0001-000000000000";
    peer_id[19] = id;
    AnnounceRequest {
        info_hash,
        peer_id,
        port,
        uploaded: 0,
        downloaded: 0,
        left: 1000,
        event,
        num_want: Some(50),
        key: u32::from(id),
    }
}

/// Two peers join, the second sees the first, the first leaves, and the
/// second no longer sees it.
async fn swarm_round_trip(url: &str, info_hash: [u8; 20]) {
    let a = SocketAddr::from((Ipv4Addr::LOCALHOST, 10001));
    let b = SocketAddr::from((Ipv4Addr::LOCALHOST, 10002));

    let first = announce(
        url,
        &request(info_hash, 1, a.port(), AnnounceEvent::Started),
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{url}: first announce: {e}"));
    assert!(first.interval > Duration::ZERO, "{first:?}");
    assert!(!first.peers.contains(&b), "{first:?}");

    let second = announce(
        url,
        &request(info_hash, 2, b.port(), AnnounceEvent::Started),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert!(second.peers.contains(&a), "{url}: {second:?}");
    assert_eq!(
        second.seeders.unwrap_or(0) + second.leechers.unwrap_or(0),
        2,
        "{second:?}"
    );

    announce(
        url,
        &request(info_hash, 1, a.port(), AnnounceEvent::Stopped),
        TIMEOUT,
    )
    .await
    .unwrap();
    let after = announce(
        url,
        &request(info_hash, 2, b.port(), AnnounceEvent::None),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert!(!after.peers.contains(&a), "{url}: {after:?}");
}

#[tokio::test]
async fn opentracker_http_and_udp() {
    let http_hash = [0x11; 20];
    let udp_hash = [0x22; 20];
    let Some(tracker) = start_opentracker(&[http_hash, udp_hash]) else {
        return;
    };
    let port = tracker.port;
    swarm_round_trip(&format!("http://127.0.0.1:{port}/announce"), http_hash).await;
    swarm_round_trip(&format!("udp://127.0.0.1:{port}/announce"), udp_hash).await;

    // A hash outside the whitelist is refused with a failure reason.
    let other = request([0x33; 20], 1, 10003, AnnounceEvent::Started);
    let err = announce(
        &format!("http://127.0.0.1:{port}/announce"),
        &other,
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TrackerError::Failure(_)), "{err:?}");
    drop(tracker);
}

// ---------------------------------------------------------------------------
// hostile HTTP trackers

const VALID_REPLY: &[u8] =
    b"d8:intervali900e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x1a\xe2e";
const TEN_MB: usize = 10 * 1024 * 1024;

#[derive(Clone, Copy)]
enum Hostile {
    /// 10 MB body announced by Content-Length.
    HugeWithLength,
    /// 10 MB body with no length, ended by closing the connection.
    HugeUntilClose,
    /// A tiny gzip body that inflates to more than 10 MB.
    GzipBomb,
    /// A bencode reply cut short.
    Truncated,
    /// A valid reply sent with chunked transfer encoding.
    Chunked,
    /// Accepts, reads the request, then says nothing.
    Silent,
    /// 500 Internal Server Error.
    ServerError,
    /// Redirects to itself forever.
    RedirectLoop,
}

fn gzip_bomb() -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..11 {
        enc.write_all(&zeros).unwrap();
    }
    enc.finish().unwrap()
}

/// Serves `kind` on 127.0.0.1, for at most 16 connections and 20 seconds.
async fn hostile_server(kind: Hostile) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tokio::time::timeout(Duration::from_secs(20), async move {
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(tokio::time::timeout(
                Duration::from_secs(20),
                handle(stream, kind),
            ));
        }
    }));
    addr
}

async fn handle(mut stream: TcpStream, kind: Hostile) {
    // Read the request head (bounded); its content does not matter.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    // Write errors are expected once the client gives up; they end the task.
    let _ = respond(&mut stream, kind).await;
}

async fn respond(stream: &mut TcpStream, kind: Hostile) -> std::io::Result<()> {
    match kind {
        Hostile::HugeWithLength | Hostile::HugeUntilClose => {
            let head = if matches!(kind, Hostile::HugeWithLength) {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {TEN_MB}\r\n\r\n")
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string()
            };
            stream.write_all(head.as_bytes()).await?;
            // A valid-looking start so only the size can be the problem.
            let mut body = format!("d5:peers{}:", TEN_MB - 12).into_bytes();
            body.resize(64 * 1024, b'x');
            let mut sent = 0;
            while sent < TEN_MB {
                let n = body.len().min(TEN_MB - sent);
                stream.write_all(&body[..n]).await?;
                sent += n;
                body.fill(b'x');
            }
        }
        Hostile::GzipBomb => {
            let body = gzip_bomb();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        Hostile::Truncated => {
            let body = &VALID_REPLY[..VALID_REPLY.len() - 5];
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
        }
        Hostile::Chunked => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await?;
            for chunk in VALID_REPLY.chunks(7) {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                stream.write_all(chunk).await?;
                stream.write_all(b"\r\n").await?;
                stream.flush().await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
        }
        Hostile::Silent => tokio::time::sleep(Duration::from_secs(10)).await,
        Hostile::ServerError => {
            stream
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
        }
        Hostile::RedirectLoop => {
            stream
                .write_all(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
        }
    }
    stream.flush().await?;
    stream.shutdown().await
}

async fn announce_to(kind: Hostile, timeout: Duration) -> Result<AnnounceResponse, TrackerError> {
    let addr = hostile_server(kind).await;
    let req = request([0x44; 20], 1, 6881, AnnounceEvent::Started);
    announce(&format!("http://{addr}/announce"), &req, timeout).await
}

#[tokio::test]
async fn huge_bodies_are_cut_off() {
    for kind in [Hostile::HugeWithLength, Hostile::HugeUntilClose] {
        let result = announce_to(kind, TIMEOUT).await;
        assert!(
            matches!(result, Err(TrackerError::TooLarge(_))),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn gzip_bomb_is_cut_off() {
    assert!(gzip_bomb().len() < 64 * 1024);
    let result = announce_to(Hostile::GzipBomb, TIMEOUT).await;
    assert!(
        matches!(result, Err(TrackerError::TooLarge(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn truncated_reply_is_malformed() {
    let result = announce_to(Hostile::Truncated, TIMEOUT).await;
    assert!(
        matches!(result, Err(TrackerError::Malformed(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn chunked_reply_is_read() {
    let reply = announce_to(Hostile::Chunked, TIMEOUT).await.unwrap();
    assert_eq!(reply.interval, Duration::from_secs(900));
    assert_eq!(
        reply.peers,
        vec![
            "127.0.0.1:6881".parse::<SocketAddr>().unwrap(),
            "127.0.0.2:6882".parse().unwrap()
        ]
    );
}

#[tokio::test]
async fn silent_server_times_out_on_time() {
    let timeout = Duration::from_millis(700);
    let start = Instant::now();
    let result = announce_to(Hostile::Silent, timeout).await;
    assert_eq!(result, Err(TrackerError::Timeout));
    assert!(
        start.elapsed() < timeout + Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn bad_status_and_redirect_loops_are_http_errors() {
    for kind in [Hostile::ServerError, Hostile::RedirectLoop] {
        let result = announce_to(kind, TIMEOUT).await;
        assert!(matches!(result, Err(TrackerError::Http(_))), "{result:?}");
    }
}

#[tokio::test]
async fn refused_connection_is_an_http_error() {
    let port = free_port();
    let req = request([0x44; 20], 1, 6881, AnnounceEvent::Started);
    let result = announce(&format!("http://127.0.0.1:{port}/announce"), &req, TIMEOUT).await;
    assert!(matches!(result, Err(TrackerError::Http(_))), "{result:?}");
}

// ---------------------------------------------------------------------------
// hostile and odd UDP trackers

/// How a fake UDP tracker answers.
#[derive(Clone, Copy)]
enum UdpMode {
    /// Never answers.
    Silent,
    /// Answers the connect request with an error packet.
    Error,
    /// Sends a stray packet with a wrong transaction id before each real
    /// answer; the client must skip it.
    StrayThenValid,
}

/// Runs a fake UDP tracker for at most 10 packets and 10 seconds.
async fn udp_server(mode: UdpMode) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(tokio::time::timeout(Duration::from_secs(10), async move {
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            if len < 16 {
                continue;
            }
            let action = &buf[8..12];
            let tid = &buf[12..16];
            let mut reply = Vec::new();
            match mode {
                UdpMode::Silent => continue,
                UdpMode::Error => {
                    reply.extend_from_slice(&3u32.to_be_bytes());
                    reply.extend_from_slice(tid);
                    reply.extend_from_slice(b"not today");
                }
                UdpMode::StrayThenValid => {
                    let mut stray = [0u8; 16];
                    stray[..4].copy_from_slice(action);
                    stray[4..8].copy_from_slice(
                        &(!u32::from_be_bytes(tid.try_into().unwrap())).to_be_bytes(),
                    );
                    let _ = socket.send_to(&stray, from).await;
                    if action == [0, 0, 0, 0] {
                        reply.extend_from_slice(&0u32.to_be_bytes());
                        reply.extend_from_slice(tid);
                        reply.extend_from_slice(&42u64.to_be_bytes());
                    } else if action == [0, 0, 0, 1] && len >= 98 && buf[..8] == 42u64.to_be_bytes()
                    {
                        reply.extend_from_slice(&1u32.to_be_bytes());
                        reply.extend_from_slice(tid);
                        reply.extend_from_slice(&600u32.to_be_bytes());
                        reply.extend_from_slice(&1u32.to_be_bytes());
                        reply.extend_from_slice(&2u32.to_be_bytes());
                        reply.extend_from_slice(&[127, 0, 0, 9, 0x1a, 0xe1]);
                    } else {
                        continue;
                    }
                }
            }
            let _ = socket.send_to(&reply, from).await;
        }
    }));
    addr
}

#[tokio::test]
async fn udp_silent_tracker_times_out_on_time() {
    let addr = udp_server(UdpMode::Silent).await;
    let timeout = Duration::from_millis(700);
    let start = Instant::now();
    let req = request([0x55; 20], 1, 6881, AnnounceEvent::Started);
    let result = announce(&format!("udp://{addr}/announce"), &req, timeout).await;
    assert_eq!(result, Err(TrackerError::Timeout));
    assert!(
        start.elapsed() < timeout + Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn udp_error_packet_is_a_failure() {
    let addr = udp_server(UdpMode::Error).await;
    let req = request([0x55; 20], 1, 6881, AnnounceEvent::Started);
    let result = announce(&format!("udp://{addr}"), &req, TIMEOUT).await;
    assert_eq!(result, Err(TrackerError::Failure("not today".into())));
}

#[tokio::test]
async fn udp_stray_packets_are_skipped() {
    let addr = udp_server(UdpMode::StrayThenValid).await;
    let req = request([0x55; 20], 1, 6881, AnnounceEvent::Started);
    let reply = announce(&format!("udp://{addr}/announce"), &req, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(reply.interval, Duration::from_secs(600));
    assert_eq!((reply.leechers, reply.seeders), (Some(1), Some(2)));
    assert_eq!(
        reply.peers,
        vec!["127.0.0.9:6881".parse::<SocketAddr>().unwrap()]
    );
}

#[tokio::test]
async fn udp_port_unreachable_is_an_io_error() {
    // Nothing listens there, so loopback answers with ICMP port unreachable,
    // which a connected UDP socket reports as a refused connection.
    let port = free_port();
    let req = request([0x55; 20], 1, 6881, AnnounceEvent::Started);
    let result = announce(&format!("udp://127.0.0.1:{port}"), &req, TIMEOUT).await;
    assert!(matches!(result, Err(TrackerError::Io(_))), "{result:?}");
}
