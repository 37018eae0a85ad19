//! Issue 14's scenario on a [`BranchTopology`]: HQ publishes 3 files (each its own .torrent
//! with opentracker at HQ and a BEP 19 web seed on HQ's lighttpd); the 8 branch machines pull
//! them, one way per case; each branch router's WAN counters say what crossed its link.
//!
//! Cases, each on fresh machine directories, both branches at once:
//! - `curl-one`: one machine per branch fetches the 3 files with one `curl`: the denominator
//!   (bytes in for one copy, headers included, as every other case counts them);
//! - `curl`: every machine fetches them with `curl` (about 4 copies per branch);
//! - `libtorrent`: 4 libtorrent machines per branch (`lt_client.py`, one session per torrent,
//!   LSD on, DHT off), seeding on once done as a plain swarm does;
//! - `capwise`: 8 capwise agents (`capwise run`, LSD on, DHT off), each subscribed to HQ's
//!   channel (`capwise subscribe URL --key K --token T`, [`deliver`]); optionally a second
//!   publication changing one file (the machines find it by polling) and, as its own case, one
//!   branch-1 machine killed mid-transfer and restarted. Each capwise case ends with
//!   `capwise channel status demo --json` at HQ listing its 8 machines at the latest sequence,
//!   missing nothing.
//!
//! Every case ends when all 8 machines hold every file byte for byte (`cmp` against HQ's copy),
//! or fails at its time bound.
//!
//! Two publications of the same bytes: [`publish`] (`mktorrent`, public torrents, for the curl
//! and libtorrent references: libtorrent needs public torrents to use LSD) and HQ's channel
//! `demo` (`capwise channel publish`, private torrents with a web seed, a signed manifest and
//! delivery reports to HQ's agent, [`Scenario::channel_publish`]) for the capwise cases.

use super::{BranchTopology, BRANCHES, HQ_IP, MACHINES};
use crate::clients::agent::{Agent, Wrap};
use crate::clients::libtorrent::{self, LtOpts};
use crate::clients::lighttpd::Lighttpd;
use crate::paths::capwise_bin;
use crate::payload::write_random_file;
use crate::process::run;
use crate::torrent::info_hash;
use crate::tracker::Tracker;
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WEB_PORT: u16 = 8080;
const TRACKER_PORT: u16 = 6969;
const HQ_PEER_PORT: u16 = 6881;
/// Branch machines listen on `MACHINE_PORT + item` (libtorrent) or `MACHINE_PORT + m` (capwise):
/// distinct ports, so that machines behind one NAT address stay distinct peers at the tracker.
const MACHINE_PORT: u16 = 7001;
/// Log2 of the piece size (256 KiB).
const PIECE_LOG2: u32 = 18;
const POLL: Duration = Duration::from_millis(1000);
/// HQ's agent receives the subscribers' delivery reports here (`[channel] report_listen`).
const REPORT_PORT: u16 = 7979;
/// The channel's name at HQ.
const CHANNEL: &str = "demo";
/// Where the channel's files are served from (under the web root).
const CHANNEL_DIR: &str = "ch";
/// The subscribers' poll interval, seconds (the agent's minimum).
const SUB_INTERVAL: &str = "2";

/// What to run.
#[derive(Debug, Clone)]
pub struct ScenarioOpts {
    /// The sizes of the published files (3 in issue 14).
    pub file_sizes: Vec<u64>,
    /// Bound for each case.
    pub case_timeout: Duration,
    /// Make a second publication (file index 1 changed) available to [`Scenario::republish`].
    pub republish: bool,
}

/// One published file.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub size: u64,
    pub torrent: PathBuf,
    pub hash: String,
    /// HQ's copy (under the web root).
    pub data: PathBuf,
    /// Its URL on HQ's web server.
    pub url: String,
}

/// One publication: a directory of the web root and its items.
#[derive(Debug, Clone)]
pub struct Publication {
    pub seq: u32,
    pub dir: PathBuf,
    pub items: Vec<Item>,
}

/// What one case measured, per branch.
#[derive(Debug, Clone)]
pub struct Figures {
    pub case: String,
    /// Bytes in on each branch router's WAN interface during the case.
    pub rx: [u64; BRANCHES],
    /// Bytes out.
    pub tx: [u64; BRANCHES],
    /// Seconds from the start until all machines of both branches held everything.
    pub seconds: f64,
    /// Seconds per branch.
    pub branch_seconds: [f64; BRANCHES],
    /// What `rx` is divided by in the table (one curl download, or the changed file's size).
    pub per: [u64; BRANCHES],
    /// What `per` is, in words.
    pub per_what: &'static str,
    /// The most LAN peers found through LSD that any capwise machine was connected to at once
    /// (capwise cases only): whether the machines found each other at all.
    pub max_lsd_peers: Option<u64>,
}

