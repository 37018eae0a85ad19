//! Encryption (MSE/PE) suite: capwise with `--encryption require` against libtorrent (encryption
//! forced, RC4 only), aria2 (`--bt-require-crypto=true --bt-min-crypto-level=arc4`) and
//! Transmission (`"encryption": 2`), both directions, bytes compared; capwise refusing a
//! plaintext-only peer with a clear reason; hostile handshakes against a capwise seeder.
//!
//! "It worked" is not taken as proof of encryption: every transfer runs under a raw capture of the
//! namespace's `lo` ([`LoopbackCapture`]), which must see the connections open and carry the
//! payload without the plaintext handshake header `\x13BitTorrent protocol` ever appearing.
//!
//! All on 127.0.0.1 inside a private network namespace (`scripts/test` runs it in `unshare -n`
//! with the `interop` feature). `CAPWISE_KEEP_TMP=1` keeps a failing test's temp dir and logs.

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::aria2::{self, Aria2Opts};
use capwise_tests::clients::capwise::{self, CapwiseOpts};
use capwise_tests::clients::libtorrent::{self, parse_progress, LtOpts};
use capwise_tests::clients::local;
use capwise_tests::clients::transmission::{Placement, Transmission};
use capwise_tests::hostile_handshake::{self, Attack};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::assert_same_tree;
use capwise_tests::ports::free_port;
use capwise_tests::process::{wait_until, ChildGuard};
use capwise_tests::sniff::{LoopbackCapture, PLAINTEXT_HEADER};
use capwise_tests::tracker::hex_decode;
use capwise_tests::world::{World, WorldSpec, NAME};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Bound for every wait (download, seeding start, tracker registration).
const WAIT: Duration = Duration::from_secs(90);
const MIB: u64 = 1 << 20;
/// capwise's limit on a whole MSE handshake (the session's `HANDSHAKE_TIMEOUT`, from the byte
/// that tells it from a plaintext one, the first one here).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// Scheduling slack on top of a bound (two cores, several clients running).
const MARGIN: Duration = Duration::from_secs(5);
/// How fast a handshake that is broken on arrival (too short and closed, no sync point, an
/// invalid key, plaintext under `require`) must be dropped: no waiting for the time limit.
const AT_ONCE: Duration = Duration::from_secs(3);

/// ~8 MiB over two files whose sizes do not line up with pieces.
fn files() -> Vec<(&'static str, u64)> {
    vec![("a.bin", 8 * MIB + 12_345), ("sub/c.txt", 1_234)]
}

fn total() -> u64 {
    files().iter().map(|(_, n)| n).sum()
}

/// `capwise get|seed` with `--encryption require` on 127.0.0.1:`port`.
fn capwise_require(w: &World, sub: &str, dir: &Path, port: u16) -> Result<ChildGuard> {
    let opts = CapwiseOpts {
        encryption: Some("require".into()),
        ..CapwiseOpts::default()
    };
    let state = w.dir(&format!("capwise-{sub}-state"));
    match sub {
        "get" => capwise::get("capwise-get", &w.torrent, dir, port, &state, &opts, &w.logs),
        _ => capwise::seed(
            "capwise-seed",
            &w.torrent,
            dir,
            port,
            &state,
            &opts,
            &w.logs,
        ),
    }
}

/// Runs one test body with a fresh [`World`] of this suite's payload; on error dumps every log
/// and panics.
fn run(test: &str, body: impl FnOnce(&World) -> Result<()>) {
    let files = files();
    let spec = WorldSpec {
        suite: "mse",
        files: &files,
        tree_seed: 0x5EC_2E7,
        pad_files: false,
        wait: WAIT,
    };
    World::run(&spec, test, body)
}

/// Runs `transfer` under a capture of the TCP traffic of `ports` and requires that the capture saw
/// the payload go by (at least its size in TCP payload) without a plaintext handshake.
fn encrypted(ports: &[u16], transfer: impl FnOnce() -> Result<()>) -> Result<()> {
    let cap = LoopbackCapture::start(ports)?;
    transfer()?;
    let seen = cap.finish()?;
    eprintln!(
        "[mse]   capture: {} segments, {} payload bytes, {} connections opened, {} first \
         segments, {} kernel drops",
        seen.segments,
        seen.payload_bytes,
        seen.opened,
        seen.first_payloads.len(),
        seen.kernel_drops
    );
    seen.ensure_encrypted(total())
}

