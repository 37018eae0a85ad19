//! uTP interop suite: capwise over uTP only (`--transports utp`) against libtorrent with its TCP
//! turned off, and against Transmission 3.00 (uTP on by default; its TCP cannot be turned off, so
//! capwise is the one without TCP: no TCP listener, checked with `ss`). Both directions each,
//! bytes compared. On 127.0.0.1 with an opentracker, inside a private network namespace
//! (`scripts/test` runs it in `unshare -n`).

use anyhow::{ensure, Context, Result};
use capwise_tests::clients::transmission::{Placement, Transmission};
use capwise_tests::clients::{capwise, capwise::CapwiseOpts, libtorrent, libtorrent::LtOpts};
use capwise_tests::ports::free_port;
use capwise_tests::process::{wait_until, ChildGuard};
use capwise_tests::world::{World, WorldSpec};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Bound for every wait.
const WAIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;

/// ~12 MiB over two files with sizes that do not line up with pieces.
fn files() -> Vec<(&'static str, u64)> {
    vec![("a.bin", 11 * MIB + 4_321), ("sub/b.txt", 777_777)]
}

/// Runs one test body with a fresh [`World`] of this suite's payload; on error dumps every log
/// and panics.
fn run(test: &str, body: impl FnOnce(&World) -> Result<()>) {
    let files = files();
    let spec = WorldSpec {
        suite: "utp",
        files: &files,
        tree_seed: 0x5EED,
        pad_files: false,
        wait: WAIT,
    };
    World::run(&spec, test, body)
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

/// capwise on `port` listens on UDP and has no TCP listener (waits for the UDP socket first;
/// `process` must still be running, or the check would wait for a socket that is gone).
fn assert_no_tcp_listener(port: u16, process: &mut ChildGuard) -> Result<()> {
    wait_until(
        "capwise's UDP socket",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            if let Some(status) = process.try_wait()? {
                anyhow::bail!(
                    "{} exited ({status}) before its UDP socket was seen:\n{}",
                    process.name(),
                    process.log_tail(2000)
                );
            }
            Ok(!ss_port("-lunH", port)?.is_empty())
        },
    )?;
    let tcp = ss_port("-ltnH", port)?;
    ensure!(
        tcp.is_empty(),
        "capwise --transports utp must not listen on TCP, ss -ltn shows: {tcp:?}"
    );
    Ok(())
}

fn capwise_seed(c: &World, port: u16) -> Result<ChildGuard> {
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

/// `capwise get --seed`: it stays up once the data is complete, so the listener check cannot
/// race a download that finishes (and exits) between two looks with `ss` (12 MiB from
/// libtorrent on loopback takes well under a second).
fn capwise_get(c: &World) -> Result<()> {
    let dir = c.dir("capwise");
    let port = free_port();
    let opts = CapwiseOpts {
        seed_after: true,
        ..utp_only()
    };
    let mut get = capwise::get(
        "capwise-get",
        &c.torrent,
        &dir,
        port,
        &c.dir("capwise-state"),
        &opts,
        &c.logs,
    )?;
    wait_until("capwise's data", WAIT, Duration::from_millis(200), || {
        if let Some(status) = get.try_wait()? {
            anyhow::bail!("capwise get --seed exited ({status})");
        }
        Ok(c.verify(&dir).is_ok())
    })?;
    assert_no_tcp_listener(port, &mut get)?;
    capwise::stop_clean(&mut get)?;
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
        assert_no_tcp_listener(port, &mut seed)?;
        get.expect_success(WAIT)?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}

/// Transmission 3.00 with uTP on (its default), TCP too (it cannot be turned off).
fn transmission(c: &World, dir: &Path) -> Result<Transmission> {
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
        assert_no_tcp_listener(port, &mut seed)?;
        tr.wait_complete(WAIT)?;
        c.verify(&dir)?;
        capwise::stop_clean(&mut seed)
    });
}
