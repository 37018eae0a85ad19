//! The commands that manage the running agent's torrents: `add`, `list`,
//! `status`, `pause`, `resume`, `remove`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::output::print_json;
use crate::api_types::{AddRequest, AgentInfo, TorrentView};
use crate::cli_agent::{AddArgs, IdArgs, RemoveArgs, StatusArgs};
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
    }
    Ok(())
}

/// `capwise add`: the .torrent's bytes go to the agent, so an agent running
/// as another user needs no access to the file.
pub async fn add(args: &AddArgs) -> Result<()> {
    let client = connect(&args.agent)?;
    let mut request = AddRequest {
        paused: args.paused,
        background: args.background,
        ..AddRequest::default()
    };
    if args.source.starts_with("magnet:") {
        request.magnet = Some(args.source.clone());
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

fn percent(t: &TorrentView) -> f64 {
    if t.total_length == 0 {
        100.0
    } else {
        t.bytes_have as f64 * 100.0 / t.total_length as f64
    }
}

fn rate(bytes_per_sec: f64) -> String {
    format!("{:.1} kB/s", bytes_per_sec.max(0.0) / 1000.0)
}

fn describe(t: &TorrentView) -> String {
    let mut text = format!(
        "{}  {}\n  state: {}\n  done: {}/{} bytes ({:.1}%), {}/{} pieces\n  peers: {}, down {}, up {}\n  data: {}",
        t.id,
        t.name,
        t.state,
        t.bytes_have,
        t.total_length,
        percent(t),
        t.pieces_have,
        t.piece_count,
        t.peers,
        rate(t.download_rate),
        rate(t.upload_rate),
        t.download_dir
    );
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
    if !args.watch {
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
        return Ok(());
    }
    watch(fetch).await
}

/// Progress bars (plain lines when not on a terminal), refreshed every
/// second until every torrent shown has finished or Ctrl-C.
async fn watch<F, Fut>(fetch: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<TorrentView>>>,
{
    let terminal = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:10} {msg:12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
    )
    .expect("static template")
    .progress_chars("=> ");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    loop {
        let torrents = fetch().await?;
        for t in &torrents {
            if terminal {
                let bar = bars.entry(t.id.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(t.total_length));
                    bar.set_style(style.clone());
                    bar.set_prefix(t.id[..8.min(t.id.len())].to_string());
                    bar
                });
                bar.set_position(t.bytes_have);
                bar.set_message(format!("{} {}", t.state, t.name));
            } else {
                eprintln!(
                    "{} {} {:.1}% {} {}",
                    &t.id[..8.min(t.id.len())],
                    t.state,
                    percent(t),
                    rate(t.download_rate),
                    t.name
                );
            }
        }
        let active = |t: &TorrentView| matches!(t.state.as_str(), "checking" | "downloading");
        if !torrents.iter().any(active) {
            for bar in bars.values() {
                bar.finish();
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
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
