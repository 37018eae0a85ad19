//! Local service discovery (BEP 14) against libtorrent, on one LAN segment of network
//! namespaces this suite makes (`capwise_tests::lan`: veth legs on a bridge, so multicast
//! works), with no tracker and no DHT: every peer is found through LSD alone.
//!
//! - capwise gets a magnet link from a libtorrent seeder (`enable_lsd`), from a
//!   Transmission seeder (`lpd-enabled`; it announces within about 5 s of adding a torrent)
//!   and from an aria2 seeder (`--bt-enable-lpd` on the segment's interface);
//! - libtorrent gets a magnet link from a capwise seeder (capwise serves the metadata);
//! - hostile: while capwise downloads, another host sends garbage to the group (random bytes,
//!   oversized packets, malformed info-hashes), a flood of well-formed announces from one
//!   address, and announces carrying capwise's own cookie (sniffed off the segment) from
//!   another: capwise does not panic, its memory stays bounded, the flood gets at most a
//!   few dials, the spoofed cookie none, and the download completes.
//!
//! Run with `scripts/test` (inside `unshare -n`, feature `interop`). libtorrent announces a
//! torrent when it starts and capwise one second after, so each test waits a few seconds.

use anyhow::{ensure, Context, Result};
use capwise_tests::clients::aria2::{self, Aria2Opts};
use capwise_tests::clients::capwise::{self as cw, CapwiseOpts};
use capwise_tests::clients::libtorrent::{self, LtOpts};
use capwise_tests::clients::transmission::{Placement, Transmission};
use capwise_tests::lan::LanSegment;
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::{assert_same_tree, make_tree};
use capwise_tests::process::{dump_logs, wait_until, ChildGuard};
use capwise_tests::torrent::make_torrent;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound for each download: well under a minute (libtorrent and capwise announce at start).
const WAIT: Duration = Duration::from_secs(45);
const NAME: &str = "payload";
const MIB: u64 = 1 << 20;
const GROUP: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(Ipv4Addr::new(239, 192, 152, 143)),
    6771,
);

struct World {
    tmp: tempfile::TempDir,
    logs: PathBuf,
    torrent: PathBuf,
    hash: String,
}

impl World {
    /// A payload under `seed/payload` and a .torrent of it with no tracker.
    fn new(size: u64) -> Result<World> {
        assert_private_netns();
        cw::require_bin()?;
        let tmp = tempfile::Builder::new().prefix("capwise-lsd-").tempdir()?;
        let logs = tmp.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        make_tree(
            &tmp.path().join("seed").join(NAME),
            &[("a.bin", size), ("b.txt", 1234)],
            14,
        )?;
        let torrent = tmp.path().join("payload.torrent");
        let hash = make_torrent(
            &tmp.path().join("seed").join(NAME),
            &torrent,
            &[],
            256 * 1024,
            &logs,
        )?;
        Ok(World {
            tmp,
            logs,
            torrent,
            hash,
        })
    }

    fn seed_dir(&self) -> PathBuf {
        self.tmp.path().join("seed")
    }

    fn dir(&self, who: &str) -> PathBuf {
        self.tmp.path().join(who)
    }

    fn magnet(&self) -> PathBuf {
        // A bare magnet link: no tracker, no x.pe.
        PathBuf::from(format!("magnet:?xt=urn:btih:{}", self.hash))
    }

    fn verify(&self, dir: &Path) -> Result<()> {
        wait_until(
            "downloaded bytes to match",
            Duration::from_secs(20),
            Duration::from_millis(300),
            || Ok(assert_same_tree(&self.seed_dir().join(NAME), &dir.join(NAME)).is_ok()),
        )
    }

    /// `capwise SUB TORRENT -d DIR --listen 0.0.0.0:6881` with LSD on (the harness default is
    /// `--no-lsd`), logging when LSD starts on an interface.
    fn capwise(&self, sub: &str, torrent: &Path, dir: &Path) -> Result<std::process::Command> {
        let mut c = cw::command_line(
            sub,
            torrent,
            dir,
            ([0, 0, 0, 0], 6881).into(),
            &self.dir(&format!("{sub}-state")),
            &CapwiseOpts {
                lsd: true,
                ..CapwiseOpts::default()
            },
        )?;
        c.env(
            "CAPWISE_LOG",
            "info,capwise_engine::session::local_discovery=debug",
        );
        Ok(c)
    }
}

