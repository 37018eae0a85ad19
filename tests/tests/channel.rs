//! Channels end to end, two agents on loopback: agent A creates a channel and publishes two
//! files into a directory lighttpd serves (`--web-seed`); agent B subscribes to the manifest's
//! URL and gets both files, byte-identical, from the web seed alone (no tracker, DHT or LSD).
//! A second publication with one file changed makes B add the new item and remove the retired
//! one; a restart of B keeps the subscription and downloads nothing again; a manifest signed by
//! another key, a forged one and a rollback are refused with the reason in `channel list` and
//! nothing changed; `unsubscribe` removes the channel's torrents and keeps their data. Inside a
//! private network namespace (`scripts/test` runs it in `unshare -n`).

use anyhow::{ensure, Context, Result};
use capwise_tests::clients::agent::Agent;
use capwise_tests::clients::lighttpd::Lighttpd;
use capwise_tests::netns::assert_private_netns;
use capwise_tests::payload::write_random_file;
use capwise_tests::ports::free_port;
use capwise_tests::process::{dump_logs, wait_until};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Bound for each wait (a poll every 2 s, downloads of a few MiB over loopback).
const WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

/// An agent's state, config and download directories.
struct Machine {
    state: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

fn machine(root: &Path, name: &str) -> Result<Machine> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    let network_file = dir.join("network.toml");
    std::fs::write(
        &network_file,
        "id = \"channel-test\"\nname = \"Test LAN\"\nkind = \"ethernet\"\nmetered = \"no\"\n",
    )?;
    let data = dir.join("data");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\ndownload_dir = \"{}\"\nnetwork_file = \"{}\"\n[dht]\nenabled = false\n",
            free_port(),
            data.display(),
            network_file.display()
        ),
    )?;
    Ok(Machine {
        state: dir.join("state"),
        config,
        data,
    })
}

fn start(name: &str, m: &Machine, logs: &Path) -> Result<Agent> {
    Agent::start(name, &m.state, &m.config, None, logs)
}

/// B's one subscription as `channel list --json` shows it.
fn subscription(b: &mut Agent) -> Result<Value> {
    let list = b.cli_json(&["channel", "list"])?;
    let subs = list["subscriptions"]
        .as_array()
        .context("channel list has no subscriptions array")?;
    ensure!(subs.len() == 1, "expected one subscription: {list}");
    Ok(subs[0].clone())
}

