//! uTP interop suite: capwise over uTP only (`--transports utp`) against libtorrent with its TCP
//! turned off, and against Transmission 3.00 (uTP on by default; its TCP cannot be turned off, so
//! capwise is the one without TCP: no TCP listener, checked with `ss`). Both directions each,
//! bytes compared. On 127.0.0.1 with an opentracker, inside a private network namespace
//! (`scripts/test` runs it in `unshare -n`).

use anyhow::{ensure, Context, Result};
use capwise_tests::clients::transmission::{Placement, Transmission};
use capwise_tests::clients::{capwise, capwise::CapwiseOpts, libtorrent, libtorrent::LtOpts};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::{assert_same_tree, make_tree};
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, wait_until, ChildGuard};
use capwise_tests::torrent::make_torrent_with;
use capwise_tests::tracker::{announce_url, reserve_port, Tracker};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound for every wait.
const WAIT: Duration = Duration::from_secs(120);
const PIECE: u32 = 256 * 1024;
const MIB: u64 = 1 << 20;
const NAME: &str = "payload";

/// ~12 MiB over two files with sizes that do not line up with pieces.
fn files() -> Vec<(&'static str, u64)> {
    vec![("a.bin", 11 * MIB + 4_321), ("sub/b.txt", 777_777)]
}

struct Ctx {
    tmp: tempfile::TempDir,
    logs: PathBuf,
    seed_dir: PathBuf,
    torrent: PathBuf,
    hash: String,
    tracker: Tracker,
}

impl Ctx {
    fn new() -> Result<Self> {
        let tmp = tempfile::Builder::new().prefix("capwise-utp-").tempdir()?;
        let logs = tmp.path().join("logs");
        let seed_dir = tmp.path().join("seed");
        make_tree(&seed_dir.join(NAME), &files(), 0x5EED)?;
        let port = reserve_port();
        let announce = announce_url(port);
        let torrent = tmp.path().join("payload.torrent");
        let hash = make_torrent_with(
            &seed_dir.join(NAME),
            &torrent,
            std::slice::from_ref(&announce),
            PIECE,
            false,
            &logs,
        )?;
        let tracker = Tracker::start(
            port,
            std::slice::from_ref(&hash),
            &tmp.path().join("tracker"),
            &logs,
        )?;
        Ok(Self {
            tmp,
            logs,
            seed_dir,
            torrent,
            hash,
            tracker,
        })
    }

    fn dir(&self, who: &str) -> PathBuf {
        let d = self.tmp.path().join(who);
        std::fs::create_dir_all(&d).expect("create participant dir");
        d
    }

    /// The payload in `dir` equals the original byte for byte (20 s allowed for disk flushes).
    fn verify(&self, dir: &Path) -> Result<()> {
        let (src, got) = (self.seed_dir.join(NAME), dir.join(NAME));
        let mut last = None;
        wait_until(
            "downloaded bytes to match",
            Duration::from_secs(20),
            Duration::from_millis(500),
            || match assert_same_tree(&src, &got) {
                Ok(()) => Ok(true),
                Err(e) => {
                    last = Some(format!("{e:#}"));
                    Ok(false)
                }
            },
        )
        .with_context(|| last.unwrap_or_default())
    }

    fn wait_tracker(&self, seeders: u64, leechers: u64) -> Result<()> {
        self.tracker.wait_swarm(&self.hash, seeders, leechers, WAIT)
    }
}

fn run(test: &str, body: impl FnOnce(&Ctx) -> Result<()>) {
    assert_private_netns();
    let t0 = Instant::now();
    let ctx = Ctx::new().expect("test setup (payload, torrent, tracker)");
    match body(&ctx) {
        Ok(()) => {
            eprintln!("[utp] {test}: ok in {:.1}s", t0.elapsed().as_secs_f64());
            if std::env::var_os("CAPWISE_KEEP_TMP").is_some_and(|v| v == "always") {
                eprintln!("[utp] kept {}", ctx.tmp.keep().display());
            }
        }
        Err(e) => {
            dump_logs(&ctx.logs, Some("-remote-"));
            if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
                eprintln!("[utp] kept {}", ctx.tmp.keep().display());
            }
            panic!(
                "[utp] {test} failed after {:.1}s: {e:#}",
                t0.elapsed().as_secs_f64()
            );
        }
    }
}

