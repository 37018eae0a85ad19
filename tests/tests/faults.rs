//! Faults of the machine and of the network, against the agent (`capwise
//! run` and its CLI) with real libtorrent peers and opentracker on 127.0.0.1
//! inside a private network namespace (`scripts/test` runs it in `unshare -n`
//! with `ulimit -n 4096` and the `interop` feature): kill -9 at random
//! moments (and a simulated reboot after one), a full disk (a tmpfs in a private mount namespace), a corrupt,
//! truncated or old database, data deleted or truncated under a seeder, and
//! 1,000 hostile connections against a downloader. Each test is bounded in
//! time.

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::agent::{Agent, Wrap};
use capwise_tests::clients::libtorrent::{self, LtOpts};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::{assert_same_tree, make_tree};
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, wait_until, ChildGuard};
use capwise_tests::torrent::make_torrent;
use capwise_tests::tracker::{announce_url, reserve_port, Tracker};
use rand::Rng;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
const PIECE: u32 = 256 * 1024;
const MIB: u64 = 1 << 20;

/// One torrent: its data as seeded, the .torrent and its info-hash.
struct Payload {
    name: String,
    seed_dir: PathBuf,
    torrent: PathBuf,
    hash: String,
}

impl Payload {
    /// Bytes of the payload (as downloaded into `dir`).
    fn total(&self, dir: &Path) -> Result<u64> {
        let root = dir.join(&self.name);
        Ok(std::fs::metadata(root.join("data.bin"))?.len()
            + std::fs::metadata(root.join("small/note.txt"))?.len())
    }
}

/// One test's world: payloads, a tracker that knows them, libtorrent
/// seeders (started on demand), and an agent's directories.
struct World {
    tmp: tempfile::TempDir,
    root: PathBuf,
    logs: PathBuf,
    payloads: Vec<Payload>,
    seeders: Vec<ChildGuard>,
    state_dir: PathBuf,
    data_dir: PathBuf,
    config: PathBuf,
    listen: SocketAddr,
    network_file: PathBuf,
    tracker: Tracker,
}

impl World {
    fn new(tag: &str, sizes: &[u64]) -> Result<World> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("capwise-faults-{tag}-"))
            .tempdir()?;
        let root = tmp.path().to_path_buf();
        let logs = root.join("logs");
        let port = reserve_port();
        let mut payloads = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let name = format!("payload{i}");
            let seed_dir = root.join(format!("seed{i}"));
            make_tree(
                &seed_dir.join(&name),
                &[("data.bin", size), ("small/note.txt", 1234)],
                0xFA17 + i as u64,
            )?;
            let torrent = root.join(format!("{name}.torrent"));
            let hash = make_torrent(
                &seed_dir.join(&name),
                &torrent,
                &[announce_url(port)],
                PIECE,
                &logs,
            )?;
            payloads.push(Payload {
                name,
                seed_dir,
                torrent,
                hash,
            });
        }
        let hashes: Vec<String> = payloads.iter().map(|p| p.hash.clone()).collect();
        let tracker = Tracker::start(port, &hashes, &root.join("tracker"), &logs)?;
        let state_dir = root.join("state");
        let data_dir = root.join("data");
        let config = root.join("config.toml");
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        std::fs::write(
            &config,
            format!(
                "listen = \"{listen}\"\ndownload_dir = \"{}\"\n[dht]\nenabled = false\n",
                data_dir.display()
            ),
        )?;
        let network_file = root.join("network.toml");
        std::fs::write(
            &network_file,
            "id = \"faults-lan\"\nname = \"Test LAN\"\nkind = \"ethernet\"\nmetered = \"no\"\n",
        )?;
        Ok(World {
            tmp,
            root,
            logs,
            payloads,
            seeders: Vec::new(),
            state_dir,
            data_dir,
            config,
            listen,
            network_file,
            tracker,
        })
    }

    /// Starts a libtorrent seeder of payload `i`, dialling `peers` too.
    fn seed(&mut self, i: usize, peers: Vec<SocketAddr>) -> Result<()> {
        let p = &self.payloads[i];
        let g = libtorrent::seed(
            &format!("lt-seed{i}"),
            &p.torrent,
            &p.seed_dir,
            free_port(),
            &LtOpts {
                peers,
                ..LtOpts::default()
            },
            &self.logs,
        )?;
        self.seeders.push(g);
        self.tracker.wait_swarm(&p.hash, 1, 0, WAIT)?;
        Ok(())
    }

    fn start_agent(&self, name: &str) -> Result<Agent> {
        Agent::start(
            name,
            &self.state_dir,
            &self.config,
            Some(&self.network_file),
            &self.logs,
        )
    }

    fn add(&self, agent: &mut Agent, i: usize, dir: Option<&Path>) -> Result<String> {
        let t = self.payloads[i].torrent.to_str().context("utf-8 path")?;
        let mut args = vec!["add", t];
        let dir_s;
        if let Some(d) = dir {
            dir_s = d.to_str().context("utf-8 path")?.to_string();
            args.extend(["-d", dir_s.as_str()]);
        }
        let id = agent.cli(&args)?.trim().to_string();
        ensure!(id.len() == 40, "add printed {id:?}, not an id");
        Ok(id)
    }

    fn verify(&self, i: usize, dir: &Path) -> Result<()> {
        let p = &self.payloads[i];
        assert_same_tree(&p.seed_dir.join(&p.name), &dir.join(&p.name))
    }
}

