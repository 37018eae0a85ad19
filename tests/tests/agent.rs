//! End to end through the CLI against a running agent (`capwise run`), with
//! a real libtorrent seeder and opentracker on 127.0.0.1 inside a private
//! network namespace (`scripts/test` runs it in `unshare -n` with the
//! `interop` feature): add a torrent and watch it complete, pause, resume,
//! restart and resume without re-hashing, kill -9 mid-download and lose no
//! verified piece, remove with data, and the API's guard.

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::agent::Agent;
use capwise_tests::clients::libtorrent::{self, LtOpts};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::{assert_same_tree, make_tree};
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, wait_until, ChildGuard};
use capwise_tests::torrent::make_torrent;
use capwise_tests::tracker::{announce_url, reserve_port, Tracker};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const PIECE: u32 = 256 * 1024;
const MIB: u64 = 1 << 20;
const NAME: &str = "payload";

/// One test's world: a payload seeded by libtorrent through a tracker, and
/// an agent's state, config and download directories.
struct World {
    tmp: tempfile::TempDir,
    logs: PathBuf,
    seed_dir: PathBuf,
    torrent: PathBuf,
    state_dir: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    _tracker: Tracker,
    _seeder: ChildGuard,
}

impl World {
    fn new(size: u64) -> Result<World> {
        let tmp = tempfile::Builder::new()
            .prefix("capwise-agent-")
            .tempdir()?;
        let root = tmp.path().to_path_buf();
        let logs = root.join("logs");
        let seed_dir = root.join("seed");
        make_tree(
            &seed_dir.join(NAME),
            &[("big.bin", size), ("small/note.txt", 1234)],
            0xA6E47,
        )?;
        let port = reserve_port();
        let torrent = root.join("payload.torrent");
        let hash = make_torrent(
            &seed_dir.join(NAME),
            &torrent,
            &[announce_url(port)],
            PIECE,
            &logs,
        )?;
        let tracker = Tracker::start(
            port,
            std::slice::from_ref(&hash),
            &root.join("tracker"),
            &logs,
        )?;
        let seeder = libtorrent::seed(
            "lt-seed",
            &torrent,
            &seed_dir,
            free_port(),
            &LtOpts::default(),
            &logs,
        )?;
        tracker.wait_swarm(&hash, 1, 0, WAIT)?;
        let state_dir = root.join("state");
        let data_dir = root.join("data");
        let config = root.join("config.toml");
        // A named network, so the ledger has rows `capwise usage` lists.
        let network_file = root.join("network.toml");
        std::fs::write(
            &network_file,
            "id = \"agent-test\"\nname = \"Test LAN\"\nkind = \"ethernet\"\nmetered = \"no\"\n",
        )?;
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{}\"\ndownload_dir = \"{}\"\nnetwork_file = \"{}\"\n",
                free_port(),
                data_dir.display(),
                network_file.display()
            ),
        )?;
        Ok(World {
            tmp,
            logs,
            seed_dir,
            torrent,
            state_dir,
            config,
            data_dir,
            _tracker: tracker,
            _seeder: seeder,
        })
    }

    fn start_agent(&self, name: &str) -> Result<Agent> {
        Agent::start(name, &self.state_dir, &self.config, None, &self.logs)
    }

    fn verify(&self) -> Result<()> {
        assert_same_tree(&self.seed_dir.join(NAME), &self.data_dir.join(NAME))
    }
}

fn run(test: &str, size: u64, body: impl FnOnce(&World) -> Result<()>) {
    assert_private_netns();
    let t0 = Instant::now();
    let world = World::new(size).expect("test setup (payload, tracker, seeder)");
    match body(&world) {
        Ok(()) => eprintln!("[agent] {test}: ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            dump_logs(&world.logs, None);
            if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
                eprintln!("[agent] kept {}", world.tmp.keep().display());
            }
            panic!("[agent] {test} failed: {e:#}");
        }
    }
}

/// SIGTERM, then the exit status; fails if the agent takes longer than
/// `bound` (systemd would kill it).
fn stop(agent: &mut Agent, bound: Duration) -> Result<Duration> {
    let t = Instant::now();
    agent.guard.signal(libc::SIGTERM);
    let status = agent
        .guard
        .wait_timeout(bound)?
        .with_context(|| format!("the agent did not stop within {bound:?} of SIGTERM"))?;
    ensure!(status.success(), "the agent exited with {status}");
    Ok(t.elapsed())
}

