//! The dashboard in a real browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver, the `fantoccini` crate), against `capwise
//! run` with a libtorrent seeder and opentracker on 127.0.0.1, inside a
//! private network namespace (`scripts/test` runs it in `unshare -n` with
//! the `interop` feature). Signs in through the one-time URL of `capwise
//! dashboard`; a torrent added with the CLI appears and its progress moves;
//! its peer list shows the seeder with the source and transport the API
//! gives; pausing it on the page pauses it (the CLI agrees); marking the network
//! metered on the page changes `capwise why`, and a cap set there is the
//! CLI's budget, with the period's plot and the API's projection on the
//! page, and the history's bars one per period and one per day of `/v1/history`; the used URL is refused the second time; without a session
//! no data is served; `--revoke-all` signs the page out. Also: the API's
//! default port, and the free port an agent takes when it is taken.
//! Screenshots of the main views go to a directory printed at the end.

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::agent::Agent;
use capwise_tests::clients::libtorrent::{self, LtOpts};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::make_tree;
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, ChildGuard};
use capwise_tests::torrent::make_torrent;
use capwise_tests::tracker::{announce_url, reserve_port, Tracker};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const PIECE: u32 = 256 * 1024;
const MIB: u64 = 1 << 20;
const NAME: &str = "payload";
/// The agent's default API port (agent/src/config.rs, `DEFAULT_API_PORT`).
const DEFAULT_API_PORT: u16 = 7245;
const NETWORK: &str = "dash-test";

struct World {
    tmp: tempfile::TempDir,
    logs: PathBuf,
    torrent: PathBuf,
    config: PathBuf,
    info_hash: String,
    _tracker: Tracker,
    _seeder: ChildGuard,
}

impl World {
    fn new(size: u64) -> Result<World> {
        let tmp = tempfile::Builder::new()
            .prefix("capwise-dashboard-")
            .tempdir()?;
        let root = tmp.path().to_path_buf();
        let logs = root.join("logs");
        let seed_dir = root.join("seed");
        make_tree(&seed_dir.join(NAME), &[("big.bin", size)], 0xDA5B)?;
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
        let network_file = root.join("network.toml");
        std::fs::write(
            &network_file,
            format!(
                "id = \"{NETWORK}\"\nname = \"Dash LAN\"\nkind = \"ethernet\"\nmetered = \"no\"\n"
            ),
        )?;
        // No [api] address: the default port. A slow download, so that its
        // progress can be seen moving.
        let config = root.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{}\"\ndownload_dir = \"{}\"\nnetwork_file = \"{}\"\n[dht]\nenabled = false\n[limits]\ndown = \"2MB/s\"\n",
                free_port(),
                root.join("data").display(),
                network_file.display()
            ),
        )?;
        Ok(World {
            tmp,
            logs,
            torrent,
            config,
            info_hash: hash,
            _tracker: tracker,
            _seeder: seeder,
        })
    }
}

/// Where the screenshots go: kept after the test.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("CAPWISE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("capwise-dashboard-screenshots"))
}

async fn screenshot(browser: &Client, name: &str) -> Result<PathBuf> {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    let png = browser.screenshot().await.context("screenshot")?;
    ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    std::fs::write(&path, png)?;
    Ok(path)
}