/// Runs `body`, dumping every log if it fails.
fn run(what: &str, size: u64, body: impl FnOnce(&World) -> Result<()>) {
    let w = World::new(size).expect("test world");
    if let Err(e) = body(&w) {
        dump_logs(&w.logs, None);
        panic!("{what}: {e:#}");
    }
}

/// Waits until capwise's LSD driver is up on the segment's interface (its socket has joined the
/// group, so it hears whatever is announced from now on).
fn wait_lsd_started(g: &mut ChildGuard) -> Result<()> {
    wait_until(
        "capwise's LSD to start on the LAN interface",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            ensure!(
                g.try_wait()?.is_none(),
                "capwise exited: {}",
                g.log_tail(2000)
            );
            Ok(g.log_tail(100_000).contains("LSD started on an interface"))
        },
    )
}

fn heard_over_lsd(g: &ChildGuard) -> bool {
    g.log_tail(1_000_000).contains("peer heard over LSD")
}

/// capwise on host 0 of a new LAN segment gets the magnet (no tracker, no
/// DHT) from a seeder that `start_seeder` puts on host 1 once capwise's
/// LSD runs, found only through LSD; `client` names it in messages.
fn capwise_gets_over_lsd<S>(
    w: &World,
    client: &str,
    start_seeder: impl FnOnce(&LanSegment) -> Result<S>,
) -> Result<()> {
    let lan = LanSegment::new(2)?;
    let leech_dir = w.dir("cw-leech");
    let mut get = lan.exec(
        "capwise-get",
        0,
        &w.capwise("get", &w.magnet(), &leech_dir)?,
        &w.logs,
    )?;
    wait_lsd_started(&mut get)?;
    let started = Instant::now();
    let _seeder = start_seeder(&lan)?;
    get.expect_success(WAIT)?;
    eprintln!(
        "[lsd] capwise got the magnet from {client} in {:.1?} after it started",
        started.elapsed()
    );
    ensure!(
        heard_over_lsd(&get),
        "capwise never heard {client} over LSD"
    );
    w.verify(&leech_dir)
}

#[test]
fn capwise_gets_a_magnet_from_libtorrent_found_only_through_lsd() {
    run("capwise ← libtorrent over LSD", 6 * MIB, |w| {
        capwise_gets_over_lsd(w, "libtorrent", |lan| {
            let mut cmd = libtorrent::command_line(
                "seed",
                &w.torrent,
                &w.seed_dir(),
                6881,
                &LtOpts {
                    listen_ip: Some(lan.ip(1).into()),
                    seed_mode: true,
                    ..LtOpts::default()
                },
            );
            cmd.arg("--lsd");
            lan.exec("lt-seed", 1, &cmd, &w.logs)
        })
    });
}

#[test]
fn capwise_gets_a_magnet_from_transmission_found_only_through_lsd() {
    run("capwise ← Transmission over LSD", 6 * MIB, |w| {
        capwise_gets_over_lsd(w, "Transmission", |lan| {
            let mut tr = Transmission::start_on(
                "tr-seed",
                &w.dir("tr"),
                &w.seed_dir(),
                51413,
                &w.logs,
                &Placement {
                    netns: Some(lan.hosts[1].clone()),
                    bind_ipv4: lan.ip(1),
                    lpd: true,
                    ..Placement::default()
                },
            )?;
            tr.seed(&w.torrent, WAIT)?;
            Ok(tr)
        })
    });
}

#[test]
fn capwise_gets_a_magnet_from_aria2_found_only_through_lsd() {
    run("capwise ← aria2 over LSD", 6 * MIB, |w| {
        capwise_gets_over_lsd(w, "aria2", |lan| {
            let seed = aria2::seed_command(
                "aria2-seed",
                &w.torrent,
                &w.seed_dir(),
                6881,
                &Aria2Opts {
                    lpd_interface: Some(lan.ifname.into()),
                    external_ip: Some(lan.ip(1).into()),
                    ..Aria2Opts::default()
                },
                &w.logs,
            );
            lan.exec("aria2-seed", 1, &seed, &w.logs)
        })
    });
}