/// The world: HQ's servers and publisher, the publications, the logs.
pub struct Scenario<'t> {
    pub topo: &'t BranchTopology,
    pub root: PathBuf,
    pub logs: PathBuf,
    pub opts: ScenarioOpts,
    pub v1: Publication,
    /// The second publication: only the changed item.
    pub v2: Option<Publication>,
    /// Bytes in for one curl download of v1, per branch (after [`Scenario::curl_one`]).
    pub one_copy: [u64; BRANCHES],
    /// The channel's current publication (all its items; the same bytes as v1, or after the
    /// republication v1 with v2's file in place of its namesake).
    pub channel: Publication,
    /// The channel's public key and membership token, as handed to subscribers.
    pub channel_key: String,
    channel_token: String,
    hq: Agent,
    _tracker: Tracker,
    _web: Lighttpd,
}

fn wrap_for(topo: &BranchTopology, ns: &str) -> Wrap {
    let ns = ns.to_string();
    let _ = topo;
    Arc::new(move |c: &Command| crate::wan::netns_command(&ns, c))
}

fn tracker_url() -> String {
    format!("http://{HQ_IP}:{TRACKER_PORT}/announce")
}

fn web_base(seq: u32) -> String {
    format!("http://{HQ_IP}:{WEB_PORT}/pub{seq}/")
}

/// HQ makes publication `seq` of `files` (name, size, seed) in `www/pubSEQ/`: one .torrent per
/// file with the HQ tracker and a web seed on HQ's web server. Today `mktorrent`; later
/// `capwise channel publish` (which also signs a manifest) replaces this function.
pub fn publish(
    www: &Path,
    seq: u32,
    files: &[(String, u64, u64)],
    logs: &Path,
) -> Result<Publication> {
    let dir = www.join(format!("pub{seq}"));
    std::fs::create_dir_all(&dir)?;
    let mut items = Vec::new();
    for (name, size, seed) in files {
        let data = dir.join(name);
        write_random_file(&data, *size, *seed)?;
        let torrent = dir.join(format!("{name}.torrent"));
        let mut c = Command::new("mktorrent");
        c.arg("-a")
            .arg(tracker_url())
            .arg("-w")
            .arg(web_base(seq))
            .arg("-l")
            .arg(PIECE_LOG2.to_string())
            .arg("-o")
            .arg(&torrent)
            .arg(&data);
        run("mktorrent", &mut c, logs, Duration::from_secs(300))?;
        let hash = info_hash(&torrent, logs)?;
        items.push(Item {
            name: name.clone(),
            size: *size,
            torrent,
            hash,
            data,
            url: format!("{}{name}", web_base(seq)),
        });
    }
    Ok(Publication { seq, dir, items })
}

/// The channel's manifest URL on HQ's web server.
fn manifest_url() -> String {
    format!("http://{HQ_IP}:{WEB_PORT}/{CHANNEL_DIR}/manifest.json")
}

fn channel_base() -> String {
    format!("http://{HQ_IP}:{WEB_PORT}/{CHANNEL_DIR}/")
}

fn report_url() -> String {
    format!("http://{HQ_IP}:{REPORT_PORT}/v1/reports")
}

/// The `HASH NAME` lines `capwise channel publish` prints after its summary line.
pub fn parse_published(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (hash, name) = l.trim().split_once(' ')?;
            let hex = hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            (hex && !name.is_empty() && !name.contains(' '))
                .then(|| (hash.to_string(), name.to_string()))
        })
        .collect()
}

/// The info-hashes `capwise channel publish` will give `paths` (in order), learnt from a
/// throw-away channel in `scratch` with no agent and no web seed: the info dictionary (name,
/// piece length, pieces, private) does not depend on the channel, its trackers or web seeds,
/// so HQ's channel gets the same ones. opentracker needs them before it starts.
fn channel_hashes(scratch: &Path, paths: &[PathBuf], logs: &Path) -> Result<Vec<String>> {
    let state = scratch.join("state");
    std::fs::create_dir_all(&state)?;
    let mut c = Command::new(capwise_bin());
    c.args(["channel", "create", "scratch", "--state-dir"])
        .arg(&state);
    run(
        "channel-create-scratch",
        &mut c,
        logs,
        Duration::from_secs(30),
    )?;
    let mut c = Command::new(capwise_bin());
    c.args(["channel", "publish", "scratch"])
        .args(paths)
        .arg("--out")
        .arg(scratch.join("out"))
        .arg("--state-dir")
        .arg(&state);
    let out = run(
        "channel-publish-scratch",
        &mut c,
        logs,
        Duration::from_secs(600),
    )?;
    let got = parse_published(&out);
    ensure!(
        got.len() == paths.len(),
        "channel publish printed {} items for {} paths: {out}",
        got.len(),
        paths.len()
    );
    Ok(got.into_iter().map(|(h, _)| h).collect())
}

