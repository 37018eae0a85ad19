//! `capwise move ID NEW_DIR`: the agent moves the data (a rename on the
//! same file system, else copy, fsync and remove) and answers once the
//! torrent goes on from its new place.

use std::time::Duration;

use anyhow::{Context, Result};

use super::output::print_json;
use crate::api_types::{MoveRequest, TorrentView};
use crate::cli_agent::MoveArgs;
use crate::client::AgentClient;
use crate::state_db::state_dir;

/// A copy of a terabyte at 100 MB/s, with room.
const MOVE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// `capwise move ID NEW_DIR`
pub async fn relocate(args: &MoveArgs) -> Result<()> {
    let id = crate::api_types::torrent_id(&args.id).map_err(anyhow::Error::msg)?;
    let dir = std::path::absolute(&args.dir)
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let request = MoveRequest {
        dir: dir
            .to_str()
            .context("the directory's name is not UTF-8")?
            .to_string(),
    };
    let client = AgentClient::connect(&state_dir(args.agent.state_dir.as_deref()))?;
    let view: TorrentView = client
        .post_waiting(&format!("/v1/torrents/{id}/move"), &request, MOVE_TIMEOUT)
        .await?;
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
    } else {
        println!(
            "{} {}: moved to {}",
            &view.id[..8.min(view.id.len())],
            view.name,
            view.download_dir
        );
    }
    Ok(())
}
