//! The commands that manage the running agent's torrents: `add`, `list`,
//! `status`, `pause`, `resume`, `remove`.

use std::collections::HashMap;
use std::io::IsTerminal;

use anyhow::{Context, Result};
use base64::Engine as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::output::print_json;
use crate::api_types::{AddRequest, AgentInfo, TorrentView};
use crate::cli_agent::{AddArgs, IdArgs, RemoveArgs, SetArgs, StatusArgs};
use crate::cli_policy::StoreArgs;
use crate::client::AgentClient;
use crate::state_db::state_dir;

/// The id given, checked before anything is sent to the agent.
fn checked_id(given: &str) -> Result<String> {
    crate::api_types::torrent_id(given).map_err(anyhow::Error::msg)
}

fn connect(args: &StoreArgs) -> Result<AgentClient> {
    AgentClient::connect(&state_dir(args.state_dir.as_deref()))
}

/// `capwise info`
pub async fn info(args: &StoreArgs) -> Result<()> {
    let info: AgentInfo = connect(args)?.get("/v1/agent").await?;
    if args.json {
        print_json(&serde_json::to_value(&info)?);
    } else {
        println!(
            "capwise {} (pid {}), {}, {} torrent{}\n  peers: {}\n  downloads: {}\n  state: {}",
            info.version,
            info.pid,
            if info.ready { "ready" } else { "starting" },
            info.torrents,
            if info.torrents == 1 { "" } else { "s" },
            info.listen,
            info.download_dir,
            info.state_dir
        );
        if info.blocked_connections > 0 {
            println!(
                "  blocklist: {} connection{} refused",
                info.blocked_connections,
                if info.blocked_connections == 1 {
                    ""
                } else {
                    "s"
                }
            );
        }
    }
    Ok(())
}

/// `capwise add`: the .torrent's bytes go to the agent, so an agent running
/// as another user needs no access to the file (an http(s) link is fetched
/// here, see `torrent_url`).
pub async fn add(args: &AddArgs) -> Result<()> {
    let client = connect(&args.agent)?;
    let mut request = AddRequest {
        paused: args.paused,
        background: args.background,
        member_token: args.member_token.clone(),
        only: args.only.clone(),
        exclude: args.exclude.clone(),
        sequential: args.sequential,
        ..AddRequest::default()
    };
    if args.source.starts_with("magnet:") {
        request.magnet = Some(args.source.clone());
    } else if super::torrent_url::is_url(&args.source) {
        let bytes = super::torrent_url::fetch_torrent(&args.source).await?;
        request.torrent = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    } else {
        let bytes =
            std::fs::read(&args.source).with_context(|| format!("cannot read {}", args.source))?;
        request.torrent = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if let Some(dir) = &args.dir {
        let absolute = std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        request.download_dir = Some(
            absolute
                .to_str()
                .context("the directory's name is not UTF-8")?
                .to_string(),
        );
    }
    // The agent's answer does not know the file's name; say which it was.
    let view: TorrentView = client
        .post("/v1/torrents", &request)
        .await
        .with_context(|| format!("cannot add {}", args.source))?;
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
    } else {
        println!("{}", view.id);
    }
    Ok(())
}

/// `capwise list`
pub async fn list(args: &StoreArgs) -> Result<()> {
    let torrents: Vec<TorrentView> = connect(args)?.get("/v1/torrents").await?;
    if args.json {
        print_json(&serde_json::to_value(&torrents)?);
        return Ok(());
    }
    if torrents.is_empty() {
        println!("no torrents");
        return Ok(());
    }
    println!(
        "{:<10} {:<11} {:>6} {:>10} {:>10} {:>5}  NAME",
        "ID", "STATE", "DONE", "DOWN", "UP", "PEERS"
    );
    for t in &torrents {
        println!(
            "{:<10} {:<11} {:>5.1}% {:>10} {:>10} {:>5}  {}",
            &t.id[..8.min(t.id.len())],
            t.state,
            percent(t),
            rate(t.download_rate),
            rate(t.upload_rate),
            t.peers,
            t.name
        );
        if let Some(reason) = &t.reason {
            println!("{:<10} {reason}", "");
        }
    }
    Ok(())
}

