//! `capwise files ID`: a torrent's files with their progress and priority,
//! and changes to them (`--skip`, `--want`, `--priority`, `--sequential`).

use anyhow::Result;

use super::output::print_json;
use crate::api_types::{FilesChange, FilesView};
use crate::cli_agent::FilesArgs;
use crate::client::AgentClient;
use crate::state_db::state_dir;

/// Lists the files, after applying any change asked for.
pub async fn run(args: &FilesArgs) -> Result<()> {
    let id = crate::api_types::torrent_id(&args.id).map_err(anyhow::Error::msg)?;
    let client = AgentClient::connect(&state_dir(args.agent.state_dir.as_deref()))?;
    let change = FilesChange {
        skip: args.skip.clone(),
        want: args.want.clone(),
        priority: args.priority.clone(),
        sequential: args.sequential,
    };
    let path = format!("/v1/torrents/{id}/files");
    let view: FilesView = if change == FilesChange::default() {
        client.get(&path).await?
    } else {
        client.post(&path, &change).await?
    };
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
        return Ok(());
    }
    if view.files.is_empty() {
        println!("no file list yet: the torrent's metadata is being fetched");
        return Ok(());
    }
    println!(
        "{:>4} {:>6} {:>10} {:<8} PATH",
        "#", "DONE", "SIZE", "PRIORITY"
    );
    for f in &view.files {
        let done = if f.length == 0 {
            100.0
        } else {
            f.bytes_have as f64 * 100.0 / f.length as f64
        };
        println!(
            "{:>4} {:>5.1}% {:>10} {:<8} {}",
            f.index,
            done,
            crate::units::format_size(f.length),
            f.priority,
            f.path
        );
    }
    if view.sequential {
        println!("pieces are fetched in order (sequential)");
    }
    Ok(())
}
