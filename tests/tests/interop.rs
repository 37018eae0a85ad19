//! Interop suite: capwise against real reference clients (libtorrent, Transmission, aria2) with an
//! opentracker, all on 127.0.0.1 inside a private network namespace. Run it with `scripts/test`,
//! which enters `unshare -n` and enables the `interop` feature.
//!
//! Every test: refuses to run outside a private netns, builds a random payload, a .torrent and a
//! whitelisting tracker in a fresh temp dir, waits at most [`WAIT`] for each phase, and compares the
//! downloaded bytes with the original (SHA-1 of every file). Set `CAPWISE_KEEP_TMP=1` to keep the
//! temp dir (and logs) of a failing test, `CAPWISE_KEEP_TMP=always` of every test.

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::transmission::{Placement, Transmission};
use capwise_tests::clients::{aria2, aria2::Aria2Opts, capwise, libtorrent, local};
use capwise_tests::clients::{
    capwise::CapwiseOpts, libtorrent::parse_progress, libtorrent::LtOpts,
};
use capwise_tests::hostile::{Counts, HostilePeer, Mode};
use capwise_tests::lan::LanSegment;
use capwise_tests::ports::free_port;
use capwise_tests::process::wait_until;
use capwise_tests::torrent::info_hash;
use capwise_tests::tracker::{announce_url, hex_decode, reserve_port, Tracker};
use capwise_tests::world::{World, WorldSpec, NAME, PIECE};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bound for every wait (download, seeding start, tracker registration).
const WAIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;

/// ~28 MiB over three files with sizes that do not line up with pieces.
fn default_files() -> Vec<(&'static str, u64)> {
    vec![
        ("a.bin", 20 * MIB + 12_345),
        ("sub/b.bin", 7 * MIB),
        ("sub/c.txt", 1_234),
    ]
}