/// Progress of what is wanted: skipped files do not count.
fn percent(t: &TorrentView) -> f64 {
    let (have, of) = if t.wanted_length > 0 {
        (t.wanted_have, t.wanted_length)
    } else {
        (t.bytes_have, t.total_length)
    };
    if of == 0 {
        100.0
    } else {
        have as f64 * 100.0 / of as f64
    }
}

fn rate(bytes_per_sec: f64) -> String {
    crate::units::format_rate(bytes_per_sec)
}

/// The terminal's width for plain lines: `$COLUMNS` when set, else 80.
fn line_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c >= 20)
        .unwrap_or(80)
}

/// Cuts `line` to `width` characters, marking the cut with "…".
fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// One torrent on one line, as `status --watch` prints it: id, state,
/// percent, rates, peers, then the name (cut first when the line is too
/// long), then why it waits or has no peer.
fn watch_line(t: &TorrentView) -> String {
    let mut line = format!(
        "{} {} {:.1}% ↓{} ↑{} {} {}  {}",
        &t.id[..8.min(t.id.len())],
        t.state,
        percent(t),
        rate(t.download_rate),
        rate(t.upload_rate),
        t.peers,
        if t.peers == 1 { "peer" } else { "peers" },
        t.name
    );
    if let Some(reason) = &t.reason {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

/// The message beside a progress bar: the same words as the plain line,
/// after the bar's percentage.
fn bar_message(t: &TorrentView) -> String {
    let line = watch_line(t);
    // The id is the bar's prefix already.
    line.split_once(' ')
        .map_or(line.clone(), |(_, rest)| rest.to_string())
}

fn describe(t: &TorrentView) -> String {
    let mut text = format!(
        "{}  {}\n  state: {}\n  done: {} of {} ({:.1}%), {}/{} pieces\n  peers: {}{}, down {}, up {}\n  data: {}",
        t.id,
        t.name,
        t.state,
        crate::units::format_size(t.bytes_have),
        crate::units::format_size(t.total_length),
        percent(t),
        t.pieces_have,
        t.piece_count,
        t.peers,
        match t.peer_sources.describe() {
            from if from.is_empty() => from,
            from => format!(" ({from})"),
        },
        rate(t.download_rate),
        rate(t.upload_rate),
        t.download_dir
    );
    if t.peers > 0 {
        text.push_str(&format!(
            "\n  connections: {} over uTP, {} over TCP, {} encrypted",
            t.utp_peers,
            t.peers.saturating_sub(t.utp_peers),
            t.encrypted_peers
        ));
    }
    if t.background {
        text.push_str("\n  background: dials uTP first, which yields to your own traffic");
    }
    text.push_str(&format!(
        "\n  seeding: {}; {} up, {} down in all",
        seeding_words(&t.seeding),
        crate::units::format_size(t.seeding.uploaded_total),
        crate::units::format_size(t.seeding.downloaded_total)
    ));
    if let Some(reason) = &t.reason {
        text.push_str(&format!("\n  why: {reason}"));
    }
    text
}

/// `capwise status [ID] [--watch]`
pub async fn status(args: &StatusArgs) -> Result<()> {
    let id = args.id.as_deref().map(checked_id).transpose()?;
    let client = connect(&args.agent)?;
    let path = match &id {
        Some(id) => format!("/v1/torrents/{id}"),
        None => "/v1/torrents".into(),
    };
    let fetch = || async {
        Ok::<_, anyhow::Error>(match &args.id {
            Some(_) => vec![client.get::<TorrentView>(&path).await?],
            None => client.get::<Vec<TorrentView>>(&path).await?,
        })
    };
    if args.watch {
        // The agent's event stream, not polling: it says when something
        // changed (at most every second). One torrent: its full id first
        // (a prefix, and a 404 for an unknown one, resolved once).
        let only = match &id {
            Some(_) => Some(fetch().await?.remove(0).id),
            None => None,
        };
        let feed = std::sync::Arc::new(tokio::sync::Mutex::new(
            crate::dashboard::sse::TorrentFeed::open(&client, only).await?,
        ));
        let next = || {
            let feed = feed.clone();
            async move { feed.lock().await.next().await }
        };
        if args.agent.json {
            return watch_json(next, &mut std::io::stdout()).await;
        }
        return watch(next).await;
    }
    {
        let torrents = fetch().await?;
        if args.agent.json {
            match &args.id {
                Some(_) => print_json(&serde_json::to_value(&torrents[0])?),
                None => print_json(&serde_json::to_value(&torrents)?),
            }
        } else {
            for t in &torrents {
                println!("{}", describe(t));
            }
        }
        Ok(())
    }
}

/// Whether `status --watch` goes on for this torrent.
fn active(t: &TorrentView) -> bool {
    matches!(t.state.as_str(), "checking" | "downloading")
}

/// `status --watch --json`: whenever they change (at most every second),
/// one JSON object per torrent and line (as `status --json` shows it), until every torrent shown has
/// finished or Ctrl-C.
async fn watch_json<F, Fut>(fetch: F, out: &mut impl std::io::Write) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<TorrentView>>>,
{
    loop {
        let torrents = tokio::select! {
            t = fetch() => t?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        for t in &torrents {
            // A closed stdout (`| head`) ends the watch.
            if writeln!(out, "{}", serde_json::to_string(t)?).is_err() {
                return Ok(());
            }
        }
        let _ = out.flush();
        if !torrents.iter().any(active) {
            return Ok(());
        }
    }
}

/// Progress bars (plain lines when not on a terminal), refreshed when the
/// agent says something changed (at most every second) until every torrent shown has finished or Ctrl-C. Rates are the
/// agent's (bytes over its last seconds), not guessed from the bar's jumps;
/// lines fit the terminal's width (80 columns by default).
async fn watch<F, Fut>(fetch: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<TorrentView>>>,
{
    let terminal = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    // `wide_msg` takes the width left and is cut to it.
    let style = ProgressStyle::with_template("{prefix} [{bar:16}] {wide_msg}")
        .expect("static template")
        .progress_chars("=> ");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    loop {
        let torrents = tokio::select! {
            t = fetch() => t?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        for t in &torrents {
            if terminal {
                let bar = bars.entry(t.id.clone()).or_insert_with(|| {
                    // Complete before it is drawn: no first frame without a
                    // name or state.
                    let bar = ProgressBar::new(t.total_length)
                        .with_style(style.clone())
                        .with_prefix(t.id[..8.min(t.id.len())].to_string())
                        .with_position(t.bytes_have)
                        .with_message(bar_message(t));
                    multi.add(bar)
                });
                bar.set_position(t.bytes_have);
                bar.set_message(bar_message(t));
            } else {
                eprintln!("{}", fit(&watch_line(t), line_width()));
            }
        }
        if !torrents.iter().any(active) {
            for bar in bars.values() {
                bar.finish();
            }
            return Ok(());
        }
    }
}

/// `capwise pause ID` and `capwise resume ID`
pub async fn set_paused(args: &IdArgs, paused: bool) -> Result<()> {
    let verb = if paused { "pause" } else { "resume" };
    let id = checked_id(&args.id)?;
    let view: TorrentView = connect(&args.agent)?
        .post(&format!("/v1/torrents/{id}/{verb}"), &serde_json::json!({}))
        .await?;
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
    } else {
        println!(
            "{} {}: {}",
            &view.id[..8.min(view.id.len())],
            view.name,
            view.state
        );
    }
    Ok(())
}

/// `capwise queue [ID --move WHERE]`: moves a torrent in the queue, or
/// shows the queue in order (place, state, id, name).
pub async fn queue(args: &crate::cli_agent::QueueArgs) -> Result<()> {
    let client = connect(&args.agent)?;
    let Some(id) = &args.id else {
        let mut views: Vec<TorrentView> = client.get("/v1/torrents").await?;
        views.sort_by_key(|v| v.queue_position);
        if args.agent.json {
            print_json(&serde_json::to_value(&views)?);
        } else {
            for v in &views {
                println!(
                    "{:>4}  {:<18} {}  {}",
                    v.queue_position,
                    v.state,
                    &v.id[..8.min(v.id.len())],
                    v.name
                );
            }
        }
        return Ok(());
    };
    let id = checked_id(id)?;
    let Some(to) = args.to else {
        anyhow::bail!("say where it goes: capwise queue {id} --move top|up|down|bottom");
    };
    let view: TorrentView = client
        .post(
            &format!("/v1/torrents/{id}/queue"),
            &crate::api_types::QueueChange { to },
        )
        .await?;
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
    } else {
        println!(
            "{} {}: {} in the queue, {}",
            &view.id[..8.min(view.id.len())],
            view.name,
            view.queue_position,
            view.state
        );
    }
    Ok(())
}

/// `capwise recheck ID`: asks, then follows the torrent until its check
/// is over and says how many pieces are good.
pub async fn recheck(args: &IdArgs) -> Result<()> {
    let id = checked_id(&args.id)?;
    let client = connect(&args.agent)?;
    let mut view: TorrentView = client
        .post(
            &format!("/v1/torrents/{id}/recheck"),
            &serde_json::json!({}),
        )
        .await?;
    let path = format!("/v1/torrents/{}", view.id);
    while view.state == "checking" {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        view = client.get(&path).await?;
    }
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
    } else {
        println!(
            "{} {}: {} of {} pieces good ({:.1}%), {}",
            &view.id[..8.min(view.id.len())],
            view.name,
            view.pieces_have,
            view.piece_count,
            percent(&view),
            view.state
        );
    }
    Ok(())
}

/// `capwise set ID --up RATE --down RATE`: the torrent's own limits.
pub async fn set(args: &SetArgs) -> Result<()> {
    let id = checked_id(&args.id)?;
    let limits = args.up.is_some() || args.down.is_some();
    let goals = args.ratio.is_some() || args.seed_time.is_some();
    anyhow::ensure!(
        limits || goals,
        "nothing to set: give --up/--down and/or --ratio/--seed-time"
    );
    let client = connect(&args.agent)?;
    let mut view: Option<TorrentView> = None;
    if limits {
        let change = crate::api_types::Limits {
            up: args.up,
            down: args.down,
        };
        view = Some(
            client
                .put(&format!("/v1/torrents/{id}/limits"), &change)
                .await?,
        );
    }
    if goals {
        let change = crate::api_types::SeedGoalsChange {
            ratio: args.ratio.clone(),
            seed_time: args.seed_time.clone(),
        };
        view = Some(
            client
                .put(&format!("/v1/torrents/{id}/seeding"), &change)
                .await?,
        );
    }
    let view = view.expect("one request was sent");
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
        return Ok(());
    }
    let short = &view.id[..8.min(view.id.len())];
    if limits {
        let show = |r: Option<u64>| r.map_or_else(|| "unlimited".to_string(), |r| rate(r as f64));
        println!(
            "{short} {}: up {}, down {}",
            view.name,
            show(view.limits.up),
            show(view.limits.down)
        );
    }
    if goals {
        println!("{short} {}: {}", view.name, seeding_words(&view.seeding));
    }
    Ok(())
}

/// "ratio 0.42 of 2.0, seeded 3h 5m of 7d (the config's)".
pub fn seeding_words(s: &crate::api_types::SeedingView) -> String {
    let from = |config: bool| if config { " (the config's)" } else { "" };
    let ratio = match s.ratio_goal {
        Some(goal) => format!(
            "ratio {:.2} of {goal}{}",
            s.ratio,
            from(s.ratio_goal_from_config)
        ),
        None => format!("ratio {:.2}, no ratio goal", s.ratio),
    };
    let seeded = humantime::format_duration(std::time::Duration::from_secs(s.seeding_secs));
    let time = match s.seed_time_goal_secs {
        Some(goal) => format!(
            "seeded {seeded} of {}{}",
            humantime::format_duration(std::time::Duration::from_secs(goal)),
            from(s.seed_time_goal_from_config)
        ),
        None => format!("seeded {seeded}, no time goal"),
    };
    format!("{ratio}; {time}")
}

/// `capwise remove ID [--delete-data]`; with `--json`,
/// `{"removed": ID, "name": NAME, "data_deleted": BOOL}`.
pub async fn remove(args: &RemoveArgs) -> Result<()> {
    let id = checked_id(&args.id)?;
    let client = connect(&args.agent)?;
    // The full id and the name, for the answer (and a prefix resolved once).
    let view: TorrentView = client.get(&format!("/v1/torrents/{id}")).await?;
    client
        .delete(&format!(
            "/v1/torrents/{}?delete_data={}",
            view.id, args.delete_data
        ))
        .await?;
    if args.agent.json {
        print_json(&serde_json::json!({
            "removed": view.id,
            "name": view.name,
            "data_deleted": args.delete_data,
        }));
    } else {
        println!(
            "removed {} {}{}",
            &view.id[..8.min(view.id.len())],
            view.name,
            if args.delete_data {
                " and its data"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str, name: &str) -> TorrentView {
        TorrentView {
            id: "c036a1b2".repeat(5),
            name: name.into(),
            state: state.into(),
            reason: None,
            bytes_have: 500_000,
            total_length: 1_000_000,
            wanted_length: 1_000_000,
            wanted_have: 500_000,
            limits: Default::default(),
            pieces_have: 1,
            piece_count: 2,
            peers: 3,
            peer_sources: crate::api_types::PeerSourceCounts {
                tracker: 2,
                incoming: 1,
                ..Default::default()
            },
            encrypted_peers: 1,
            utp_peers: 0,
            download_rate: 20_000_000.0,
            upload_rate: 0.0,
            downloaded: 500_000,
            uploaded: 0,
            download_dir: "/srv".into(),
            background: false,
            seeding: Default::default(),
            queue_position: 0,
        }
    }

    #[test]
    fn watch_lines_use_si_rates_and_fit_the_width() {
        let t = view("downloading", &"a-very-long-name-".repeat(10));
        let line = watch_line(&t);
        assert!(
            line.starts_with("c036a1b2 downloading 50.0% ↓20 MB/s ↑0 B/s 3 peers  a-very"),
            "{line}"
        );
        let cut = fit(&line, 80);
        assert_eq!(cut.chars().count(), 80, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(fit("short", 80), "short");
        // `list` and `status` use the same formatter.
        assert_eq!(rate(20_000_000.0), "20 MB/s");
        assert!(describe(&t).contains("down 20 MB/s"), "{}", describe(&t));
        assert!(
            describe(&t).contains("peers: 3 (2 tracker, 1 incoming), down"),
            "{}",
            describe(&t)
        );
    }

    #[tokio::test]
    async fn watch_json_prints_one_object_per_torrent_and_line() {
        let mut out = Vec::new();
        watch_json(
            || async { Ok(vec![view("seeding", "a"), view("paused", "b")]) },
            &mut out,
        )
        .await
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in lines {
            let back: TorrentView = serde_json::from_str(line).unwrap();
            assert!(back.state == "seeding" || back.state == "paused");
        }
    }
}