#[test]
fn add_watch_pause_resume_restart_and_remove() {
    run(
        "add, watch, pause, resume, restart, remove",
        12 * MIB,
        |w| {
            let mut agent = w.start_agent("agent-1")?;
            let id = agent
                .cli(&["add", w.torrent.to_str().context("utf-8 path")?])?
                .trim()
                .to_string();
            ensure!(id.len() == 40, "add printed {id:?}, not an id");
            // `status --watch` returns once nothing is checking or downloading.
            agent.cli(&["status", &id, "--watch"])?;
            let done = agent.wait_state(&id, "seeding", WAIT)?;
            ensure!(done["bytes_have"] == done["total_length"], "{done}");
            // With --json, one JSON object per torrent and line, even while
            // watching; rates are whole, never -0.0.
            let lines = agent.cli(&["status", &id, "--watch", "--json"])?;
            ensure!(
                !lines.trim().is_empty(),
                "status --watch --json printed nothing"
            );
            for line in lines.lines() {
                let view: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("not one JSON object per line: {line:?}"))?;
                ensure!(view["id"] == id.as_str(), "{view}");
                ensure!(!line.contains("-0.0"), "{line}");
            }
            w.verify()?;
            let listed = agent.cli_json(&["list"])?;
            ensure!(listed.as_array().is_some_and(|a| a.len() == 1), "{listed}");

            let paused = agent.cli_json(&["pause", &id[..8]])?;
            ensure!(paused["state"] == "paused", "{paused}");
            let resumed = agent.cli_json(&["resume", &id[..8]])?;
            ensure!(resumed["state"] != "paused", "{resumed}");
            agent.wait_state(&id, "seeding", WAIT)?;

            let took = stop(&mut agent, Duration::from_secs(10))?;
            eprintln!("[agent]   stopped {:.2}s after SIGTERM", took.as_secs_f64());
            ensure!(
                !agent.state_dir.join("agent.json").exists(),
                "agent.json left behind after a clean stop"
            );
            let no_agent = agent.cli(&["list"]).unwrap_err();
            ensure!(
                format!("{no_agent:#}").contains("no capwise agent is running"),
                "{no_agent:#}"
            );

            let mut agent = w.start_agent("agent-2")?;
            let (_, info) = agent.api("GET", "/v1/agent", Some(&agent.token()?), &[], None)?;
            ensure!(info["torrents"] == 1, "{info}");
            ensure!(
                info["hashed_bytes"] == 0,
                "a restart re-hashed data: {info}"
            );
            agent.wait_state(&id, "seeding", WAIT)?;

            let sibling = w.data_dir.join("not-ours.txt");
            std::fs::write(&sibling, "keep me")?;
            agent.cli(&["remove", &id, "--delete-data"])?;
            ensure!(
                !w.data_dir.join(NAME).join("big.bin").exists(),
                "data not deleted"
            );
            ensure!(
                sibling.exists(),
                "remove --delete-data deleted a file not in the torrent"
            );
            let listed = agent.cli_json(&["list"])?;
            ensure!(listed.as_array().is_some_and(|a| a.is_empty()), "{listed}");
            stop(&mut agent, Duration::from_secs(10))?;
            Ok(())
        },
    );
}

