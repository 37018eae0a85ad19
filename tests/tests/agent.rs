//! End to end through the CLI against a running agent (`capwise run`), with
//! a real libtorrent seeder and opentracker on 127.0.0.1 inside a private
//! network namespace (`scripts/test` runs it in `unshare -n` with the
//! `interop` feature): add a torrent and watch it complete, pause, resume,
//! restart and resume without re-hashing, kill -9 mid-download and lose no
//! verified piece, remove with data, and the API's guard.

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::agent::Agent;
use capwise_tests::clients::libtorrent::{self, LtOpts};
use capwise_tests::clients::lighttpd::Lighttpd;
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
    /// The libtorrent seeder's address.
    seeder: std::net::SocketAddr,
    info_hash: String,
    _tracker: Tracker,
    _seeder: ChildGuard,
}

impl World {
    fn new(size: u64) -> Result<World> {
        World::with_files(&[("big.bin", size), ("small/note.txt", 1234)])
    }

    /// A world whose payload holds `files` (paths inside it, sizes).
    fn with_files(files: &[(&str, u64)]) -> Result<World> {
        let tmp = tempfile::Builder::new()
            .prefix("capwise-agent-")
            .tempdir()?;
        let root = tmp.path().to_path_buf();
        let logs = root.join("logs");
        let seed_dir = root.join("seed");
        make_tree(&seed_dir.join(NAME), files, 0xA6E47)?;
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
        let seeder_port = free_port();
        let seeder = libtorrent::seed(
            "lt-seed",
            &torrent,
            &seed_dir,
            seeder_port,
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
                "listen = \"127.0.0.1:{}\"\ndownload_dir = \"{}\"\nnetwork_file = \"{}\"\n[dht]\nenabled = false\n",
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
            seeder: ([127, 0, 0, 1], seeder_port).into(),
            info_hash: hash,
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
    run_in(test, World::new(size), body)
}

fn run_in(test: &str, world: Result<World>, body: impl FnOnce(&World) -> Result<()>) {
    assert_private_netns();
    let t0 = Instant::now();
    let world = world.expect("test setup (payload, tracker, seeder)");
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

/// `capwise run --peer HOST:PORT`: every torrent of the agent dials that
/// peer, like a magnet link's `x.pe`. A magnet link with no tracker and no
/// `x.pe` gets its metadata and data from the libtorrent seeder it names.
#[test]
fn run_peer_is_dialled_for_every_torrent() {
    run("run --peer", 4 * MIB, |w| {
        let peer = vec!["--peer".to_string(), w.seeder.to_string()];
        let mut agent =
            Agent::start_with_args("agent-peer", &w.state_dir, &w.config, &peer, &w.logs)?;
        let magnet = format!("magnet:?xt=urn:btih:{}&dn={NAME}", w.info_hash);
        let id = agent.cli(&["add", &magnet])?.trim().to_string();
        ensure!(id == w.info_hash, "add printed {id:?}");
        let done = agent.wait_state(&id, "seeding", WAIT)?;
        ensure!(done["bytes_have"] == done["total_length"], "{done}");
        w.verify()?;
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// `capwise add MAGNET` with no peer that has it: the torrent is `fetching
/// metadata` in `list`, `status` and the API, and still is after a restart;
/// once a seeder is known (`--peer`, the libtorrent seeder) it completes.
#[test]
fn a_magnet_fetches_metadata_across_a_restart_until_a_seeder_appears() {
    run("add MAGNET, restart, seeder appears", 4 * MIB, |w| {
        // No tracker and no x.pe: nobody to ask (and no DHT in the namespace).
        let magnet = format!("magnet:?xt=urn:btih:{}&dn={NAME}", w.info_hash);
        let fetching = |agent: &mut Agent| -> Result<()> {
            let listed = agent.cli_json(&["list"])?;
            let row = listed
                .as_array()
                .and_then(|a| a.iter().find(|t| t["id"] == w.info_hash.as_str()))
                .with_context(|| format!("list has no {}: {listed}", w.info_hash))?;
            ensure!(row["state"] == "fetching metadata", "list: {row}");
            let status = agent.cli_json(&["status", &w.info_hash])?;
            ensure!(status["state"] == "fetching metadata", "status: {status}");
            let path = format!("/v1/torrents/{}", w.info_hash);
            let (_, api) = agent.api("GET", &path, Some(&agent.token()?), &[], None)?;
            ensure!(api["state"] == "fetching metadata", "API: {api}");
            Ok(())
        };

        let mut agent = w.start_agent("agent-magnet-1")?;
        let id = agent.cli(&["add", &magnet])?.trim().to_string();
        ensure!(id == w.info_hash, "add printed {id:?}");
        fetching(&mut agent)?;
        // Still nobody after a while: it keeps fetching.
        std::thread::sleep(Duration::from_secs(2));
        fetching(&mut agent)?;
        stop(&mut agent, Duration::from_secs(10))?;

        let mut agent = w.start_agent("agent-magnet-2")?;
        fetching(&mut agent)?;
        stop(&mut agent, Duration::from_secs(10))?;

        // The seeder appears: the agent is told of it.
        let peer = vec!["--peer".to_string(), w.seeder.to_string()];
        let mut agent =
            Agent::start_with_args("agent-magnet-3", &w.state_dir, &w.config, &peer, &w.logs)?;
        let done = agent.wait_state(&id, "seeding", WAIT)?;
        ensure!(done["bytes_have"] == done["total_length"], "{done}");
        w.verify()?;
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
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
            // The queue (its logic: the agent's unit tests): one torrent, first.
            let queue = agent.cli_json(&["queue"])?;
            ensure!(queue[0]["queue_position"] == 1, "{queue}");
            let moved = agent.cli_json(&["queue", &id[..8], "--move", "bottom"])?;
            ensure!(
                moved["queue_position"] == 1 && moved["state"] == "seeding",
                "{moved}"
            );
            for bad in [
                vec!["queue", &id[..8]],
                vec!["queue", &id[..8], "--move", "sideways"],
            ] {
                ensure!(agent.cli(&bad).is_err(), "capwise {bad:?} was accepted");
            }

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
            let info = agent.cli(&["info"])?;
            ensure!(info.contains(", 1 torrent\n"), "{info}");
            let removed = agent.cli_json(&["remove", &id[..6], "--delete-data"])?;
            ensure!(
                removed["removed"] == id.as_str() && removed["data_deleted"] == true,
                "remove --json printed {removed}"
            );
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

/// `capwise add URL`: lighttpd on 127.0.0.1 serves the .torrent, behind a
/// redirect; an 11 MiB file, an HTML page, a 404 and an endless redirect
/// are refused, each with an error that says which, and nothing is added;
/// the torrent added from the link completes.
#[test]
fn add_url_fetches_the_torrent_and_refuses_what_is_not_one() {
    run("add URL", 4 * MIB, |w| {
        let www = w.tmp.path().join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::copy(&w.torrent, www.join("payload.torrent"))?;
        std::fs::write(www.join("huge.torrent"), vec![b'd'; 11 << 20])?;
        std::fs::write(
            www.join("login.torrent"),
            "<!DOCTYPE html>\n<html><body>Please sign in</body></html>\n",
        )?;
        let web = Lighttpd::start_with(
            &www,
            free_port(),
            &w.tmp.path().join("lighttpd"),
            &w.logs,
            "server.modules += ( \"mod_redirect\" )\n\
             url.redirect = ( \"^/moved$\" => \"/payload.torrent\", \"^/loop/(.*)$\" => \"/loop/a$1\" )",
        )?;
        let mut agent = w.start_agent("agent-url")?;
        let page = std::fs::metadata(www.join("login.torrent"))?.len();
        let not_a_torrent = format!("is not a .torrent ({page} bytes, starting `<!DOCTYPE html>");
        for (path, expected) in [
            ("huge.torrent", "more than the limit of 10485760"),
            ("login.torrent", not_a_torrent.as_str()),
            ("missing.torrent", "HTTP 404"),
            ("loop/x", "too many redirects"),
        ] {
            let url = web.url(path);
            let error = match agent.cli(&["add", &url]) {
                Ok(out) => bail!("add {url} succeeded: {out}"),
                Err(e) => format!("{e:#}"),
            };
            eprintln!(
                "[agent]   {path}: {}",
                error.lines().last().unwrap_or_default()
            );
            ensure!(error.contains(expected), "add {url}: {error}");
        }
        let listed = agent.cli_json(&["list"])?;
        ensure!(listed.as_array().is_some_and(|a| a.is_empty()), "{listed}");
        let id = agent.cli(&["add", &web.url("moved")])?.trim().to_string();
        ensure!(id == w.info_hash, "add printed {id:?}");
        agent.wait_state(&id, "seeding", WAIT)?;
        w.verify()?;
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// The watch folder (`watch_dir`): a broken .torrent there before the start
/// is renamed `.invalid` and the log says why; one written slowly is not
/// taken while its writer holds it open, then is added once and renamed
/// `.added` and completes; the same torrent dropped again is marked added
/// without a second torrent; a restart adds nothing more.
#[test]
fn the_watch_folder_adds_each_dropped_torrent_once() {
    run("watch folder", 4 * MIB, |w| {
        use std::io::Write;
        let watch = w.tmp.path().join("watch");
        std::fs::create_dir_all(&watch)?;
        let config = std::fs::read_to_string(&w.config)?;
        std::fs::write(
            &w.config,
            format!("watch_dir = \"{}\"\n{config}", watch.display()),
        )?;
        std::fs::write(watch.join("broken.torrent"), "d4:infoi1ee")?;
        let mut agent = w.start_agent("agent-watch-1")?;
        let exists = |name: &str| watch.join(name).exists();
        wait_until(
            "broken.torrent to be renamed .invalid",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || Ok(exists("broken.torrent.invalid")),
        )?;
        let log = std::fs::read_to_string(w.logs.join("agent-watch-1.stderr"))?;
        let line = log
            .lines()
            .find(|l| l.contains("broken.torrent") && l.contains("invalid"))
            .with_context(|| format!("the log does not say why:\n{log}"))?;
        ensure!(line.contains("not a usable torrent"), "{line}");

        // Half written, held open past the quiet time: not taken.
        let bytes = std::fs::read(&w.torrent)?;
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        let mut slow = std::fs::File::create(watch.join("payload.torrent"))?;
        slow.write_all(first)?;
        slow.flush()?;
        std::thread::sleep(Duration::from_millis(1500));
        ensure!(exists("payload.torrent"), "taken while still being written");
        let listed = agent.cli_json(&["list"])?;
        ensure!(listed.as_array().is_some_and(|a| a.is_empty()), "{listed}");
        slow.write_all(rest)?;
        drop(slow);
        wait_until(
            "payload.torrent to be renamed .added",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || Ok(exists("payload.torrent.added")),
        )?;
        agent.wait_state(&w.info_hash, "seeding", WAIT)?;
        w.verify()?;

        // The same torrent again, renamed into place as downloaders do.
        std::fs::write(watch.join(".again.part"), &bytes)?;
        std::fs::rename(watch.join(".again.part"), watch.join("again.torrent"))?;
        wait_until(
            "again.torrent to be renamed .added",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || Ok(exists("again.torrent.added")),
        )?;
        let listed = agent.cli_json(&["list"])?;
        ensure!(listed.as_array().is_some_and(|a| a.len() == 1), "{listed}");
        stop(&mut agent, Duration::from_secs(10))?;

        let mut agent = w.start_agent("agent-watch-2")?;
        agent.wait_state(&w.info_hash, "seeding", WAIT)?;
        std::thread::sleep(watch_quiet() * 3);
        let mut names: Vec<String> = std::fs::read_dir(&watch)?
            .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_>>()?;
        names.sort();
        ensure!(
            names
                == [
                    "again.torrent.added",
                    "broken.torrent.invalid",
                    "payload.torrent.added"
                ],
            "{names:?}"
        );
        let log = std::fs::read_to_string(w.logs.join("agent-watch-2.stderr"))?;
        ensure!(
            !log.contains("from the watch folder") && !log.contains("renamed .invalid"),
            "the restart took a file again:\n{log}"
        );
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// The agent's quiet time for a whole file in the watch folder (0.3 s), with room.
fn watch_quiet() -> Duration {
    Duration::from_millis(300)
}

/// `capwise move` from a tmpfs to the disk (another file system: copy,
/// fsync, remove), the agent killed with -9 when a third of the files are
/// across: after the restart every file exists once, in the new place,
/// whole; the torrent seeds from there without hashing anything again. A
/// second move on the same file system (renames) goes through too. The
/// tmpfs lives in a mount namespace a holder process keeps, which the
/// agent enters (`nsenter`), so it outlives the killed agent.
#[test]
fn move_killed_mid_copy_leaves_one_whole_copy_in_the_new_place() {
    const FILES: usize = 160;
    let names: Vec<String> = (0..FILES).map(|i| format!("part/{i:03}.bin")).collect();
    let files: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 256 * 1024)).collect();
    run_in("move, kill -9 mid-copy", World::with_files(&files), |w| {
        let disk = w.tmp.path().join("tmpfs");
        std::fs::create_dir_all(&disk)?;
        let mut holder_cmd = Command::new("unshare");
        holder_cmd
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
            "mount -t tmpfs -o size=128m capwise-move {d} && touch {d}/.mounted && exec sleep 600",
            d = disk.display()
        ));
        let holder = ChildGuard::spawn("tmpfs-holder", &mut holder_cmd, &w.logs)?;
        let inside = PathBuf::from(format!("/proc/{}/root{}", holder.pid(), disk.display()));
        wait_until(
            "the tmpfs to be mounted",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || Ok(inside.join(".mounted").exists()),
        )?;
        let ns = format!("/proc/{}/ns/mnt", holder.pid());
        let wrap: capwise_tests::clients::agent::Wrap = std::sync::Arc::new(move |c: &Command| {
            let mut out = Command::new("nsenter");
            out.arg(format!("--mount={ns}"))
                .arg("--")
                .arg(c.get_program())
                .args(c.get_args());
            for (k, v) in c.get_envs() {
                match v {
                    Some(v) => out.env(k, v),
                    None => out.env_remove(k),
                };
            }
            out
        });
        let start = |name: &str| {
            Agent::start_wrapped(
                name,
                &w.state_dir,
                &w.config,
                None,
                &w.logs,
                Some(wrap.clone()),
            )
        };
        let mut agent = start("agent-move-1")?;
        let id = agent
            .cli(&[
                "add",
                w.torrent.to_str().context("utf-8")?,
                "-d",
                disk.to_str().context("utf-8")?,
            ])?
            .trim()
            .to_string();
        agent.wait_state(&id, "seeding", WAIT)?;
        assert_same_tree(&w.seed_dir.join(NAME), &inside.join(NAME))?;

        // The CLI waits for the move; it dies with the agent.
        let moved = w.tmp.path().join("moved");
        let mut cli = Command::new(capwise_tests::paths::capwise_bin());
        cli.args(["move", &id])
            .arg(&moved)
            .arg("--state-dir")
            .arg(&w.state_dir);
        let mut mover = ChildGuard::spawn("cli-move", &mut cli, &w.logs)?;
        let across = |dir: &std::path::Path| {
            std::fs::read_dir(dir.join(NAME).join("part"))
                .map(|d| {
                    d.flatten()
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .count()
                })
                .unwrap_or(0)
        };
        wait_until(
            "a third of the files to be across",
            Duration::from_secs(60),
            Duration::from_millis(2),
            || Ok(across(&moved) >= FILES / 3),
        )?;
        agent.guard.signal(libc::SIGKILL);
        agent.guard.wait_timeout(Duration::from_secs(10))?;
        let (there, left) = (across(&moved), across(&inside));
        eprintln!("[agent]   killed with {there} files across, {left} not yet");
        ensure!(
            left > 0,
            "the move had finished before the kill: nothing shown"
        );
        let _ = mover.wait_timeout(Duration::from_secs(10));

        let mut agent = start("agent-move-2")?;
        let status = agent.wait_state(&id, "seeding", WAIT)?;
        ensure!(
            status["download_dir"] == moved.to_str().unwrap_or_default(),
            "not seeding from the new place: {status}"
        );
        let log = std::fs::read_to_string(w.logs.join("agent-move-2.stderr"))?;
        ensure!(
            log.contains("interrupted move finished"),
            "the restart did not finish the move:\n{log}"
        );
        let (_, info) = agent.api("GET", "/v1/agent", Some(&agent.token()?), &[], None)?;
        ensure!(
            info["hashed_bytes"] == 0,
            "the moved data was hashed again: {info}"
        );
        assert_same_tree(&w.seed_dir.join(NAME), &moved.join(NAME))?;
        let stray: Vec<_> = walk(&inside)?
            .into_iter()
            .chain(walk(&moved)?.into_iter().filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".capwise-move"))
            }))
            .filter(|p| !p.ends_with(".mounted"))
            .collect();
        ensure!(stray.is_empty(), "files left behind: {stray:?}");

        // Same file system: renames, no kill.
        let again = w.tmp.path().join("again");
        let view = agent.cli_json(&["move", &id[..8], again.to_str().context("utf-8")?])?;
        ensure!(
            view["download_dir"] == again.to_str().unwrap_or_default(),
            "{view}"
        );
        agent.wait_state(&id, "seeding", WAIT)?;
        assert_same_tree(&w.seed_dir.join(NAME), &again.join(NAME))?;
        ensure!(!moved.join(NAME).exists(), "the old copy is still there");
        stop(&mut agent, Duration::from_secs(10))?;
        drop(holder);
        Ok(())
    });
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                todo.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

/// `incomplete_dir` and `on_complete`: the torrent downloads into the
/// incomplete directory, moves to the download directory when complete,
/// and the program runs once there (argv with the data's path and the id
/// appended, the environment naming the torrent), its output in the log;
/// a restart runs nothing again.
#[test]
fn a_completed_download_moves_out_of_incomplete_dir_and_runs_on_complete_once() {
    run("incomplete_dir, on_complete", 4 * MIB, |w| {
        use std::os::unix::fs::PermissionsExt;
        let incomplete = w.tmp.path().join("incomplete");
        let out = w.tmp.path().join("hook.out");
        let script = w.tmp.path().join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s|' \"$@\" >> {out}\necho \"$CAPWISE_TORRENT_NAME\" >> {out}\necho hello from the hook\n",
                out = out.display()
            ),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let config = std::fs::read_to_string(&w.config)?;
        std::fs::write(
            &w.config,
            format!(
                "incomplete_dir = \"{}\"\non_complete = [\"{}\", \"first arg\"]\n{config}",
                incomplete.display(),
                script.display()
            ),
        )?;
        let mut agent = w.start_agent("agent-complete-1")?;
        let added = agent.cli_json(&["add", w.torrent.to_str().context("utf-8")?])?;
        ensure!(
            added["download_dir"] == incomplete.to_str().unwrap_or_default(),
            "not added into the incomplete directory: {added}"
        );
        let id = added["id"].as_str().context("an id")?.to_string();
        let data_dir = w.data_dir.to_str().unwrap_or_default();
        let mut last = Value::Null;
        wait_until(
            "the completed torrent to seed from the download directory",
            WAIT,
            Duration::from_millis(100),
            || {
                last = agent.status(&id)?;
                Ok(last["state"] == "seeding" && last["download_dir"] == data_dir)
            },
        )
        .with_context(|| format!("last status: {last}"))?;
        w.verify()?;
        ensure!(
            !incomplete.join(NAME).exists(),
            "data left in the incomplete directory"
        );
        wait_until(
            "the on-completion command to run",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || Ok(out.exists()),
        )?;
        let expected = format!(
            "first arg|{}|{id}|{NAME}\n",
            w.data_dir.join(NAME).display()
        );
        std::thread::sleep(Duration::from_millis(500));
        ensure!(
            std::fs::read_to_string(&out)? == expected,
            "{:?}",
            std::fs::read_to_string(&out)?
        );
        let log = std::fs::read_to_string(w.logs.join("agent-complete-1.stderr"))?;
        ensure!(
            log.contains("hello from the hook"),
            "its output is not in the log:\n{log}"
        );
        stop(&mut agent, Duration::from_secs(10))?;

        let mut agent = w.start_agent("agent-complete-2")?;
        agent.wait_state(&id, "seeding", WAIT)?;
        std::thread::sleep(Duration::from_millis(1500));
        ensure!(
            std::fs::read_to_string(&out)? == expected,
            "the restart ran it again: {:?}",
            std::fs::read_to_string(&out)?
        );
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// `add --only`: only the wanted file's pieces are fetched (the ledger says
/// so), the skipped file is not created, the choice survives a restart, and
/// `files --want` completes the rest.
#[test]
fn add_only_fetches_the_wanted_file_and_files_want_fetches_the_rest() {
    // big.bin and small/note.txt share a piece (200,000 bytes past 3 MiB).
    run("add --only, files --want", 3 * MIB + 200_000, |w| {
        let mut agent = w.start_agent("agent-1")?;
        let torrent = w.torrent.to_str().context("utf-8 path")?;
        let added = agent.cli_json(&["add", torrent, "--only", "small/*"])?;
        let id = added["id"]
            .as_str()
            .context("add --json has no id")?
            .to_string();
        let done = agent.wait_state(&id, "seeding", WAIT)?;
        // note.txt shares a piece with big.bin: the first piece if it comes
        // first in the torrent, else the short last one.
        let files = agent.cli_json(&["files", &id[..8]])?;
        let path_of = |i: usize| files["files"][i]["path"].as_str().unwrap_or("").to_string();
        let (big, note) = if path_of(0) == "big.bin" {
            (0, 1)
        } else {
            (1, 0)
        };
        ensure!(
            path_of(big) == "big.bin" && path_of(note) == "small/note.txt",
            "{files}"
        );
        let shared_piece = if note == 0 {
            u64::from(PIECE)
        } else {
            200_000 + 1234
        };
        ensure!(
            done["wanted_length"] == shared_piece && done["wanted_have"] == shared_piece,
            "only the piece holding note.txt is wanted: {done}"
        );
        ensure!(
            files["files"][big]["priority"] == "skip"
                && files["files"][note]["priority"] == "normal",
            "{files}"
        );
        let data = w.data_dir.join(NAME);
        ensure!(!data.join("big.bin").exists(), "a skipped file was created");
        ensure!(
            std::fs::read(data.join("small/note.txt"))?
                == std::fs::read(w.seed_dir.join(NAME).join("small/note.txt"))?,
            "note.txt differs from the seeder's"
        );
        ensure!(
            w.data_dir.join(format!(".{id}.parts")).exists(),
            "big.bin's share of the shared piece is not kept aside"
        );
        // A clean stop takes back what the ledger wrote ahead of the bytes.
        stop(&mut agent, Duration::from_secs(10))?;
        let ledger = downloaded_per_ledger(&mut agent)?;
        ensure!(
            ledger >= shared_piece && ledger <= shared_piece + 64 * 1024,
            "the ledger counts {ledger} bytes down for a wanted piece of {shared_piece}"
        );
        // The choice is kept: a restart does not fetch or create big.bin.
        let mut agent = w.start_agent("agent-2")?;
        agent.wait_state(&id, "seeding", WAIT)?;
        ensure!(
            !data.join("big.bin").exists(),
            "a restart created the skipped file"
        );
        let bad = agent.cli(&["files", &id, "--want", "7"]).unwrap_err();
        ensure!(format!("{bad:#}").contains("no file 7"), "{bad:#}");
        let changed = agent.cli_json(&[
            "files",
            &id,
            "--want",
            &big.to_string(),
            "--priority",
            &format!("{note}=high"),
        ])?;
        ensure!(changed["files"][big]["priority"] == "normal", "{changed}");
        ensure!(changed["files"][note]["priority"] == "high", "{changed}");
        let done = agent.wait_state(&id, "seeding", WAIT)?;
        ensure!(done["bytes_have"] == done["total_length"], "{done}");
        w.verify()?;
        ensure!(
            !w.data_dir.join(format!(".{id}.parts")).exists(),
            "the parts file outlived the last skipped file"
        );
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// `capwise set ID --down RATE`: the torrent's own limit holds its download
/// back (an upper bound, not a timing figure), is kept across a restart,
/// and lifting it lets the download finish.
#[test]
fn set_limits_one_torrent_and_keeps_the_limit() {
    run("set --down", 12 * MIB, |w| {
        let mut agent = w.start_agent("agent-1")?;
        let torrent = w.torrent.to_str().context("utf-8 path")?;
        let id = agent.cli(&["add", torrent, "--paused"])?.trim().to_string();
        let set = agent.cli_json(&["set", &id[..8], "--down", "1MB/s"])?;
        ensure!(
            set["limits"]["down"] == 1_000_000 && set["limits"]["up"].is_null(),
            "{set}"
        );
        agent.cli(&["resume", &id])?;
        std::thread::sleep(Duration::from_secs(3));
        let view = agent.cli_json(&["status", &id])?;
        let have = view["bytes_have"].as_u64().unwrap_or(u64::MAX);
        // 3 s at 1 MB/s plus one burst and the requests in flight.
        ensure!(have <= 5 * MIB, "{have} bytes in 3 s under a 1 MB/s limit");
        // Mid-download, `peers` shows the libtorrent seeder we download from.
        let peers = agent.cli_json(&["peers", &id[..8]])?;
        let seeder = &peers["peers"][0];
        ensure!(
            seeder["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("libtorrent "))
                && seeder["source"] == "tracker"
                && seeder["progress"] == 1.0
                && seeder["flags"]
                    .as_str()
                    .is_some_and(|f| f.contains('D') || f.contains('d')),
            "{peers}"
        );
        let table = agent.cli(&["peers", &id[..8]])?;
        ensure!(
            table.contains("libtorrent") && table.contains("tracker"),
            "{table}"
        );
        stop(&mut agent, Duration::from_secs(10))?;
        let mut agent = w.start_agent("agent-2")?;
        let view = agent.cli_json(&["status", &id])?;
        ensure!(
            view["limits"]["down"] == 1_000_000,
            "the limit was not kept: {view}"
        );
        let lifted = agent.cli_json(&["set", &id, "--down", "unlimited"])?;
        ensure!(lifted["limits"]["down"].is_null(), "{lifted}");
        agent.wait_state(&id, "seeding", WAIT)?;
        w.verify()?;
        let none = agent.cli(&["set", &id]).unwrap_err();
        ensure!(format!("{none:#}").contains("nothing to set"), "{none:#}");
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// Seeding goals: a torrent the agent seeds from its own data stops once a
/// libtorrent leecher has taken it all (ratio 1.0 of its size), says why,
/// refuses a plain `resume`, stays stopped across a restart with its
/// lifetime totals, seeds again when the goal is lifted, and stops again on
/// a seeding-time goal it has already passed.
#[test]
fn seeding_goals_stop_at_a_ratio_or_a_seeding_time_and_hold_across_a_restart() {
    run("seeding goals", 2 * MIB, |w| {
        let mut agent = w.start_agent("agent-1")?;
        // A torrent only the agent has: no tracker, the leecher dials the agent.
        let own = w.tmp.path().join("own");
        make_tree(&own.join("shared"), &[("data.bin", 3 * MIB)], 0x60A1)?;
        let torrent = w.tmp.path().join("own.torrent");
        make_torrent(&own.join("shared"), &torrent, &[], PIECE, &w.logs)?;
        let torrent = torrent.to_str().context("utf-8 path")?;
        let own_s = own.to_str().context("utf-8 path")?;
        let id = agent
            .cli(&["add", torrent, "-d", own_s])?
            .trim()
            .to_string();
        agent.wait_state(&id, "seeding", WAIT)?;
        let none = agent.cli(&["trackers", &id])?;
        ensure!(none.contains("no trackers"), "{none}");
        let set = agent.cli_json(&["set", &id[..8], "--ratio", "1.0"])?;
        ensure!(
            set["seeding"]["ratio_goal"] == 1.0 && set["state"] == "seeding",
            "{set}"
        );
        let config = std::fs::read_to_string(&w.config)?;
        let listen: std::net::SocketAddr = config
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .context("no listen in the config")?
            .trim_matches('"')
            .parse()?;
        let mut leech = libtorrent::get(
            "lt-leech",
            std::path::Path::new(torrent),
            &w.tmp.path().join("leech"),
            free_port(),
            &LtOpts {
                peers: vec![listen],
                ..LtOpts::default()
            },
            &w.logs,
        )?;
        libtorrent::wait_done(&mut leech, WAIT)?;
        let mut finished = Value::Null;
        wait_until(
            "the ratio goal to stop seeding",
            Duration::from_secs(20),
            Duration::from_millis(250),
            || {
                finished = agent.status(&id)?;
                Ok(finished["state"] == "finished")
            },
        )
        .with_context(|| format!("last status: {finished}"))?;
        let reason = finished["reason"].as_str().unwrap_or_default();
        eprintln!("[agent]   {reason}");
        ensure!(reason.contains("ratio goal is 1"), "{finished}");
        ensure!(
            finished["seeding"]["ratio"].as_f64().unwrap_or(0.0) >= 1.0,
            "{finished}"
        );
        let refused = agent.cli(&["resume", &id]).unwrap_err();
        ensure!(
            format!("{refused:#}").contains("--ratio none"),
            "a plain resume of a finished torrent: {refused:#}"
        );

        stop(&mut agent, Duration::from_secs(10))?;
        let mut agent = w.start_agent("agent-2")?;
        let after = agent.status(&id)?;
        ensure!(after["state"] == "finished", "after a restart: {after}");
        let uploaded = after["seeding"]["uploaded_total"].as_u64().unwrap_or(0);
        ensure!(uploaded >= 3 * MIB, "lifetime upload not kept: {after}");
        let text = agent.cli(&["status", &id])?;
        ensure!(text.contains("ratio 1.") && text.contains("of 1"), "{text}");

        agent.cli(&["set", &id, "--ratio", "none"])?;
        agent.wait_state(&id, "seeding", Duration::from_secs(20))?;
        let timed = agent.cli_json(&["set", &id, "--seed-time", "1s"])?;
        ensure!(timed["seeding"]["seed_time_goal_secs"] == 1, "{timed}");
        let mut last = Value::Null;
        wait_until(
            "the seeding-time goal to stop seeding",
            Duration::from_secs(20),
            Duration::from_millis(250),
            || {
                last = agent.status(&id)?;
                Ok(last["state"] == "finished")
            },
        )
        .with_context(|| format!("last status: {last}"))?;
        ensure!(
            last["reason"]
                .as_str()
                .is_some_and(|r| r.contains("seeding-time goal")),
            "{last}"
        );
        let bad = agent.cli(&["set", &id, "--ratio", "lots"]).unwrap_err();
        ensure!(format!("{bad:#}").contains("not a ratio"), "{bad:#}");
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
}

/// `capwise recheck`: a byte changed under a seeding torrent is found by a
/// full check (one piece fewer), which the agent then fetches again from
/// the libtorrent seeder; the lifetime totals survive the check.
#[test]
fn recheck_finds_a_damaged_piece_and_the_agent_fetches_it_again() {
    run("recheck", 2 * MIB, |w| {
        let mut agent = w.start_agent("agent")?;
        let torrent = w.torrent.to_str().context("utf-8 path")?;
        let id = agent.cli(&["add", torrent])?.trim().to_string();
        let seeded = agent.wait_state(&id, "seeding", WAIT)?;
        let pieces = seeded["piece_count"].as_u64().context("piece_count")?;
        // Its one tracker (opentracker) answered with the libtorrent seeder.
        let trackers = agent.cli_json(&["trackers", &id[..8]])?;
        let t = &trackers[0];
        ensure!(
            trackers.as_array().map(Vec::len) == Some(1)
                && t["status"] == "working"
                && t["peers"].as_u64() >= Some(1)
                && t["last_announce"].is_i64()
                && t["error"].is_null(),
            "{trackers}"
        );
        let text = agent.cli(&["trackers", &id])?;
        ensure!(text.contains("working, asked"), "{text}");
        // One byte in the second piece, behind the agent's back.
        let data = w.data_dir.join(NAME).join("big.bin");
        let mut bytes = std::fs::read(&data)?;
        let at = PIECE as usize + 1000;
        bytes[at] ^= 0xFF;
        std::fs::write(&data, &bytes)?;
        let checked = agent.cli_json(&["recheck", &id[..8]])?;
        eprintln!(
            "[agent]   recheck: {} of {pieces} pieces good, then {}",
            checked["pieces_have"], checked["state"]
        );
        // On loopback the piece may be fetched again before the CLI looks.
        ensure!(
            checked["pieces_have"].as_u64() >= Some(pieces - 1),
            "the check lost good pieces: {checked}"
        );
        let after = agent.wait_state(&id, "seeding", WAIT)?;
        // The engine's counter starts again with the check: exactly the
        // damaged piece came down again.
        ensure!(
            after["downloaded"] == u64::from(PIECE),
            "not exactly one piece fetched again after the check: {after}"
        );
        ensure!(
            after["seeding"]["downloaded_total"].as_u64().unwrap_or(0)
                >= 2 * MIB + u64::from(PIECE),
            "the lifetime totals were lost in the check: {after}"
        );
        w.verify()?;
        let text = agent.cli(&["recheck", &id])?;
        ensure!(
            text.contains(&format!("{pieces} of {pieces} pieces good")),
            "{text}"
        );
        stop(&mut agent, Duration::from_secs(10))?;
        Ok(())
    });
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
        // Ids are hex digits only: no path in an id, no endless id.
        let long = format!("/v1/torrents/{}", "a".repeat(10_000));
        for (what, path) in [
            ("a path as id", "/v1/torrents/f9cb%2F..%2Fc036"),
            ("a short id", "/v1/torrents/c03"),
            ("a long id", long.as_str()),
        ] {
            let got = agent.api("GET", path, Some(&token), &[], None)?;
            ensure!(
                got.1["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("hex digits")),
                "{what}: {}",
                got.1
            );
            expect(what, got, 400)?;
        }
        // Errors are JSON whatever refused the request.
        expect(
            "a method the path does not take",
            agent.api("PUT", "/v1/agent", Some(&token), &[], Some(&json!({})))?,
            405,
        )?;
        expect(
            "an id that is not UTF-8",
            agent.api("GET", "/v1/torrents/%FF%FE", Some(&token), &[], None)?,
            400,
        )?;
        expect(
            "a query that does not parse",
            agent.api(
                "DELETE",
                "/v1/torrents/abcdef12?delete_data=maybe",
                Some(&token),
                &[],
                None,
            )?,
            400,
        )?;
        expect(
            "a reload with a body",
            agent.api(
                "POST",
                "/v1/policy/reload",
                Some(&token),
                &[],
                Some(&json!({"budgets": "all"})),
            )?,
            400,
        )?;
        expect(
            "a reload with {}",
            agent.api(
                "POST",
                "/v1/policy/reload",
                Some(&token),
                &[],
                Some(&json!({})),
            )?,
            200,
        )?;
        expect(
            "a rate of 2^64-1 B/s",
            agent.api(
                "PUT",
                "/v1/limits",
                Some(&token),
                &[],
                Some(&json!({"up": u64::MAX})),
            )?,
            400,
        )?;
        // HTTP's case-insensitive parts.
        let bearer = format!("bearer {token}");
        expect(
            "a lowercase bearer scheme",
            agent.api(
                "GET",
                "/v1/torrents",
                None,
                &[("Authorization", &bearer)],
                None,
            )?,
            200,
        )?;
        let host = agent.api_addr()?.replace("127.0.0.1", "LOCALHOST");
        expect(
            "an uppercase Host",
            agent.api(
                "GET",
                "/v1/torrents",
                Some(&token),
                &[("Host", &host)],
                None,
            )?,
            200,
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
            std::fs::write(&config, format!("listen = \"{A_IP}:6881\"\n[dht]\nenabled = false\n"))?;
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

/// `capwise run 2>&1 | head -3`: the agent outlives its stderr, keeps
/// serving, and stops cleanly (exit 0, agent.json removed) on SIGTERM.
#[test]
fn the_agent_outlives_a_closed_stderr() {
    run("closed stderr", MIB, |w| {
        let head = w.logs.join("head.out");
        let mut shell = Command::new("bash");
        shell
            .arg("-c")
            .arg("set -o pipefail; \"$0\" run --state-dir \"$1\" --config \"$2\" 2>&1 | head -3 > \"$3\"")
            .arg(capwise_tests::paths::capwise_bin())
            .arg(&w.state_dir)
            .arg(&w.config)
            .arg(&head)
            .env("CAPWISE_LOG", "info");
        let mut pipeline = ChildGuard::spawn("agent-head", &mut shell, &w.logs)?;
        let info = || -> Result<Value> {
            let out = Command::new(capwise_tests::paths::capwise_bin())
                .args(["info", "--json", "--state-dir"])
                .arg(&w.state_dir)
                .output()?;
            ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(serde_json::from_slice(&out.stdout)?)
        };
        wait_until(
            "head to have its 3 lines",
            WAIT,
            Duration::from_millis(100),
            || Ok(std::fs::read_to_string(&head).is_ok_and(|t| t.lines().count() >= 3)),
        )?;
        wait_until(
            "the agent to be ready",
            WAIT,
            Duration::from_millis(200),
            || {
                if let Some(status) = pipeline.try_wait()? {
                    bail!("the agent exited with {status}");
                }
                Ok(info().is_ok_and(|i| i["ready"] == true))
            },
        )?;
        let pid = info()?["pid"].as_i64().context("no pid")?;
        // Work that logs, then a stop that logs.
        std::thread::sleep(Duration::from_secs(1));
        ensure!(
            pipeline.try_wait()?.is_none(),
            "the agent died with its stderr"
        );
        // SAFETY: kill(2) on the agent this test started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        let status = pipeline
            .wait_timeout(Duration::from_secs(10))?
            .context("the agent did not stop")?;
        ensure!(
            status.success(),
            "the agent exited with {status} after its stderr closed"
        );
        ensure!(
            !w.state_dir.join("agent.json").exists(),
            "agent.json left behind"
        );
        Ok(())
    });
}

/// A foreground command run to completion (at most `timeout`): its exit
/// status and stderr. A command still running then is killed and reported.
fn finish(
    name: &str,
    mut command: Command,
    logs: &std::path::Path,
    timeout: Duration,
) -> Result<(std::process::ExitStatus, String)> {
    let mut guard = ChildGuard::spawn(name, &mut command, logs)?;
    let status = guard.wait_timeout(timeout)?.with_context(|| {
        format!(
            "{name} still runs after {timeout:?}: {}",
            guard.log_tail(2000)
        )
    })?;
    Ok((status, std::fs::read_to_string(&guard.stderr_path)?))
}

/// `capwise get TORRENT -d DIR --state-dir STATE` on loopback, with the
/// world's configuration (its network file).
fn get_command(w: &World, dir: &std::path::Path, state_dir: &std::path::Path) -> Command {
    let mut c = Command::new(capwise_tests::paths::capwise_bin());
    c.arg("get")
        .arg(&w.torrent)
        .arg("-d")
        .arg(dir)
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--config")
        .arg(&w.config)
        .args(["--listen", "127.0.0.1:0"]);
    c
}

#[test]
fn one_capwise_per_state_directory_and_one_writer_per_torrent_s_data() {
    run("one capwise per state directory and per data", MIB, |w| {
        let mut agent = w.start_agent("agent")?;
        let pid = agent.guard.pid();
        let state = w.state_dir.display().to_string();

        // A second agent on the same state directory is refused, and leaves
        // the first one's agent.json alone.
        let (status, err) = finish(
            "agent-second",
            capwise_tests::clients::agent::run_command(&w.state_dir, &w.config, None),
            &w.logs,
            Duration::from_secs(20),
        )?;
        ensure!(!status.success(), "a second agent started: {err}");
        ensure!(
            err.contains(&format!("another capwise (pid {pid}")) && err.contains(&state),
            "the refusal does not name the holder and the directory: {err}"
        );
        let info = agent.cli_json(&["info"])?;
        ensure!(
            info["pid"] == pid,
            "agent.json no longer names the agent: {info}"
        );
        // An add that fails names the file.
        let garbage = w.tmp.path().join("garbage.torrent");
        std::fs::write(&garbage, "de")?;
        let err = agent
            .cli(&["add", garbage.to_str().context("utf-8 path")?])
            .unwrap_err();
        ensure!(format!("{err:#}").contains("garbage.torrent"), "{err:#}");

        // `get` on the agent's state directory points to `capwise add`.
        let (status, err) = finish(
            "get-beside-agent",
            get_command(w, &w.tmp.path().join("elsewhere"), &w.state_dir),
            &w.logs,
            Duration::from_secs(20),
        )?;
        ensure!(!status.success(), "get ran beside the agent: {err}");
        ensure!(err.contains("capwise add"), "{err}");

        // With its own state directory, `get` still may not write the files
        // the agent writes.
        let id = agent
            .cli(&["add", w.torrent.to_str().context("utf-8 path")?])?
            .trim()
            .to_string();
        let (status, err) = finish(
            "get-into-agent-data",
            get_command(w, &w.data_dir, &w.tmp.path().join("state-2")),
            &w.logs,
            Duration::from_secs(20),
        )?;
        ensure!(!status.success(), "get wrote the agent's torrent: {err}");
        ensure!(
            err.contains(&format!("pid {pid}")) && err.contains(&format!("the data of '{NAME}'")),
            "{err}"
        );
        agent.wait_state(&id, "seeding", WAIT)?;
        w.verify()?;
        stop(&mut agent, Duration::from_secs(10))?;
        let leftovers: Vec<_> = std::fs::read_dir(&w.data_dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".lock"))
            .collect();
        ensure!(
            leftovers.is_empty(),
            "lock files left after a clean stop: {leftovers:?}"
        );

        // Two `get` on one state directory: the second is refused.
        let shared = w.tmp.path().join("state-get");
        let mut first = get_command(w, &w.tmp.path().join("get-1"), &shared);
        first.arg("--seed");
        let first = ChildGuard::spawn("get-first", &mut first, &w.logs)?;
        wait_until(
            "the first get to lock its state",
            WAIT,
            Duration::from_millis(100),
            || {
                Ok(std::fs::read_to_string(shared.join("capwise.lock"))
                    .is_ok_and(|t| t.contains(&first.pid().to_string())))
            },
        )?;
        let (status, err) = finish(
            "get-second",
            get_command(w, &w.tmp.path().join("get-2"), &shared),
            &w.logs,
            Duration::from_secs(20),
        )?;
        ensure!(
            !status.success(),
            "two gets shared a state directory: {err}"
        );
        ensure!(
            err.contains(&format!(
                "another capwise (pid {}, `capwise get`)",
                first.pid()
            )),
            "{err}"
        );
        Ok(())
    });
}

/// `capwise seed` with the wrong `-d` (or damaged data) refuses, naming what
/// is missing, instead of downloading the torrent; `--fetch-missing` allows it.
#[test]
fn seed_refuses_missing_or_damaged_data_unless_asked_to_fetch_it() {
    run("seed with missing data", 2 * MIB, |w| {
        let seed = |dir: &std::path::Path, extra: &[&str]| {
            let mut c = Command::new(capwise_tests::paths::capwise_bin());
            c.arg("seed")
                .arg(&w.torrent)
                .arg("-d")
                .arg(dir)
                .arg("--state-dir")
                .arg(w.tmp.path().join("seed-state"))
                .arg("--config")
                .arg(&w.config)
                .args(["--listen", "127.0.0.1:0"])
                .args(extra);
            c
        };
        let wrong = w.tmp.path().join("no-such-dir");
        let (status, err) = finish(
            "seed-wrong-dir",
            seed(&wrong, &[]),
            &w.logs,
            Duration::from_secs(20),
        )?;
        ensure!(
            !status.success(),
            "seed started on a missing directory: {err}"
        );
        ensure!(
            err.contains(&wrong.display().to_string()) && err.contains("--fetch-missing"),
            "{err}"
        );
        ensure!(!wrong.exists(), "seed created {}", wrong.display());

        // One file of two there.
        let partial = w.tmp.path().join("partial");
        std::fs::create_dir_all(partial.join(NAME).join("small"))?;
        std::fs::copy(
            w.seed_dir.join(NAME).join("small/note.txt"),
            partial.join(NAME).join("small/note.txt"),
        )?;
        let (status, err) = finish(
            "seed-partial",
            seed(&partial, &[]),
            &w.logs,
            Duration::from_secs(20),
        )?;
        ensure!(!status.success(), "seed started with a file missing: {err}");
        ensure!(
            err.contains("big.bin (missing)") && !err.contains("note.txt"),
            "{err}"
        );
        ensure!(
            !partial.join(NAME).join("big.bin").exists(),
            "seed created big.bin"
        );

        // Every file at its size, one byte changed.
        let damaged = w.tmp.path().join("damaged");
        for f in ["big.bin", "small/note.txt"] {
            std::fs::create_dir_all(damaged.join(NAME).join(f).parent().context("parent")?)?;
            std::fs::copy(w.seed_dir.join(NAME).join(f), damaged.join(NAME).join(f))?;
        }
        let big = damaged.join(NAME).join("big.bin");
        let mut bytes = std::fs::read(&big)?;
        bytes[100] ^= 0xff;
        std::fs::write(&big, &bytes)?;
        let (status, err) = finish(
            "seed-damaged",
            seed(&damaged, &[]),
            &w.logs,
            Duration::from_secs(30),
        )?;
        ensure!(!status.success(), "seed started on damaged data: {err}");
        ensure!(
            err.contains("1 of 9 pieces") && err.contains("do not match"),
            "{err}"
        );
        ensure!(
            std::fs::read(&big)? == bytes,
            "the damaged piece was fetched"
        );

        // Asked to, it fetches what is missing and seeds.
        let mut fetching = seed(&partial, &["--fetch-missing"]);
        let guard = ChildGuard::spawn("seed-fetch", &mut fetching, &w.logs)?;
        wait_until(
            "seed --fetch-missing to fetch the data",
            WAIT,
            Duration::from_millis(200),
            || Ok(assert_same_tree(&w.seed_dir.join(NAME), &partial.join(NAME)).is_ok()),
        )
        .with_context(|| guard.log_tail(2000))?;
        Ok(())
    });
}
