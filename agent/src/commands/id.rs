//! `capwise id`: this agent's id for QUIC, the SHA-256 of the key in
//! `quic-key` in its state directory, which other agents pin when they
//! dial it and list in their `[quic] allow`. Made (0600) if there is no
//! key yet, so that an allow-list can be written before the agents first
//! run with QUIC; the agent uses the same file.

use std::path::PathBuf;

use anyhow::Result;
use capwise_engine::transport::identity::Identity;
use clap::Args;
use serde_json::json;

use super::output::print_json;

/// The QUIC identity's key in the state directory (PKCS#8, mode 0600).
pub const QUIC_KEY_FILE: &str = "quic-key";

/// `capwise id`
#[derive(Debug, Args)]
pub struct AgentIdArgs {
    /// The agent's state directory (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print JSON instead of the id alone.
    #[arg(long)]
    pub json: bool,
}

/// Runs `capwise id`.
pub fn run(args: &AgentIdArgs) -> Result<()> {
    let dir = crate::state_db::state_dir(args.state_dir.as_deref());
    crate::state_db::create_state_dir(&dir)?;
    let path = dir.join(QUIC_KEY_FILE);
    let identity = Identity::load_or_create(&path)?;
    if args.json {
        print_json(&json!({
            "agent_id": identity.id().to_hex(),
            "key_file": path.display().to_string(),
        }));
    } else {
        // The id alone on its line: `capwise id >> agents.txt` on each
        // machine builds an allow-list file.
        println!("{}", identity.id());
    }
    Ok(())
}