/// HQ publishes `paths` (the whole publication) to its channel: `capwise channel publish` with
/// the web seed on HQ's web server (the data copied into `www/ch/`), HQ's tracker and report
/// URL; HQ's running agent then seeds the items. Returns the publication as printed.
fn channel_publish(hq: &mut Agent, www: &Path, paths: &[PathBuf]) -> Result<Publication> {
    let dir = www.join(CHANNEL_DIR);
    let mut args: Vec<String> = vec!["channel".into(), "publish".into(), CHANNEL.into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    args.extend([
        "--out".into(),
        dir.display().to_string(),
        "--web-seed".into(),
        channel_base(),
        "--tracker".into(),
        tracker_url(),
        "--report-url".into(),
        report_url(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = hq.cli(&argv)?;
    let seq = out
        .split_whitespace()
        .skip_while(|w| *w != "sequence")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no sequence in {out:?}"))?;
    let mut items = Vec::new();
    for (hash, name) in parse_published(&out) {
        let data = dir.join(&name);
        let size = std::fs::metadata(&data)
            .with_context(|| format!("{}", data.display()))?
            .len();
        items.push(Item {
            torrent: dir.join(format!("{name}.torrent")),
            url: format!("{}{name}", channel_base()),
            name,
            size,
            hash,
            data,
        });
    }
    ensure!(
        items.len() == paths.len(),
        "channel publish printed {} items for {} paths: {out}",
        items.len(),
        paths.len()
    );
    Ok(Publication { seq, dir, items })
}

/// Subscribes a capwise branch machine to HQ's channel; the agent polls the manifest every
/// [`SUB_INTERVAL`] seconds, adds its items with the membership token and removes retired ones
/// (so a republication needs nothing more here).
pub fn deliver(agent: &mut Agent, key: &str, token: &str) -> Result<()> {
    agent.cli(&[
        "subscribe",
        &manifest_url(),
        "--key",
        key,
        "--token",
        token,
        "--interval",
        SUB_INTERVAL,
    ])?;
    Ok(())
}

/// `capwise run` for a machine: LSD on (it is on by default; only the CLI flag turns it off),
/// DHT off (no public routers), the config naming its listen port, data dir and network file.
fn agent_command(state: &Path, config: &Path) -> Command {
    let mut c = Command::new(capwise_bin());
    c.arg("run")
        .arg("--no-dht")
        .arg("--state-dir")
        .arg(state)
        .arg("--config")
        .arg(config)
        .env("RUST_BACKTRACE", "1")
        .env(
            "CAPWISE_LOG",
            std::env::var("CAPWISE_LOG").unwrap_or_else(|_| "info".into()),
        );
    c
}

/// Writes a machine's config and network file under `dir`; returns the config's path.
fn write_agent_config(
    dir: &Path,
    listen: std::net::SocketAddr,
    data: &Path,
    extra: &str,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::create_dir_all(data)?;
    let net = dir.join("network.toml");
    std::fs::write(
        &net,
        "id = \"branch-office\"\nname = \"office LAN\"\nkind = \"ethernet\"\nmetered = \"no\"\nroaming = false\n",
    )?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\ndownload_dir = \"{}\"\nnetwork_file = \"{}\"\n[dht]\nenabled = false\n[lsd]\nenabled = true\n{extra}",
            data.display(),
            net.display()
        ),
    )?;
    Ok(config)
}

/// The torrents of an agent (`GET /v1/torrents`, from a thread in its namespace).
fn agent_torrents(topo: &BranchTopology, ns: &str, agent: &Agent) -> Result<Vec<Value>> {
    let token = agent.token()?;
    let (status, v) = topo.in_ns(ns, || {
        agent.api("GET", "/v1/torrents", Some(&token), &[], None)
    })??;
    ensure!(status == 200, "GET /v1/torrents: {status} {v}");
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(mut o) => match o.remove("torrents") {
            Some(Value::Array(a)) => Ok(a),
            _ => bail!("GET /v1/torrents: no list"),
        },
        other => bail!("GET /v1/torrents: {other}"),
    }
}

/// How many of `items` the agent holds completely, and the bytes it has of them.
fn agent_progress(rows: &[Value], items: &[Item]) -> Result<(usize, u64)> {
    let mut done = 0;
    let mut have = 0;
    for item in items {
        if let Some(row) = rows.iter().find(|r| r["id"] == item.hash.as_str()) {
            if row["state"] == "error" {
                bail!("torrent {} failed: {}", item.name, row["reason"]);
            }
            let h = row["bytes_have"].as_u64().unwrap_or(0);
            have += h;
            if h == item.size {
                done += 1;
            }
        }
    }
    Ok((done, have))
}

/// `cmp -s` of every item in `dir` against HQ's copy.
fn verify(dir: &Path, items: &[Item], logs: &Path) -> Result<()> {
    for item in items {
        let got = dir.join(&item.name);
        let mut c = Command::new("cmp");
        c.arg(&item.data).arg(&got);
        run("cmp", &mut c, logs, Duration::from_secs(120))
            .with_context(|| format!("{} differs from HQ's {}", got.display(), item.name))?;
    }
    Ok(())
}

impl<'t> Scenario<'t> {
    /// Publishes (v1, and v2 if asked), starts lighttpd, opentracker and the HQ capwise
    /// publisher seeding every item. Must run on a thread inside HQ's namespace (the servers'
    /// readiness probes connect from it).
    pub fn new(topo: &'t BranchTopology, root: &Path, opts: ScenarioOpts) -> Result<Self> {
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs)?;
        let www = root.join("www");
        let names = ["alpha.bin", "bravo.bin", "charlie.bin"];
        let files: Vec<(String, u64, u64)> = opts
            .file_sizes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let name = names
                    .get(i)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| format!("file{i}.bin"));
                (name, *s, 0xB0A4 + i as u64)
            })
            .collect();
        let v1 = publish(&www, 1, &files, &logs)?;
        let v2 = if opts.republish {
            ensure!(files.len() >= 2, "a republication needs at least 2 files");
            let (name, size, seed) = files[1].clone();
            Some(publish(&www, 2, &[(name, size, seed ^ 0x5EC0D)], &logs)?)
        } else {
            None
        };
        let mut hashes: Vec<String> = v1.items.iter().map(|i| i.hash.clone()).collect();
        if let Some(v2) = &v2 {
            hashes.extend(v2.items.iter().map(|i| i.hash.clone()));
        }
        // The channel's items: v1's files, and v2's changed file.
        let mut ch_paths: Vec<PathBuf> = v1.items.iter().map(|i| i.data.clone()).collect();
        if let Some(v2) = &v2 {
            ch_paths.extend(v2.items.iter().map(|i| i.data.clone()));
        }
        let ch_hashes = channel_hashes(&root.join("scratch"), &ch_paths, &logs)?;
        hashes.extend(ch_hashes.iter().cloned());
        let web = Lighttpd::start_on(HQ_IP, &www, WEB_PORT, &root.join("lighttpd"), &logs, |c| {
            topo.command(&topo.hq, &c)
        })?;
        let tracker = Tracker::start_on(
            HQ_IP,
            TRACKER_PORT,
            &hashes,
            &root.join("tracker"),
            &logs,
            |c| topo.command(&topo.hq, &c),
        )?;
        // The publisher: a capwise agent at HQ seeding the web root's files.
        let hq_dir = root.join("hq");
        let config = write_agent_config(
            &hq_dir,
            (HQ_IP, HQ_PEER_PORT).into(),
            &www,
            &format!("[channel]\nreport_listen = \"{HQ_IP}:{REPORT_PORT}\"\n"),
        )?;
        let mut hq = Agent::start_command(
            "hq-agent",
            &hq_dir.join("state"),
            agent_command(&hq_dir.join("state"), &config),
            &logs,
            Some(wrap_for(topo, &topo.hq)),
        )?;
        let mut all = v1.items.clone();
        if let Some(v2) = &v2 {
            all.extend(v2.items.clone());
        }
        for (pubdir, item) in v1.items.iter().map(|i| (&v1.dir, i)).chain(
            v2.iter()
                .flat_map(|p| p.items.iter().map(move |i| (&p.dir, i))),
        ) {
            let t = item.torrent.display().to_string();
            let d = pubdir.display().to_string();
            let id = hq.cli(&["add", &t, "-d", &d])?.trim().to_string();
            ensure!(id == item.hash, "HQ add printed {id:?}");
        }
        // The channel: made and published with the agent running, so that it seeds the items
        // (with the membership token) from the web root's copy.
        let channel_key = hq.cli(&["channel", "create", CHANNEL])?.trim().to_string();
        let channel_token = hq.cli(&["channel", "token", CHANNEL])?.trim().to_string();
        let paths: Vec<PathBuf> = v1.items.iter().map(|i| i.data.clone()).collect();
        let channel = channel_publish(&mut hq, &www, &paths)?;
        for (item, want) in channel.items.iter().zip(&ch_hashes) {
            ensure!(
                &item.hash == want,
                "HQ's channel gave {} the info-hash {}, the scratch channel {want}",
                item.name,
                item.hash
            );
        }
        all.extend(channel.items.clone());
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let rows = agent_torrents(topo, &topo.hq, &hq)?;
            let (done, _) = agent_progress(&rows, &all)?;
            if done == all.len() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("the HQ publisher did not verify its data in 300 s: {rows:?}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(Self {
            topo,
            root: root.to_path_buf(),
            logs,
            opts,
            v1,
            v2,
            one_copy: [0; BRANCHES],
            channel,
            channel_key,
            channel_token,
            hq,
            _tracker: tracker,
            _web: web,
        })
    }

    fn counters(&self) -> Result<[(u64, u64); BRANCHES]> {
        let mut out = [(0, 0); BRANCHES];
        for (b, o) in out.iter_mut().enumerate() {
            *o = self.topo.wan_counters(b)?;
        }
        Ok(out)
    }

    fn figures(
        &self,
        case: &str,
        before: &[(u64, u64); BRANCHES],
        after: &[(u64, u64); BRANCHES],
        branch_seconds: [f64; BRANCHES],
        per: [u64; BRANCHES],
        per_what: &'static str,
    ) -> Figures {
        let mut rx = [0; BRANCHES];
        let mut tx = [0; BRANCHES];
        for b in 0..BRANCHES {
            rx[b] = after[b].0.saturating_sub(before[b].0);
            tx[b] = after[b].1.saturating_sub(before[b].1);
        }
        Figures {
            case: case.to_string(),
            rx,
            tx,
            seconds: branch_seconds.iter().cloned().fold(0.0, f64::max),
            branch_seconds,
            per,
            per_what,
            max_lsd_peers: None,
        }
    }

    /// A fresh data directory for machine `m` of branch `b` in `case`.
    fn machine_dir(&self, case: &str, b: usize, m: usize) -> Result<PathBuf> {
        let d = self.root.join(case).join(format!("b{}m{m}", b + 1));
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    fn drop_case_data(&self, case: &str) {
        let _ = std::fs::remove_dir_all(self.root.join(case));
    }

    /// `curl` of every item by `machines` machines per branch at once; bytes in per branch.
    fn curl_case(&self, case: &str, machines: usize) -> Result<Figures> {
        let t0 = Instant::now();
        let before = self.counters()?;
        let mut running = Vec::new();
        for b in 0..BRANCHES {
            for m in 0..machines {
                let dir = self.machine_dir(case, b, m)?;
                let mut c = Command::new("curl");
                c.args(["-sS", "--fail", "--max-time"])
                    .arg(self.opts.case_timeout.as_secs().to_string());
                for item in &self.v1.items {
                    c.arg(&item.url).arg("-o").arg(dir.join(&item.name));
                }
                let name = format!("{case}-b{}m{m}", b + 1);
                let g = self
                    .topo
                    .spawn(&name, &self.topo.machines[b][m], &c, &self.logs)?;
                running.push((b, m, dir, g));
            }
        }
        let mut branch_seconds = [0.0f64; BRANCHES];
        let deadline = t0 + self.opts.case_timeout;
        for (b, _m, _dir, g) in running.iter_mut() {
            g.expect_success(deadline.saturating_duration_since(Instant::now()))?;
            branch_seconds[*b] = branch_seconds[*b].max(t0.elapsed().as_secs_f64());
        }
        let after = self.counters()?;
        for (_, _, dir, _) in &running {
            verify(dir, &self.v1.items, &self.logs)?;
        }
        self.drop_case_data(case);
        Ok(self.figures(
            case,
            &before,
            &after,
            branch_seconds,
            self.one_copy,
            "one curl copy",
        ))
    }

    /// The denominator: one curl download of the publication per branch.
    pub fn curl_one(&mut self) -> Result<Figures> {
        let f = self.curl_case("curl-one", 1)?;
        self.one_copy = f.rx;
        Ok(Figures {
            per: self.one_copy,
            ..f
        })
    }

    /// Every machine with curl.
    pub fn curl_all(&self) -> Result<Figures> {
        self.curl_case("curl", MACHINES)
    }

    /// 4 libtorrent machines per branch, LSD on, each torrent in its own `lt_client.py seed`
    /// (it downloads, says SEEDING and seeds on until stopped).
    pub fn libtorrent(&self) -> Result<Figures> {
        let case = "libtorrent";
        let t0 = Instant::now();
        let before = self.counters()?;
        let mut procs = Vec::new();
        for b in 0..BRANCHES {
            for m in 0..MACHINES {
                let dir = self.machine_dir(case, b, m)?;
                for (i, item) in self.v1.items.iter().enumerate() {
                    let o = LtOpts {
                        listen_ip: Some(BranchTopology::machine_ip(b, m).into()),
                        progress_interval: Some(5.0),
                        ..LtOpts::default()
                    };
                    let mut c = libtorrent::command_line(
                        "seed",
                        &item.torrent,
                        &dir,
                        MACHINE_PORT + i as u16,
                        &o,
                    );
                    c.arg("--lsd");
                    let name = format!("lt-b{}m{m}-{i}", b + 1);
                    let g = self
                        .topo
                        .spawn(&name, &self.topo.machines[b][m], &c, &self.logs)?;
                    procs.push((b, dir.clone(), g));
                }
            }
        }
        let mut branch_seconds = [0.0f64; BRANCHES];
        let mut done = vec![false; procs.len()];
        let deadline = t0 + self.opts.case_timeout;
        let mut after = None;
        while after.is_none() {
            for (k, (b, _, g)) in procs.iter_mut().enumerate() {
                if done[k] {
                    continue;
                }
                if let Some(s) = g.try_wait()? {
                    bail!("{} exited with {s}\n{}", g.name(), g.log_tail(2000));
                }
                let out = std::fs::read_to_string(&g.stdout_path).unwrap_or_default();
                if out.contains(" SEEDING") {
                    done[k] = true;
                    branch_seconds[*b] = branch_seconds[*b].max(t0.elapsed().as_secs_f64());
                }
            }
            if done.iter().all(|d| *d) {
                after = Some(self.counters()?);
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "libtorrent: {} of {} torrents complete after {:?}",
                    done.iter().filter(|d| **d).count(),
                    done.len(),
                    self.opts.case_timeout
                );
            }
            std::thread::sleep(POLL);
        }
        let after = after.unwrap_or(before);
        for (_, dir, _) in procs.iter().step_by(self.v1.items.len()) {
            verify(dir, &self.v1.items, &self.logs)?;
        }
        for (_, _, g) in procs.iter_mut() {
            let _ = g.stop(Duration::from_secs(5));
        }
        self.drop_case_data(case);
        Ok(self.figures(
            case,
            &before,
            &after,
            branch_seconds,
            self.one_copy,
            "one curl copy",
        ))
    }

    /// Starts the 8 capwise agents of `case` (not yet given anything).
    fn start_agents(&self, case: &str) -> Result<Vec<Machine>> {
        let mut out = Vec::new();
        for b in 0..BRANCHES {
            for m in 0..MACHINES {
                let dir = self.machine_dir(case, b, m)?;
                let data = dir.join("data");
                let listen = (BranchTopology::machine_ip(b, m), MACHINE_PORT + m as u16).into();
                let config = write_agent_config(&dir, listen, &data, "")?;
                let state = dir.join("state");
                let name = format!("{case}-b{}m{m}", b + 1);
                let ns = self.topo.machines[b][m].clone();
                let agent = Agent::start_command(
                    &name,
                    &state,
                    agent_command(&state, &config),
                    &self.logs,
                    Some(wrap_for(self.topo, &ns)),
                )?;
                out.push(Machine {
                    b,
                    m,
                    ns,
                    name,
                    state,
                    config,
                    data,
                    agent,
                });
            }
        }
        Ok(out)
    }

    /// Waits until every machine holds every item of `items`; `hook` runs each poll with the
    /// machines and the time since start (the kill case uses it). Returns per-branch seconds.
    fn wait_machines(
        &self,
        machines: &mut [Machine],
        items: &[Item],
        t0: Instant,
        mut hook: impl FnMut(&Scenario, &mut [Machine], &[(usize, u64)]) -> Result<()>,
    ) -> Result<([f64; BRANCHES], u64)> {
        let mut max_lsd = 0u64;
        let total: u64 = items.iter().map(|i| i.size).sum();
        let mut branch_seconds = [0.0f64; BRANCHES];
        let mut finished = vec![false; machines.len()];
        let deadline = t0 + self.opts.case_timeout;
        loop {
            let mut progress = Vec::with_capacity(machines.len());
            for (k, mach) in machines.iter_mut().enumerate() {
                if let Some(s) = mach.agent.guard.try_wait()? {
                    bail!(
                        "{} exited with {s}\n{}",
                        mach.name,
                        mach.agent.guard.log_tail(2000)
                    );
                }
                let rows = agent_torrents(self.topo, &mach.ns, &mach.agent)?;
                let (done, have) = agent_progress(&rows, items)?;
                progress.push((done, have));
                let lsd: u64 = rows
                    .iter()
                    .filter_map(|r| r["peer_sources"]["lsd"].as_u64())
                    .sum();
                max_lsd = max_lsd.max(lsd);
                if !finished[k] && done == items.len() {
                    finished[k] = true;
                    branch_seconds[mach.b] = branch_seconds[mach.b].max(t0.elapsed().as_secs_f64());
                }
            }
            if finished.iter().all(|f| *f) {
                return Ok((branch_seconds, max_lsd));
            }
            hook(self, machines, &progress)?;
            if Instant::now() >= deadline {
                let have: u64 = progress.iter().map(|p| p.1).sum();
                bail!(
                    "capwise: {} of {} machines complete after {:?} ({have} of {} bytes)",
                    finished.iter().filter(|f| **f).count(),
                    machines.len(),
                    self.opts.case_timeout,
                    total * machines.len() as u64
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// 8 capwise agents given the publication by [`deliver`]. With `kill`, branch 1's machine 1
    /// is killed (SIGKILL) once it holds 40 % and restarted on the same state 2 s later. With
    /// `republish` (and a second publication made), the changed file follows as its own row.
    pub fn capwise(&mut self, kill: bool, republish: bool) -> Result<Vec<Figures>> {
        let case = if kill { "capwise-kill" } else { "capwise" };
        let mut machines = self.start_agents(case)?;
        let since = unix_now();
        let t0 = Instant::now();
        let before = self.counters()?;
        for mach in machines.iter_mut() {
            deliver(&mut mach.agent, &self.channel_key, &self.channel_token)?;
        }
        let items = self.channel.items.clone();
        let total: u64 = items.iter().map(|i| i.size).sum();
        let mut killed = false;
        let (branch_seconds, lsd) =
            self.wait_machines(&mut machines, &items, t0, |s, ms, progress| {
                if !kill || killed {
                    return Ok(());
                }
                let k = 1; // branch 1, machine 1
                if progress[k].1 * 10 >= total * 4 {
                    killed = true;
                    let mach = &mut ms[k];
                    eprintln!(
                        "[branch] killing {} at {} of {total} bytes ({:.1} s)",
                        mach.name,
                        progress[k].1,
                        t0.elapsed().as_secs_f64()
                    );
                    mach.agent.guard.signal(libc::SIGKILL);
                    let _ = mach.agent.guard.wait_timeout(Duration::from_secs(5));
                    std::thread::sleep(Duration::from_secs(2));
                    mach.agent = Agent::start_command(
                        &format!("{}-restarted", mach.name),
                        &mach.state,
                        agent_command(&mach.state, &mach.config),
                        &s.logs,
                        Some(wrap_for(s.topo, &mach.ns)),
                    )?;
                }
                Ok(())
            })?;
        let after = self.counters()?;
        if kill {
            ensure!(
                killed,
                "the machine to kill finished before it reached 40 %"
            );
        }
        for mach in &machines {
            verify(&mach.data, &items, &self.logs)?;
        }
        let mut out = vec![Figures {
            max_lsd_peers: Some(lsd),
            ..self.figures(
                case,
                &before,
                &after,
                branch_seconds,
                self.one_copy,
                "one curl copy",
            )
        }];
        if republish {
            if let Some(v2) = self.v2.clone() {
                out.push(self.republish(&mut machines, &v2)?);
            }
        }
        self.check_status(since, machines.len())?;
        for mach in machines.iter_mut() {
            let _ = mach.agent.guard.stop(Duration::from_secs(10));
        }
        self.drop_case_data(case);
        Ok(out)
    }

    /// HQ publishes its channel again with v2's changed file in place of its namesake; the
    /// subscribed machines find it at their next poll (nothing is handed to them).
    fn republish(&mut self, machines: &mut [Machine], v2: &Publication) -> Result<Figures> {
        let t0 = Instant::now();
        let before = self.counters()?;
        let old = self.channel.clone();
        // HQ stops seeding what it replaces: the new data overwrites the old item's file.
        for item in &old.items {
            if v2.items.iter().any(|c| c.name == item.name) {
                self.hq.cli(&["remove", &item.hash])?;
            }
        }
        let paths: Vec<PathBuf> = old
            .items
            .iter()
            .map(|i| {
                v2.items
                    .iter()
                    .find(|c| c.name == i.name)
                    .map_or_else(|| i.data.clone(), |c| c.data.clone())
            })
            .collect();
        let www = self.root.join("www");
        let new = channel_publish(&mut self.hq, &www, &paths)?;
        ensure!(
            new.seq > old.seq,
            "the sequence did not go up: {} then {}",
            old.seq,
            new.seq
        );
        let changed: Vec<Item> = new
            .items
            .iter()
            .filter(|i| !old.items.iter().any(|o| o.hash == i.hash))
            .cloned()
            .collect();
        ensure!(
            changed.len() == v2.items.len(),
            "{} items changed their info-hash, not {}",
            changed.len(),
            v2.items.len()
        );
        self.channel = new.clone();
        let (branch_seconds, lsd) =
            self.wait_machines(machines, &new.items, t0, |_, _, _| Ok(()))?;
        let after = self.counters()?;
        for mach in machines.iter() {
            verify(&mach.data, &new.items, &self.logs)?;
        }
        let changed: u64 = changed.iter().map(|i| i.size).sum();
        Ok(Figures {
            max_lsd_peers: Some(lsd),
            ..self.figures(
                "capwise-republish",
                &before,
                &after,
                branch_seconds,
                [changed; BRANCHES],
                "changed file",
            )
        })
    }

    /// `capwise channel status demo --json` at HQ lists `want` machines that reported since
    /// `since` (unix seconds; earlier cases' machines are gone) at the latest sequence, missing
    /// nothing. Reports follow each poll, so this waits a little (bounded).
    fn check_status(&mut self, since: u64, want: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.hq.cli_json(&["channel", "status", CHANNEL])?;
            let seq = v["sequence"].as_u64();
            let machines = v["machines"].as_array().cloned().unwrap_or_default();
            let current: Vec<&Value> = machines
                .iter()
                .filter(|m| m["received_at"].as_u64().unwrap_or(0) >= since)
                .collect();
            let good = current
                .iter()
                .filter(|m| {
                    m["sequence"].as_u64() == seq
                        && m["missing"].as_array().is_some_and(|a| a.is_empty())
                })
                .count();
            if seq == Some(u64::from(self.channel.seq)) && good == want && current.len() == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "channel status: {good} of {} machines reporting since {since} are at \
                     sequence {seq:?} (want {}) with nothing missing, want {want}: {v}",
                    current.len(),
                    self.channel.seq
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The HQ publisher's torrents (for a test's checks).
    pub fn hq_torrents(&self) -> Result<Vec<Value>> {
        agent_torrents(self.topo, &self.topo.hq, &self.hq)
    }
}

/// A capwise branch machine.
struct Machine {
    b: usize,
    #[allow(dead_code)]
    m: usize,
    ns: String,
    name: String,
    state: PathBuf,
    config: PathBuf,
    data: PathBuf,
    agent: Agent,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mb(b: u64) -> String {
    format!("{:.1}", b as f64 / 1e6)
}

/// The figures as a text table: per branch, bytes in divided by what `per` is, MB in and out,
/// seconds until all its machines held everything.
pub fn table(figs: &[Figures]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<18} {:>8} {:>9} {:>9} {:>7} | {:>8} {:>9} {:>9} {:>7} | {:>7}  {}\n",
        "case",
        "b1 ratio",
        "b1 in MB",
        "b1 outMB",
        "b1 s",
        "b2 ratio",
        "b2 in MB",
        "b2 outMB",
        "b2 s",
        "all s",
        "ratio = WAN bytes in / ..."
    ));
    for f in figs {
        let ratio = |b: usize| {
            if f.per[b] == 0 {
                "n/a".to_string()
            } else {
                format!("{:.3}", f.rx[b] as f64 / f.per[b] as f64)
            }
        };
        s.push_str(&format!(
            "{:<18} {:>8} {:>9} {:>9} {:>7.1} | {:>8} {:>9} {:>9} {:>7.1} | {:>7.1}  {}\n",
            f.case,
            ratio(0),
            mb(f.rx[0]),
            mb(f.tx[0]),
            f.branch_seconds[0],
            ratio(1),
            mb(f.rx[1]),
            mb(f.tx[1]),
            f.branch_seconds[1],
            f.seconds,
            match f.max_lsd_peers {
                Some(n) => format!("{}; LSD peers seen: {n}", f.per_what),
                None => f.per_what.to_string(),
            }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_complete_items_only() {
        let item = |name: &str, hash: &str, size| Item {
            name: name.into(),
            size,
            torrent: PathBuf::new(),
            hash: hash.into(),
            data: PathBuf::new(),
            url: String::new(),
        };
        let items = [item("a", "aa", 10), item("b", "bb", 20)];
        let rows: Vec<Value> = serde_json::from_str(
            r#"[{"id":"aa","state":"seeding","bytes_have":10},{"id":"bb","state":"downloading","bytes_have":5}]"#,
        )
        .unwrap();
        assert_eq!(agent_progress(&rows, &items).unwrap(), (1, 15));
        let bad: Vec<Value> =
            serde_json::from_str(r#"[{"id":"aa","state":"error","reason":"disk"}]"#).unwrap();
        assert!(agent_progress(&bad, &items).is_err());
    }

    #[test]
    fn publish_output_gives_hash_and_name_lines_only() {
        let h = "ab".repeat(20);
        let out = format!(
            "channel demo sequence 2 (3 items, 0 retired) in /x/manifest.json\n{h} alpha.bin\nnot a line\n{} b\n",
            "zz".repeat(20)
        );
        assert_eq!(parse_published(&out), vec![(h, "alpha.bin".to_string())]);
    }

    #[test]
    fn table_divides_by_the_copy() {
        let f = Figures {
            case: "curl".into(),
            rx: [400, 800],
            tx: [10, 20],
            seconds: 2.0,
            branch_seconds: [1.0, 2.0],
            per: [100, 0],
            per_what: "one curl copy",
            max_lsd_peers: None,
        };
        let t = table(&[f]);
        assert!(t.contains("4.000"), "{t}");
        assert!(t.contains("n/a"), "{t}");
    }
}