/// This suite's worlds: the interop temp-dir prefix, `files`, the tree seed, pad files or not.
fn spec<'a>(files: &'a [(&'a str, u64)], pad_files: bool) -> WorldSpec<'a> {
    WorldSpec {
        suite: "interop",
        files,
        tree_seed: 0xC0FFEE,
        pad_files,
        wait: WAIT,
    }
}

/// Runs one interop test body with a fresh [`World`]; on error dumps every log and panics.
fn run(test: &str, files: &[(&str, u64)], body: impl FnOnce(&World) -> Result<()>) {
    run_with(test, files, false, body)
}

/// [`run`], the torrent made with BEP 47 pad files when `pad_files`.
fn run_with(
    test: &str,
    files: &[(&str, u64)],
    pad_files: bool,
    body: impl FnOnce(&World) -> Result<()>,
) {
    World::run(&spec(files, pad_files), test, body)
}

fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f();
    eprintln!("[interop]   {what}: {:.1}s", t.elapsed().as_secs_f64());
    r
}

/// A libtorrent seeder with default options, registered at the tracker.
fn lt_seeder(c: &World) -> Result<capwise_tests::process::ChildGuard> {
    let seed = libtorrent::seed(
        "lt-seed",
        &c.torrent,
        &c.seed_dir,
        free_port(),
        &LtOpts::default(),
        &c.logs,
    )?;
    c.wait_tracker(1, 0)?;
    Ok(seed)
}

// ---------------------------------------------------------------------------------------------
// Reference-only sanity tests: prove the harness and the reference clients work.
// ---------------------------------------------------------------------------------------------

#[test]
fn reference_libtorrent_to_aria2() {
    run("libtorrent -> aria2", &default_files(), |c| {
        let _seed = lt_seeder(c)?;
        let dir = c.dir("aria2");
        let mut get = aria2::get("aria2-get", &c.torrent, &dir, free_port(), &c.logs)?;
        timed("aria2 download", || get.expect_success(WAIT))?;
        c.verify(&dir)
    });
}

#[test]
fn reference_aria2_to_libtorrent() {
    run("aria2 -> libtorrent", &default_files(), |c| {
        let _seed = aria2::seed("aria2-seed", &c.torrent, &c.seed_dir, free_port(), &c.logs)?;
        c.wait_tracker(1, 0)?;
        let dir = c.dir("lt");
        let mut get = libtorrent::get(
            "lt-get",
            &c.torrent,
            &dir,
            free_port(),
            &LtOpts::default(),
            &c.logs,
        )?;
        timed("libtorrent download", || get.expect_success(WAIT))?;
        c.verify(&dir)
    });
}

#[test]
fn reference_libtorrent_to_transmission() {
    run("libtorrent -> transmission", &default_files(), |c| {
        let dir = c.dir("tr");
        let tr_port = free_port();
        let mut tr = Transmission::start("tr", &c.dir("tr-work"), &dir, tr_port, &c.logs)?;
        tr.add(&c.torrent)?;
        c.wait_tracker(0, 1)?;
        // Transmission never dials 127.x peers: the seeder must dial it.
        let opts = LtOpts {
            peers: vec![local(tr_port)],
            ..LtOpts::default()
        };
        let _seed = libtorrent::seed(
            "lt-seed",
            &c.torrent,
            &c.seed_dir,
            free_port(),
            &opts,
            &c.logs,
        )?;
        timed("transmission download", || tr.wait_complete(WAIT))?;
        c.verify(&dir)
    });
}

#[test]
fn reference_transmission_to_libtorrent() {
    run("transmission -> libtorrent", &default_files(), |c| {
        let mut tr =
            Transmission::start("tr", &c.dir("tr-work"), &c.seed_dir, free_port(), &c.logs)?;
        timed("transmission verify", || tr.seed(&c.torrent, WAIT))?;
        c.wait_tracker(1, 0)?;
        let dir = c.dir("lt");
        let mut get = libtorrent::get(
            "lt-get",
            &c.torrent,
            &dir,
            free_port(),
            &LtOpts::default(),
            &c.logs,
        )?;
        timed("libtorrent download", || get.expect_success(WAIT))?;
        c.verify(&dir)
    });
}

// ---------------------------------------------------------------------------------------------
// capwise as leecher.
// ---------------------------------------------------------------------------------------------

fn capwise_get(c: &World) -> Result<()> {
    let dir = c.dir("capwise");
    let mut get = capwise::get(
        "capwise-get",
        &c.torrent,
        &dir,
        free_port(),
        &c.dir("capwise-state"),
        &CapwiseOpts::default(),
        &c.logs,
    )?;
    timed("capwise download", || get.expect_success(WAIT))?;
    c.verify(&dir)
}

/// `capwise get MAGNET`: the metadata from the seeder the link's `tr=`
/// tracker lists, then the data.
fn capwise_get_magnet(c: &World) -> Result<()> {
    let dir = c.dir("capwise");
    let magnet = c.magnet();
    let mut get = capwise::get(
        "capwise-get",
        Path::new(&magnet),
        &dir,
        free_port(),
        &c.dir("capwise-state"),
        &CapwiseOpts::default(),
        &c.logs,
    )?;
    timed("capwise magnet download", || get.expect_success(WAIT))?;
    c.verify(&dir)
}

#[test]
fn capwise_gets_a_magnet_from_libtorrent() {
    run("libtorrent -> capwise (magnet)", &default_files(), |c| {
        let _seed = lt_seeder(c)?;
        capwise_get_magnet(c)
    });
}

#[test]
fn capwise_gets_a_magnet_from_transmission() {
    run("transmission -> capwise (magnet)", &default_files(), |c| {
        let mut tr =
            Transmission::start("tr", &c.dir("tr-work"), &c.seed_dir, free_port(), &c.logs)?;
        tr.seed(&c.torrent, WAIT)?;
        c.wait_tracker(1, 0)?;
        capwise_get_magnet(c)
    });
}

#[test]
fn capwise_gets_a_magnet_from_aria2() {
    run("aria2 -> capwise (magnet)", &default_files(), |c| {
        let _seed = aria2::seed("aria2-seed", &c.torrent, &c.seed_dir, free_port(), &c.logs)?;
        c.wait_tracker(1, 0)?;
        capwise_get_magnet(c)
    });
}

/// How many peers the last progress line of a `lt_client.py` stdout counts.
fn lt_peers(stdout: &str) -> Option<u32> {
    let line = stdout.lines().rev().find(|l| l.contains(" progress "))?;
    let at = line.find(" peers=")? + " peers=".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// The payload of the PEX tests: a few MiB, so that a leecher limited to
/// 16 KiB/s holds little of it when capwise is done.
fn pex_files() -> Vec<(&'static str, u64)> {
    vec![("a.bin", 6 * MIB + 4_321)]
}

/// Whether a capwise log (`capwise_engine::session::peer` at debug) shows
/// a connection to `addr` with peers from `source`.
fn connected_through(log: &str, addr: SocketAddr, source: &str) -> bool {
    let at = format!("addr={addr} ");
    let from = format!("source=\"{source}\"");
    log.lines()
        .any(|l| l.contains("peer connected") && l.contains(&at) && l.contains(&from))
}

/// Issue 12, interop (b): peers found only through PEX. capwise gets a
/// magnet link with no `tr=` and one `x.pe=`: a libtorrent leecher that
/// holds almost nothing (its downloads are limited to 16 KiB/s) but is
/// connected to the seeder at `seeder`, which speaks no PEX itself (told of
/// capwise by the leecher, it could dial capwise and serve it without
/// capwise's PEX). capwise has no tracker, DHT or LSD peer: it completes
/// only if it learns the seeder from the leecher's ut_pex message and dials
/// it, and its log shows that connection with the source `pex`. When capwise is done
/// the leecher still lacks most of the torrent, so the data came from the
/// seeder. Without PEX (`--no-pex`) capwise would not learn the seeder at
/// all: the metadata from the leecher, then only its 16 KiB/s trickle.
fn capwise_gets_a_magnet_through_pex_from(c: &World, seeder: SocketAddr) -> Result<()> {
    let total: u64 = pex_files().iter().map(|(_, len)| len).sum();
    let leech_port = free_port();
    let leech = libtorrent::get(
        "lt-leech",
        &c.torrent,
        &c.dir("lt-leech"),
        leech_port,
        &LtOpts {
            peers: vec![seeder],
            download_limit: Some(16 * 1024),
            progress_interval: Some(0.2),
            ..LtOpts::default()
        },
        &c.logs,
    )?;
    // The leecher must know the seeder when capwise connects: its first
    // PEX message lists the peers connected at that moment.
    wait_until(
        "the libtorrent leecher to connect to the seeder",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || Ok(lt_peers(&leech.stdout()).is_some_and(|n| n >= 1)),
    )?;
    let mut m = capwise_engine::magnet::Magnet::new(
        capwise_engine::metainfo::InfoHash::from_hex(&c.hash).context("hex info-hash")?,
    );
    m.display_name = Some(NAME.into());
    m.peers = vec![local(leech_port).to_string()];
    let magnet = m.to_uri();
    ensure!(!magnet.contains("tr="), "no tracker for capwise: {magnet}");
    let dir = c.dir("capwise");
    // An address of its own: Transmission keeps one peer per IP address, and
    // aria2 leaves peers of the receiver's IP out of its PEX.
    let mut cmd = capwise::command_line(
        "get",
        Path::new(&magnet),
        &dir,
        ([127, 0, 0, 3], free_port()).into(),
        &c.dir("capwise-state"),
        &CapwiseOpts::default(),
    )?;
    cmd.env("CAPWISE_LOG", "info,capwise_engine::session::peer=debug");
    let mut get = capwise_tests::process::ChildGuard::spawn("capwise-get", &mut cmd, &c.logs)?;
    timed("capwise download through PEX", || {
        get.expect_success(Duration::from_secs(20))
    })?;
    ensure!(
        connected_through(&get.log_tail(4 << 20), seeder, "pex"),
        "capwise's log shows no connection to the seeder {seeder} learnt through PEX"
    );
    let leech_had = parse_progress(&leech.stdout())
        .last()
        .map_or(0, |p| p.payload_down);
    ensure!(
        leech_had < total / 2,
        "the leecher already had {leech_had} of {total} bytes: the seeder did not matter"
    );
    c.verify(&dir)
}

#[test]
fn capwise_gets_a_magnet_through_pex_only() {
    run(
        "libtorrent seeder, leecher -> capwise (PEX only)",
        &pex_files(),
        |c| {
            let seed_port = free_port();
            let _seed = libtorrent::seed(
                "lt-seed",
                &c.torrent,
                &c.seed_dir,
                seed_port,
                &LtOpts {
                    seed_mode: true,
                    no_pex: true,
                    ..LtOpts::default()
                },
                &c.logs,
            )?;
            capwise_gets_a_magnet_through_pex_from(c, local(seed_port))
        },
    );
}

/// (b) with a Transmission seeder (PEX off, as the harness runs it).
#[test]
fn capwise_gets_a_magnet_from_transmission_through_pex_only() {
    run(
        "transmission seeder, leecher -> capwise (PEX only)",
        &pex_files(),
        |c| {
            let seed_port = free_port();
            let mut tr = Transmission::start(
                "tr-seed",
                &c.dir("tr-work"),
                &c.seed_dir,
                seed_port,
                &c.logs,
            )?;
            tr.seed(&c.torrent, WAIT)?;
            capwise_gets_a_magnet_through_pex_from(c, local(seed_port))
        },
    );
}

/// (b) with an aria2 seeder (PEX off, as the harness runs it).
#[test]
fn capwise_gets_a_magnet_from_aria2_through_pex_only() {
    run(
        "aria2 seeder, leecher -> capwise (PEX only)",
        &pex_files(),
        |c| {
            let seed_port = free_port();
            let _seed = aria2::seed("aria2-seed", &c.torrent, &c.seed_dir, seed_port, &c.logs)?;
            c.wait_tracker(1, 0)?;
            capwise_gets_a_magnet_through_pex_from(c, local(seed_port))
        },
    );
}

#[test]
fn capwise_gets_from_transmission() {
    run("transmission -> capwise", &default_files(), |c| {
        let mut tr =
            Transmission::start("tr", &c.dir("tr-work"), &c.seed_dir, free_port(), &c.logs)?;
        tr.seed(&c.torrent, WAIT)?;
        c.wait_tracker(1, 0)?;
        capwise_get(c)
    });
}

#[test]
fn capwise_gets_from_libtorrent() {
    run("libtorrent -> capwise", &default_files(), |c| {
        let _seed = lt_seeder(c)?;
        capwise_get(c)
    });
}

/// libtorrent aligns files with BEP 47 pad files (as for v2 torrents): capwise
/// loads such a torrent, downloads it and never creates the pad files.
#[test]
fn capwise_gets_a_padded_torrent_from_libtorrent_and_creates_no_pad_file() {
    run_with(
        "libtorrent (pad files) -> capwise",
        &default_files(),
        true,
        |c| {
            let meta = capwise_engine::metainfo::Metainfo::from_bytes(&std::fs::read(&c.torrent)?)?;
            let pads = meta.info.files.iter().filter(|f| f.pad).count();
            ensure!(pads > 0, "libtorrent made no pad file");
            let _seed = lt_seeder(c)?;
            capwise_get(c)?;
            let got = c.dir("capwise").join(NAME);
            ensure!(
                !got.join(".pad").exists(),
                "capwise created {}",
                got.join(".pad").display()
            );
            Ok(())
        },
    );
}

#[test]
fn capwise_gets_from_aria2() {
    run("aria2 -> capwise", &default_files(), |c| {
        let _seed = aria2::seed("aria2-seed", &c.torrent, &c.seed_dir, free_port(), &c.logs)?;
        c.wait_tracker(1, 0)?;
        capwise_get(c)
    });
}

/// Upload rate of the honest seeder in the hostile-peer test: slow enough that the download takes
/// several seconds, so capwise requests from the hostile peers and drops them while still running.
const HONEST_RATE: u64 = 4_000_000;

/// Waits (at most [`WAIT`]) for capwise `get` to exit successfully among `hostile` peers,
/// keeping its peak RSS in `rss`. Returns, per hostile peer, whether capwise closed a connection
/// to it while still running (counters read before a `try_wait` that finds it alive).
fn finish_among_hostile(
    get: &mut capwise_tests::process::ChildGuard,
    hostile: &[HostilePeer],
    t0: Instant,
    rss: &mut u64,
    what: &str,
) -> Result<Vec<bool>> {
    let mut closed_live = vec![false; hostile.len()];
    let status = loop {
        let snap: Vec<Counts> = hostile.iter().map(HostilePeer::counts).collect();
        let r = peak_rss(get.pid());
        if let Some(s) = get.try_wait()? {
            break s;
        }
        *rss = (*rss).max(r.unwrap_or(0));
        for (seen, cnt) in closed_live.iter_mut().zip(&snap) {
            *seen |= cnt.remote_closed > 0;
        }
        if t0.elapsed() > WAIT {
            bail!(
                "capwise still running after {WAIT:?}\n{}",
                get.log_tail(3000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "[interop]   capwise {what}: {:.1}s, peak RSS {} MiB",
        t0.elapsed().as_secs_f64(),
        *rss >> 20
    );
    if !status.success() {
        bail!("capwise exited with {status}\n{}", get.log_tail(3000));
    }
    Ok(closed_live)
}

/// Peak resident set (VmHWM, bytes) of a running process, if readable.
fn peak_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn capwise_completes_despite_hostile_peers() {
    run(
        "libtorrent + 7 hostile peers -> capwise",
        &default_files(),
        |c| {
            let total: u64 = default_files().iter().map(|(_, len)| len).sum();
            let pieces = u32::try_from(total.div_ceil(u64::from(PIECE)))?;
            let ih = hex_decode(&c.hash)?;
            // Hostile peers first, so capwise's first announce lists them all. They only serve capwise
            // ("-CW" peer ids), so the libtorrent seeder dialing them does not blur their counters.
            let mut hostile = Vec::new();
            for mode in Mode::ALL {
                let p = HostilePeer::start_for(mode, ih, pieces, PIECE, total, b"-CW")?;
                p.announce(&c.tracker.announce_url())?;
                hostile.push(p);
            }
            let n = hostile.len() as u64;
            c.wait_tracker(n, 0)?;
            let opts = LtOpts {
                upload_limit: Some(HONEST_RATE),
                ..LtOpts::default()
            };
            let _seed = libtorrent::seed(
                "lt-seed",
                &c.torrent,
                &c.seed_dir,
                free_port(),
                &opts,
                &c.logs,
            )?;
            c.wait_tracker(n + 1, 0)?;

            let dir = c.dir("capwise");
            let mut get = capwise::get(
                "capwise-get",
                &c.torrent,
                &dir,
                free_port(),
                &c.dir("capwise-state"),
                &CapwiseOpts::default(),
                &c.logs,
            )?;
            // Our own bounded wait: also records which hostile connections capwise closed while it
            // was still running (counters read before a `try_wait` that finds it alive), and its RSS.
            let t0 = Instant::now();
            let mut rss = 0u64;
            let closed_live = finish_among_hostile(&mut get, &hostile, t0, &mut rss, "download")?;
            c.verify(&dir)?;

            let log = std::fs::read_to_string(&get.stderr_path)?;
            let logged = |what: &str, p: &HostilePeer, extra: &str| {
                let addr = format!("addr={}", p.addr());
                log.lines()
                    .any(|l| l.contains(what) && l.contains(&addr) && l.contains(extra))
            };
            let mut problems = Vec::new();
            for (p, &live) in hostile.iter().zip(&closed_live) {
                let cnt = p.counts();
                eprintln!(
                    "[interop]   hostile {:?} on {}: {cnt:?}",
                    p.mode(),
                    p.port()
                );
                if cnt.handshakes == 0 {
                    problems.push(format!("capwise never handshook with {:?}", p.mode()));
                }
                let must_be_dropped = !matches!(p.mode(), Mode::Garbage | Mode::Silent);
                if must_be_dropped && !live {
                    problems.push(format!(
                        "capwise did not close the {:?} peer while downloading",
                        p.mode()
                    ));
                }
                match p.mode() {
                    Mode::CorruptData => {
                        if cnt.requests == 0 || cnt.pieces_sent == 0 {
                            problems.push(format!(
                                "the corrupt peer was never asked for data: {cnt:?}"
                            ));
                        }
                        if !logged("dropping peer", p, "ban=true") {
                            problems.push(
                                "no `dropping peer ... ban=true` line for the corrupt peer".into(),
                            );
                        }
                    }
                    Mode::Silent if cnt.requests == 0 => {
                        problems.push("the silent peer was never sent a request".into());
                    }
                    Mode::BadBitfield | Mode::OutOfRange
                        if !logged("broke the protocol", p, "") =>
                    {
                        problems.push(format!("no protocol violation logged for {:?}", p.mode()));
                    }
                    _ => {}
                }
            }
            if !log.contains("failed its hash check") {
                problems.push("capwise logged no failed hash check".into());
            }
            if rss > 1 << 30 {
                problems.push(format!("capwise peak RSS {} MiB", rss >> 20));
            }
            if !problems.is_empty() {
                bail!("{}", problems.join("\n"));
            }
            Ok(())
        },
    );
}

/// A magnet link whose `x.pe` peers all lie about the metadata (BEP 9): a 4 GiB
/// `metadata_size`, blocks of the wrong size, metadata whose SHA-1 does not match, rejects
/// forever. capwise asks each of them, drops or backs off each, and gets the metadata from a
/// libtorrent seeder that dials it once they are all exhausted (an incoming peer during the
/// metadata phase), then the data; memory stays bounded throughout.
#[test]
fn capwise_gets_a_magnet_despite_hostile_metadata_peers() {
    run(
        "libtorrent + 4 hostile metadata peers -> capwise (magnet)",
        &default_files(),
        |c| {
            let ih = hex_decode(&c.hash)?;
            let meta = capwise_engine::metainfo::Metainfo::from_bytes(&std::fs::read(&c.torrent)?)?;
            let size = meta.info_bytes.len() as u64;
            let mut hostile = Vec::new();
            for mode in Mode::METADATA {
                hostile.push(HostilePeer::start_metadata(mode, ih, size, b"-CW")?);
            }
            let mut m = capwise_engine::magnet::Magnet::parse(&c.magnet())?;
            m.peers = hostile.iter().map(|p| p.addr().to_string()).collect();
            let dir = c.dir("capwise");
            let mut get = capwise::get(
                "capwise-get",
                Path::new(&m.to_uri()),
                &dir,
                free_port(),
                &c.dir("capwise-state"),
                &CapwiseOpts::default(),
                &c.logs,
            )?;
            // capwise on the tracker, then every liar tried before an honest peer exists.
            c.wait_tracker(0, 1)?;
            let t0 = Instant::now();
            let tried = |p: &HostilePeer| {
                let cnt = p.counts();
                match p.mode() {
                    Mode::MetaHugeSize => cnt.remote_closed > 0,
                    _ => cnt.requests > 0,
                }
            };
            let mut rss = 0u64;
            while !hostile.iter().all(tried) {
                rss = rss.max(peak_rss(get.pid()).unwrap_or(0));
                if t0.elapsed() > Duration::from_secs(30) {
                    let counts: Vec<_> = hostile.iter().map(|p| (p.mode(), p.counts())).collect();
                    bail!(
                        "capwise did not try every hostile peer: {counts:?}\n{}",
                        get.log_tail(3000)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "[interop]   every hostile peer tried: {:.1}s",
                t0.elapsed().as_secs_f64()
            );
            let _seed = libtorrent::seed(
                "lt-seed",
                &c.torrent,
                &c.seed_dir,
                free_port(),
                &LtOpts::default(),
                &c.logs,
            )?;
            let closed_live =
                finish_among_hostile(&mut get, &hostile, t0, &mut rss, "magnet download")?;
            c.verify(&dir)?;
            let mut problems = Vec::new();
            for (p, &live) in hostile.iter().zip(&closed_live) {
                let cnt = p.counts();
                eprintln!(
                    "[interop]   hostile {:?} on {}: {cnt:?}",
                    p.mode(),
                    p.port()
                );
                match p.mode() {
                    // Dropped at once: nothing asked of a peer that claims 4 GiB.
                    Mode::MetaHugeSize if !live || cnt.requests > 0 => {
                        problems.push(format!("the 4 GiB peer was not dropped at once: {cnt:?}"));
                    }
                    Mode::MetaWrongBlock if !live => {
                        problems.push("the wrong-size peer was not dropped".into());
                    }
                    // Never asked again once its copy failed (per connection).
                    Mode::MetaBadHash if cnt.requests > cnt.handshakes => {
                        problems.push(format!("the bad-SHA-1 peer was asked again: {cnt:?}"));
                    }
                    // One minute of quiet after each reject.
                    Mode::MetaRejects if cnt.requests > cnt.handshakes + 1 => {
                        problems.push(format!("the rejecting peer was not backed off: {cnt:?}"));
                    }
                    _ => {}
                }
            }
            if rss > 256 << 20 {
                problems.push(format!("capwise peak RSS {} MiB", rss >> 20));
            }
            if !problems.is_empty() {
                bail!("{}", problems.join("\n"));
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// capwise as seeder. Leechers start first and register at the tracker; capwise then learns them
// from its first announce and dials them (Transmission never dials 127.x peers itself).
// ---------------------------------------------------------------------------------------------

fn capwise_seed(c: &World, torrent: &Path) -> Result<capwise_tests::process::ChildGuard> {
    capwise::seed(
        "capwise-seed",
        torrent,
        &c.seed_dir,
        free_port(),
        &c.dir("capwise-state"),
        &CapwiseOpts::default(),
        &c.logs,
    )
}

#[test]
fn transmission_gets_from_capwise() {
    run("capwise -> transmission", &default_files(), |c| {
        let dir = c.dir("tr");
        let mut tr = Transmission::start("tr", &c.dir("tr-work"), &dir, free_port(), &c.logs)?;
        tr.add(&c.torrent)?;
        c.wait_tracker(0, 1)?;
        let mut seed = capwise_seed(c, &c.torrent)?;
        timed("transmission download", || tr.wait_complete(WAIT))?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

#[test]
fn libtorrent_gets_from_capwise() {
    run(
        "capwise -> libtorrent",
        &default_files(),
        libtorrent_gets_from_capwise_seed,
    );
}

/// libtorrent registers at the tracker first, then a capwise seeder dials it.
fn libtorrent_gets_from_capwise_seed(c: &World) -> Result<()> {
    let dir = c.dir("lt");
    let mut get = libtorrent::get(
        "lt-get",
        &c.torrent,
        &dir,
        free_port(),
        &LtOpts::default(),
        &c.logs,
    )?;
    c.wait_tracker(0, 1)?;
    let mut seed = capwise_seed(c, &c.torrent)?;
    timed("libtorrent download", || get.expect_success(WAIT))?;
    c.verify(&dir)?;
    capwise::stop_clean(&mut seed)
}

/// libtorrent knows only the magnet link; it registers at the tracker, a
/// capwise seeder dials it and serves the metadata (BEP 9), then the data.
#[test]
fn libtorrent_gets_a_magnet_from_capwise() {
    run("capwise -> libtorrent (magnet)", &default_files(), |c| {
        let dir = c.dir("lt");
        let magnet = c.magnet();
        let mut get = libtorrent::get(
            "lt-get",
            Path::new(&magnet),
            &dir,
            free_port(),
            &LtOpts::default(),
            &c.logs,
        )?;
        c.wait_tracker(0, 1)?;
        let mut seed = capwise_seed(c, &c.torrent)?;
        timed("libtorrent magnet download", || get.expect_success(WAIT))?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

/// Transmission knows only the magnet link; a capwise seeder dials it (it
/// never dials 127.x peers) and serves the metadata, then the data.
#[test]
fn transmission_gets_a_magnet_from_capwise() {
    run("capwise -> transmission (magnet)", &default_files(), |c| {
        let dir = c.dir("tr");
        let mut tr = Transmission::start("tr", &c.dir("tr-work"), &dir, free_port(), &c.logs)?;
        tr.add(Path::new(&c.magnet()))?;
        c.wait_tracker(0, 1)?;
        let mut seed = capwise_seed(c, &c.torrent)?;
        timed("transmission magnet download", || tr.wait_complete(WAIT))?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

/// aria2 knows only the magnet link; it registers at the tracker, a capwise
/// seeder dials it and serves the metadata (BEP 9), then the data.
#[test]
fn aria2_gets_a_magnet_from_capwise() {
    run("capwise -> aria2 (magnet)", &default_files(), |c| {
        let dir = c.dir("aria2");
        let mut get =
            aria2::get_magnet("aria2-get", &c.magnet(), &dir, free_port(), None, &c.logs)?;
        // Before it has the metadata aria2 announces `left=0`: the tracker
        // counts it as a seeder.
        c.wait_tracker(1, 0)?;
        let mut seed = capwise_seed(c, &c.torrent)?;
        timed("aria2 magnet download", || get.expect_success(WAIT))?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

/// capwise seeds a torrent with BEP 47 pad files from data without them (it
/// serves their zeros) to libtorrent.
#[test]
fn libtorrent_gets_a_padded_torrent_from_capwise() {
    run_with(
        "capwise (pad files) -> libtorrent",
        &default_files(),
        true,
        libtorrent_gets_from_capwise_seed,
    );
}

#[test]
fn aria2_gets_from_capwise() {
    run("capwise -> aria2", &default_files(), |c| {
        let dir = c.dir("aria2");
        let mut get = aria2::get("aria2-get", &c.torrent, &dir, free_port(), &c.logs)?;
        c.wait_tracker(0, 1)?;
        let mut seed = capwise_seed(c, &c.torrent)?;
        timed("aria2 download", || get.expect_success(WAIT))?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

#[test]
fn swarm_capwise_seeder_three_mixed_leechers() {
    run(
        "capwise -> {libtorrent, aria2, transmission}",
        &default_files(),
        |c| {
            let lt_dir = c.dir("lt");
            let aria_dir = c.dir("aria2");
            let tr_dir = c.dir("tr");
            let mut tr =
                Transmission::start("tr", &c.dir("tr-work"), &tr_dir, free_port(), &c.logs)?;
            tr.add(&c.torrent)?;
            let mut lt = libtorrent::get(
                "lt-get",
                &c.torrent,
                &lt_dir,
                free_port(),
                &LtOpts::default(),
                &c.logs,
            )?;
            let mut ar = aria2::get("aria2-get", &c.torrent, &aria_dir, free_port(), &c.logs)?;
            c.wait_tracker(0, 3)?;
            let mut seed = capwise_seed(c, &c.torrent)?;
            timed("swarm download", || {
                lt.expect_success(WAIT)?;
                ar.expect_success(WAIT)?;
                tr.wait_complete(WAIT)
            })?;
            c.verify(&lt_dir)?;
            c.verify(&aria_dir)?;
            c.verify(&tr_dir)?;
            capwise::stop_clean(&mut seed)
        },
    );
}

#[test]
fn capwise_create_loads_in_all_three_clients() {
    run("capwise create -> all clients", &default_files(), |c| {
        // A second torrent of the same data, made by capwise, tracked by a second tracker.
        let port = reserve_port();
        let torrent = c.tmp.path().join("capwise-made.torrent");
        capwise::create(
            &c.source(),
            &torrent,
            &[announce_url(port)],
            Some(PIECE),
            &c.logs,
        )?;
        // libtorrent loads it (and tells its info-hash).
        let hash = info_hash(&torrent, &c.logs)?;
        let tracker = Tracker::start(
            port,
            std::slice::from_ref(&hash),
            &c.tmp.path().join("tracker2"),
            &c.logs,
        )?;
        // aria2 loads it and the data verifies against its piece hashes.
        let out = aria2::hash_check(&torrent, &c.seed_dir, &c.logs)?;
        eprintln!(
            "[interop]   aria2 hash check: {}",
            out.lines().last().unwrap_or("")
        );
        // Transmission loads it and verifies the data to 100%.
        let mut tr =
            Transmission::start("tr", &c.dir("tr-work"), &c.seed_dir, free_port(), &c.logs)?;
        tr.seed(&torrent, WAIT)?;
        drop(tr);
        // A libtorrent leecher downloads from a capwise seeder with it.
        let dir = c.dir("lt");
        let mut get = libtorrent::get(
            "lt-get",
            &torrent,
            &dir,
            free_port(),
            &LtOpts::default(),
            &c.logs,
        )?;
        tracker.wait_swarm(&hash, 0, 1, WAIT)?;
        let mut seed = capwise_seed(c, &torrent)?;
        timed("libtorrent download", || get.expect_success(WAIT))?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

// ---------------------------------------------------------------------------------------------
// DHT only: a private DHT on loopback, a magnet with no `tr=` and no `x.pe=`.
// ---------------------------------------------------------------------------------------------

/// The private DHT's bootstrap node: libtorrent, DHT only, on 127.0.0.1.
fn lt_dht_router(c: &World) -> Result<(capwise_tests::process::ChildGuard, SocketAddr)> {
    let router: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let guard = libtorrent::dht_node("lt-dht-router", router, None, &c.logs)?;
    Ok((guard, router))
}

/// Waits until the router's log shows an announce_peer from `from` (an IP
/// address) that libtorrent accepted (its token checked).
fn wait_dht_announce(router: &capwise_tests::process::ChildGuard, from: &str) -> Result<()> {
    wait_dht_announce_within(router, from, Duration::from_secs(20))
}

/// [`wait_dht_announce`] with a bound of `limit`.
fn wait_dht_announce_within(
    router: &capwise_tests::process::ChildGuard,
    from: &str,
    limit: Duration,
) -> Result<()> {
    let line = format!("incoming dht announce: {from}:");
    wait_until(
        &format!("the DHT announce of {from} at the router"),
        limit,
        Duration::from_millis(100),
        || Ok(router.stdout().contains(&line)),
    )
}

/// The torrent's magnet link with the info-hash alone: no `tr=`, no `x.pe=`.
fn bare_magnet(c: &World) -> String {
    let magnet = capwise_engine::magnet::Magnet::new(
        capwise_engine::metainfo::InfoHash::from_hex(&c.hash).expect("hex info-hash"),
    )
    .to_uri();
    assert!(
        !magnet.contains("tr=") && !magnet.contains("x.pe="),
        "{magnet}"
    );
    magnet
}

/// `capwise get MAGNET` (the info-hash alone) on 127.0.0.3, joined to the
/// private DHT through `router`.
fn capwise_get_magnet_by_dht(c: &World, router: SocketAddr) -> Result<()> {
    let dir = c.dir("capwise");
    let magnet = bare_magnet(c);
    let mut cmd = capwise::command_line(
        "get",
        Path::new(&magnet),
        &dir,
        ([127, 0, 0, 3], free_port()).into(),
        &c.dir("capwise-state"),
        &CapwiseOpts {
            dht_bootstrap: vec![router],
            ..CapwiseOpts::default()
        },
    )?;
    let mut get = capwise_tests::process::ChildGuard::spawn("capwise-get", &mut cmd, &c.logs)?;
    timed("capwise magnet download over the DHT", || {
        get.expect_success(Duration::from_secs(45))
    })?;
    c.verify(&dir)
}

/// capwise finds a libtorrent seeder through the DHT alone (libtorrent's
/// router, libtorrent's announce, capwise's get_peers) and fetches the
/// metadata and the data from it.
#[test]
fn capwise_gets_a_magnet_from_libtorrent_through_the_dht_alone() {
    run(
        "libtorrent -> capwise (magnet, DHT only)",
        &small_files(),
        |c| {
            let (router, at) = lt_dht_router(c)?;
            let _seed = libtorrent::seed(
                "lt-seed",
                &c.torrent,
                &c.seed_dir,
                free_port(),
                &LtOpts {
                    listen_ip: Some([127, 0, 0, 2].into()),
                    dht_bootstrap: Some(at),
                    ..LtOpts::default()
                },
                &c.logs,
            )?;
            wait_dht_announce(&router, "127.0.0.2")?;
            capwise_get_magnet_by_dht(c, at)?;
            // capwise announced itself too, with a token libtorrent accepts.
            wait_dht_announce(&router, "127.0.0.3")
        },
    );
}

/// aria2 finds a capwise seeder through the DHT alone (libtorrent's router,
/// capwise's announce, aria2's get_peers) and fetches the metadata (BEP 9,
/// served by capwise) and the data from it.
#[test]
fn aria2_gets_a_magnet_from_capwise_through_the_dht_alone() {
    run("capwise -> aria2 (magnet, DHT only)", &small_files(), |c| {
        let (router, at) = lt_dht_router(c)?;
        let mut cmd = capwise::command_line(
            "seed",
            &c.torrent,
            &c.seed_dir,
            ([127, 0, 0, 2], free_port()).into(),
            &c.dir("capwise-state"),
            &CapwiseOpts {
                dht_bootstrap: vec![at],
                ..CapwiseOpts::default()
            },
        )?;
        let mut seed =
            capwise_tests::process::ChildGuard::spawn("capwise-seed", &mut cmd, &c.logs)?;
        wait_dht_announce(&router, "127.0.0.2")?;
        let dir = c.dir("aria2");
        let mut get = aria2::get_magnet(
            "aria2-get",
            &bare_magnet(c),
            &dir,
            free_port(),
            Some(&aria2::Aria2Dht {
                port: free_port(),
                entry: at,
                file: c.dir("aria2-state").join("dht.dat"),
            }),
            &c.logs,
        )?;
        timed("aria2 magnet download over the DHT", || {
            get.expect_success(Duration::from_secs(45))
        })?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

/// capwise finds an aria2 seeder through the DHT alone (libtorrent's
/// router, aria2's announce, capwise's get_peers) and fetches the metadata
/// and the data from it.
#[test]
fn capwise_gets_a_magnet_from_aria2_through_the_dht_alone() {
    run("aria2 -> capwise (magnet, DHT only)", &small_files(), |c| {
        let (router, at) = lt_dht_router(c)?;
        let _seed = aria2::seed_with(
            "aria2-seed",
            &c.torrent,
            &c.seed_dir,
            free_port(),
            &Aria2Opts {
                dht: Some(aria2::Aria2Dht {
                    port: free_port(),
                    entry: at,
                    file: c.dir("aria2-state").join("dht.dat"),
                }),
                ..Aria2Opts::default()
            },
            &c.logs,
        )?;
        // aria2's DHT socket is on every address: its packets leave from 127.0.0.1.
        wait_dht_announce(&router, "127.0.0.1")?;
        capwise_get_magnet_by_dht(c, at)
    });
}

/// How many libtorrent nodes make the private DHT for Transmission: it
/// announces only once its routing table holds 9 nodes, 4 of them
/// answering (dht.c's "poor" state), and it learns them by pinging the
/// nodes of its `dht.dat` one by one.
const TR_DHT_NODES: u16 = 12;

/// capwise finds a Transmission seeder through the DHT alone. Transmission's
/// DHT (jech's dht.c) drops every packet from 127/8 ("martian": tried on
/// loopback, its routing table stays at 0 nodes), so this one runs on a LAN
/// segment of namespaces: libtorrent's DHT nodes on 10.203.0.1, Transmission
/// on .2 (`dht.dat` lists the nodes), capwise on .3 (bootstrapped through
/// the first node); no tracker, PEX or LSD.
#[test]
fn capwise_gets_a_magnet_from_transmission_through_the_dht_alone() {
    run(
        "transmission -> capwise (magnet, DHT only, namespaces)",
        &small_files(),
        |c| {
            let lan = LanSegment::new(3)?;
            let nodes_at = SocketAddr::new(lan.ip(0).into(), 7000);
            let nodes = lan.exec(
                "lt-dht-nodes",
                0,
                &libtorrent::dht_nodes_command(nodes_at, TR_DHT_NODES, None),
                &c.logs,
            )?;
            lan.in_host(0, || libtorrent::wait_dht_answers("lt-dht-nodes", nodes_at))??;
            let started = Instant::now();
            let mut tr = Transmission::start_on(
                "tr-seed",
                &c.dir("tr-work"),
                &c.seed_dir,
                51413,
                &c.logs,
                &Placement {
                    netns: Some(lan.hosts[1].clone()),
                    bind_ipv4: lan.ip(1),
                    dht: libtorrent::dht_node_addrs(nodes_at, TR_DHT_NODES),
                    ..Placement::default()
                },
            )?;
            tr.seed(&c.torrent, WAIT)?;
            // Its get_peers search before the announce often waits out one
            // retransmission (about 10 s) for a node that answers late.
            wait_dht_announce_within(&nodes, &lan.ip(1).to_string(), Duration::from_secs(40))?;
            eprintln!(
                "[interop]   Transmission announced on the DHT {:.1}s after it started",
                started.elapsed().as_secs_f64()
            );
            let dir = c.dir("capwise");
            let cmd = capwise::command_line(
                "get",
                Path::new(&bare_magnet(c)),
                &dir,
                SocketAddr::new(lan.ip(2).into(), 6881),
                &c.dir("capwise-state"),
                &CapwiseOpts {
                    dht_bootstrap: vec![nodes_at],
                    ..CapwiseOpts::default()
                },
            )?;
            let mut get = lan.exec("capwise-get", 2, &cmd, &c.logs)?;
            timed("capwise magnet download over the DHT", || {
                get.expect_success(Duration::from_secs(45))
            })?;
            c.verify(&dir)
        },
    );
}

/// A few MiB: the DHT tests are about finding the seeder.
fn small_files() -> Vec<(&'static str, u64)> {
    vec![("a.bin", 3 * MIB + 12_345), ("sub/c.txt", 1_234)]
}