/// libtorrent's own word (its `rc4_encrypted` peer flag, `PEER ADDR rc4=1` lines of
/// `lt_client.py`): at least one peer got past its handshake, and every such peer's connection was
/// RC4.
fn lt_peers_rc4(lt: &ChildGuard) -> Result<()> {
    let out = lt.stdout();
    let peers: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(" PEER ").map(|(_, p)| p))
        .collect();
    ensure!(
        !peers.is_empty(),
        "libtorrent reports no peer past its handshake"
    );
    if let Some(p) = peers.iter().find(|p| !p.ends_with(" rc4=1")) {
        bail!("libtorrent's peer {p} was not RC4-encrypted");
    }
    eprintln!("[mse]   libtorrent: its peers {peers:?}");
    Ok(())
}

fn lt_rc4() -> LtOpts {
    LtOpts {
        rc4_only: true,
        progress_interval: Some(0.2),
        ..LtOpts::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The capture itself: it sees a plaintext handshake when there is one.
// ---------------------------------------------------------------------------------------------

#[test]
fn loopback_capture_sees_a_plaintext_handshake() {
    assert_private_netns();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cap = LoopbackCapture::start(&[port]).expect("capture on lo");
    let mut a = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (mut b, _) = listener.accept().expect("accept");
    a.write_all(PLAINTEXT_HEADER).expect("write");
    b.write_all(&[0xAB; 20]).expect("write");
    let mut got = [0u8; 20];
    std::io::Read::read_exact(&mut b, &mut got).expect("read");
    // The capture thread reads lo in its own time: give it a moment past the last segment.
    std::thread::sleep(Duration::from_millis(300));
    let seen = cap.finish().expect("capture");
    assert_eq!(seen.plaintext_openings(), 1, "{seen:?}");
    assert!(seen.plaintext_headers >= 1, "{seen:?}");
    assert_eq!(seen.first_payloads.len(), 2, "{seen:?}");
    assert!(seen.ensure_encrypted(0).is_err(), "{seen:?}");
}

/// The harness on reference clients alone: a plaintext libtorrent -> aria2 transfer shows the
/// plaintext header on the wire, and the same pair with encryption forced (libtorrent RC4 only,
/// aria2 `--bt-require-crypto`) does not.
#[test]
fn reference_capture_tells_plaintext_from_rc4() {
    run("libtorrent -> aria2, plaintext then RC4", |w| {
        for rc4 in [false, true] {
            let (lt_port, ar_port) = (free_port(), free_port());
            let tag = if rc4 { "rc4" } else { "plain" };
            let dir = w.dir(&format!("aria2-{tag}"));
            let cap = LoopbackCapture::start(&[lt_port, ar_port])?;
            let lt_opts = LtOpts {
                rc4_only: rc4,
                seed_mode: true,
                peers: vec![local(ar_port)],
                ..LtOpts::default()
            };
            let ar_opts = Aria2Opts {
                require_crypto: rc4,
                ..Aria2Opts::default()
            };
            let mut get = aria2::get_with(
                &format!("aria2-get-{tag}"),
                &w.torrent,
                &dir,
                ar_port,
                &ar_opts,
                &w.logs,
            )?;
            let _seed = libtorrent::seed(
                &format!("lt-seed-{tag}"),
                &w.torrent,
                &w.seed_dir,
                lt_port,
                &lt_opts,
                &w.logs,
            )?;
            get.expect_success(WAIT)?;
            let seen = cap.finish()?;
            w.verify(&dir)?;
            eprintln!(
                "[mse]   {tag}: {} payload bytes, {} plaintext headers, {} first segments",
                seen.payload_bytes,
                seen.plaintext_headers,
                seen.first_payloads.len()
            );
            if rc4 {
                seen.ensure_encrypted(total())?;
            } else {
                ensure!(
                    seen.plaintext_openings() > 0,
                    "the capture missed the plaintext handshake: {seen:?}"
                );
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Interop, both directions, capwise with --encryption require.
// ---------------------------------------------------------------------------------------------

#[test]
fn libtorrent_rc4_gets_from_capwise_require() {
    run("capwise (require) -> libtorrent (forced, RC4)", |w| {
        let (lt_port, cw_port) = (free_port(), free_port());
        let dir = w.dir("lt");
        encrypted(&[lt_port, cw_port], || {
            let mut get = libtorrent::get("lt-get", &w.torrent, &dir, lt_port, &lt_rc4(), &w.logs)?;
            w.wait_tracker(0, 1)?;
            let mut seed = capwise_require(w, "seed", &w.seed_dir, cw_port)?;
            get.expect_success(WAIT)?;
            lt_peers_rc4(&get)?;
            capwise::stop_clean(&mut seed)
        })?;
        w.verify(&dir)
    });
}

#[test]
fn capwise_require_gets_from_libtorrent_rc4() {
    run("libtorrent (forced, RC4) -> capwise (require)", |w| {
        let (lt_port, cw_port) = (free_port(), free_port());
        let dir = w.dir("capwise");
        encrypted(&[lt_port, cw_port], || {
            let opts = LtOpts {
                seed_mode: true,
                ..lt_rc4()
            };
            let seed =
                libtorrent::seed("lt-seed", &w.torrent, &w.seed_dir, lt_port, &opts, &w.logs)?;
            w.wait_tracker(1, 0)?;
            let mut get = capwise_require(w, "get", &dir, cw_port)?;
            get.expect_success(WAIT)?;
            lt_peers_rc4(&seed)
        })?;
        w.verify(&dir)
    });
}

fn aria2_crypto() -> Aria2Opts {
    Aria2Opts {
        require_crypto: true,
        ..Aria2Opts::default()
    }
}

#[test]
fn aria2_require_crypto_gets_from_capwise_require() {
    run("capwise (require) -> aria2 (require crypto, arc4)", |w| {
        let (ar_port, cw_port) = (free_port(), free_port());
        let dir = w.dir("aria2");
        encrypted(&[ar_port, cw_port], || {
            let mut get = aria2::get_with(
                "aria2-get",
                &w.torrent,
                &dir,
                ar_port,
                &aria2_crypto(),
                &w.logs,
            )?;
            w.wait_tracker(0, 1)?;
            let mut seed = capwise_require(w, "seed", &w.seed_dir, cw_port)?;
            get.expect_success(WAIT)?;
            capwise::stop_clean(&mut seed)
        })?;
        w.verify(&dir)
    });
}

#[test]
fn capwise_require_gets_from_aria2_require_crypto() {
    run("aria2 (require crypto, arc4) -> capwise (require)", |w| {
        let (ar_port, cw_port) = (free_port(), free_port());
        let dir = w.dir("capwise");
        encrypted(&[ar_port, cw_port], || {
            let _seed = aria2::seed_with(
                "aria2-seed",
                &w.torrent,
                &w.seed_dir,
                ar_port,
                &aria2_crypto(),
                &w.logs,
            )?;
            w.wait_tracker(1, 0)?;
            let mut get = capwise_require(w, "get", &dir, cw_port)?;
            get.expect_success(WAIT)
        })?;
        w.verify(&dir)
    });
}

fn tr_required() -> Placement {
    Placement {
        encryption: 2,
        ..Placement::default()
    }
}

/// Transmission never dials 127.x peers: the capwise seeder dials it.
#[test]
fn transmission_required_gets_from_capwise_require() {
    run("capwise (require) -> transmission (required)", |w| {
        let (tr_port, cw_port) = (free_port(), free_port());
        let dir = w.dir("tr");
        let mut tr = Transmission::start_on(
            "tr",
            &w.dir("tr-work"),
            &dir,
            tr_port,
            &w.logs,
            &tr_required(),
        )?;
        tr.add(&w.torrent)?;
        w.wait_tracker(0, 1)?;
        encrypted(&[tr_port, cw_port], || {
            let mut seed = capwise_require(w, "seed", &w.seed_dir, cw_port)?;
            tr.wait_complete(WAIT)?;
            capwise::stop_clean(&mut seed)
        })?;
        w.verify(&dir)
    });
}

#[test]
fn capwise_require_gets_from_transmission_required() {
    run("transmission (required) -> capwise (require)", |w| {
        let (tr_port, cw_port) = (free_port(), free_port());
        let dir = w.dir("capwise");
        let mut tr = Transmission::start_on(
            "tr",
            &w.dir("tr-work"),
            &w.seed_dir,
            tr_port,
            &w.logs,
            &tr_required(),
        )?;
        tr.seed(&w.torrent, WAIT)?;
        w.wait_tracker(1, 0)?;
        encrypted(&[tr_port, cw_port], || {
            let mut get = capwise_require(w, "get", &dir, cw_port)?;
            get.expect_success(WAIT)
        })?;
        w.verify(&dir)
    });
}

// ---------------------------------------------------------------------------------------------
// require against a plaintext-only peer: nothing moves, and capwise says why.
// ---------------------------------------------------------------------------------------------

/// Whether a capwise log line says that `peer` would not do the encrypted handshake and that
/// encryption is required (so that the user knows why the peer is skipped).
fn says_no_encryption(line: &str, peer: &str) -> bool {
    let l = line.to_ascii_lowercase();
    l.contains(peer)
        && l.contains("encrypt")
        && (l.contains("did not take an encrypted")
            || l.contains("does not speak")
            || l.contains("refused the encrypted"))
        && l.contains("required")
}

/// libtorrent with encryption disabled seeds; capwise `get --encryption require` dials it (MSE,
/// which libtorrent refuses) and libtorrent dials capwise (plaintext, which capwise refuses).
/// Within a bounded time capwise logs why, and no payload byte has moved either way.
#[test]
fn capwise_require_refuses_a_plaintext_only_libtorrent_and_says_why() {
    run(
        "libtorrent (plaintext only) -> capwise (require): refused",
        |w| {
            let (lt_port, cw_port) = (free_port(), free_port());
            let opts = LtOpts {
                seed_mode: true,
                peers: vec![local(cw_port)],
                progress_interval: Some(0.5),
                ..LtOpts::default()
            };
            let seed =
                libtorrent::seed("lt-seed", &w.torrent, &w.seed_dir, lt_port, &opts, &w.logs)?;
            w.wait_tracker(1, 0)?;
            let dir = w.dir("capwise");
            let mut get = capwise_require(w, "get", &dir, cw_port)?;
            let peer = local(lt_port).to_string();
            let mut reason = String::new();
            wait_until(
                "capwise to log why the plaintext-only peer was dropped",
                Duration::from_secs(30),
                Duration::from_millis(200),
                || {
                    let log = std::fs::read_to_string(&get.stderr_path)? + &get.stdout();
                    if let Some(l) = log.lines().find(|l| says_no_encryption(l, &peer)) {
                        reason = l.to_string();
                        return Ok(true);
                    }
                    Ok(false)
                },
            )
            .with_context(|| get.log_tail(4000))?;
            eprintln!("[mse]   capwise says: {reason}");
            // libtorrent dials capwise every 2 s: let it have tried a few times.
            std::thread::sleep(Duration::from_secs(5));
            if let Some(s) = get.try_wait()? {
                ensure!(!s.success(), "capwise get exited successfully: {s}");
            }
            let up = parse_progress(&seed.stdout())
                .last()
                .map_or(0, |p| p.payload_up);
            ensure!(
                up == 0,
                "the plaintext-only seeder uploaded {up} payload bytes"
            );
            ensure!(
                assert_same_tree(&w.seed_dir.join(NAME), &dir.join(NAME)).is_err(),
                "capwise has the whole payload"
            );
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile handshakes against a capwise seeder.
// ---------------------------------------------------------------------------------------------

/// Short, oversized, garbage, stalled and dripping MSE handshakes, and a plaintext handshake,
/// all at once against a `seed --encryption require`: each is dropped within its bound (at once
/// when broken on arrival, by the handshake time limit otherwise), capwise never answers more
/// than its public key and padding, and afterwards it still serves libtorrent (RC4).
#[test]
fn hostile_handshakes_are_dropped_and_capwise_still_serves() {
    run("hostile handshakes -> capwise seeder (require)", |w| {
        let cw_port = free_port();
        let mut seed = capwise_require(w, "seed", &w.seed_dir, cw_port)?;
        w.wait_tracker(1, 0)?;
        let mut attacks = Attack::BROKEN.to_vec();
        attacks.push(Attack::Plaintext {
            info_hash: hex_decode(&w.hash)?,
        });
        let bound = HANDSHAKE_LIMIT + MARGIN;
        let outcomes = hostile_handshake::run_all(local(cw_port), &attacks, bound)?;
        let mut problems = Vec::new();
        for o in &outcomes {
            eprintln!(
                "[mse]   {}: sent {}, received {}, closed after {:?}",
                o.attack.name(),
                o.sent,
                o.received.len(),
                o.closed_after
            );
            let limit = match o.attack {
                Attack::Stall | Attack::Drip => bound,
                _ => AT_ONCE,
            };
            match o.closed_after {
                Some(t) if t <= limit => {}
                Some(t) => problems.push(format!(
                    "{} dropped after {t:?}, not within {limit:?}",
                    o.attack.name()
                )),
                None => problems.push(format!("{} still open after {bound:?}", o.attack.name())),
            }
            if o.received.len() > 96 + 512 {
                problems.push(format!(
                    "capwise sent {} bytes to {}, more than a public key and PadB",
                    o.received.len(),
                    o.attack.name()
                ));
            }
            if o.received.windows(20).any(|x| x == PLAINTEXT_HEADER) {
                problems.push(format!(
                    "capwise answered {} with a plaintext handshake",
                    o.attack.name()
                ));
            }
        }
        if let Some(s) = seed.try_wait()? {
            problems.push(format!("the capwise seeder exited: {s}"));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        let dir = w.dir("lt");
        let opts = LtOpts {
            peers: vec![local(cw_port)],
            ..lt_rc4()
        };
        let mut get = libtorrent::get("lt-get", &w.torrent, &dir, free_port(), &opts, &w.logs)?;
        get.expect_success(WAIT)?;
        w.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}