/// chromedriver on a free loopback port, and a headless Chromium session
/// with a profile of its own.
async fn browser(w: &World) -> Result<(ChildGuard, Client)> {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        ensure!(
            Path::new(tool).exists(),
            "{tool} is missing: apt-get install --no-install-recommends chromium chromium-driver"
        );
    }
    let port = free_port();
    let driver = ChildGuard::spawn(
        "chromedriver",
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1"),
        &w.logs,
    )?;
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(t0.elapsed() < WAIT, "chromedriver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = w.tmp.path().join("chromium-profile");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1800",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let caps = match caps {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = Client::with_capabilities_and_connector(
        &format!("http://127.0.0.1:{port}"),
        &caps,
        connector,
    )
    .await
    .context("starting a Chromium session through chromedriver")?;
    Ok((driver, client))
}

/// Runs `$body` (an expression of type `Result<bool>`, awaited inside)
/// every 250 ms until it is true, for at most [`WAIT`]; errors on the way
/// are kept for the message.
macro_rules! eventually {
    ($what:expr, $body:expr) => {{
        let t0 = Instant::now();
        let mut last_error: Option<anyhow::Error> = None;
        loop {
            let r: Result<bool> = async { $body }.await;
            match r {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            if t0.elapsed() > WAIT {
                match last_error {
                    Some(e) => return Err(e.context(format!("timed out waiting for {}", $what))),
                    None => bail!("timed out after {WAIT:?} waiting for {}", $what),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }};
}

/// The text of the first element matching `css`, or "" if there is none.
async fn text(browser: &Client, css: &str) -> Result<String> {
    match browser.find(Locator::Css(css)).await {
        Ok(e) => Ok(e.text().await?),
        Err(e) if e.is_no_such_element() => Ok(String::new()),
        Err(e) => Err(e.into()),
    }
}

/// `fetch(path)` from the page: the status and the body.
async fn fetch_from_page(browser: &Client, path: &str) -> Result<(u64, String)> {
    let v = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {credentials: 'same-origin'})
               .then(async r => done([r.status, await r.text()]))
               .catch(e => done([0, String(e)]));",
            vec![json!(path)],
        )
        .await?;
    Ok((
        v[0].as_u64().unwrap_or(0),
        v[1].as_str().unwrap_or("").to_string(),
    ))
}

/// The status of a plain `GET path` (no token, no cookie).
fn raw_status(addr: &str, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(WAIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    stream.take(1 << 20).read_to_end(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {text:.200}"))
}

/// A process's resident set in kB, 0 if unknown.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// `GET path` with the API token: the JSON body of a 200.
fn api_get(agent: &Agent, path: &str) -> Result<Value> {
    let token = agent.token()?;
    let (status, body) = agent.api("GET", path, Some(&token), &[], None)?;
    ensure!(status == 200, "GET {path}: {status} {body}");
    Ok(body)
}

fn percent_of(text: &str) -> f64 {
    text.trim_end_matches('%').trim().parse().unwrap_or(-1.0)
}

async fn scenario(w: &World) -> Result<()> {
    let state_dir = w.tmp.path().join("state");
    let mut agent = Agent::start("agent", &state_dir, &w.config, None, &w.logs)?;
    let api = agent.api_addr()?;
    ensure!(
        api == format!("127.0.0.1:{DEFAULT_API_PORT}"),
        "with no [api] address the agent listens on {api}, not the default port"
    );
    let base = format!("http://{api}");

    // A second agent finds the port taken: a free one, a log line, and the
    // CLI still finds it.
    {
        let other = w.tmp.path().join("state-2");
        // Its own peer port; the same [api] default.
        let config = w.tmp.path().join("config-2.toml");
        let text = std::fs::read_to_string(&w.config)?;
        let listen = text.lines().next().unwrap_or_default();
        std::fs::write(&config, text.replace(listen, "listen = \"127.0.0.1:0\""))?;
        let mut second = Agent::start("agent-2", &other, &config, None, &w.logs)?;
        let addr = second.api_addr()?;
        ensure!(!addr.ends_with(&format!(":{DEFAULT_API_PORT}")), "{addr}");
        ensure!(
            second
                .guard
                .log_tail(20_000)
                .contains("the API's port is taken"),
            "no log line about the taken port"
        );
        ensure!(second.cli_json(&["info"])?["ready"] == true);
        second.guard.stop(Duration::from_secs(10))?;
    }

    let (mut driver, browser) = browser(w).await?;
    let result = in_browser(w, &mut agent, &browser, &base).await;
    let _ = browser.close().await;
    let _ = driver.stop(Duration::from_secs(5));
    result?;
    agent.guard.stop(Duration::from_secs(10))?;
    Ok(())
}

async fn in_browser(w: &World, agent: &mut Agent, browser: &Client, base: &str) -> Result<()> {
    let mut shots = Vec::new();

    let rss_before = rss_kib(agent.guard.pid());
    // Without a session: the sign-in hint only, and no data.
    browser.goto(&format!("{base}/")).await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#signin-hint"))
        .await
        .context("the sign-in hint")?;
    ensure!(
        browser.find(Locator::Css("#dashboard")).await.is_err(),
        "the dashboard is shown without a session"
    );
    for path in [
        "/v1/torrents",
        "/v1/why",
        "/v1/networks",
        "/v1/usage",
        "/v1/history",
        "/v1/events",
    ] {
        let (status, body) = fetch_from_page(browser, path).await?;
        ensure!(status == 401, "{path} without a session: {status} {body}");
    }
    shots.push(screenshot(browser, "signed-out").await?);

    // A schedule window, which the page lists under what would change the decision.
    // Twelve hours away from now (the machine's zone, the schedule's), so
    // it does not change the decision while the test runs.
    let hour: u32 = String::from_utf8(Command::new("date").arg("+%H").output()?.stdout)?
        .trim()
        .parse()?;
    let from = format!("{:02}:00", (hour + 12) % 24);
    let to = format!("{:02}:00", (hour + 13) % 24);
    agent.cli(&[
        "schedule", "add", NETWORK, "--from", &from, "--to", &to, "--rule", "free",
    ])?;

    // Sign in through the one-time URL.
    let url = agent.cli(&["dashboard"])?.trim().to_string();
    ensure!(
        url.starts_with(&format!("{base}/signin?ticket=")),
        "capwise dashboard printed {url:?}"
    );
    browser.goto(&url).await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#dashboard"))
        .await
        .context("the dashboard after signing in")?;
    let here = browser.current_url().await?;
    ensure!(
        here.path() == "/" && here.query().is_none(),
        "after sign-in: {here}"
    );
    let cookies = browser.get_all_cookies().await?;
    let cookie = cookies
        .iter()
        .find(|c| c.name().starts_with("capwise_session_"))
        .with_context(|| format!("no session cookie: {cookies:?}"))?;
    ensure!(cookie.http_only() == Some(true), "not HttpOnly: {cookie:?}");
    ensure!(
        format!("{:?}", cookie.same_site()) == "Some(Strict)",
        "not SameSite=Strict: {cookie:?}"
    );
    ensure!(cookie.path() == Some("/"), "path: {cookie:?}");
    eventually!("the decision sentence", {
        Ok(!text(browser, "#decision").await?.is_empty())
    });
    // Figures (printed, not asserted): what the first load transferred.
    let sizes = browser
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0];
             return [nav.transferSize].concat(performance.getEntriesByType('resource')
               .filter(r => r.initiatorType === 'script' || r.initiatorType === 'link')
               .map(r => r.transferSize));",
            vec![],
        )
        .await?;
    let first_load: u64 = sizes
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let opened = Instant::now();
    let uplink = text(browser, "#uplink").await?;
    ensure!(
        uplink.contains("Dash LAN") && uplink.contains("not metered"),
        "uplink: {uplink}"
    );
    eventually!("the schedule window under Now", {
        Ok(text(browser, "#changes")
            .await?
            .contains("Schedule of 'Dash LAN': "))
    });

    // A torrent added with the CLI appears, and its progress moves.
    let torrent = w.torrent.display().to_string();
    let id = agent.cli(&["add", &torrent])?.trim().to_string();
    ensure!(id == w.info_hash, "add printed {id:?}");
    let row = format!("tr[data-id='{id}']");
    let mut first = -1.0;
    eventually!("the torrent on the page", {
        first = percent_of(&text(browser, &format!("{row} .percent")).await?);
        Ok((0.0..100.0).contains(&first))
    });
    eventually!("its progress to move", {
        let now = percent_of(&text(browser, &format!("{row} .percent")).await?);
        Ok(now > first)
    });
    shots.push(screenshot(browser, "torrents").await?);

    // Its peers, with source and transport: the seeder, found through the
    // tracker, as the API says.
    browser
        .find(Locator::Css(&format!("{row} button.show-peers")))
        .await
        .context("the peers button")?
        .click()
        .await?;
    let peers = api_get(agent, &format!("/v1/torrents/{id}/peers"))?;
    let listed = peers["peers"].as_array().cloned().unwrap_or_default();
    ensure!(
        listed.iter().any(|p| p["source"] == "tracker"),
        "the seeder is not listed as found through the tracker: {peers}"
    );
    let seeder = &listed[0];
    let seeder_row = format!(
        "#peer-rows tr[data-addr='{}']",
        seeder["addr"].as_str().unwrap_or("")
    );
    eventually!("the seeder in the peer list", {
        Ok(text(browser, &format!("{seeder_row} .source")).await? == "tracker")
    });
    let transport = text(browser, &format!("{seeder_row} .transport")).await?;
    let expected = format!(
        "{}, {}",
        seeder["transport"].as_str().unwrap_or("?").to_uppercase(),
        if seeder["encrypted"] == true {
            "encrypted"
        } else {
            "not encrypted"
        }
    );
    ensure!(
        transport == expected,
        "transport {transport:?}, the API says {expected:?}"
    );
    shots.push(screenshot(browser, "peers").await?);

    // Pause it on the page: the CLI agrees.
    browser
        .find(Locator::Css(&format!("{row} button.pause")))
        .await
        .context("the pause button")?
        .click()
        .await?;
    eventually!("the CLI to see it paused", {
        Ok(agent.status(&id)?["state"] == "paused")
    });
    eventually!("the page to show it paused", {
        Ok(text(browser, &format!("{row} .state"))
            .await?
            .starts_with("paused"))
    });

    // Mark the network metered on the page: `capwise why` changes.
    let before = agent.cli_json(&["why"])?;
    ensure!(before["reason"] != "Metered", "metered before: {before}");
    let net_row = format!("tr[data-network='{NETWORK}']");
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("{net_row} select.metered")))
        .await?
        .select_by_value("yes")
        .await?;
    eventually!("capwise why to say metered", {
        let why = agent.cli_json(&["why"])?;
        Ok(why["reason"] == "Metered" && why["seeding_wan"] == false)
    });
    eventually!("the page's decision to say metered", {
        Ok(text(browser, "#uplink")
            .await?
            .contains("metered (you said so)"))
    });
    // A cap set on the page is the CLI's budget.
    let cap = browser
        .find(Locator::Css(&format!("{net_row} input.cap")))
        .await?;
    cap.clear().await?;
    cap.send_keys("5GB").await?;
    browser
        .find(Locator::Css(&format!("{net_row} button.set-cap")))
        .await?
        .click()
        .await?;
    eventually!("capwise budget list to show the cap", {
        let budgets = agent.cli_json(&["budget", "list"])?;
        Ok(budgets.as_array().is_some_and(|a| {
            a.iter()
                .any(|b| b["network_id"] == NETWORK && b["cap_bytes"] == 5_000_000_000u64)
        }))
    });
    eventually!("the budget bar", {
        Ok(browser
            .find(Locator::Css(&format!(
                "#budgets [data-network='{NETWORK}'] svg.budget-bar"
            )))
            .await
            .is_ok())
    });
    // The plot over the period, and the projection the API computed.
    let usage = api_get(agent, "/v1/usage")?;
    let mine = usage
        .as_array()
        .and_then(|a| a.iter().find(|u| u["network_id"] == NETWORK))
        .with_context(|| format!("no usage of {NETWORK}: {usage}"))?
        .clone();
    let card = format!("#budgets [data-network='{NETWORK}']");
    eventually!("the budget plot", {
        Ok(browser
            .find(Locator::Css(&format!("{card} svg.budget-plot")))
            .await
            .is_ok())
    });
    let said = text(browser, &format!("{card} .projection")).await?;
    let projection = &mine["budget"]["projection"];
    if projection.is_null() {
        ensure!(said.starts_with("No projection yet"), "{said}");
    } else {
        ensure!(projection["method"] == "linear", "{projection}");
        ensure!(
            projection["end_bytes"].as_u64() >= mine["budget"]["used_bytes"].as_u64(),
            "projected below the use so far: {mine}"
        );
        ensure!(
            said.starts_with("Projected by the reset") && said.contains("linear"),
            "{said}"
        );
        browser
            .find(Locator::Css(&format!("{card} line.projection-line")))
            .await
            .context("the dashed projection line")?;
    }
    // The history: this period's ledger, a bar per period.
    let history = api_get(agent, "/v1/history")?;
    let periods = history
        .as_array()
        .and_then(|a| a.iter().find(|h| h["network_id"] == NETWORK))
        .map(|h| h["periods"].as_array().map_or(0, Vec::len))
        .unwrap_or(0);
    ensure!(
        periods >= 1,
        "no period in the history of {NETWORK}: {history}"
    );
    eventually!("the history plot's bars", {
        let bars = browser
            .find_all(Locator::Css(&format!(
                "#histories [data-network='{NETWORK}'] rect.agent-bar"
            )))
            .await?;
        Ok(bars.len() == periods)
    });
    // And per local day: the download is today's, all of it from the LAN seeder.
    let ours = history
        .as_array()
        .and_then(|a| a.iter().find(|h| h["network_id"] == NETWORK))
        .context("the network's history")?;
    let days = ours["days"].as_array().context("days in /v1/history")?;
    let last = days.last().context("no day in the history")?;
    let day = last["day"].as_str().unwrap_or("");
    ensure!(
        day.len() == 10 && day.as_bytes()[4] == b'-',
        "a YYYY-MM-DD day: {last}"
    );
    let down = last["agent"]["down_lan"].as_u64().unwrap_or(0)
        + last["agent"]["down_wan"].as_u64().unwrap_or(0);
    let period_down: u64 = ours["periods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            p["agent"]["down_lan"].as_u64().unwrap_or(0)
                + p["agent"]["down_wan"].as_u64().unwrap_or(0)
        })
        .sum();
    ensure!(
        down > 0 && down <= period_down,
        "today's download {down} is within the periods' {period_down}: {ours}"
    );
    let (status, _) = agent.api(
        "GET",
        "/v1/history?days=0",
        Some(&agent.token()?),
        &[],
        None,
    )?;
    ensure!(status == 400, "days=0: {status}");
    eventually!("the history's day bars", {
        let bars = browser
            .find_all(Locator::Css(&format!(
                "#histories [data-network='{NETWORK}'] rect.day-bar"
            )))
            .await?;
        Ok(bars.len() == days.len())
    });
    shots.push(screenshot(browser, "now-metered-budget").await?);
    browser
        .execute(
            "document.querySelector('#history').scrollIntoView()",
            vec![],
        )
        .await?;
    shots.push(screenshot(browser, "history").await?);
    browser
        .execute(
            "document.querySelector('#networks').scrollIntoView()",
            vec![],
        )
        .await?;
    shots.push(screenshot(browser, "networks").await?);

    // The used URL is refused the second time.
    browser.goto(&url).await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#signin-refused"))
        .await
        .context("the refusal of a used sign-in URL")?;
    shots.push(screenshot(browser, "used-url").await?);
    let status = raw_status(&agent.api_addr()?, url.trim_start_matches(base))?;
    ensure!(status == 403, "a used ticket from another client: {status}");

    // Still signed in; `--revoke-all` signs the page out, with no data left.
    browser.goto(&format!("{base}/")).await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#dashboard"))
        .await?;
    let revoked = agent.cli_json(&["dashboard", "--revoke-all"])?;
    ensure!(revoked["revoked"].as_u64() >= Some(1), "{revoked}");
    let (status, body) = fetch_from_page(browser, "/v1/torrents").await?;
    ensure!(status == 401, "after --revoke-all: {status} {body}");
    browser.refresh().await?;
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#signin-hint"))
        .await
        .context("the hint after --revoke-all")?;

    eprintln!(
        "[dashboard] first load: {first_load} bytes (page, script, style sheet: {sizes}); \
         agent RSS {rss_before} kB before sign-in, {} kB after {:.0} s with the page open",
        rss_kib(agent.guard.pid()),
        opened.elapsed().as_secs_f64()
    );
    eprintln!("[dashboard] screenshots:");
    for s in &shots {
        eprintln!("[dashboard]   {}", s.display());
    }
    Ok(())
}

