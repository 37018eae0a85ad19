//! Prometheus metrics end to end (`GET /metrics`): two agents on loopback, A seeding a torrent
//! and B downloading it from A (`--peer`). B's metrics (OpenMetrics by default; the Prometheus
//! text format when only `text/plain` is accepted) pass `promtool check metrics` (Debian's
//! `prometheus` package), name the decision by its reason code, the budget's cap and reserve,
//! and their byte counters follow the transfer: B's LAN download payload and A's LAN upload
//! payload grow by about the torrent's size; a dial from an address on B's blocklist is
//! refused and counted (`capwise info`, `capwise_blocked_connections_total`). A missing or wrong token, and the API's control
//! token, get 401; the tokenless `[metrics] listen` answers without one but refuses a foreign
//! Host. A real Prometheus then scrapes B's OpenMetrics with the token (up, B's bytes) and is
//! refused with a wrong one. Inside a private network namespace (`scripts/test` runs it in `unshare -n`).

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::agent::Agent;
use capwise_tests::netns::assert_private_netns;
use capwise_tests::paths::capwise_bin;
use capwise_tests::payload::write_random_file;
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, run, wait_until, ChildGuard};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const SIZE: u64 = 12 << 20;
const NETWORK: &str = "metrics-test";
/// On the agents' blocklist.
const BLOCKED: [u8; 4] = [127, 0, 0, 99];

/// A TCP connection to `to` from the address `from` (any port).
fn dial_from(from: [u8; 4], to: std::net::SocketAddr) -> Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((from, 0).into())?;
        Ok(socket.connect(to).await?.into_std()?)
    })
}

/// An agent's state directory and config; `metrics` is its tokenless listener, if any.
struct Machine {
    state: PathBuf,
    config: PathBuf,
    listen: u16,
}

fn machine(root: &Path, name: &str, metrics: Option<u16>) -> Result<Machine> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    let network_file = dir.join("network.toml");
    std::fs::write(
        &network_file,
        format!("id = \"{NETWORK}\"\nname = \"Test LAN\"\nkind = \"ethernet\"\nmetered = \"no\"\n"),
    )?;
    let listen = free_port();
    // A blocklist (CIDR lines) naming one loopback address, which dials B below.
    let blocklist = dir.join("blocklist.txt");
    std::fs::write(
        &blocklist,
        format!("# refused\n{}/32\n", std::net::Ipv4Addr::from(BLOCKED)),
    )?;
    let mut config = format!(
        "listen = \"127.0.0.1:{listen}\"\ndownload_dir = \"{}\"\nnetwork_file = \"{}\"\nnotify = false\nblocklist = \"{}\"\n[dht]\nenabled = false\n",
        dir.join("data").display(),
        network_file.display(),
        blocklist.display()
    );
    if let Some(port) = metrics {
        config.push_str(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    }
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config)?;
    Ok(Machine {
        state: dir.join("state"),
        config: config_path,
        listen,
    })
}

/// One raw HTTP/1.1 GET; the status, the Content-Type and the body.
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(WAIT))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.take(16 << 20).read_to_end(&mut response)?;
    let text = String::from_utf8(response).context("the response is not UTF-8")?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// The metrics through the API's listener with the metrics token (OpenMetrics).
fn scrape(agent: &Agent, token: &str) -> Result<String> {
    let auth = format!("Bearer {token}");
    let (status, content_type, body) =
        get(&agent.api_addr()?, "/metrics", &[("Authorization", &auth)])?;
    ensure!(status == 200, "GET /metrics: {status} {body}");
    ensure!(
        content_type.starts_with("application/openmetrics-text"),
        "content type {content_type}"
    );
    ensure!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF: {body}"
    );
    Ok(body)
}

/// The value of the sample whose name and labels are `series` exactly.
fn value(text: &str, series: &str) -> Result<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .with_context(|| format!("no {series} in\n{text}"))?
        .trim()
        .parse()
        .with_context(|| format!("{series} is not a number"))
}

fn bytes(text: &str, direction: &str, kind: &str) -> Result<f64> {
    value(
        text,
        &format!(
            "capwise_transfer_bytes_total{{direction=\"{direction}\",class=\"lan\",network=\"{NETWORK}\",kind=\"{kind}\"}}"
        ),
    )
}