fn utp_only() -> CapwiseOpts {
    CapwiseOpts {
        extra: vec!["--transports".into(), "utp".into()],
        ..CapwiseOpts::default()
    }
}

fn lt_utp_only() -> LtOpts {
    LtOpts {
        utp_only: true,
        ..LtOpts::default()
    }
}

/// Lines of `ss ARGS` about local port `port` (header left out).
fn ss_port(args: &str, port: u16) -> Result<Vec<String>> {
    let out = Command::new("ss")
        .args(args.split_whitespace())
        .output()
        .context("run ss")?;
    ensure!(out.status.success(), "ss {args} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!(":{port}");
    Ok(text
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|local| local.ends_with(&needle))
        })
        .map(str::to_owned)
        .collect())
}

/// capwise on `port` listens on UDP and has no TCP listener (waits for the UDP socket first).
fn assert_no_tcp_listener(port: u16) -> Result<()> {
    wait_until(
        "capwise's UDP socket",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || Ok(!ss_port("-lunH", port)?.is_empty()),
    )?;
    let tcp = ss_port("-ltnH", port)?;
    ensure!(
        tcp.is_empty(),
        "capwise --transports utp must not listen on TCP, ss -ltn shows: {tcp:?}"
    );
    Ok(())
}

fn capwise_seed(c: &Ctx, port: u16) -> Result<ChildGuard> {
    capwise::seed(
        "capwise-seed",
        &c.torrent,
        &c.seed_dir,
        port,
        &c.dir("capwise-state"),
        &utp_only(),
        &c.logs,
    )
}

fn capwise_get(c: &Ctx) -> Result<()> {
    let dir = c.dir("capwise");
    let port = free_port();
    let mut get = capwise::get(
        "capwise-get",
        &c.torrent,
        &dir,
        port,
        &c.dir("capwise-state"),
        &utp_only(),
        &c.logs,
    )?;
    assert_no_tcp_listener(port)?;
    get.expect_success(WAIT)?;
    c.verify(&dir)
}

#[test]
fn capwise_gets_from_libtorrent_over_utp_only() {
    run("libtorrent (uTP only) -> capwise (uTP only)", |c| {
        let _seed = libtorrent::seed(
            "lt-seed",
            &c.torrent,
            &c.seed_dir,
            free_port(),
            &lt_utp_only(),
            &c.logs,
        )?;
        c.wait_tracker(1, 0)?;
        capwise_get(c)
    });
}

/// capwise sends the bulk: libtorrent's selective ACKs (lengths that are not multiples of 4)
/// must be taken, or the connection dies at the first loss (it did: 70 s, a redial).
#[test]
fn libtorrent_gets_from_capwise_over_utp_only() {
    run("capwise (uTP only) -> libtorrent (uTP only)", |c| {
        let dir = c.dir("lt");
        let mut get = libtorrent::get(
            "lt-get",
            &c.torrent,
            &dir,
            free_port(),
            &lt_utp_only(),
            &c.logs,
        )?;
        c.wait_tracker(0, 1)?;
        let port = free_port();
        let mut seed = capwise_seed(c, port)?;
        assert_no_tcp_listener(port)?;
        get.expect_success(WAIT)?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

/// Transmission 3.00 with uTP on (its default), TCP too (it cannot be turned off).
fn transmission(c: &Ctx, dir: &Path) -> Result<Transmission> {
    let at = Placement {
        utp: true,
        ..Placement::default()
    };
    Transmission::start_on("tr", &c.dir("tr-work"), dir, free_port(), &c.logs, &at)
}

#[test]
fn capwise_gets_from_transmission_over_utp() {
    run("transmission -> capwise (uTP only)", |c| {
        let mut tr = transmission(c, &c.seed_dir)?;
        tr.seed(&c.torrent, WAIT)?;
        c.wait_tracker(1, 0)?;
        capwise_get(c)
    });
}

#[test]
fn transmission_gets_from_capwise_over_utp() {
    run("capwise (uTP only) -> transmission", |c| {
        let dir = c.dir("tr");
        let mut tr = transmission(c, &dir)?;
        tr.add(&c.torrent)?;
        c.wait_tracker(0, 1)?;
        let port = free_port();
        let mut seed = capwise_seed(c, port)?;
        assert_no_tcp_listener(port)?;
        tr.wait_complete(WAIT)?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}
