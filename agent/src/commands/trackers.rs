//! `capwise trackers ID`: each tracker of the torrent, its status, when it
//! was last asked, what it said, and why it failed.

use anyhow::Result;

use super::output::{local_clock, print_json};
use crate::api_types::TrackerView;
use crate::cli_agent::IdArgs;
use crate::client::AgentClient;
use crate::state_db::state_dir;
use capwise_policy::time::Timestamp;

/// Lists the trackers (`--json`: the API's answer as is).
pub async fn run(args: &IdArgs) -> Result<()> {
    let id = crate::api_types::torrent_id(&args.id).map_err(anyhow::Error::msg)?;
    let client = AgentClient::connect(&state_dir(args.agent.state_dir.as_deref()))?;
    let trackers: Vec<TrackerView> = client.get(&format!("/v1/torrents/{id}/trackers")).await?;
    if args.agent.json {
        print_json(&serde_json::to_value(&trackers)?);
        return Ok(());
    }
    if trackers.is_empty() {
        println!("no trackers: peers come from the DHT, peer exchange and the LAN (LSD)");
        return Ok(());
    }
    for t in &trackers {
        println!("{}", describe(t));
    }
    Ok(())
}

/// "tier 0  http://t/announce  working, asked 14:02:11, 12 peers (3 seeders, 9 leechers), every 30m".
fn describe(t: &TrackerView) -> String {
    let mut line = format!("tier {}  {}  {}", t.tier, t.url, t.status);
    if let Some(at) = t.last_announce {
        line.push_str(&format!(", asked {}", local_clock(Timestamp(at))));
    }
    if let (Some(peers), Some(_)) = (t.peers, t.last_answer) {
        line.push_str(&format!(", {peers} peers"));
        if let (Some(s), Some(l)) = (t.seeders, t.leechers) {
            line.push_str(&format!(" ({s} seeders, {l} leechers)"));
        }
    }
    if let Some(secs) = t.interval_secs {
        let every = humantime::format_duration(std::time::Duration::from_secs(secs));
        line.push_str(&format!(", every {every}"));
    }
    if let Some(e) = &t.error {
        line.push_str(&format!("\n    error: {e}"));
    }
    if let Some(w) = &t.warning {
        line.push_str(&format!("\n    warning: {w}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_tracker_says_why_on_its_own_line() {
        let t = TrackerView {
            url: "udp://127.0.0.1:1/announce".into(),
            tier: 1,
            status: "error".into(),
            last_announce: Some(1_750_000_000),
            last_answer: None,
            peers: None,
            seeders: None,
            leechers: None,
            interval_secs: None,
            error: Some("connection refused".into()),
            warning: None,
        };
        let text = describe(&t);
        assert!(
            text.starts_with("tier 1  udp://127.0.0.1:1/announce  error, asked "),
            "{text}"
        );
        assert!(text.ends_with("\n    error: connection refused"), "{text}");
        assert!(!text.contains("peers"), "{text}");
    }
}