/// A one-piece single-file .torrent named `name`, bencoded by hand (its
/// data need not exist: the agent adds it paused, nothing to fetch).
fn tiny_torrent(name: &str) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let piece = Sha1::digest(name.as_bytes());
    let mut out = format!(
        "d4:infod6:lengthi{}e4:name{}:{name}12:piece lengthi16384e6:pieces20:",
        name.len(),
        name.len()
    )
    .into_bytes();
    out.extend_from_slice(&piece);
    out.extend_from_slice(b"ee");
    out
}

/// How many torrents the list benchmark adds (`CAPWISE_BENCH_TORRENTS`).
fn bench_torrents() -> usize {
    std::env::var("CAPWISE_BENCH_TORRENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// The list benchmark (tests/bench/dashboard list; ignored in CI): an
/// agent with N paused torrents; prints the time from the page's
/// navigation start to the first painted frame whose table holds every
/// row, over a few loads. A figure, not an assertion.
async fn list_scenario(w: &World) -> Result<()> {
    use base64::Engine as _;
    let n = bench_torrents();
    let state_dir = w.tmp.path().join("state");
    let mut agent = Agent::start("agent", &state_dir, &w.config, None, &w.logs)?;
    let token = agent.token()?;
    let t0 = Instant::now();
    for i in 0..n {
        let body = json!({
            "torrent": base64::engine::general_purpose::STANDARD.encode(tiny_torrent(&format!("bench-{i:05}"))),
            "paused": true,
        });
        let (status, answer) = agent.api("POST", "/v1/torrents", Some(&token), &[], Some(&body))?;
        ensure!(status == 201 || status == 200, "add {i}: {status} {answer}");
    }
    let added = t0.elapsed();
    let base = format!("http://{}", agent.api_addr()?);
    let (mut driver, browser) = browser(w).await?;
    let result = async {
        let url = agent.cli(&["dashboard"])?.trim().to_string();
        browser.goto(&url).await?;
        browser
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("#dashboard"))
            .await?;
        let mut times = Vec::new();
        for _ in 0..5 {
            browser.goto(&format!("{base}/")).await?;
            let ms = browser
                .execute_async(
                    "const [n, done] = arguments;
                     const t0 = Date.now();
                     (function look() {
                       if (document.querySelectorAll('#torrent-rows tr').length >= n) {
                         // The frame after the rows are in: they are painted.
                         requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now())));
                       } else if (Date.now() - t0 > 50000) {
                         done(-1);
                       } else {
                         requestAnimationFrame(look);
                       }
                     })();",
                    vec![json!(n)],
                )
                .await?
                .as_f64()
                .unwrap_or(-1.0);
            ensure!(ms >= 0.0, "the page never showed {n} rows");
            times.push(ms);
        }
        Ok::<_, anyhow::Error>(times)
    }
    .await;
    let _ = browser.close().await;
    let _ = driver.stop(Duration::from_secs(5));
    let mut times = result?;
    agent.guard.stop(Duration::from_secs(10))?;
    times.sort_by(f64::total_cmp);
    eprintln!(
        "[dashboard-list] {n} torrents added through the API in {:.1} s; \
         navigation start to a painted list of {n} rows: median {:.0} ms, min {:.0} ms, max {:.0} ms (5 loads)",
        added.as_secs_f64(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    Ok(())
}

#[test]
#[ignore = "a benchmark: tests/bench/dashboard list"]
fn list_of_many_torrents() {
    assert_private_netns();
    let world = World::new(MIB).expect("test setup (payload, tracker, seeder)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = runtime.block_on(list_scenario(&world)) {
        dump_logs(&world.logs, None);
        panic!("[dashboard-list] failed: {e:#}");
    }
}

#[test]
fn dashboard_in_chromium() {
    assert_private_netns();
    let t0 = Instant::now();
    let world = World::new(16 * MIB).expect("test setup (payload, tracker, seeder)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(scenario(&world)) {
        Ok(()) => eprintln!("[dashboard] ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            dump_logs(&world.logs, None);
            panic!("[dashboard] failed: {e:#}");
        }
    }
}
