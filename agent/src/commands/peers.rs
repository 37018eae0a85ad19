//! `capwise peers ID`: the torrent's connected peers, one line each.

use anyhow::Result;

use super::output::print_json;
use crate::api_types::TorrentPeers;
use crate::cli_agent::IdArgs;
use crate::client::AgentClient;
use crate::state_db::state_dir;

/// Lists the peers (`--json`: the API's answer as is).
pub async fn run(args: &IdArgs) -> Result<()> {
    let id = crate::api_types::torrent_id(&args.id).map_err(anyhow::Error::msg)?;
    let client = AgentClient::connect(&state_dir(args.agent.state_dir.as_deref()))?;
    let view: TorrentPeers = client.get(&format!("/v1/torrents/{id}/peers")).await?;
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
        return Ok(());
    }
    if view.peers.is_empty() {
        println!("no connected peers");
    } else {
        println!(
            "{:<22} {:<18} {:<5} {:>10} {:>10} {:>5} {:<8} {:<5} FLAGS",
            "ADDRESS", "CLIENT", "CLASS", "DOWN", "UP", "HAS", "SOURCE", "VIA"
        );
    }
    for p in &view.peers {
        println!(
            "{:<22} {:<18} {:<5} {:>10} {:>10} {:>4.0}% {:<8} {:<5} {}",
            p.addr,
            p.client.as_deref().unwrap_or("?"),
            p.class,
            crate::units::format_rate(p.download_rate),
            crate::units::format_rate(p.upload_rate),
            p.progress * 100.0,
            p.source,
            p.transport,
            p.flags
        );
    }
    let w = view.web_seeds;
    if w.active + w.dropped > 0 {
        println!(
            "web seeds: {} in use, {} given up, {} delivered",
            w.active,
            w.dropped,
            crate::units::format_size(w.bytes)
        );
    }
    Ok(())
}