fn run(test: &str, tag: &str, sizes: &[u64], body: impl FnOnce(&mut World) -> Result<()>) {
    assert_private_netns();
    let t0 = Instant::now();
    let mut world = World::new(tag, sizes).expect("test setup (payloads, tracker)");
    match body(&mut world) {
        Ok(()) => eprintln!("[faults] {test}: ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            dump_logs(&world.logs, None);
            if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
                eprintln!("[faults] kept {}", world.tmp.keep().display());
            }
            panic!("[faults] {test} failed: {e:#}");
        }
    }
}

fn stop(agent: &mut Agent) -> Result<()> {
    agent.guard.signal(libc::SIGTERM);
    let status = agent
        .guard
        .wait_timeout(Duration::from_secs(10))?
        .context("the agent did not stop within 10 s of SIGTERM")?;
    ensure!(status.success(), "the agent exited with {status}");
    Ok(())
}

fn kill9(agent: &mut Agent) -> Result<()> {
    agent.guard.signal(libc::SIGKILL);
    agent
        .guard
        .wait_timeout(Duration::from_secs(10))?
        .context("the agent outlived SIGKILL")?;
    Ok(())
}

/// Polls the torrent's status until `done` holds; fails at once on state
/// `error` unless `errors_ok`.
fn wait_status(
    agent: &mut Agent,
    id: &str,
    what: &str,
    timeout: Duration,
    errors_ok: bool,
    mut done: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    let t0 = Instant::now();
    loop {
        let s = agent.status(id)?;
        if done(&s) {
            return Ok(s);
        }
        if !errors_ok && s["state"] == "error" {
            bail!("waiting for {what}: the torrent failed: {s}");
        }
        if t0.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last status: {s}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent's bytes in the ledger, over every network and class.
fn ledger_total(agent: &mut Agent) -> Result<u64> {
    let v = agent.cli_json(&["usage"])?;
    let mut total = 0;
    for net in v.as_array().context("usage --json is not a list")? {
        for k in ["down_wan", "down_lan", "up_wan", "up_lan"] {
            total += net["agent"][k].as_u64().unwrap_or(0);
        }
        total += net["budget"]["agent_used_bytes"].as_u64().unwrap_or(0);
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// a. kill -9 at random moments
// ---------------------------------------------------------------------------------------------

#[test]
fn kill9_at_random_moments_keeps_verified_pieces_and_the_ledger() {
    const RUNS: usize = 20;
    run("kill -9 x20", "kill9", &[40 * MIB], |w| {
        w.seed(0, Vec::new())?;
        // A capped network: every byte is debited before it moves.
        let mut budget = Command::new(capwise_tests::paths::capwise_bin());
        budget
            .args([
                "budget",
                "set",
                "faults-lan",
                "--cap",
                "10GB",
                "--reserve",
                "0",
            ])
            .arg("--state-dir")
            .arg(&w.state_dir);
        capwise_tests::process::run("budget", &mut budget, &w.logs, WAIT)?;
        let mut agent = w.start_agent("agent-00")?;
        // Slow enough that 20 kills land mid-download.
        agent.cli(&["limits", "set", "--down", "1500KB/s"])?;
        let id = w.add(&mut agent, 0, None)?;
        let mut rng = rand::thread_rng();
        let mut killed_downloading = 0;
        let t0 = Instant::now();
        for run in 1..=RUNS {
            std::thread::sleep(Duration::from_millis(rng.gen_range(300..1800)));
            let before = agent.status(&id)?;
            let pieces_before = before["pieces_have"].as_u64().unwrap_or(0);
            let ledger_before = ledger_total(&mut agent)?;
            if before["state"] == "downloading" {
                killed_downloading += 1;
            }
            kill9(&mut agent)?;
            agent = w.start_agent(&format!("agent-{run:02}"))?;
            let after = wait_status(
                &mut agent,
                &id,
                "the check after restart",
                WAIT,
                false,
                |s| s["state"] != "checking",
            )?;
            let pieces_after = after["pieces_have"].as_u64().unwrap_or(0);
            let ledger_after = ledger_total(&mut agent)?;
            let (_, info) = agent.api("GET", "/v1/agent", Some(&agent.token()?), &[], None)?;
            eprintln!(
                "[faults]   kill {run:2} ({}): pieces {pieces_before} -> {pieces_after}, ledger {ledger_before} -> {ledger_after} B, hashed on restart {} B",
                before["state"], info["hashed_bytes"]
            );
            ensure!(
                pieces_after >= pieces_before,
                "kill {run} lost verified pieces: {pieces_before} before, {pieces_after} after ({after})"
            );
            // Same boot: the journal's records are trusted, nothing is re-hashed.
            ensure!(
                info["hashed_bytes"] == 0,
                "kill {run}: the restart re-hashed {} B on the same boot",
                info["hashed_bytes"]
            );
            ensure!(
                ledger_after >= ledger_before,
                "kill {run}: the ledger went back from {ledger_before} to {ledger_after} B"
            );
        }
        ensure!(
            killed_downloading >= RUNS / 2,
            "only {killed_downloading} of {RUNS} kills landed mid-download"
        );
        agent.cli(&["limits", "set", "--down", "unlimited"])?;
        wait_status(&mut agent, &id, "seeding", WAIT, false, |s| {
            s["state"] == "seeding"
        })?;
        w.verify(0, &w.data_dir)?;
        let ledger = ledger_total(&mut agent)?;
        // LAN bytes (all of them here, on loopback) are not counted against
        // the cap: the ledger records them in batches, so a kill -9 loses
        // the last batch (never what was already recorded). Reported, not
        // asserted; WAN bytes on a capped network are debited before they move.
        let total = w.payloads[0].total(&w.data_dir)?;
        eprintln!("[faults]   ledger {ledger} B of LAN usage recorded for {total} B of payload");
        eprintln!(
            "[faults]   {RUNS} kills in {:.1}s ({killed_downloading} mid-download); ledger at the end {ledger} B",
            t0.elapsed().as_secs_f64()
        );
        stop(&mut agent)?;
        Ok(())
    });
}

/// Runs the agent and its CLI with the boot id read from `file`
/// (`CAPWISE_BOOT_ID_FILE`), so a test can simulate a reboot.
fn with_boot_id(file: PathBuf) -> Wrap {
    Arc::new(move |c: &Command| {
        let mut out = prefixed(c, &["env"]);
        out.env("CAPWISE_BOOT_ID_FILE", &file);
        out
    })
}

/// Waits until the torrent has at least `pieces` pieces.
fn wait_pieces(agent: &mut Agent, id: &str, pieces: u64) -> Result<u64> {
    let s = wait_status(agent, id, &format!("{pieces} pieces"), WAIT, false, |s| {
        s["pieces_have"].as_u64().unwrap_or(0) >= pieces
    })?;
    Ok(s["pieces_have"].as_u64().unwrap_or(0))
}

/// After the restart's check: (pieces had, bytes hashed by the check).
fn after_restart(agent: &mut Agent, id: &str) -> Result<(u64, u64)> {
    let s = wait_status(agent, id, "the check after restart", WAIT, false, |s| {
        s["state"] != "checking"
    })?;
    let (_, info) = agent.api("GET", "/v1/agent", Some(&agent.token()?), &[], None)?;
    let hashed = info["hashed_bytes"]
        .as_u64()
        .context("/v1/agent has no hashed_bytes")?;
    Ok((s["pieces_have"].as_u64().unwrap_or(0), hashed))
}

#[test]
fn after_a_reboot_only_pieces_not_synced_are_hashed_again() {
    run("kill -9 then reboot", "reboot", &[40 * MIB], |w| {
        w.seed(0, Vec::new())?;
        let boot = w.root.join("boot_id");
        std::fs::write(&boot, "11111111-1111-4111-8111-111111111111\n")?;
        let start = |name: &str| {
            Agent::start_wrapped(
                name,
                &w.state_dir,
                &w.config,
                Some(&w.network_file),
                &w.logs,
                Some(with_boot_id(boot.clone())),
            )
        };
        let mut agent = start("agent-a")?;
        agent.cli(&["limits", "set", "--down", "1500KB/s"])?;
        let id = w.add(&mut agent, 0, None)?;
        wait_pieces(&mut agent, &id, 16)?;
        // A clean stop saves a synced checkpoint.
        stop(&mut agent)?;
        let mut agent = start("agent-b")?;
        let (synced, hashed) = after_restart(&mut agent, &id)?;
        ensure!(
            hashed == 0,
            "a restart after a clean stop hashed {hashed} B"
        );
        // Well within the 30 s between checkpoints: what comes now is only
        // in the journal, written but not synced.
        let before_kill = wait_pieces(&mut agent, &id, synced + 16)?;
        kill9(&mut agent)?;
        std::fs::write(&boot, "22222222-2222-4222-8222-222222222222\n")?;
        let mut agent = start("agent-c")?;
        let (after, hashed) = after_restart(&mut agent, &id)?;
        let total = w.payloads[0].total(&w.data_dir)?;
        let piece = u64::from(PIECE);
        let last = total - (total.div_ceil(piece) - 1) * piece;
        let unsynced = after.saturating_sub(synced);
        eprintln!(
            "[faults]   reboot: {synced} pieces synced, {before_kill} before the kill, {after} after; hashed {hashed} B"
        );
        ensure!(
            after >= before_kill,
            "the reboot lost pieces: {before_kill} before, {after} after"
        );
        ensure!(
            unsynced > 0 && (hashed == unsynced * piece || hashed == (unsynced - 1) * piece + last),
            "after the reboot {hashed} B were hashed; expected exactly the {unsynced} pieces not synced"
        );
        // The re-hashed pieces now count as this boot's: a crash on it costs nothing.
        kill9(&mut agent)?;
        let mut agent = start("agent-d")?;
        let (_, hashed) = after_restart(&mut agent, &id)?;
        ensure!(hashed == 0, "a kill -9 on the new boot hashed {hashed} B");
        agent.cli(&["limits", "set", "--down", "unlimited"])?;
        wait_status(&mut agent, &id, "seeding", WAIT, false, |s| {
            s["state"] == "seeding"
        })?;
        w.verify(0, &w.data_dir)?;
        stop(&mut agent)?;
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// b. disk full
// ---------------------------------------------------------------------------------------------

/// A command rebuilt with `prefix` in front (program and args), same env.
fn prefixed(c: &Command, prefix: &[&str]) -> Command {
    let mut out = Command::new(prefix[0]);
    out.args(&prefix[1..])
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => out.env(k, v),
            None => out.env_remove(k),
        };
    }
    out
}

#[test]
fn a_full_disk_stops_one_torrent_others_go_on_and_it_resumes_when_space_is_freed() {
    run("disk full", "diskfull", &[6 * MIB, 4 * MIB], |w| {
        w.seed(0, Vec::new())?;
        w.seed(1, Vec::new())?;
        let small = w.root.join("small-disk");
        std::fs::create_dir_all(&small)?;
        // The agent alone sees an 8 MiB tmpfs on `small` (its own mount
        // namespace), 3 MiB of it taken by a filler: the 6 MiB torrent
        // does not fit while the filler is there.
        let script = format!(
            "set -e; mount -t tmpfs -o size=8m capwise-test {d}; \
             head -c {f} /dev/zero > {d}/filler; exec \"$@\"",
            d = small.display(),
            f = 3 * MIB
        );
        let wrap: Wrap = Arc::new(move |c: &Command| {
            if c.get_args().next().is_some_and(|a| a == "run") {
                prefixed(
                    c,
                    &[
                        "unshare",
                        "-m",
                        "--propagation",
                        "private",
                        "bash",
                        "-c",
                        &script,
                        "agent",
                    ],
                )
            } else {
                prefixed(c, &["env"])
            }
        });
        let mut agent = Agent::start_wrapped(
            "agent",
            &w.state_dir,
            &w.config,
            Some(&w.network_file),
            &w.logs,
            Some(wrap),
        )?;
        let pid = agent.guard.pid();
        let seen_small = PathBuf::from(format!("/proc/{pid}/root{}", small.display()));
        ensure!(
            seen_small.join("filler").exists(),
            "the agent's tmpfs is not visible through /proc/{pid}/root"
        );
        // Added while it cannot fit, the torrent is refused with the figures
        // and nothing is added.
        let torrent = w.payloads[0].torrent.to_str().context("utf-8 path")?;
        let small_s = small.to_str().context("utf-8 path")?;
        let refused = agent
            .cli(&["add", torrent, "-d", small_s])
            .err()
            .context("a torrent that does not fit was added")?;
        eprintln!("[faults]   add refused: {}", refused.root_cause());
        ensure!(
            format!("{refused:#}").contains("not enough free space"),
            "the refusal does not say why: {refused:#}"
        );
        let listed = agent.cli_json(&["list"])?;
        ensure!(
            listed.as_array().is_some_and(|a| a.is_empty()),
            "a refused torrent was listed: {listed}"
        );
        // A magnet link has no size at the add: once its metadata is in,
        // the torrent is held with the figures, and a resume is refused
        // while there is still no room.
        let magnet = format!(
            "magnet:?xt=urn:btih:{}&tr={}",
            w.payloads[0].hash,
            w.tracker.announce_url()
        );
        let magnet_id = agent
            .cli(&["add", &magnet, "-d", small_s])?
            .trim()
            .to_string();
        let held = wait_status(&mut agent, &magnet_id, "the magnet held", WAIT, true, |s| {
            s["state"] == "error"
        })?;
        let reason = held["reason"].as_str().unwrap_or_default();
        eprintln!("[faults]   magnet held: {reason}");
        ensure!(
            reason.contains("not enough free space"),
            "the magnet was not held for want of room: {held}"
        );
        let refused = agent
            .cli(&["resume", &magnet_id])
            .err()
            .context("a resume without room was accepted")?;
        ensure!(
            format!("{refused:#}").contains("not enough free space"),
            "the refused resume does not say why: {refused:#}"
        );
        agent.cli(&["remove", &magnet_id, "--delete-data"])?;
        // With room at the add, it is added paused; then the disk fills
        // (the filler comes back) before the download starts.
        std::fs::remove_file(seen_small.join("filler")).context("deleting the filler")?;
        let full_id = agent
            .cli(&["add", torrent, "-d", small_s, "--paused"])?
            .trim()
            .to_string();
        ensure!(full_id.len() == 40, "add printed {full_id:?}, not an id");
        std::fs::write(seen_small.join("filler"), vec![0u8; 3 * MIB as usize])
            .context("writing the filler again")?;
        agent.cli(&["resume", &full_id])?;
        let ok_id = w.add(&mut agent, 1, None)?;
        let failed = wait_status(&mut agent, &full_id, "a disk-full error", WAIT, true, |s| {
            s["state"] == "error"
        })?;
        let reason = failed["reason"].as_str().unwrap_or_default().to_string();
        eprintln!("[faults]   full disk: {reason}");
        ensure!(
            reason.contains("disk full") || reason.contains("No space left"),
            "the error does not say the disk is full: {failed}"
        );
        let listed = agent.cli(&["status"])?;
        ensure!(
            listed.to_lowercase().contains("disk full"),
            "`capwise status` does not show the disk-full error:\n{listed}"
        );
        wait_status(
            &mut agent,
            &ok_id,
            "the other torrent to complete",
            WAIT,
            false,
            |s| s["state"] == "seeding",
        )?;
        w.verify(1, &w.data_dir)?;
        let still = agent.status(&full_id)?;
        ensure!(
            still["state"] == "error",
            "the full torrent left its error by itself: {still}"
        );

        std::fs::remove_file(seen_small.join("filler")).context("deleting the filler")?;
        let resumed = agent.cli_json(&["resume", &full_id])?;
        eprintln!(
            "[faults]   after freeing space and `capwise resume`: {}",
            resumed["state"]
        );
        let t = Instant::now();
        wait_status(
            &mut agent,
            &full_id,
            "the full torrent to complete",
            WAIT,
            false,
            |s| s["state"] == "seeding",
        )?;
        eprintln!(
            "[faults]   completed {:.1}s after resume",
            t.elapsed().as_secs_f64()
        );
        w.verify(0, &seen_small)?;
        stop(&mut agent)?;
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// c. corrupt, truncated and old databases
// ---------------------------------------------------------------------------------------------

fn remove_db(state_dir: &Path) {
    for f in ["capwise.db", "capwise.db-wal", "capwise.db-shm"] {
        let _ = std::fs::remove_file(state_dir.join(f));
    }
}

fn asides(state_dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(state_dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with("capwise.db.") && name.contains("corrupt") {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn a_corrupt_truncated_or_old_database_is_handled_and_the_agent_works() {
    run(
        "corrupt, truncated and old databases",
        "db",
        &[2 * MIB],
        |w| {
            w.seed(0, Vec::new())?;
            let mut agent = w.start_agent("agent-good")?;
            let id = w.add(&mut agent, 0, None)?;
            wait_status(&mut agent, &id, "seeding", WAIT, false, |s| {
                s["state"] == "seeding"
            })?;
            stop(&mut agent)?;
            let db = w.state_dir.join("capwise.db");
            // The agent leaves its commits in the WAL; fold them into the
            // file, so that the cases below damage real content.
            let status = Command::new("python3")
                .arg("-c")
                .arg("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()")
                .arg(&db)
                .status()
                .context("python3 (to checkpoint the database)")?;
            ensure!(status.success(), "checkpointing failed: {status}");
            let good = std::fs::read(&db)?;
            ensure!(good.len() > 8192, "capwise.db is only {} B", good.len());

            let cases: [(&str, Vec<u8>); 3] = [
                ("truncated to half", good[..good.len() / 2].to_vec()),
                ("garbage header", {
                    let mut b = good.clone();
                    for x in &mut b[..100] {
                        *x = 0xA5;
                    }
                    b
                }),
                (
                    "random bytes",
                    (0..64 * 1024).map(|_| rand::random::<u8>()).collect(),
                ),
            ];
            for (n, (what, bytes)) in cases.into_iter().enumerate() {
                remove_db(&w.state_dir);
                std::fs::write(&db, &bytes)?;
                let before = asides(&w.state_dir)?;
                let mut agent = w.start_agent(&format!("agent-{n}"))?;
                let after = asides(&w.state_dir)?;
                let new: Vec<&String> = after.iter().filter(|a| !before.contains(a)).collect();
                ensure!(
                    new.len() == 1,
                    "{what}: expected one file moved aside, found {new:?}"
                );
                let log = std::fs::read_to_string(&agent.guard.stderr_path)?
                    + &std::fs::read_to_string(&agent.guard.stdout_path)?;
                let line = log
                    .lines()
                    .find(|l| l.contains(new[0].as_str()))
                    .with_context(|| format!("{what}: no message names {}:\n{log}", new[0]))?;
                eprintln!("[faults]   {what}: {}", line.trim());
                ensure!(
                    std::fs::read(w.state_dir.join(new[0]))? == bytes,
                    "{what}: the file moved aside is not the old database"
                );
                // A fresh database: the torrent is added again, its data found whole.
                let listed = agent.cli_json(&["list"])?;
                ensure!(
                    listed.as_array().is_some_and(|a| a.is_empty()),
                    "{what}: {listed}"
                );
                let again = w.add(&mut agent, 0, None)?;
                wait_status(&mut agent, &again, "seeding", WAIT, false, |s| {
                    s["state"] == "seeding"
                })?;
                stop(&mut agent)?;
            }

            // A database from before the agent's tables existed (policy schema 1
            // only, as the policy commands wrote it), with a known network.
            remove_db(&w.state_dir);
            let py = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executescript('''
CREATE TABLE networks (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, metered_override INTEGER, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL);
CREATE TABLE budgets (network_id TEXT PRIMARY KEY, cap_bytes INTEGER NOT NULL, period TEXT NOT NULL, cycle_day INTEGER, one_off_start INTEGER, one_off_end INTEGER, counts TEXT NOT NULL, reserve_percent INTEGER NOT NULL, utc_offset_seconds INTEGER NOT NULL);
CREATE TABLE schedule_windows (network_id TEXT NOT NULL, position INTEGER NOT NULL, days INTEGER NOT NULL, start_minute INTEGER NOT NULL, end_minute INTEGER NOT NULL, rule TEXT NOT NULL, down_rate INTEGER, up_rate INTEGER, utc_offset_seconds INTEGER NOT NULL, PRIMARY KEY (network_id, position));
CREATE TABLE usage (network_id TEXT NOT NULL, period_start INTEGER NOT NULL, direction TEXT NOT NULL, peer_class TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (network_id, period_start, direction, peer_class));
CREATE TABLE reservations (network_id TEXT NOT NULL, period_start INTEGER NOT NULL, reserved_bytes INTEGER NOT NULL, PRIMARY KEY (network_id, period_start));
CREATE TABLE link_usage (network_id TEXT NOT NULL, period_start INTEGER NOT NULL, rx_bytes INTEGER NOT NULL, tx_bytes INTEGER NOT NULL, PRIMARY KEY (network_id, period_start));
INSERT INTO networks VALUES ('old-net', 'Old network', 'ethernet', 1, 1700000000, 1700000000);
PRAGMA user_version = 1;
''')
c.commit()
"#;
            let status = Command::new("python3")
                .arg("-c")
                .arg(py)
                .arg(&db)
                .status()
                .context("python3 (to build an old database)")?;
            ensure!(
                status.success(),
                "building the old database failed: {status}"
            );
            let mut agent = w.start_agent("agent-old")?;
            let networks = agent.cli_json(&["usage"])?;
            ensure!(
                networks.to_string().contains("old-net"),
                "the old database's network is gone after migration: {networks}"
            );
            let again = w.add(&mut agent, 0, None)?;
            wait_status(&mut agent, &again, "seeding", WAIT, false, |s| {
                s["state"] == "seeding"
            })?;
            stop(&mut agent)?;
            ensure!(
                asides(&w.state_dir)?.len() == 3,
                "the old database was moved aside instead of migrated"
            );
            let mut agent = w.start_agent("agent-old-2")?;
            let listed = agent.cli_json(&["list"])?;
            ensure!(
                listed.as_array().is_some_and(|a| a.len() == 1),
                "the migrated database lost its torrent over a restart: {listed}"
            );
            stop(&mut agent)?;
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// d. files deleted or truncated under a seeder
// ---------------------------------------------------------------------------------------------

#[test]
fn files_truncated_or_deleted_under_a_seeder_are_never_served() {
    run(
        "truncated/deleted under a seeder",
        "seedfault",
        &[8 * MIB],
        |w| {
            let mut agent = w.start_agent("agent")?;
            // The agent seeds its own copy of the data.
            let own = w.root.join("own");
            let p = &w.payloads[0];
            make_tree(
                &own.join(&p.name),
                &[("data.bin", 8 * MIB), ("small/note.txt", 1234)],
                0xFA17,
            )?;
            w.verify(0, &own)?;
            let id = w.add(&mut agent, 0, Some(&own))?;
            let s = wait_status(&mut agent, &id, "seeding", WAIT, false, |s| {
                s["state"] == "seeding"
            })?;
            let total = s["total_length"].as_u64().unwrap_or(0);

            // Truncate the big file to half: the pieces past the cut cannot be read.
            let big = own.join(&p.name).join("data.bin");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&big)?
                .set_len(4 * MIB + 1000)?;
            // And delete the small file outright.
            std::fs::remove_file(own.join(&p.name).join("small/note.txt"))?;

            let leech_dir = w.root.join("leech");
            let mut leech = libtorrent::get(
                "lt-leech",
                &p.torrent,
                &leech_dir,
                free_port(),
                &LtOpts {
                    peers: vec![w.listen],
                    ..LtOpts::default()
                },
                &w.logs,
            )?;
            let s = wait_status(
                &mut agent,
                &id,
                "the agent to see its data is incomplete",
                Duration::from_secs(60),
                true,
                |s| s["bytes_have"].as_u64().is_some_and(|b| b < total) && s["state"] != "checking",
            )?;
            eprintln!(
                "[faults]   after the truncation: state {}, {} of {} B verified",
                s["state"], s["bytes_have"], total
            );
            ensure!(s["state"] != "seeding", "still seeding: {s}");
            // The leecher gets what is intact and never completes from bad data.
            std::thread::sleep(Duration::from_secs(5));
            ensure!(
                leech.try_wait()?.is_none(),
                "the libtorrent leecher finished although the only seeder lost data"
            );
            let lt_log = std::fs::read_to_string(&leech.stdout_path)?
                + &std::fs::read_to_string(&leech.stderr_path)?;
            ensure!(
                !lt_log.to_lowercase().contains("hash_failed") && !lt_log.contains("hash fail"),
                "libtorrent received data failing its hash check"
            );
            // What the leecher wrote of the intact half is the real data.
            let got = leech_dir.join(&p.name).join("data.bin");
            if let Ok(mut f) = std::fs::File::open(&got) {
                let mut want = std::fs::File::open(p.seed_dir.join(&p.name).join("data.bin"))?;
                let (mut a, mut b) = (vec![0u8; PIECE as usize], vec![0u8; PIECE as usize]);
                let mut same = 0;
                for _ in 0..16 {
                    let n = read_full(&mut f, &mut a)?;
                    read_full(&mut want, &mut b)?;
                    if n == PIECE as usize && a == b {
                        same += 1;
                    }
                }
                eprintln!("[faults]   leecher holds {same} of the 16 intact pieces, matching");
            }
            drop(leech);
            stop(&mut agent)?;
            Ok(())
        },
    );
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// e. 1,000 hostile connections
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct FloodCounts {
    attempts: AtomicU64,
    connects: AtomicU64,
    handshakes: AtomicU64,
    closed_by_capwise: AtomicU64,
    held: AtomicU64,
}

/// `n` connections to `target`, each sending a valid handshake and then
/// nothing (every other one a keep-alive every 5 s: slow loris); a closed
/// one reconnects after 5 s. Runs on 8 threads until `stop`.
fn flood(
    target: SocketAddr,
    info_hash: [u8; 20],
    n: usize,
    stop: Arc<AtomicBool>,
    counts: Arc<FloodCounts>,
) -> Vec<std::thread::JoinHandle<()>> {
    const THREADS: usize = 8;
    (0..THREADS)
        .map(|t| {
            let stop = stop.clone();
            let counts = counts.clone();
            std::thread::spawn(move || {
                struct Slot {
                    conn: Option<TcpStream>,
                    got: usize,
                    next: Instant,
                    last_ping: Instant,
                }
                let mine = n / THREADS;
                let now = Instant::now();
                let mut slots: Vec<Slot> = (0..mine)
                    .map(|_| Slot {
                        conn: None,
                        got: 0,
                        next: now,
                        last_ping: now,
                    })
                    .collect();
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    for (i, s) in slots.iter_mut().enumerate() {
                        let now = Instant::now();
                        match &mut s.conn {
                            None if now >= s.next => {
                                counts.attempts.fetch_add(1, Ordering::Relaxed);
                                let Ok(mut c) =
                                    TcpStream::connect_timeout(&target, Duration::from_secs(1))
                                else {
                                    s.next = now + Duration::from_secs(5);
                                    continue;
                                };
                                counts.connects.fetch_add(1, Ordering::Relaxed);
                                let mut hs = Vec::with_capacity(68);
                                hs.push(19u8);
                                hs.extend_from_slice(b"BitTorrent protocol");
                                hs.extend_from_slice(&[0u8; 8]);
                                hs.extend_from_slice(&info_hash);
                                let mut id = *b"-XX0001-000000000000";
                                id[8..12].copy_from_slice(&(t as u16).to_be_bytes().repeat(2));
                                id[12..20].copy_from_slice(&(i as u64).to_be_bytes());
                                hs.extend_from_slice(&id);
                                if c.write_all(&hs).is_err() || c.set_nonblocking(true).is_err() {
                                    s.next = now + Duration::from_secs(5);
                                    continue;
                                }
                                s.got = 0;
                                s.last_ping = now;
                                s.conn = Some(c);
                                counts.held.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {}
                            Some(c) => {
                                let closed = match c.read(&mut buf) {
                                    Ok(0) => true,
                                    Ok(k) => {
                                        if s.got < 68 && s.got + k >= 68 {
                                            counts.handshakes.fetch_add(1, Ordering::Relaxed);
                                        }
                                        s.got += k;
                                        false
                                    }
                                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                                };
                                let loris = i % 2 == 1;
                                let ping_failed = loris
                                    && !closed
                                    && now.duration_since(s.last_ping) > Duration::from_secs(5)
                                    && {
                                        s.last_ping = now;
                                        c.write_all(&[0, 0, 0, 0]).is_err()
                                    };
                                if closed || ping_failed {
                                    counts.closed_by_capwise.fetch_add(1, Ordering::Relaxed);
                                    counts.held.fetch_sub(1, Ordering::Relaxed);
                                    s.conn = None;
                                    s.next = now + Duration::from_secs(5);
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect()
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn hex20(s: &str) -> Result<[u8; 20]> {
    let mut out = [0u8; 20];
    ensure!(s.len() == 40, "not an info-hash: {s}");
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

#[test]
fn a_thousand_silent_connections_do_not_lock_out_an_honest_seeder() {
    const FLOOD: usize = 1000;
    const PROMPT: Duration = Duration::from_secs(45);
    run("1,000 hostile connections", "flood", &[16 * MIB], |w| {
        let mut agent = w.start_agent("agent")?;
        let id = w.add(&mut agent, 0, None)?;
        // The flood takes every slot before the honest seeder exists.
        let stop_flag = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(FloodCounts::default());
        let threads = flood(
            w.listen,
            hex20(&w.payloads[0].hash)?,
            FLOOD,
            stop_flag.clone(),
            counts.clone(),
        );
        let result = (|| -> Result<()> {
            // Every one of the flood's connections is tried before the seeder
            // comes: the check after the download is then about the flood, not
            // about how fast the honest download was.
            wait_until(
                "the flood to try all its connections and hold some",
                Duration::from_secs(60),
                Duration::from_millis(200),
                || {
                    Ok(counts.attempts.load(Ordering::Relaxed) >= FLOOD as u64
                        && counts.handshakes.load(Ordering::Relaxed) >= 50)
                },
            )?;
            std::thread::sleep(Duration::from_secs(3));
            let s = agent.status(&id)?;
            eprintln!(
                "[faults]   flood: {} connects, {} handshakes answered, {} held; agent peers {}",
                counts.connects.load(Ordering::Relaxed),
                counts.handshakes.load(Ordering::Relaxed),
                counts.held.load(Ordering::Relaxed),
                s["peers"]
            );
            let t0 = Instant::now();
            // The seeder dials the agent, as a peer learning it from a tracker would.
            w.seed(0, vec![w.listen])?;
            let pid = agent.guard.pid();
            let mut rss = 0;
            wait_status(&mut agent, &id, "the honest download", PROMPT, false, |s| {
                rss = rss.max(vm_hwm(pid).unwrap_or(0));
                s["state"] == "seeding"
            })
            .with_context(|| {
                format!(
                    "flood: {} connects, {} closed by capwise",
                    counts.connects.load(Ordering::Relaxed),
                    counts.closed_by_capwise.load(Ordering::Relaxed)
                )
            })?;
            let took = t0.elapsed();
            rss = rss.max(vm_hwm(pid).unwrap_or(0));
            eprintln!(
                "[faults]   honest download under the flood: {:.1}s; agent peak RSS {} MiB; flood: {} connects, {} handshakes, {} closed by capwise, {} held",
                took.as_secs_f64(),
                rss >> 20,
                counts.connects.load(Ordering::Relaxed),
                counts.handshakes.load(Ordering::Relaxed),
                counts.closed_by_capwise.load(Ordering::Relaxed),
                counts.held.load(Ordering::Relaxed),
            );
            ensure!(
                counts.attempts.load(Ordering::Relaxed) >= FLOOD as u64,
                "the flood tried fewer than {FLOOD} connections"
            );
            ensure!(rss < 512 * MIB, "agent peak RSS {} MiB", rss >> 20);
            w.verify(0, &w.data_dir)?;
            Ok(())
        })();
        stop_flag.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        result?;
        stop(&mut agent)?;
        Ok(())
    });
}