/// `promtool check metrics` over `text`: no parse error, no lint problem.
fn promtool(text: &str) -> Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool (Debian's prometheus package) is not installed")?;
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn cli(state: &Path, args: &[&str], logs: &Path) -> Result<String> {
    let mut c = Command::new(capwise_bin());
    c.args(args).arg("--state-dir").arg(state);
    run(args[0], &mut c, logs, WAIT)
}

fn transfer_and_scrape(root: &Path, logs: &Path) -> Result<()> {
    let metrics_port = free_port();
    let a = machine(root, "a", None)?;
    let b = machine(root, "b", Some(metrics_port))?;
    let seed_dir = root.join("seed");
    std::fs::create_dir_all(&seed_dir)?;
    write_random_file(&seed_dir.join("payload.bin"), SIZE, 0x3E7)?;
    let torrent = root.join("payload.torrent");
    let mut create = Command::new(capwise_bin());
    create
        .arg("create")
        .arg(seed_dir.join("payload.bin"))
        .arg("-o")
        .arg(&torrent);
    run("create", &mut create, logs, WAIT)?;
    // A budget on B's network: its cap and reserve are figures to show.
    cli(
        &b.state,
        &["budget", "set", NETWORK, "--cap", "1GB", "--reserve", "10"],
        logs,
    )?;

    let mut seeder = Agent::start("agent-a", &a.state, &a.config, None, logs)?;
    let torrent_arg = torrent.to_str().context("utf-8 path")?;
    let seed_arg = seed_dir.to_str().context("utf-8 path")?;
    let id = seeder
        .cli(&["add", torrent_arg, "-d", seed_arg])?
        .trim()
        .to_string();
    seeder.wait_state(&id, "seeding", WAIT)?;
    let peer = vec!["--peer".to_string(), format!("127.0.0.1:{}", a.listen)];
    let mut leecher = Agent::start_with_args("agent-b", &b.state, &b.config, &peer, logs)?;

    let token_b = cli(&b.state, &["metrics", "token"], logs)?
        .trim()
        .to_string();
    ensure!(token_b.len() == 64, "metrics token {token_b:?}");
    let token_a = cli(&a.state, &["metrics", "token"], logs)?
        .trim()
        .to_string();

    // Who may read: the metrics token only.
    let api = leecher.api_addr()?;
    let (status, _, _) = get(&api, "/metrics", &[])?;
    ensure!(status == 401, "no token: {status}");
    let (status, _, _) = get(&api, "/metrics", &[("Authorization", "Bearer 00ff")])?;
    ensure!(status == 401, "a wrong token: {status}");
    let control = format!("Bearer {}", leecher.token()?);
    let (status, _, _) = get(&api, "/metrics", &[("Authorization", &control)])?;
    ensure!(status == 401, "the API's control token: {status}");
    let with_b = format!("Bearer {token_b}");
    let (status, _, _) = get(&api, "/v1/agent", &[("Authorization", &with_b)])?;
    ensure!(status == 401, "the metrics token opens the API: {status}");

    let before_b = scrape(&leecher, &token_b)?;
    let before_a = scrape(&seeder, &token_a)?;
    let down_before = bytes(&before_b, "down", "payload")?;
    let up_before = bytes(&before_a, "up", "payload")?;
    ensure!(
        value(&before_b, "capwise_torrents{state=\"seeding\"}")? == 0.0,
        "{before_b}"
    );

    // Slow enough (about 3 s) to see the peers while the bytes move.
    leecher.cli(&["limits", "set", "--down", "4MB/s"])?;
    let t = Instant::now();
    let leech_id = leecher.cli(&["add", torrent_arg])?.trim().to_string();
    let mut during = (String::new(), String::new());
    wait_until(
        "both ends to show their peer",
        WAIT,
        Duration::from_millis(100),
        || {
            during = (scrape(&leecher, &token_b)?, scrape(&seeder, &token_a)?);
            let b = value(
                &during.0,
                "capwise_peers{source=\"manual\",transport=\"tcp\"}",
            );
            let a = value(
                &during.1,
                "capwise_peers{source=\"incoming\",transport=\"tcp\"}",
            );
            Ok(b.is_ok_and(|n| n == 1.0) && a.is_ok_and(|n| n == 1.0))
        },
    )
    .with_context(|| format!("B:\n{}\nA:\n{}", during.0, during.1))?;
    ensure!(
        value(&during.0, "capwise_torrents{state=\"downloading\"}")? == 1.0,
        "{}",
        during.0
    );
    leecher.wait_state(&leech_id, "seeding", WAIT)?;
    eprintln!(
        "[metrics] {SIZE} B over loopback in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // A blocklisted address dials B: refused, and counted.
    let dialler = dial_from(BLOCKED, ([127, 0, 0, 1], b.listen).into())?;
    wait_until(
        "`capwise info` to count the blocklisted connection",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || Ok(leecher.cli_json(&["info"])?["blocked_connections"] == 1),
    )?;
    drop(dialler);

    let after_b = scrape(&leecher, &token_b)?;
    ensure!(
        value(&after_b, "capwise_blocked_connections_total")? == 1.0,
        "{after_b}"
    );
    let after_a = scrape(&seeder, &token_a)?;
    let down = bytes(&after_b, "down", "payload")? - down_before;
    let up = bytes(&after_a, "up", "payload")? - up_before;
    let overhead = bytes(&after_b, "down", "overhead")?;
    eprintln!("[metrics] B down payload +{down}, A up payload +{up}, B down overhead {overhead}");
    let size = SIZE as f64;
    ensure!(
        down >= size && down <= size * 1.05,
        "B's download payload grew by {down}, the torrent is {size}"
    );
    ensure!(
        up >= size && up <= size * 1.05,
        "A's upload payload grew by {up}, the torrent is {size}"
    );
    ensure!(
        overhead > 0.0 && overhead < size * 0.05,
        "overhead {overhead}"
    );
    ensure!(
        value(&after_b, "capwise_torrents{state=\"seeding\"}")? == 1.0,
        "{after_b}"
    );
    ensure!(
        value(
            &after_b,
            "capwise_decision_allowance{direction=\"up\",class=\"wan\",reason=\"unmetered\"}"
        )? == 2.0,
        "{after_b}"
    );
    ensure!(
        value(
            &after_b,
            &format!("capwise_budget_cap_bytes{{network=\"{NETWORK}\"}}")
        )? == 1e9,
        "{after_b}"
    );
    ensure!(
        value(
            &after_b,
            &format!("capwise_budget_reserve_bytes{{network=\"{NETWORK}\"}}")
        )? == 1e8,
        "{after_b}"
    );
    ensure!(
        value(&after_b, "capwise_hash_failures_total")? == 0.0,
        "{after_b}"
    );
    ensure!(
        value(&after_b, "capwise_disk_errors_total")? == 0.0,
        "{after_b}"
    );
    ensure!(
        !after_b.contains("Uploads") && !after_b.contains("No limits"),
        "a decision's sentence in a label: {after_b}"
    );

    // The Prometheus text format, linted by promtool.
    let (status, content_type, text) = get(
        &api,
        "/metrics",
        &[
            ("Authorization", &with_b),
            ("Accept", "text/plain;version=0.0.4"),
        ],
    )?;
    ensure!(status == 200, "{status} {text}");
    ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    promtool(&text)?;
    // OpenMetrics counters are named without _total in HELP and TYPE, which promtool's
    // Prometheus-text linter reads as a family without help: lint the gauges' part of it.
    promtool(&openmetrics_without_counters(&after_b))?;

    // The tokenless listener for a local Prometheus: no token, but only its own Host.
    let local = format!("127.0.0.1:{metrics_port}");
    let (status, _, body) = get(&local, "/metrics", &[])?;
    ensure!(status == 200, "local listener: {status} {body}");
    ensure!(bytes(&body, "down", "payload")? >= down, "{body}");
    let (status, _, _) = get(&local, "/metrics", &[("Host", "attacker.example:80")])?;
    ensure!(
        status == 403,
        "a foreign Host on the local listener: {status}"
    );

    prometheus_scrapes(root, logs, &api, &token_b)?;

    for agent in [&mut leecher, &mut seeder] {
        agent.guard.signal(libc::SIGTERM);
        if agent.guard.wait_timeout(Duration::from_secs(10))?.is_none() {
            bail!("an agent did not stop within 10 s of SIGTERM");
        }
    }
    Ok(())
}

/// A real Prometheus (Debian's `prometheus`) scrapes B's OpenMetrics every second, as
/// docs/api.md configures it: with the metrics token it is `up` and has B's bytes; a job with a
/// wrong token is down.
fn prometheus_scrapes(root: &Path, logs: &Path, api: &str, token: &str) -> Result<()> {
    let dir = root.join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let good = dir.join("token");
    let bad = dir.join("wrong-token");
    std::fs::write(&good, token)?;
    std::fs::write(&bad, "0".repeat(64))?;
    let config = dir.join("prometheus.yml");
    let job = |name: &str, file: &Path| {
        format!(
            "  - job_name: {name}\n    authorization: {{type: Bearer, credentials_file: {}}}\n    static_configs: [{{targets: [\"{api}\"]}}]\n",
            file.display()
        )
    };
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n{}{}",
            job("capwise", &good),
            job("wrong-token", &bad)
        ),
    )?;
    let port = free_port();
    let web = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"));
    let mut server = ChildGuard::spawn("prometheus", &mut cmd, logs)?;
    let query = |q: &str| -> Result<Vec<f64>> {
        let encoded: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) = get(&web, &format!("/api/v1/query?query={encoded}"), &[])?;
        ensure!(status == 200, "query {q}: {status} {body}");
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok(v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default())
    };
    let mut last = (Vec::new(), Vec::new());
    wait_until(
        "Prometheus to scrape both jobs",
        WAIT,
        Duration::from_millis(500),
        || {
            if let Some(status) = server.try_wait()? {
                bail!("prometheus exited with {status}: {}", server.log_tail(2000));
            }
            last = (
                query("up{job=\"capwise\"}").unwrap_or_default(),
                query("up{job=\"wrong-token\"}").unwrap_or_default(),
            );
            Ok(!last.0.is_empty() && !last.1.is_empty())
        },
    )?;
    ensure!(last.0 == [1.0], "the capwise job is not up: {last:?}");
    ensure!(last.1 == [0.0], "a wrong token was scraped: {last:?}");
    let down = query(&format!(
        "capwise_transfer_bytes_total{{direction=\"down\",class=\"lan\",network=\"{NETWORK}\",kind=\"payload\"}}"
    ))?;
    ensure!(
        down.len() == 1 && down[0] >= SIZE as f64,
        "Prometheus has B's download payload as {down:?}"
    );
    let reason =
        query("capwise_decision_allowance{direction=\"up\",class=\"wan\",reason=\"unmetered\"}")?;
    ensure!(reason == [2.0], "decision in Prometheus: {reason:?}");
    eprintln!(
        "[metrics] Prometheus scraped OpenMetrics: down payload {}",
        down[0]
    );
    server.stop(Duration::from_secs(5))?;
    Ok(())
}

/// The OpenMetrics text without its counter families and `# EOF`.
fn openmetrics_without_counters(text: &str) -> String {
    let counters: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .map(str::to_string)
        .collect();
    text.lines()
        .filter(|l| *l != "# EOF")
        .filter(|l| {
            !counters.iter().any(|c| {
                let rest = l
                    .strip_prefix("# HELP ")
                    .or_else(|| l.strip_prefix("# TYPE "))
                    .or_else(|| l.strip_prefix("# UNIT "))
                    .unwrap_or(l);
                rest.starts_with(&format!("{c} ")) || rest.starts_with(&format!("{c}_total"))
            })
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn metrics_follow_a_transfer_and_need_the_metrics_token() {
    assert_private_netns();
    let tmp = tempfile::Builder::new()
        .prefix("capwise-metrics-")
        .tempdir()
        .expect("temp dir");
    let logs = tmp.path().join("logs");
    if let Err(e) = transfer_and_scrape(tmp.path(), &logs) {
        dump_logs(&logs, None);
        if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
            eprintln!("[metrics] kept {}", tmp.keep().display());
        }
        panic!("[metrics] failed: {e:#}");
    }
}