#[test]
fn libtorrent_gets_a_magnet_from_a_capwise_seeder_found_only_through_lsd() {
    run("libtorrent ← capwise over LSD", 6 * MIB, |w| {
        let lan = LanSegment::new(2)?;
        let mut seed = lan.exec(
            "capwise-seed",
            0,
            &w.capwise("seed", &w.torrent, &w.seed_dir())?,
            &w.logs,
        )?;
        wait_lsd_started(&mut seed)?;
        let leech_dir = w.dir("lt-leech");
        let started = Instant::now();
        let mut cmd = libtorrent::command_line(
            "get",
            &w.magnet(),
            &leech_dir,
            6881,
            &LtOpts {
                listen_ip: Some(lan.ip(1).into()),
                ..LtOpts::default()
            },
        );
        cmd.arg("--lsd");
        let mut get = lan.exec("lt-get", 1, &cmd, &w.logs)?;
        libtorrent::wait_done(&mut get, WAIT)?;
        eprintln!(
            "[lsd] libtorrent got the magnet from capwise in {:.1?}",
            started.elapsed()
        );
        w.verify(&leech_dir)
    });
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// A UDP socket that sends to the group from `from`, out of the segment's interface.
fn sender(from: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((from, 0)).expect("bind sender");
    s.set_multicast_ttl_v4(1).expect("ttl");
    s
}

fn announce(hash: &str, port: u16, cookie: &str) -> Vec<u8> {
    format!(
        "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: {port}\r\nInfohash: {hash}\r\ncookie: {cookie}\r\n\r\n\r\n"
    )
    .into_bytes()
}

/// Counts connections from `from` accepted on `addr` (kept open) until `stop` (libtorrent hears
/// the same packets and may dial too).
fn count_dials(
    addr: SocketAddr,
    from: Ipv4Addr,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind(addr).expect("bind hostile listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let h = std::thread::spawn(move || {
        let mut kept = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, peer)) => {
                    if peer.ip() == from {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    kept.push(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (count, h)
}

#[test]
fn garbage_lsd_packets_while_a_download_runs_change_nothing() {
    run("hostile LSD packets", 8 * MIB, |w| {
        let lan = LanSegment::new(3)?;
        // The hostile host: garbage from .3, a flood from .4, a spoofed cookie from .5.
        let (flood_ip, spoof_ip) = (Ipv4Addr::new(10, 203, 0, 4), Ipv4Addr::new(10, 203, 0, 5));
        lan.add_address(2, flood_ip)?;
        lan.add_address(2, spoof_ip)?;
        let capwise_ip = lan.ip(0);
        let garbage_ip = lan.ip(2);
        let hash = w.hash.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (start_tx, start_rx) = std::sync::mpsc::channel::<()>();
        let stop2 = stop.clone();
        // Sniffs capwise's cookie off the group, then waits for the go and attacks.
        let hostile = lan.spawn_in_host(2, move || -> Result<(usize, usize, usize)> {
            let sniff = socket2_join(garbage_ip)?;
            let (flood_dials, f) = count_dials((flood_ip, 7001).into(), capwise_ip, stop2.clone());
            let (spoof_dials, s) = count_dials((spoof_ip, 7002).into(), capwise_ip, stop2.clone());
            let cookie = sniff_cookie(&sniff, capwise_ip, Duration::from_secs(20))?;
            start_rx.recv_timeout(Duration::from_secs(30))?;
            let mut sent = 0;
            let garbage = sender(garbage_ip);
            let mut rng_state = 0x1234_5678_u64;
            let mut next = || {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 7;
                rng_state ^= rng_state << 17;
                rng_state
            };
            for i in 0..3000usize {
                let packet: Vec<u8> = match i % 6 {
                    // Random bytes.
                    0 => (0..(next() % 1400) as usize)
                        .map(|_| next() as u8)
                        .collect(),
                    // Oversized: a valid start, 3000 bytes of headers.
                    1 => {
                        let mut p = announce(&hash, 7003, "x");
                        let mut pad = b"X-Pad: ".to_vec();
                        pad.extend(vec![b'a'; 3000]);
                        pad.extend(b"\r\n");
                        // After the request line.
                        p.splice(22..22, pad);
                        p
                    }
                    // 39 hex digits, non-hex, base32, an unknown info-hash.
                    2 => announce(&hash[..39], 7003, "x"),
                    3 => announce(&"zz".repeat(20), 7003, "x"),
                    4 => announce("MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43UOV3HO6DZ", 7003, "x"),
                    _ => announce(&"ab".repeat(20), 7003, "x"),
                };
                if garbage.send_to(&packet, GROUP).is_ok() {
                    sent += 1;
                }
            }
            // A flood of well-formed announces for the torrent from one address.
            let flood = sender(flood_ip);
            for _ in 0..2000 {
                let _ = flood.send_to(&announce(&hash, 7001, "f100d"), GROUP);
            }
            // capwise's own cookie from another address: taken as its echo, never dialled.
            let spoof = sender(spoof_ip);
            for _ in 0..200 {
                let _ = spoof.send_to(&announce(&hash, 7002, &cookie), GROUP);
            }
            // Give capwise time to dial what it would.
            std::thread::sleep(Duration::from_secs(3));
            stop2.store(true, Ordering::Relaxed);
            let _ = f.join();
            let _ = s.join();
            Ok((
                sent,
                flood_dials.load(Ordering::Relaxed),
                spoof_dials.load(Ordering::Relaxed),
            ))
        });
        let leech_dir = w.dir("cw-leech");
        let mut get = lan.exec(
            "capwise-get",
            0,
            &w.capwise("get", &w.magnet(), &leech_dir)?,
            &w.logs,
        )?;
        wait_lsd_started(&mut get)?;
        let mut cmd = libtorrent::command_line(
            "seed",
            &w.torrent,
            &w.seed_dir(),
            6881,
            &LtOpts {
                listen_ip: Some(lan.ip(1).into()),
                seed_mode: true,
                // Slow enough that the attack lands while the download runs.
                upload_limit: Some(1_000_000),
                ..LtOpts::default()
            },
        );
        cmd.arg("--lsd");
        let _seed = lan.exec("lt-seed", 1, &cmd, &w.logs)?;
        wait_until(
            "capwise to hear libtorrent",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || Ok(heard_over_lsd(&get)),
        )?;
        let before = rss_kib(get.pid())?;
        let _ = start_tx.send(());
        let (sent, flood_dials, spoof_dials) = hostile.join().expect("hostile thread")??;
        let after = rss_kib(get.pid())?;
        ensure!(
            get.try_wait()?.is_none(),
            "capwise died under the attack: {}",
            get.log_tail(4000)
        );
        get.expect_success(WAIT)?;
        eprintln!(
            "[lsd] {sent} garbage packets, 2000 flood, 200 spoofed; flood dials {flood_dials}, \
             spoofed dials {spoof_dials}; RSS {before} → {after} KiB"
        );
        ensure!(sent > 2500, "only {sent} garbage packets left");
        ensure!(
            spoof_dials == 0,
            "capwise dialled a packet with its own cookie {spoof_dials} times"
        );
        // At most 8 packets a minute are heard from one address (each may lead to a dial),
        // and the metadata phase's peers are dialled once more when the torrent opens.
        ensure!(
            (1..=10).contains(&flood_dials),
            "a flood from one address got {flood_dials} dials (want 1..=10: heard, but rate-limited)"
        );
        ensure!(
            after < before + 16 * 1024,
            "RSS grew from {before} to {after} KiB under the flood"
        );
        w.verify(&leech_dir)
    });
}

/// A socket on the group, joined on `local`'s interface, for sniffing announces.
fn socket2_join(local: Ipv4Addr) -> Result<UdpSocket> {
    // std's UdpSocket cannot set SO_REUSEPORT before bind; capwise holds 6771 only on another
    // host, so a plain bind works here.
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 6771))?;
    s.join_multicast_v4(&Ipv4Addr::new(239, 192, 152, 143), &local)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

/// The cookie of the first announce from `from`.
fn sniff_cookie(s: &UdpSocket, from: Ipv4Addr, limit: Duration) -> Result<String> {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        let Ok((n, src)) = s.recv_from(&mut buf) else {
            continue;
        };
        if src.ip() != from {
            continue;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        if let Some(c) = text
            .lines()
            .find_map(|l| l.strip_prefix("cookie: "))
            .map(|c| c.trim().to_string())
        {
            return Ok(c);
        }
    }
    anyhow::bail!("no announce from {from} within {limit:?}")
}