/// The info-hashes B's subscription holds.
fn held(sub: &Value) -> BTreeSet<String> {
    sub["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["info_hash"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// B's torrents: id → (state, downloaded since the agent started).
fn torrents(b: &mut Agent) -> Result<Vec<(String, String, u64)>> {
    let list = b.cli_json(&["list"])?;
    Ok(list
        .as_array()
        .context("list --json is not an array")?
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_owned(),
                t["state"].as_str().unwrap_or_default().to_owned(),
                t["downloaded"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// Waits until B holds exactly `want` and every one of them seeds.
fn wait_holding(b: &mut Agent, want: &BTreeSet<String>, sequence: u64) -> Result<()> {
    let mut last = String::new();
    wait_until(
        &format!("B to hold and seed sequence {sequence}"),
        WAIT,
        Duration::from_millis(300),
        || {
            let sub = subscription(b)?;
            let ts = torrents(b)?;
            last = format!("{sub}\n{ts:?}");
            let ids: BTreeSet<String> = ts.iter().map(|t| t.0.clone()).collect();
            Ok(sub["last_sequence"] == sequence
                && held(&sub) == *want
                && ids == *want
                && ts.iter().all(|t| t.1 == "seeding"))
        },
    )
    .with_context(|| format!("last seen: {last}"))
}

/// `capwise channel publish demo PATHS --out www/ch --web-seed URL [--report-url URL]` on A;
/// the info-hashes printed.
fn publish(
    a: &mut Agent,
    name: &str,
    paths: &[&Path],
    out: &Path,
    web_seed: &str,
    report_url: Option<&str>,
) -> Result<Vec<String>> {
    let mut args = vec!["channel", "publish", name];
    let texts: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    args.extend(texts.iter().map(String::as_str));
    let out_text = out.display().to_string();
    args.extend(["--out", &out_text, "--web-seed", web_seed]);
    if let Some(url) = report_url {
        args.extend(["--report-url", url]);
    }
    let printed = a.cli(&args)?;
    Ok(printed
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// Waits until A's `channel status demo` shows B's report: one machine, at `sequence`,
/// missing nothing; then checks the plain text says so too.
fn wait_reported(a: &mut Agent, sequence: u64) -> Result<()> {
    let mut last = Value::Null;
    wait_until(
        &format!("A to hear that B holds sequence {sequence}"),
        WAIT,
        Duration::from_millis(300),
        || {
            last = a.cli_json(&["channel", "status", "demo"])?;
            let machines = last["machines"].as_array().cloned().unwrap_or_default();
            Ok(last["sequence"] == sequence
                && machines.len() == 1
                && machines[0]["sequence"] == sequence
                && machines[0]["missing"].as_array().is_some_and(Vec::is_empty))
        },
    )
    .with_context(|| format!("last seen: {last}"))?;
    let text = a.cli(&["channel", "status", "demo"])?;
    ensure!(
        text.contains("has everything") && text.contains(&format!("version {sequence}")),
        "channel status does not say it: {text}"
    );
    eprintln!("[channel] channel status on A:\n{text}");
    Ok(())
}

/// Replaces the served manifest (a rename, as a publisher does).
fn serve_manifest(ch: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = ch.join("manifest.json.new");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, ch.join("manifest.json"))?;
    Ok(())
}

/// Waits until B's last poll result contains `words`; then checks nothing changed.
fn wait_refused(b: &mut Agent, words: &str, sequence: u64, want: &BTreeSet<String>) -> Result<()> {
    let mut last = Value::Null;
    wait_until(
        &format!("B to refuse with {words:?}"),
        WAIT,
        Duration::from_millis(300),
        || {
            last = subscription(b)?;
            Ok(last["outcome"] == "refused"
                && last["result"].as_str().is_some_and(|r| r.contains(words)))
        },
    )
    .with_context(|| format!("last seen: {last}"))?;
    ensure!(
        last["last_sequence"] == sequence,
        "the sequence moved: {last}"
    );
    ensure!(held(&last) == *want, "the held set changed: {last}");
    let ids: BTreeSet<String> = torrents(b)?.into_iter().map(|t| t.0).collect();
    ensure!(ids == *want, "B's torrents changed on a refusal: {ids:?}");
    // The plain text shows the reason too.
    let text = b.cli(&["channel", "list"])?;
    ensure!(
        text.contains(words),
        "channel list does not say why: {text}"
    );
    eprintln!("[channel] channel list on B:\n{text}");
    Ok(())
}

#[test]
fn subscribe_follow_restart_and_refuse() {
    assert_private_netns();
    let tmp = tempfile::Builder::new()
        .prefix("capwise-channel-")
        .tempdir()
        .expect("temp dir");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let t0 = Instant::now();
    match body(tmp.path(), &logs) {
        Ok(()) => eprintln!("[channel] ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            dump_logs(&logs, None);
            if std::env::var_os("CAPWISE_KEEP_TMP").is_some() {
                eprintln!("[channel] kept {}", tmp.keep().display());
            }
            panic!("[channel] failed: {e:#}");
        }
    }
}

fn body(root: &Path, logs: &Path) -> Result<()> {
    let src = root.join("src");
    write_random_file(&src.join("a.bin"), 3 * MIB + 4321, 1)?;
    write_random_file(&src.join("b.bin"), MIB + 17, 2)?;
    let www = root.join("www");
    let ch = www.join("ch");
    std::fs::create_dir_all(&ch)?;
    let server = Lighttpd::start(&www, free_port(), &root.join("lighttpd"), logs)?;
    let web_seed = server.url("ch/");
    let manifest_url = server.url("ch/manifest.json");

    let ma = machine(root, "a")?;
    // A receives delivery reports beside lighttpd, on the same host.
    let report_port = free_port();
    let mut config = std::fs::read_to_string(&ma.config)?;
    config.push_str(&format!(
        "[channel]\nreport_listen = \"127.0.0.1:{report_port}\"\n"
    ));
    std::fs::write(&ma.config, config)?;
    let report_url = format!("http://127.0.0.1:{report_port}/v1/reports");
    let mb = machine(root, "b")?;
    let mut a = start("agent-a", &ma, logs)?;
    let key = a.cli(&["channel", "create", "demo"])?.trim().to_owned();
    ensure!(key.len() == 64, "channel create printed {key:?}");
    let first = publish(
        &mut a,
        "demo",
        &[&src.join("a.bin"), &src.join("b.bin")],
        &ch,
        &web_seed,
        Some(&report_url),
    )?;
    ensure!(first.len() == 2, "publish printed {first:?}");
    let seq1 = std::fs::read(ch.join("manifest.json"))?;

    // B subscribes and gets both files from the web seed.
    let mut b = start("agent-b", &mb, logs)?;
    let dl = mb.data.join("channel");
    let dl_text = dl.display().to_string();
    // The channel admits members only: without its token nothing is added, and B says why.
    b.cli(&["subscribe", &manifest_url, "--key", &key, "--interval", "2"])?;
    let mut last = Value::Null;
    wait_until(
        "B to refuse items without a token",
        WAIT,
        Duration::from_millis(300),
        || {
            last = subscription(&mut b)?;
            Ok(last["result"]
                .as_str()
                .is_some_and(|r| r.contains("members only")))
        },
    )
    .with_context(|| format!("last seen: {last}"))?;
    ensure!(
        held(&last).is_empty() && torrents(&mut b)?.is_empty(),
        "items were added without the channel's token: {last}"
    );
    b.cli(&["unsubscribe", &manifest_url])?;
    let token = a.cli(&["channel", "token", "demo"])?.trim().to_owned();
    b.cli(&[
        "subscribe",
        &manifest_url,
        "--key",
        &key,
        "--token",
        &token,
        "-d",
        &dl_text,
        "--interval",
        "2",
    ])?;
    let t = Instant::now();
    let want: BTreeSet<String> = first.iter().cloned().collect();
    wait_holding(&mut b, &want, 1)?;
    eprintln!(
        "[channel] B holds sequence 1 after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for f in ["a.bin", "b.bin"] {
        ensure!(
            std::fs::read(dl.join(f))? == std::fs::read(src.join(f))?,
            "{f} differs from the published file"
        );
    }
    wait_reported(&mut a, 1)?;
    // Subscribing twice is refused.
    let again = Command::new(capwise_tests::paths::capwise_bin())
        .args(["subscribe", &manifest_url, "--key", &key, "--state-dir"])
        .arg(&mb.state)
        .output()?;
    ensure!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already subscribed"),
        "a second subscribe was not refused: {}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Publish again with b.bin changed: B adds the new item, removes the retired one.
    write_random_file(&src.join("b.bin"), MIB + 17, 3)?;
    let second = publish(
        &mut a,
        "demo",
        &[&src.join("a.bin"), &src.join("b.bin")],
        &ch,
        &web_seed,
        Some(&report_url),
    )?;
    ensure!(
        second[0] == first[0] && second[1] != first[1],
        "a.bin must keep its info-hash: {first:?} {second:?}"
    );
    let a_downloaded_before = torrents(&mut b)?
        .into_iter()
        .find(|t| t.0 == first[0])
        .map_or(0, |t| t.2);
    let t = Instant::now();
    let want2: BTreeSet<String> = second.iter().cloned().collect();
    wait_holding(&mut b, &want2, 2)?;
    eprintln!(
        "[channel] B holds sequence 2 after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    ensure!(
        std::fs::read(dl.join("b.bin"))? == std::fs::read(src.join("b.bin"))?,
        "the new b.bin differs from the published file"
    );
    let a_after = torrents(&mut b)?
        .into_iter()
        .find(|t| t.0 == first[0])
        .map_or(0, |t| t.2);
    ensure!(
        a_after == a_downloaded_before,
        "the unchanged a.bin was downloaded again"
    );
    let seq2 = std::fs::read(ch.join("manifest.json"))?;
    wait_reported(&mut a, 2)?;

    // Restart B: the subscription is still there and nothing is downloaded again.
    b.guard.signal(libc::SIGTERM);
    b.guard
        .wait_timeout(Duration::from_secs(10))?
        .context("B did not stop")?;
    let mut b = start("agent-b2", &mb, logs)?;
    let before = subscription(&mut b)?["polled_at"].as_i64().unwrap_or(0);
    let mut last = Value::Null;
    wait_until(
        "B to poll again after the restart",
        WAIT,
        Duration::from_millis(300),
        || {
            last = subscription(&mut b)?;
            Ok(last["polled_at"].as_i64().unwrap_or(0) > before)
        },
    )
    .with_context(|| format!("last seen: {last}"))?;
    wait_holding(&mut b, &want2, 2)?;
    ensure!(last["outcome"] == "unchanged", "after the restart: {last}");
    let downloaded: u64 = torrents(&mut b)?.iter().map(|t| t.2).sum();
    ensure!(
        downloaded == 0,
        "B downloaded {downloaded} bytes again after its restart"
    );

    // Another channel's manifest, served in place of this one: wrong key.
    a.cli(&["channel", "create", "other"])?;
    let other_dir = www.join("other");
    publish(
        &mut a,
        "other",
        &[&src.join("a.bin")],
        &other_dir,
        &server.url("other/"),
        None,
    )?;
    let other = std::fs::read(other_dir.join("manifest.json"))?;
    serve_manifest(&ch, &other)?;
    wait_refused(&mut b, "signed by another key", 2, &want2)?;

    // The other channel's signature under this channel's key: a forgery.
    let mut forged: Value = serde_json::from_slice(&other)?;
    forged["key"] = Value::String(key.clone());
    serve_manifest(&ch, &serde_json::to_vec(&forged)?)?;
    wait_refused(
        &mut b,
        "signature does not match the channel key",
        2,
        &want2,
    )?;

    // The first publication again: a rollback.
    serve_manifest(&ch, &seq1)?;
    wait_refused(
        &mut b,
        "older than one already accepted (rollback",
        2,
        &want2,
    )?;

    // The real manifest back: accepted again, nothing to do.
    serve_manifest(&ch, &seq2)?;
    wait_until(
        "B to accept sequence 2 again",
        WAIT,
        Duration::from_millis(300),
        || {
            last = subscription(&mut b)?;
            Ok(last["outcome"] == "unchanged")
        },
    )
    .with_context(|| format!("last seen: {last}"))?;

    // Unsubscribe: the channel's torrents go, their data stays.
    b.cli(&["unsubscribe", &manifest_url])?;
    ensure!(
        torrents(&mut b)?.is_empty(),
        "unsubscribe left torrents behind"
    );
    let list = b.cli_json(&["channel", "list"])?;
    ensure!(
        list["subscriptions"].as_array().is_some_and(Vec::is_empty),
        "{list}"
    );
    for f in ["a.bin", "b.bin"] {
        ensure!(
            std::fs::read(dl.join(f))? == std::fs::read(src.join(f))?,
            "{f} was not kept after unsubscribe"
        );
    }
    Ok(())
}

/// A manifest signed with the channel's own key whose items do not match their .torrent files:
/// one names another info-hash than its .torrent has, one's .torrent lists a web seed on
/// another host. The manifest is accepted (it is the channel's), neither item is added, and
/// `channel list` says why; then a manifest over 1 MiB is not even read; then, subscribed
/// again with a WAN window closed now, the manifest is not polled and `channel list` and
/// `why` say why.
#[test]
fn items_that_do_not_match_their_torrents_are_not_added() {
    assert_private_netns();
    let tmp = tempfile::Builder::new()
        .prefix("capwise-channel-")
        .tempdir()
        .expect("temp dir");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    if let Err(e) = hostile_items(tmp.path(), &logs) {
        dump_logs(&logs, None);
        panic!("[channel] hostile items failed: {e:#}");
    }
}

fn hostile_items(root: &Path, logs: &Path) -> Result<()> {
    use capwise_channel::{manifest::Manifest, ChannelKey, Item, Trust};
    let src = root.join("src");
    write_random_file(&src.join("a.bin"), MIB, 4)?;
    let www = root.join("www");
    let ch = www.join("ch");
    std::fs::create_dir_all(&ch)?;
    let server = Lighttpd::start(&www, free_port(), &root.join("lighttpd"), logs)?;
    let manifest_url = server.url("ch/manifest.json");
    // The publisher needs no agent for this: its key and `channel publish` are enough.
    let ma = machine(root, "a")?;
    let publish_cli = |args: &[&str]| -> Result<String> {
        let mut c = Command::new(capwise_tests::paths::capwise_bin());
        c.args(args).arg("--state-dir").arg(&ma.state);
        capwise_tests::process::run("publisher", &mut c, logs, WAIT)
    };
    let key_hex = publish_cli(&["channel", "create", "demo"])?
        .trim()
        .to_owned();
    let a_path = src.join("a.bin").display().to_string();
    let out = ch.display().to_string();
    let web_seed = server.url("ch/");
    publish_cli(&[
        "channel",
        "publish",
        "demo",
        &a_path,
        "--out",
        &out,
        "--web-seed",
        &web_seed,
    ])?;
    let key = ChannelKey::from_hex(&std::fs::read_to_string(
        ma.state.join("channels/demo.key"),
    )?)?;
    let public = key.public();
    let url = capwise_channel::url::Url::parse(&manifest_url)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut manifest: Manifest = capwise_channel::verify(
        &std::fs::read(ch.join("manifest.json"))?,
        &Trust {
            key: &public,
            manifest_url: &url,
            last_sequence: None,
            now,
        },
    )?;
    // 1: the manifest names another info-hash than a.bin.torrent has.
    let real = manifest.items[0].clone();
    let mut liar = real.clone();
    liar.info_hash = "11".repeat(20);
    // 2: a .torrent whose url-list is on another host (127.0.0.2).
    write_random_file(&ch.join("y.bin"), 100_000, 5)?;
    capwise_tests::clients::lighttpd::mktorrent(
        &ch.join("y.bin"),
        &ch.join("y.bin.torrent"),
        &["http://127.0.0.2:1/ch/".to_owned()],
        15,
        logs,
    )?;
    let y =
        capwise_engine::metainfo::Metainfo::from_bytes(&std::fs::read(ch.join("y.bin.torrent"))?)?;
    let foreign = Item {
        info_hash: y.info_hash.to_string(),
        name: "y.bin".into(),
        size: 100_000,
        torrent: "y.bin.torrent".into(),
        web_seeds: vec![],
    };
    manifest.items = vec![liar, foreign];
    manifest.sequence = 10;
    serve_manifest(&ch, &manifest.sign(&key)?)?;

    let mb = machine(root, "b")?;
    let mut b = start("agent-b", &mb, logs)?;
    let token = publish_cli(&["channel", "token", "demo"])?
        .trim()
        .to_owned();
    b.cli(&[
        "subscribe",
        &manifest_url,
        "--key",
        &key_hex,
        "--token",
        &token,
        "--interval",
        "2",
    ])?;
    let mut last = Value::Null;
    wait_until("B to poll", WAIT, Duration::from_millis(300), || {
        last = subscription(&mut b)?;
        Ok(last["outcome"] != "pending")
    })
    .with_context(|| format!("last seen: {last}"))?;
    let result = last["result"].as_str().unwrap_or_default().to_owned();
    ensure!(
        last["outcome"] == "accepted" && last["last_sequence"] == 10,
        "{last}"
    );
    ensure!(
        result.contains("0 added") && result.contains("not the manifest's"),
        "the info-hash mismatch is not reported: {result}"
    );
    ensure!(
        result.contains("another host"),
        "the foreign web seed is not reported: {result}"
    );
    ensure!(held(&last).is_empty(), "B holds items it must not: {last}");
    ensure!(
        torrents(&mut b)?.is_empty(),
        "B added a torrent it must not"
    );

    // A manifest over the 1 MiB bound is refused before its body is read.
    serve_manifest(&ch, &vec![b' '; 2 * MIB as usize])?;
    wait_until(
        "B to refuse the large manifest",
        WAIT,
        Duration::from_millis(300),
        || {
            last = subscription(&mut b)?;
            Ok(last["outcome"] == "failed"
                && last["result"]
                    .as_str()
                    .is_some_and(|r| r.contains("more than the limit")))
        },
    )
    .with_context(|| format!("last seen: {last}"))?;
    ensure!(last["last_sequence"] == 10, "{last}");
    eprintln!("[channel] hostile items: {result}");

    // Subscribed again with a WAN window that is closed now (it opens in two hours): the
    // manifest is not even fetched (the oversized one would be refused), and `channel list`
    // and `why` say why in words.
    b.cli(&["unsubscribe", &manifest_url])?;
    let window = window_closed_now()?;
    b.cli(&[
        "subscribe",
        &manifest_url,
        "--key",
        &key_hex,
        "--token",
        &token,
        "--interval",
        "2",
        "--wan-window",
        &window,
    ])?;
    wait_until(
        "B to hold its poll back",
        WAIT,
        Duration::from_millis(300),
        || {
            last = subscription(&mut b)?;
            Ok(last["outcome"] == "waiting")
        },
    )
    .with_context(|| format!("last seen: {last}"))?;
    let shown = window.replace('-', "\u{2013}");
    ensure!(
        last["result"].as_str().is_some_and(|r| r.contains(&format!(
            "not polled: outside its window {shown}; next opens at"
        ))),
        "{last}"
    );
    ensure!(
        last["last_sequence"].is_null() && held(&last).is_empty(),
        "{last}"
    );
    let text = b.cli(&["channel", "list"])?;
    ensure!(
        text.contains("held back: outside its window"),
        "channel list does not say why: {text}"
    );
    let why = b.cli(&["why"])?;
    ensure!(
        why.contains("its WAN traffic waits, outside its window"),
        "why does not mention the window: {why}"
    );
    eprintln!("[channel] WAN window: {text}");
    Ok(())
}

/// A one-minute window two hours from now, in the machine's local time (as the agent reads it).
fn window_closed_now() -> Result<String> {
    let out = Command::new("date").arg("+%H %M").output()?;
    let text = String::from_utf8(out.stdout)?;
    let mut parts = text.split_whitespace().map(str::parse::<u32>);
    let (Some(Ok(h)), Some(Ok(m))) = (parts.next(), parts.next()) else {
        anyhow::bail!("date printed {text:?}");
    };
    let start = (h * 60 + m + 120) % 1440;
    let end = (start + 1) % 1440;
    Ok(format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    ))
}
