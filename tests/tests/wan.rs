//! WAN scenarios: capwise in namespace a, a libtorrent peer in namespace b, opentracker in the
//! router namespace between them (see `capwise_tests::wan`). From a's view b is on another subnet,
//! so b is a WAN peer: the policy (metered networks, budgets) applies to it, and the veth counters
//! in a are the "carrier's meter". Run with `scripts/test` (feature `interop`, root, inside
//! `unshare -n`); `--nocapture` shows the figures table of each test.
//!
//! `metered_switch_stops_wan_uploads` shapes a's uplink (tc tbf, 2 MB/s) instead of limiting the
//! libtorrent leecher: with a download limit at the receiver, capwise's bytes sit in b's socket
//! receive buffer (measured: ~2.5 MB read by libtorrent after the switch while ~1 kB crossed the
//! link), which says nothing about capwise. With a slow uplink, as on a real metered link, data
//! waits on capwise's side, and a's veth tx after the rewrite is what the carrier would bill.
//!
//! Env: `CAPWISE_WAN_KILLS` (default 5) kill -9 rounds of `kill9_never_undercounts` (the benchmark
//! figure uses 20); `CAPWISE_WAN_SEED` its random seed; `CAPWISE_KEEP_TMP=1` keeps a failing
//! test's temp dir and logs.

use anyhow::{bail, Context, Result};
use capwise_tests::clients::agent::{self, Agent, RunOpts, Wrap};
use capwise_tests::clients::capwise::{self, CapwiseOpts};
use capwise_tests::clients::libtorrent::{self, parse_progress, LtOpts};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::paths::capwise_bin;
use capwise_tests::payload::make_tree;
use capwise_tests::process::{dump_logs, wait_until, ChildGuard};
use capwise_tests::torrent::make_torrent;
use capwise_tests::tracker::Tracker;
use capwise_tests::wan::{
    monotonic_secs, tx_at, Ns, WanTopology, A_IP, A_TUNNEL_IP, B_IP, ROUTER_A_IP,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const PIECE: u32 = 256 * 1024;
const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
const NAME: &str = "payload";
const NET_ID: &str = "wan-test";
const TRACKER_PORT: u16 = 6969;
const CAPWISE_PORT: u16 = 6881;
const LT_PORT: u16 = 6882;
/// The budget of the budget tests: 50 MB, 10 % reserve, so capwise stops at 45 MB.
const CAP: u64 = 50_000_000;
const AGENT_LIMIT: u64 = 45_000_000;
/// The reservation chunk of that budget (1 % of the cap): what a kill may over-count.
const CHUNK: u64 = CAP / 100;

/// One test's world, built inside the router namespace's thread.
struct Wan<'t> {
    topo: &'t WanTopology,
    root: PathBuf,
    logs: PathBuf,
    seed_dir: PathBuf,
    torrent: PathBuf,
    hash: String,
    tracker: Tracker,
    net_file: PathBuf,
    state_dir: PathBuf,
}

impl<'t> Wan<'t> {
    fn new(topo: &'t WanTopology, root: &Path, size: u64) -> Result<Self> {
        let logs = root.join("logs");
        let seed_dir = root.join("seed");
        make_tree(&seed_dir.join(NAME), &[("data.bin", size)], 0xC0FFEE)?;
        let torrent = root.join("payload.torrent");
        let url = format!("http://{ROUTER_A_IP}:{TRACKER_PORT}/announce");
        let hash = make_torrent(&seed_dir.join(NAME), &torrent, &[url], PIECE, &logs)?;
        let tracker = Tracker::start_on(
            ROUTER_A_IP,
            TRACKER_PORT,
            std::slice::from_ref(&hash),
            &root.join("tracker"),
            &logs,
            |c| topo.command(&topo.router, &c),
        )?;
        Ok(Self {
            topo,
            root: root.to_path_buf(),
            logs,
            seed_dir,
            torrent,
            hash,
            tracker,
            net_file: root.join("network.toml"),
            state_dir: root.join("capwise-state"),
        })
    }

    fn dir(&self, who: &str) -> Result<PathBuf> {
        let d = self.root.join(who);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// (Re)writes the network file atomically (capwise watches its directory with inotify).
    fn write_network(&self, metered: &str) -> Result<()> {
        let body = format!(
            "id = \"{NET_ID}\"\nname = \"WAN test uplink\"\nkind = \"ethernet\"\n\
             metered = \"{metered}\"\nroaming = false\ninterface = \"{}\"\n",
            self.topo.if_a
        );
        let tmp = self.net_file.with_extension("toml.tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &self.net_file)?;
        Ok(())
    }

    /// `capwise get|seed` in namespace a, listening on 10.201.1.2, following the network file.
    fn capwise(&self, name: &str, sub: &str, dir: &Path) -> Result<ChildGuard> {
        let opts = CapwiseOpts {
            extra: vec!["--network-file".into(), self.net_file.display().to_string()],
            ..CapwiseOpts::default()
        };
        let cmd = capwise::command_line(
            sub,
            &self.torrent,
            dir,
            (A_IP, CAPWISE_PORT).into(),
            &self.state_dir,
            &opts,
        )?;
        self.topo.exec(name, Ns::A, &cmd, &self.logs)
    }

    /// A capwise policy command (in namespace a, bounded); returns stdout.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new(capwise_bin());
        c.args(args).arg("--state-dir").arg(&self.state_dir);
        self.topo.run_in(
            "capwise-cli",
            Ns::A,
            &c,
            &self.logs,
            Duration::from_secs(30),
        )
    }

    fn set_budget(&self) -> Result<()> {
        self.cli(&["budget", "set", NET_ID, "--cap", "50MB", "--reserve", "10"])?;
        Ok(())
    }

    /// `capwise usage NET_ID --json`: this network's report.
    fn usage(&self) -> Result<Value> {
        let out = self.cli(&["usage", NET_ID, "--json"])?;
        let v: Value = serde_json::from_str(&out).with_context(|| format!("usage: {out}"))?;
        v.get(0).cloned().context("usage --json printed no network")
    }

    /// `capwise why --json --network-file F`.
    fn why(&self) -> Result<Value> {
        let f = self.net_file.display().to_string();
        let out = self.cli(&["why", "--json", "--network-file", &f])?;
        serde_json::from_str(&out).with_context(|| format!("why: {out}"))
    }

    /// A libtorrent peer in namespace b on 10.201.2.2.
    fn lt(&self, name: &str, mode: &str, dir: &Path, mut o: LtOpts) -> Result<ChildGuard> {
        o.listen_ip = Some(capwise_tests::wan::B_IP.into());
        let cmd = libtorrent::command_line(mode, &self.torrent, dir, LT_PORT, &o);
        self.topo.exec(name, Ns::B, &cmd, &self.logs)
    }

    /// `(rx, tx)` of a's veth end.
    fn a_bytes(&self) -> Result<(u64, u64)> {
        self.topo.iface_counters(Ns::A, &self.topo.if_a)
    }

    /// Bytes in the send queues (unacknowledged + unsent) of a's TCP connections to b (`ss`).
    fn capwise_send_queue(&self) -> Result<u64> {
        let out = self.topo.exec_output(
            &self.topo.a,
            // Every connection to b (capwise may have dialled it, or accepted its dial).
            Command::new("ss").args([
                "-tnH",
                "state",
                "established",
                "dst",
                &capwise_tests::wan::B_IP.to_string(),
            ]),
        )?;
        // Columns without a state: Recv-Q Send-Q Local Peer.
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum())
    }