#[test]
fn kill9_during_download_keeps_verified_pieces() {
    run("kill -9 mid-download", 24 * MIB, |w| {
        let mut agent = w.start_agent("agent-1")?;
        agent.cli(&["limits", "set", "--down", "3MB/s"])?;
        let id = agent
            .cli(&["add", w.torrent.to_str().context("utf-8 path")?])?
            .trim()
            .to_string();
        let mut before = 0u64;
        for round in 0..3 {
            let target = (round + 1) * 4;
            wait_until(
                &format!("{target} pieces before kill {round}"),
                WAIT,
                Duration::from_millis(100),
                || {
                    let s = agent.status(&id)?;
                    before = s["pieces_have"].as_u64().unwrap_or(0);
                    Ok(before >= target)
                },
            )?;
            let ledger_before = downloaded_per_ledger(&mut agent)?;
            agent.guard.signal(libc::SIGKILL);
            agent.guard.wait_timeout(Duration::from_secs(10))?;
            // Read with the agent dead: what the kill left on disk.
            let ledger_after = downloaded_per_ledger(&mut agent)?;
            agent = w.start_agent(&format!("agent-{}", round + 2))?;
            // Checking may still run; wait for it to finish, then compare.
            let mut after = Value::Null;
            wait_until(
                "the check after restart",
                WAIT,
                Duration::from_millis(100),
                || {
                    after = agent.status(&id)?;
                    Ok(after["state"] != "checking")
                },
            )?;
            let have = after["pieces_have"].as_u64().unwrap_or(0);
            eprintln!(
                "[agent]   kill {round}: {before} pieces before, {have} after restart; \
                 ledger {ledger_before} B before the kill, {ledger_after} B after"
            );
            if have < before {
                bail!("kill -9 lost verified pieces: {before} before, {have} after ({after})");
            }
            // Every verified piece's bytes were debited before they moved, and
            // the ledger read before the kill is a floor.
            let verified_bytes = before * u64::from(PIECE);
            ensure!(
                ledger_after >= ledger_before.max(verified_bytes),
                "kill -9 lost ledger entries: {ledger_after} B recorded after the kill, \
                 {ledger_before} B before it, {verified_bytes} B in verified pieces"
            );
        }
        agent.cli(&["limits", "set", "--down", "unlimited"])?;
        agent.wait_state(&id, "seeding", WAIT)?;
        w.verify()?;
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// The agent's downloaded bytes over every network, per `capwise usage --json`
/// (which reads the database, so it works with the agent dead).
fn downloaded_per_ledger(agent: &mut Agent) -> Result<u64> {
    let usage = agent.cli_json(&["usage"])?;
    let networks = usage.as_array().context("usage --json is not a list")?;
    Ok(networks
        .iter()
        .map(|n| {
            ["down_wan", "down_lan"]
                .iter()
                .map(|k| n["agent"][k].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum())
}

#[test]
fn api_refuses_missing_or_wrong_tokens_and_foreign_pages() {
    run("API guard", MIB, |w| {
        let agent = w.start_agent("agent")?;
        let token = agent.token()?;
        let mode = std::fs::metadata(agent.state_dir.join("api-token"))?.permissions();
        ensure!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077 == 0,
            "api-token is readable by others"
        );
        let expect = |what: &str, got: (u16, Value), status: u16| -> Result<()> {
            ensure!(
                got.0 == status,
                "{what}: expected {status}, got {} {}",
                got.0,
                got.1
            );
            if status >= 400 {
                ensure!(
                    got.1["error"].is_string(),
                    "{what}: no error message: {}",
                    got.1
                );
            }
            Ok(())
        };
        expect(
            "no token",
            agent.api("GET", "/v1/torrents", None, &[], None)?,
            401,
        )?;
        expect(
            "wrong token",
            agent.api("GET", "/v1/torrents", Some(&"0".repeat(64)), &[], None)?,
            401,
        )?;
        expect(
            "foreign Origin",
            agent.api(
                "POST",
                "/v1/torrents",
                Some(&token),
                &[("Origin", "http://evil.example")],
                Some(&json!({"magnet": "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"})),
            )?,
            403,
        )?;
        expect(
            "rebinding Host",
            agent.api(
                "GET",
                "/v1/torrents",
                Some(&token),
                &[("Host", "evil.example:80")],
                None,
            )?,
            403,
        )?;
        expect(
            "good token",
            agent.api("GET", "/v1/torrents", Some(&token), &[], None)?,
            200,
        )?;
        expect(
            "unknown field",
            agent.api(
                "POST",
                "/v1/torrents",
                Some(&token),
                &[],
                Some(&json!({"torrnt": "x"})),
            )?,
            400,
        )?;
        expect(
            "garbage torrent",
            agent.api(
                "POST",
                "/v1/torrents",
                Some(&token),
                &[],
                Some(&json!({"torrent": "ZGU=", "download_dir": w.data_dir})),
            )?,
            400,
        )?;
        expect(
            "unknown id",
            agent.api("GET", "/v1/torrents/abcdef12", Some(&token), &[], None)?,
            404,
        )?;
        Ok(())
    });
}

/// The agent in namespace a seeds to a libtorrent leecher in namespace b (a
/// WAN peer, through a router): rewriting the network file to metered stops
/// the uploads, `capwise why` explains it, and unmetered starts them again.
#[test]
fn metered_switch_mid_seed_stops_wan_uploads_and_why_explains() {
    use capwise_tests::clients::agent::Wrap;
    use capwise_tests::clients::libtorrent::parse_progress;
    use capwise_tests::wan::{netns_command, Ns, WanTopology, A_IP, B_IP, ROUTER_A_IP};

    assert_private_netns();
    let topo = WanTopology::new().expect("WAN topology (needs root and iproute2)");
    let tmp = tempfile::Builder::new()
        .prefix("capwise-agent-wan-")
        .tempdir()
        .expect("temp dir");
    let root = tmp.path().to_path_buf();
    let logs = root.join("logs");
    let result = topo
        .in_ns(Ns::Router, || -> Result<()> {
            let seed_dir = root.join("seed");
            make_tree(&seed_dir.join(NAME), &[("data.bin", 48 * MIB)], 0x5EED)?;
            let torrent = root.join("payload.torrent");
            let url = format!("http://{ROUTER_A_IP}:6969/announce");
            let hash = make_torrent(&seed_dir.join(NAME), &torrent, &[url], PIECE, &logs)?;
            let _tracker = Tracker::start_on(
                ROUTER_A_IP,
                6969,
                std::slice::from_ref(&hash),
                &root.join("tracker"),
                &logs,
                |c| topo.command(&topo.router, &c),
            )?;
            // A slow uplink, as a metered link is: data waits on capwise's side.
            topo.shape(Ns::A, &topo.if_a, 16_000_000)?;
            let net_file = root.join("network.toml");
            let write_network = |metered: &str| -> Result<()> {
                let tmp = net_file.with_extension("tmp");
                std::fs::write(
                    &tmp,
                    format!("id = \"agent-wan\"\nname = \"Branch uplink\"\nkind = \"ethernet\"\nmetered = \"{metered}\"\n"),
                )?;
                std::fs::rename(&tmp, &net_file)?;
                Ok(())
            };
            write_network("no")?;
            let config = root.join("config.toml");
            std::fs::write(&config, format!("listen = \"{A_IP}:6881\"\n"))?;
            let ns_a = topo.a.clone();
            let wrap: Wrap = std::sync::Arc::new(move |c: &Command| netns_command(&ns_a, c));
            let mut agent = Agent::start_wrapped(
                "agent",
                &root.join("state"),
                &config,
                Some(&net_file),
                &logs,
                Some(wrap),
            )?;
            let seed_arg = seed_dir.to_str().context("utf-8 path")?;
            let id = agent
                .cli(&["add", torrent.to_str().context("utf-8 path")?, "-d", seed_arg])?
                .trim()
                .to_string();
            agent.wait_state(&id, "seeding", WAIT)?;
            let leech_dir = root.join("leech");
            let cmd = libtorrent::command_line(
                "get",
                &torrent,
                &leech_dir,
                6882,
                &LtOpts {
                    peers: vec![(A_IP, 6881).into()],
                    listen_ip: Some(B_IP.into()),
                    progress_interval: Some(0.25),
                    ..LtOpts::default()
                },
            );
            let leech = topo.exec("lt-leech", Ns::B, &cmd, &logs)?;
            let received = || parse_progress(&leech.stdout()).last().map_or(0, |p| p.payload_down);
            wait_until("the WAN leecher to receive payload", WAIT, Duration::from_millis(200), || {
                Ok(received() > 2 * MIB)
            })?;

            write_network("yes")?;
            std::thread::sleep(Duration::from_secs(3));
            let after_switch = received();
            std::thread::sleep(Duration::from_secs(4));
            let later = received();
            let why = agent.cli(&["why"])?;
            eprintln!("[agent]   metered: leecher got {} B in the 4 s after the switch settled; why: {}", later - after_switch, why.trim());
            ensure!(
                later - after_switch < 256 * 1024,
                "uploads went on on a metered network: {} B in 4 s",
                later - after_switch
            );
            ensure!(why.to_lowercase().contains("metered"), "why does not say metered: {why}");

            write_network("no")?;
            wait_until("uploads to resume when unmetered", WAIT, Duration::from_millis(200), || {
                Ok(received() > later + MIB)
            })?;
            stop(&mut agent, Duration::from_secs(10))?;
            Ok(())
        })
        .and_then(|r| r);
    if let Err(e) = result {
        dump_logs(&logs, None);
        if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
            eprintln!("[agent] kept {}", tmp.keep().display());
        }
        panic!("[agent] metered switch failed: {e:#}");
    }
}