    /// Bytes queued in a's uplink shaper (tbf backlog): handed over by TCP, not yet on the wire.
    fn shaper_backlog(&self) -> Result<u64> {
        let out = self.topo.exec_output(
            &self.topo.a,
            Command::new("tc").args(["-s", "qdisc", "show", "dev", &self.topo.if_a]),
        )?;
        // "... backlog 12345b 8p requeues 0"
        Ok(out
            .split_whitespace()
            .skip_while(|w| *w != "backlog")
            .nth(1)
            .and_then(|b| b.trim_end_matches('b').parse().ok())
            .unwrap_or(0))
    }

    /// `(rx, tx)` of b's veth end.
    fn b_bytes(&self) -> Result<(u64, u64)> {
        self.topo.iface_counters(Ns::B, &self.topo.if_b)
    }

    fn wait_tracker(&self, seeders: u64, leechers: u64) -> Result<()> {
        self.tracker.wait_swarm(&self.hash, seeders, leechers, WAIT)
    }

    fn dump_logs(&self) {
        dump_logs(&self.logs, None);
    }
}

/// Builds the topology and the test's world, runs `body` on a thread inside the router namespace
/// (so the tracker's scrapes reach it), and panics with every log on error. The namespaces are
/// deleted when this returns or unwinds.
fn run(test: &str, size: u64, body: impl FnOnce(&Wan) -> Result<()> + Send) {
    assert_private_netns();
    let t0 = Instant::now();
    let topo = WanTopology::new().expect("WAN topology (needs root and iproute2)");
    let tmp = tempfile::Builder::new()
        .prefix("capwise-wan-")
        .tempdir()
        .expect("temp dir");
    let r = topo
        .in_ns(Ns::Router, || -> Result<()> {
            let w = Wan::new(&topo, tmp.path(), size).context("test setup")?;
            let r = body(&w);
            if r.is_err() {
                w.dump_logs();
            }
            r
        })
        .and_then(|r| r);
    match r {
        Ok(()) => eprintln!("[wan] {test}: ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
                eprintln!("[wan] kept {}", tmp.keep().display());
            }
            panic!(
                "[wan] {test} failed after {:.1}s: {e:#}",
                t0.elapsed().as_secs_f64()
            );
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn table(title: &str, rows: &[(String, String)]) {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut s = format!("\n+--- {title} ---\n");
    for (k, v) in rows {
        s.push_str(&format!("| {k:<w$} | {v}\n"));
    }
    s.push_str("+---\n");
    eprint!("{s}");
}

fn mb(b: u64) -> String {
    format!(
        "{b} B ({:.2} MB, {:.1} KiB)",
        b as f64 / 1e6,
        b as f64 / 1024.0
    )
}

/// Seconds since UTC midnight now (the clock of capwise's log timestamps).
fn utc_secs_of_day() -> f64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// Seconds since UTC midnight of the first log line containing `needle`
/// ("2026-11-22T07:36:39.563272Z  INFO ...").
fn log_time_of(log: &str, needle: &str) -> Option<f64> {
    let line = log.lines().find(|l| l.contains(needle))?;
    let ts = line.split_whitespace().next()?;
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let sec: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + sec)
}

// ---------------------------------------------------------------------------------------------

/// a's uplink (its veth egress, tc tbf): 16 Mbit/s = 2 MB/s, so the transfer lasts and, as on a
/// real metered uplink, data waits in capwise's socket buffers rather than at the receiver.
const UPLINK_BITS: u64 = 16_000_000;
const UPLINK_RATE: f64 = UPLINK_BITS as f64 / 8.0;
/// Upload time before the network turns metered.
const UPLOAD_BEFORE: Duration = Duration::from_secs(5);
/// How long the transfer is watched after the switch.
const OBSERVE_AFTER: Duration = Duration::from_secs(4);
/// Counter sampling period (the leecher's progress lines too).
const SAMPLE: Duration = Duration::from_millis(100);
/// Growth of a's veth tx per sample that still counts as "stopped": TCP ACKs and the like, not
/// one full-size data segment.
const CHATTER: u64 = 1500;

#[test]
fn metered_switch_stops_wan_uploads() {
    run("metered_switch_stops_wan_uploads", 64 * MIB, |w| {
        w.topo.shape(Ns::A, &w.topo.if_a, UPLINK_BITS)?;
        w.write_network("no")?;
        let mut seed = w.capwise("capwise-seed", "seed", &w.seed_dir)?;
        let leech_dir = w.dir("lt-leech")?;
        let mut leech = w.lt(
            "lt-leech",
            "get",
            &leech_dir,
            LtOpts {
                peers: vec![(A_IP, CAPWISE_PORT).into()],
                progress_interval: Some(SAMPLE.as_secs_f64()),
                ..LtOpts::default()
            },
        )?;
        wait_until(
            "the WAN leecher to receive payload from capwise",
            WAIT,
            Duration::from_millis(100),
            || {
                if let Some(s) = seed.try_wait()? {
                    bail!("capwise seed exited: {s}");
                }
                if let Some(s) = leech.try_wait()? {
                    bail!("leecher exited: {s}");
                }
                Ok(parse_progress(&leech.stdout())
                    .last()
                    .is_some_and(|p| p.payload_down > 0))
            },
        )?;
        let t_first = monotonic_secs();
        let (_, tx_first) = w.a_bytes()?;
        std::thread::sleep(UPLOAD_BEFORE);

        // a's veth tx read every millisecond from inside a's namespace: the tight figure.
        let sampler = w.topo.sample_tx(
            Ns::A,
            &w.topo.if_a,
            Duration::from_millis(1),
            Duration::from_secs(60),
        );
        // a's veth tx (what the carrier bills) and b's veth rx, before and after the rewrite.
        let send_q = w.capwise_send_queue()?;
        let b0 = w.b_bytes()?.0;
        let (_, tx0) = w.a_bytes()?;
        let t_write = monotonic_secs();
        w.write_network("yes")?;
        let t_switch = monotonic_secs();
        let wall_switch = utc_secs_of_day();
        // a's tx read once more right after the rewrite: counting from here misses what left
        // between the rewrite and this reading, counting from `tx0` includes what left between
        // that reading and the rewrite (each reading is one process, 10-40 ms on a busy VM).
        let tx0_after = w.a_bytes()?.1;
        // What the kernel already held just after the rewrite (a few ms late: one process each).
        let send_q_after = w.capwise_send_queue()?;
        let backlog_after = w.shaper_backlog()?;
        let mut wire = vec![(t_switch, tx0, b0)];
        let end = Instant::now() + OBSERVE_AFTER;
        for _ in 0..1000 {
            if Instant::now() >= end {
                break;
            }
            std::thread::sleep(SAMPLE);
            let tx = w.a_bytes()?.1;
            let rx_b = w.b_bytes()?.0;
            wire.push((monotonic_secs(), tx, rx_b));
        }
        // libtorrent's payload counters advance on its one-second tick: let the last one print.
        std::thread::sleep(Duration::from_millis(1200));
        let why = w.why()?;
        let usage = w.usage()?;
        let samples = parse_progress(&leech.stdout());
        let leech_alive = leech.try_wait()?.is_none();
        capwise::stop_clean(&mut seed)?;

        let sampled = sampler.finish()?;
        let rate_before = (tx0 - tx_first) as f64 / (t_switch - t_first);
        let &(_, tx_last, rx_b_last) = wire.last().expect("wire has the first sample");
        let wire_late = tx_last - tx0;
        let b_late = rx_b_last - b0;
        // Growth stopped at the sample after which no sample grew by more than chatter.
        let mut wire_stop = 0.0;
        // a's tx when growth stopped: what left in the burst after the switch; the rest of
        // `wire_late` is chatter (ACKs, rejects of re-sent requests, keep-alives, announces).
        let mut tx_at_stop = tx0;
        for pair in wire.windows(2) {
            if pair[1].1 - pair[0].1 > CHATTER {
                wire_stop = pair[1].0 - t_switch;
                tx_at_stop = pair[1].1;
            }
        }
        let observed = wire.last().map_or(0.0, |l| l.0 - t_switch);
        // From the sampler: tx at the rewrite, when growth stopped, and at the end.
        let tight = match (
            tx_at(&sampled, t_write),
            tx_at(&sampled, t_switch + wire_stop),
            sampled.last(),
        ) {
            (Some(at_write), Some(at_stop), Some(&(_, at_end))) => Some((
                at_stop.saturating_sub(at_write),
                at_end.saturating_sub(at_write),
                sampled.len(),
            )),
            _ => None,
        };
        let late_app = match (
            samples.iter().rev().find(|p| p.mono <= t_switch),
            samples.last(),
        ) {
            (Some(a), Some(z)) => Some(z.payload_down - a.payload_down),
            _ => None,
        };
        let noticed =
            log_time_of(&seed.log_tail(1 << 16), "reason=Metered").map(|t| t - wall_switch);
        let up_wan = u(&usage["agent"]["up_wan"]);
        let up_lan = u(&usage["agent"]["up_lan"]);
        let leech_total = samples.last().map_or(0, |p| p.payload_down);
        table(
            "metered_switch_stops_wan_uploads",
            &[
                ("a's uplink (tbf) / rate before".into(), format!("{:.1} MB/s / {:.2} MB/s on a's veth", UPLINK_RATE / 1e6, rate_before / 1e6)),
                ("a's veth tx after the rewrite".into(), format!("{} (issue: payload <= 64 KiB; test bound 1 MiB)", mb(wire_late))),
                ("same, counted from a reading just after it".into(), mb(tx_last - tx0_after)),
                ("same, 1 ms in-process sampler: until growth stopped / all".into(), tight.map_or("n/a".into(), |(burst, all, n)| format!("{} / {} ({n} samples)", mb(burst), mb(all)))),
                ("of which until growth stopped / chatter".into(), format!("{} / {}", mb(tx_at_stop - tx0), mb(tx_last - tx_at_stop))),
                ("b's veth rx after the rewrite".into(), mb(b_late)),
                ("capwise noticed the rewrite after".into(), noticed.map_or("n/a".into(), |d| format!("{:.0} ms (network file watched with inotify)", d * 1000.0))),
                ("capwise's TCP Send-Q at the rewrite".into(), mb(send_q)),
                ("just after: TCP Send-Q / shaper backlog".into(), format!("{} / {}", mb(send_q_after), mb(backlog_after))),
                ("wire growth (> 1 packet/sample) stopped".into(), format!("{wire_stop:.2} s after the rewrite (bound 1 s; {} ms samples, watched {observed:.1} s)", SAMPLE.as_millis())),
                ("leecher payload after the rewrite".into(), late_app.map_or("n/a".into(), |b| format!("{} (libtorrent counter: 1 s tick, so up to ~1 s of pre-switch data is included)", mb(b)))),
                ("why: up_wan / reason".into(), format!("{} / {}", why["allowances"]["up_wan"], why["reason"])),
                ("ledger up_wan / up_lan; leecher total".into(), format!("{up_wan} / {up_lan}; {leech_total}")),
                ("leecher process still running".into(), format!("{leech_alive}")),
            ],
        );
        if up_wan == 0 || up_lan != 0 {
            bail!("capwise did not count the b peer as WAN: up_wan {up_wan}, up_lan {up_lan}");
        }
        if rate_before < 0.25 * UPLINK_RATE {
            bail!("the upload never got going: {rate_before:.0} B/s before the switch");
        }
        if why["allowances"]["up_wan"] != "suspended" {
            bail!("capwise why does not report WAN uploads suspended: {why}");
        }
        if observed < 2.0 {
            bail!("watched the link only {observed:.1} s after the switch");
        }
        if wire_stop > 1.0 {
            bail!(
                "WAN uploads went on {wire_stop:.2} s after the network turned metered \
                 ({wire_late} bytes left a's veth after the rewrite)"
            );
        }
        if wire_late > MIB {
            bail!("{wire_late} bytes left a's veth after the rewrite (bound 1 MiB)");
        }
        Ok(())
    });
}

/// Waits until a's veth counters stop moving: growth below 64 KiB over `quiet`, after at least
/// 1 MB moved. Returns the elapsed time; errors if `get` exits or after [`WAIT`].
fn wait_stall(w: &Wan, get: &mut ChildGuard, base: u64, quiet: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    let mut hist: Vec<(Instant, u64)> = Vec::new();
    for _ in 0..2000 {
        if let Some(s) = get.try_wait()? {
            bail!("capwise get exited ({s}) instead of stalling at the budget");
        }
        let (rx, tx) = w.a_bytes()?;
        let now = Instant::now();
        let total = rx + tx - base;
        hist.push((now, total));
        if total > 1_000_000 {
            if let Some(&(_, old)) = hist.iter().find(|(t, _)| now.duration_since(*t) <= quiet) {
                let span = now.duration_since(hist[0].0);
                if span >= quiet && total - old < 64 * KIB {
                    return Ok(t0.elapsed());
                }
            }
        }
        if t0.elapsed() > WAIT {
            bail!("capwise's traffic did not stall within {WAIT:?} ({total} bytes on a's veth)");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("stall wait: too many polls")
}

#[test]
fn budget_is_a_hard_cap() {
    run("budget_is_a_hard_cap", 120 * MIB, |w| {
        w.write_network("no")?;
        w.set_budget()?;
        let seed = w.lt(
            "lt-seed",
            "seed",
            &w.seed_dir,
            LtOpts {
                seed_mode: true,
                progress_interval: Some(0.5),
                ..LtOpts::default()
            },
        )?;
        w.wait_tracker(1, 0)?;
        let (rx0, tx0) = w.a_bytes()?;
        let t = Instant::now();
        let mut get = w.capwise("capwise-get", "get", &w.dir("cw-get")?)?;
        let stalled = wait_stall(w, &mut get, rx0 + tx0, Duration::from_secs(4))?;
        let why = w.why()?;
        // `get` exits 1 on SIGTERM before completion ("interrupted"); it must exit by itself
        // (flushing its ledger), not need SIGKILL.
        let status = get.stop(Duration::from_secs(15))?;
        if status.code().is_none() {
            bail!("capwise get did not exit on SIGTERM: {status}");
        }
        let (rx1, tx1) = w.a_bytes()?;
        let usage = w.usage()?;
        let sent = parse_progress(&seed.stdout())
            .last()
            .map_or(0, |p| p.payload_up);
        let b = &usage["budget"];
        let agent_used = u(&b["agent_used_bytes"]);
        let rows = u(&usage["agent"]["down_wan"]) + u(&usage["agent"]["up_wan"]);
        let lan = u(&usage["agent"]["down_lan"]) + u(&usage["agent"]["up_lan"]);
        let wire = (rx1 - rx0) + (tx1 - tx0);
        table(
            "budget_is_a_hard_cap (cap 50 MB, reserve 10 %)",
            &[
                (
                    "agent counted (reservation)".into(),
                    format!("{} (limit {AGENT_LIMIT})", mb(agent_used)),
                ),
                ("ledger rows down_wan+up_wan".into(), mb(rows)),
                ("ledger rows LAN".into(), mb(lan)),
                (
                    "capwise's link measurement".into(),
                    format!(
                        "down {} up {} (used_bytes {})",
                        usage["link"]["down"], usage["link"]["up"], b["used_bytes"]
                    ),
                ),
                ("libtorrent seeder payload sent".into(), mb(sent)),
                (
                    "a's veth rx+tx during the run".into(),
                    format!(
                        "{} (cap {CAP}; rx {} tx {})",
                        mb(wire),
                        rx1 - rx0,
                        tx1 - tx0
                    ),
                ),
                (
                    "headroom under the cap".into(),
                    mb(CAP.saturating_sub(wire)),
                ),
                (
                    "stalled after".into(),
                    format!(
                        "{:.1} s (run {:.1} s)",
                        stalled.as_secs_f64(),
                        t.elapsed().as_secs_f64()
                    ),
                ),
                (
                    "why at the stall".into(),
                    format!("{} / {}", why["reason"], why["allowances"]["down_wan"]),
                ),
            ],
        );
        if lan != 0 {
            bail!("capwise counted the b peer as LAN ({lan} bytes)");
        }
        if agent_used > AGENT_LIMIT || rows > AGENT_LIMIT {
            bail!("capwise counted {agent_used} (rows {rows}) > cap - reserve {AGENT_LIMIT}");
        }
        if wire >= CAP {
            bail!("a's veth carried {wire} bytes >= the 50 MB cap");
        }
        if sent > agent_used {
            bail!("the seeder sent {sent} payload bytes, more than capwise counted ({agent_used})");
        }
        if agent_used < AGENT_LIMIT / 2 {
            bail!("the transfer stalled at {agent_used} bytes, far below the budget: not the cap");
        }
        Ok(())
    });
}

/// Waits until the seeder's `payload_up` is unchanged for 1 s (bounded); returns it.
fn settled_upload(seed: &ChildGuard) -> Result<u64> {
    let mut last = None;
    let mut since = Instant::now();
    let t0 = Instant::now();
    loop {
        let now = parse_progress(&seed.stdout()).last().map(|p| p.payload_up);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(1) {
            return last.context("the seeder printed no progress");
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("the seeder's upload counter did not settle within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill9_never_undercounts() {
    run("kill9_never_undercounts", 120 * MIB, |w| {
        let kills: usize = std::env::var("CAPWISE_WAN_KILLS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5)
            .clamp(1, 100);
        let rng_seed: u64 = std::env::var("CAPWISE_WAN_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("[wan] kill9: {kills} kills, CAPWISE_WAN_SEED={rng_seed}");
        let mut rng = StdRng::seed_from_u64(rng_seed);
        w.write_network("no")?;
        w.set_budget()?;
        let seed = w.lt(
            "lt-seed",
            "seed",
            &w.seed_dir,
            LtOpts {
                seed_mode: true,
                // Slow enough that kills land mid-transfer before the cap is reached.
                upload_limit: Some(5_000_000),
                progress_interval: Some(0.2),
                ..LtOpts::default()
            },
        )?;
        w.wait_tracker(1, 0)?;
        let dir = w.dir("cw-get")?;
        let mut rows = Vec::new();
        let mut violations = Vec::new();
        let mut min_margin = i64::MAX;
        // The over-count each kill added: the growth of (ledger - sent) across it.
        let mut last_margin = 0i64;
        let mut over_counts = Vec::new();
        for i in 0..kills {
            let delay = Duration::from_millis(rng.gen_range(300..=3000));
            let mut get = w.capwise(&format!("capwise-get-{i}"), "get", &dir)?;
            std::thread::sleep(delay);
            if let Some(s) = get.try_wait()? {
                bail!(
                    "capwise get #{i} exited by itself ({s})\n{}",
                    get.log_tail(3000)
                );
            }
            get.signal(libc::SIGKILL);
            if get.wait_timeout(Duration::from_secs(10))?.is_none() {
                bail!("capwise get #{i} survived SIGKILL for 10 s");
            }
            let sent = settled_upload(&seed)?;
            let usage = w.usage()?;
            let reserved = u(&usage["budget"]["agent_used_bytes"]);
            let logged = u(&usage["agent"]["down_wan"]) + u(&usage["agent"]["up_wan"]);
            let margin = reserved as i64 - sent as i64;
            min_margin = min_margin.min(margin);
            let over_count = margin - last_margin;
            last_margin = margin;
            over_counts.push(over_count);
            if reserved < sent {
                violations.push(format!(
                    "kill #{i} after {delay:?}: ledger {reserved} < seeder sent {sent}"
                ));
            }
            rows.push((
                format!("#{i:<2} kill after {:>4} ms", delay.as_millis()),
                format!(
                    "seeder sent {sent:>9}  ledger (reservation) {reserved:>9}  margin {margin:>8}  this kill {over_count:>8}  usage rows {logged:>9}"
                ),
            ));
        }
        rows.push((
            "min margin (ledger - sent)".into(),
            format!("{min_margin} B (must be >= 0)"),
        ));
        let (min_over, max_over) = (
            over_counts.iter().min().copied().unwrap_or(0),
            over_counts.iter().max().copied().unwrap_or(0),
        );
        rows.push((
            "over-count per kill (min / max)".into(),
            format!("{min_over} / {max_over} B (one chunk: {CHUNK} B)"),
        ));
        table(
            &format!("kill9_never_undercounts ({kills} kills, seed {rng_seed})"),
            &rows,
        );
        if !violations.is_empty() {
            bail!("the ledger under-counted:\n  {}", violations.join("\n  "));
        }
        if max_over > CHUNK as i64 {
            bail!("a kill over-counted {max_over} B, more than one chunk ({CHUNK} B)");
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------

/// The address a moves to and back from: a second subnet on the same link, whose router side
/// (`.1`) is added before the download starts.
const MOVED_NET: [u8; 3] = [10, 201, 3];
/// The download rate of the address-change test (`--download-limit`), so it lasts.
const MOVE_RATE: &str = "2MB/s";
/// Payload bytes from the current address before the next move.
const BEFORE_MOVE: u64 = 2 * MIB;

/// a's address in subnet `net`, with the router's `.1` there as its default route.
fn a_address(net: [u8; 3]) -> (String, String) {
    (
        format!("{}.{}.{}.2", net[0], net[1], net[2]),
        format!("{}.{}.{}.1", net[0], net[1], net[2]),
    )
}

/// Payload (and framing) received so far on a's established TCP connections from `local`
/// (`ss -ti`: tcp_info's bytes_received).
fn received_on(w: &Wan, local: &str) -> Result<u64> {
    let out = w.topo.exec_output(
        &w.topo.a,
        Command::new("ss").args(["-tinH", "state", "established", "src", local]),
    )?;
    Ok(out
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("bytes_received:")?.parse::<u64>().ok())
        .sum())
}

/// A download in namespace a survives changes of address: mid-download the old address is removed,
/// a new one and a new default route added (`CAPWISE_WAN_MOVES` times, default 1, between
/// 10.201.1.2 and 10.201.3.2). The download completes; the table shows, per move, the seconds
/// from the change to the first 16 KiB received on a connection from the new address (the
/// benchmark figure, `tests/bench/netchange`; goal ≤ 5 s).
#[test]
fn a_download_survives_a_change_of_address() {
    let moves: usize = std::env::var("CAPWISE_WAN_MOVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 20);
    let size = 8 * MIB * (moves as u64 + 1);
    run("a_download_survives_a_change_of_address", size, |w| {
        let (ifa, ifra) = (w.topo.if_a.clone(), w.topo.if_ra.clone());
        let (moved_ip, moved_gw) = a_address(MOVED_NET);
        w.topo.exec_output(
            &w.topo.router,
            Command::new("ip").args(["addr", "add", &format!("{moved_gw}/24"), "dev", &ifra]),
        )?;
        w.write_network("no")?;
        let _seed = w.lt(
            "lt-seed",
            "seed",
            &w.seed_dir,
            LtOpts {
                seed_mode: true,
                ..LtOpts::default()
            },
        )?;
        w.wait_tracker(1, 0)?;
        // Listening on every address: a bound one would vanish with the move.
        let opts = CapwiseOpts {
            download_limit: Some(MOVE_RATE.into()),
            extra: vec!["--network-file".into(), w.net_file.display().to_string()],
            ..CapwiseOpts::default()
        };
        let cmd = capwise::command_line(
            "get",
            &w.torrent,
            &w.dir("cw-get")?,
            ([0, 0, 0, 0], CAPWISE_PORT).into(),
            &w.state_dir,
            &opts,
        )?;
        let mut get = w.topo.exec("capwise-get", Ns::A, &cmd, &w.logs)?;
        let mut here = (A_IP.to_string(), ROUTER_A_IP.to_string());
        let mut gaps = Vec::new();
        for k in 0..moves {
            wait_until(
                "payload from the current address",
                WAIT,
                Duration::from_millis(100),
                || {
                    if let Some(s) = get.try_wait()? {
                        bail!("capwise get exited before move {k}: {s}");
                    }
                    Ok(received_on(w, &here.0)? >= BEFORE_MOVE)
                },
            )?;
            let there = if here.0 == A_IP.to_string() {
                (moved_ip.clone(), moved_gw.clone())
            } else {
                (A_IP.to_string(), ROUTER_A_IP.to_string())
            };
            // The move, as a DHCP client on a new network does it: the old address goes (its
            // routes with it), the new one and a default route through its gateway come.
            let ip = |args: &[&str]| w.topo.exec_output(&w.topo.a, Command::new("ip").args(args));
            let t_change = Instant::now();
            ip(&["addr", "del", &format!("{}/24", here.0), "dev", &ifa])?;
            ip(&["addr", "add", &format!("{}/24", there.0), "dev", &ifa])?;
            ip(&["route", "replace", "default", "via", &there.1])?;
            let mut gap = None;
            wait_until(
                "payload on a connection from the new address",
                Duration::from_secs(60),
                Duration::from_millis(20),
                || {
                    if let Some(s) = get.try_wait()? {
                        bail!("capwise get exited after move {k}: {s}");
                    }
                    let resumed = received_on(w, &there.0)? >= 16 * KIB;
                    if resumed {
                        gap = Some(t_change.elapsed());
                    }
                    Ok(resumed)
                },
            )?;
            gaps.push(gap.unwrap_or_default());
            here = there;
        }
        // Far less than the download would wait for a TCP time-out (90 s in one try).
        let finish = Duration::from_secs(60);
        match get.wait_timeout(finish)? {
            Some(s) if s.success() => {}
            Some(s) => bail!("capwise get failed after the moves: {s}"),
            None => bail!("capwise get did not finish within {finish:?} of the last move"),
        }
        let mut rows: Vec<(String, String)> = gaps
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    format!("move {}: change to the next payload", i + 1),
                    format!("{:.2} s", g.as_secs_f64()),
                )
            })
            .collect();
        let mut sorted = gaps.clone();
        sorted.sort();
        rows.push((
            "median, max".into(),
            format!(
                "{:.2} s, {:.2} s (goal ≤ 5 s)",
                sorted[sorted.len() / 2].as_secs_f64(),
                sorted[sorted.len() - 1].as_secs_f64()
            ),
        ));
        table(
            &format!("a_download_survives_a_change_of_address ({moves} moves, {MOVE_RATE})"),
            &rows,
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------

/// The bound-interface test's download limit, so that the transfer is under way when the link
/// goes.
const BOUND_RATE: &str = "3MB/s";
/// Payload in before the bound link is deleted.
const BEFORE_CUT: u64 = 3 * MIB;
/// How long the link stays deleted.
const OUTAGE: Duration = Duration::from_secs(4);
/// Ports in b and the router for the bound-interface test: a second tracker (HTTP and UDP), the
/// web seed, the DHT node.
const BOUND_TRACKER_PORT: u16 = 6970;
const WEB_PORT: u16 = 8080;
const DHT_PORT: u16 = 6890;
const CW_SEED_PORT: u16 = 6883;
/// LSD's IPv4 group and port (BEP 14).
const LSD_GROUP: &str = "239.192.152.143";

/// a's nftables counters for the bound-interface test: TCP and UDP packets out of and into each
/// of a's two links (`first_*` the default route's, `tunnel_*` the bound one's), and on the
/// tunnel those of each protocol that must use it.
fn counter_ruleset(first: &str, tunnel: &str) -> String {
    format!(
        "table inet cwbound {{
  counter first_out {{}}
  counter first_rst {{}}
  counter first_in {{}}
  counter tunnel_out {{}}
  counter tunnel_in {{}}
  counter udp_tracker {{}}
  counter dht {{}}
  counter web_seed {{}}
  counter lsd {{}}
  chain out {{
    type filter hook output priority 0; policy accept;
    oifname \"{first}\" meta l4proto {{ tcp, udp }} counter name \"first_out\"
    oifname \"{first}\" tcp flags rst counter name \"first_rst\"
    oifname \"{tunnel}\" meta l4proto {{ tcp, udp }} counter name \"tunnel_out\"
    oifname \"{tunnel}\" udp dport {BOUND_TRACKER_PORT} counter name \"udp_tracker\"
    oifname \"{tunnel}\" udp dport {DHT_PORT} counter name \"dht\"
    oifname \"{tunnel}\" tcp dport {WEB_PORT} counter name \"web_seed\"
    oifname \"{tunnel}\" ip daddr {LSD_GROUP} udp dport 6771 counter name \"lsd\"
  }}
  chain in {{
    type filter hook input priority 0; policy accept;
    iifname \"{first}\" meta l4proto {{ tcp, udp }} counter name \"first_in\"
    iifname \"{tunnel}\" meta l4proto {{ tcp, udp }} counter name \"tunnel_in\"
  }}
}}
"
    )
}

/// `(packets, bytes)` of every named counter of a's `cwbound` table.
fn counters(w: &Wan) -> Result<std::collections::BTreeMap<String, (u64, u64)>> {
    let out = w.topo.exec_output(
        &w.topo.a,
        Command::new("nft").args(["-j", "list", "counters", "table", "inet", "cwbound"]),
    )?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("nft -j: {out}"))?;
    let mut found = std::collections::BTreeMap::new();
    for item in v["nftables"].as_array().context("nft -j: no list")? {
        if let Some(c) = item.get("counter") {
            let name = c["name"].as_str().context("a counter without a name")?;
            found.insert(name.to_string(), (u(&c["packets"]), u(&c["bytes"])));
        }
    }
    Ok(found)
}

/// `capwise why --json`, from the agent.
fn why_of(agent: &mut Agent) -> Result<Value> {
    agent.cli_json(&["why"])
}

/// An agent whose traffic is bound to a's second link (`[net] interface`, named like a VPN's),
/// while the first link keeps the better default route. It downloads from a libtorrent seeder
/// and a web seed in b, announcing to a UDP tracker (an HTTP one as the next tier), with the DHT
/// (a libtorrent node in b) and LSD on: nftables counts every TCP and UDP packet on each link,
/// and none may cross the first one, while the UDP tracker, the DHT, the web seed, LSD and the
/// payload show on the second. Mid-download the second link is deleted: for a few seconds
/// nothing moves, nothing leaves by the first link, the agent stays up and `why` says the
/// interface is missing. Made again (a new device under the same name, as a VPN that reconnects
/// makes), the agent moves its sockets onto it and the download completes.
#[test]
fn a_bound_interface_carries_everything_and_nothing_leaves_another_way() {
    run("a_bound_interface_carries_everything", 12 * MIB, |w| {
        let (tunnel, _) = w.topo.tunnel_names();
        let first = w.topo.if_a.clone();
        w.topo.add_tunnel()?;
        let rules = w.root.join("counters.nft");
        std::fs::write(&rules, counter_ruleset(&first, &tunnel))?;
        w.topo
            .exec_output(&w.topo.a, Command::new("nft").arg("-f").arg(&rules))?;

        // The torrent: a UDP tracker, then an HTTP one (BEP 12 tiers), and a web seed in b.
        let torrent = w.root.join("bound.torrent");
        let web = format!("http://{B_IP}:{WEB_PORT}/");
        capwise_tests::clients::lighttpd::mktorrent_with_trackers(
            &w.seed_dir.join(NAME),
            &torrent,
            &[
                format!("udp://{ROUTER_A_IP}:{BOUND_TRACKER_PORT}"),
                format!("http://{ROUTER_A_IP}:{BOUND_TRACKER_PORT}/announce"),
            ],
            std::slice::from_ref(&web),
            18,
            &w.logs,
        )?;
        let hash = capwise_tests::torrent::info_hash(&torrent, &w.logs)?;
        let tracker = Tracker::start_on(
            ROUTER_A_IP,
            BOUND_TRACKER_PORT,
            std::slice::from_ref(&hash),
            &w.root.join("tracker-bound"),
            &w.logs,
            |c| w.topo.command(&w.topo.router, &c),
        )?;
        let _web = capwise_tests::clients::lighttpd::Lighttpd::start_on(
            B_IP,
            &w.seed_dir,
            WEB_PORT,
            &w.root.join("lighttpd"),
            &w.logs,
            |c| w.topo.command(&w.topo.b, &c),
        )?;
        let dht_node = std::net::SocketAddr::from((B_IP, DHT_PORT));
        let _dht = w.topo.exec(
            "lt-dht",
            Ns::B,
            &libtorrent::dht_nodes_command(dht_node, 1, None),
            &w.logs,
        )?;
        // The probe is sent from b, the node's own address.
        w.topo
            .in_ns(Ns::B, || libtorrent::wait_dht_answers("lt-dht", dht_node))??;
        let seed_opts = LtOpts {
            seed_mode: true,
            listen_ip: Some(B_IP.into()),
            ..LtOpts::default()
        };
        let _seed = w.topo.exec(
            "lt-seed",
            Ns::B,
            &libtorrent::command_line("seed", &torrent, &w.seed_dir, LT_PORT, &seed_opts),
            &w.logs,
        )?;
        // A capwise seeder beside it: libtorrent takes one connection per address, and keeps the
        // one of before the cut until it times out (a minute); capwise takes the agent back at
        // once (it comes back under a new peer id).
        let cw_seed = capwise::command_line(
            "seed",
            &torrent,
            &w.seed_dir,
            (B_IP, CW_SEED_PORT).into(),
            &w.root.join("cw-seed-state"),
            &CapwiseOpts::default(),
        )?;
        let _cw_seed = w.topo.exec("capwise-seed", Ns::B, &cw_seed, &w.logs)?;
        tracker.wait_swarm(&hash, 2, 0, WAIT)?;

        w.write_network("no")?;
        let config = w.root.join("bound.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"0.0.0.0:{CAPWISE_PORT}\"\ntransports = [\"tcp\", \"utp\"]\n\
                 [net]\ninterface = \"{tunnel}\"\n[limits]\ndown = \"{BOUND_RATE}\"\n"
            ),
        )?;
        let a = w.topo.a.clone();
        let wrap: Wrap =
            std::sync::Arc::new(move |c: &Command| capwise_tests::wan::netns_command(&a, c));
        let command = agent::run_command_with(
            &w.state_dir,
            &config,
            Some(&w.net_file),
            &RunOpts {
                dht_bootstrap: Some(dht_node),
                lsd: true,
            },
        );
        let mut agent =
            Agent::start_command("capwise-bound", &w.state_dir, command, &w.logs, Some(wrap))?;
        let why = why_of(&mut agent)?;
        ensure(
            why["interface"]["name"] == tunnel.as_str() && why["interface"]["state"] == "up",
            format!("why does not show the bound interface up: {why}"),
        )?;
        let dir = w.dir("cw-bound")?;
        let added = agent.cli_json(&[
            "add",
            torrent.to_str().context("utf-8")?,
            "-d",
            dir.to_str().context("utf-8")?,
        ])?;
        let id = added["id"]
            .as_str()
            .context("add --json has no id")?
            .to_string();
        let mut have = 0;
        wait_until(
            "payload over the bound link",
            WAIT,
            Duration::from_millis(100),
            || {
                have = u(&agent.status(&id)?["bytes_have"]);
                Ok(have >= BEFORE_CUT)
            },
        )?;
        let before = counters(w)?;

        // The link goes: nothing moves, nothing takes the other link, the agent says why.
        let t_cut = Instant::now();
        w.topo.remove_tunnel()?;
        let mut said = None;
        let mut have_when_said = 0;
        while t_cut.elapsed() < OUTAGE {
            if let Some(s) = agent.guard.try_wait()? {
                bail!("the agent exited when its interface went: {s}");
            }
            let why = why_of(&mut agent)?;
            if said.is_none() && why["interface"]["state"] == "missing" {
                said = Some((
                    t_cut.elapsed(),
                    why["explanation"].as_str().unwrap_or("").to_string(),
                ));
                have_when_said = u(&agent.status(&id)?["bytes_have"]);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let (said_after, explanation) = said.context("why never said the interface is missing")?;
        ensure(
            explanation.starts_with(&format!(
                "Interface {tunnel} is missing: no BitTorrent traffic"
            )),
            format!("why's explanation: {explanation:?}"),
        )?;
        let have_after_outage = u(&agent.status(&id)?["bytes_have"]);
        let during = counters(w)?;

        // It comes back as a new device: the download goes on over it.
        let t_back = Instant::now();
        w.topo.add_tunnel()?;
        let done = agent.wait_state(&id, "seeding", Duration::from_secs(30))?;
        let resumed_in = t_back.elapsed();
        ensure(
            done["bytes_have"] == done["total_length"],
            format!("{done}"),
        )?;
        capwise_tests::payload::assert_same_tree(&w.seed_dir.join(NAME), &dir.join(NAME))?;
        let why = why_of(&mut agent)?;
        ensure(
            why["interface"]["state"] == "up" && why["interface"].get("problem").is_none(),
            format!("why after the link came back: {why}"),
        )?;
        let after = counters(w)?;
        let log = std::fs::read_to_string(w.logs.join("capwise-bound.stderr"))?;
        let access =
            std::fs::read_to_string(w.logs.join("lighttpd.access.log")).unwrap_or_default();

        let c = |m: &std::collections::BTreeMap<String, (u64, u64)>, k: &str| {
            m.get(k).copied().unwrap_or_default()
        };
        table(
            "a_bound_interface_carries_everything",
            &[
                ("payload before the cut".into(), mb(have)),
                (
                    "first link, TCP/UDP out (packets, bytes)".into(),
                    format!("{:?}", c(&after, "first_out")),
                ),
                (
                    "  of which the kernel's resets".into(),
                    format!("{:?}", c(&after, "first_rst")),
                ),
                (
                    "first link, TCP/UDP in".into(),
                    format!("{:?}", c(&after, "first_in")),
                ),
                (
                    "bound link, TCP/UDP in (bytes)".into(),
                    mb(c(&after, "tunnel_in").1),
                ),
                (
                    "bound link: UDP tracker, DHT, web seed, LSD (packets)".into(),
                    format!(
                        "{}, {}, {}, {}",
                        c(&after, "udp_tracker").0,
                        c(&after, "dht").0,
                        c(&after, "web_seed").0,
                        c(&after, "lsd").0
                    ),
                ),
                (
                    "why said missing after".into(),
                    format!("{:.2} s", said_after.as_secs_f64()),
                ),
                (
                    "payload during the outage".into(),
                    mb(have_after_outage.saturating_sub(have_when_said)),
                ),
                (
                    "link back to seeding".into(),
                    format!("{:.2} s", resumed_in.as_secs_f64()),
                ),
            ],
        );
        for (k, m) in [("before the cut", &before), ("during the outage", &during)] {
            ensure(
                c(m, "first_out").0 == 0 && c(m, "first_in").0 == 0,
                format!("TCP or UDP crossed the first link {k}: {m:?}"),
            )?;
        }
        // Once the link is back, a peer's segments for a connection of before the cut reach a
        // socket that is gone, and the kernel answers each with a reset along its routing table
        // (the first link): no socket of capwise's sends those.
        ensure(
            c(&after, "first_in").0 == 0
                && c(&after, "first_out") == c(&after, "first_rst")
                && c(&after, "first_rst").0 <= 4,
            format!("TCP or UDP beyond the kernel's resets crossed the first link: {after:?}"),
        )?;
        ensure(
            c(&after, "tunnel_in").1 >= 12 * MIB,
            format!("the payload did not come over the bound link: {after:?}"),
        )?;
        for k in ["udp_tracker", "dht", "web_seed", "lsd"] {
            ensure(
                c(&after, k).0 > 0,
                format!("no {k} packet left by the bound link: {after:?}"),
            )?;
        }
        ensure(
            have_after_outage == have_when_said,
            format!("payload arrived while the interface was missing: {have_when_said} -> {have_after_outage}"),
        )?;
        ensure(
            access
                .lines()
                .any(|l| l.starts_with(&A_TUNNEL_IP.to_string())),
            format!("the web seed saw no request from {A_TUNNEL_IP}:\n{access}"),
        )?;
        ensure(
            !access.lines().any(|l| l.starts_with(&A_IP.to_string())),
            format!("the web seed saw a request from {A_IP}:\n{access}"),
        )?;
        for needle in [
            format!("Interface {tunnel} is missing"),
            format!("bound to the new {tunnel} device"),
        ] {
            ensure(
                log.contains(&needle),
                format!("the log does not say {needle:?}"),
            )?;
        }
        let status = agent.guard.stop(Duration::from_secs(15))?;
        ensure(
            status.success(),
            format!("the agent did not stop cleanly: {status}"),
        )?;
        Ok(())
    });
}

fn ensure(ok: bool, what: String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        bail!("{what}")
    }
}
