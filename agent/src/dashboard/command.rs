//! `capwise dashboard [--open] [--revoke-all]`: asks the running agent for
//! a one-time sign-in URL and prints it (and opens it with `xdg-open`,
//! which leaves the desktop's file associations alone); or signs every
//! browser out.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use crate::cli_policy::StoreArgs;
use crate::client::AgentClient;
use crate::commands::output::print_json;
use crate::state_db::state_dir;

/// `capwise dashboard`
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Open the URL in the desktop's browser (xdg-open).
    #[arg(long)]
    pub open: bool,
    /// Sign every browser out (and void unused sign-in URLs) instead.
    #[arg(long, conflicts_with = "open")]
    pub revoke_all: bool,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// Runs `capwise dashboard`.
pub async fn run(args: &DashboardArgs) -> Result<()> {
    let client = AgentClient::connect(&state_dir(args.agent.state_dir.as_deref()))?;
    if args.revoke_all {
        let answer: Value = client
            .post("/v1/dashboard/revoke", &serde_json::json!({}))
            .await?;
        if args.agent.json {
            print_json(&answer);
        } else {
            let n = answer["revoked"].as_u64().unwrap_or(0);
            println!(
                "signed out {n} dashboard session{}; sign-in URLs not yet used no longer work",
                if n == 1 { "" } else { "s" }
            );
        }
        return Ok(());
    }
    let answer: Value = client
        .post("/v1/dashboard/signin", &serde_json::json!({}))
        .await?;
    let url = answer["url"].as_str().unwrap_or_default().to_string();
    if args.agent.json {
        print_json(&answer);
    } else {
        println!("{url}");
        eprintln!(
            "capwise: open this address in a browser on this machine; it works once, within {} s",
            answer["expires_in_secs"].as_u64().unwrap_or(60)
        );
    }
    if args.open {
        open(&url);
    }
    Ok(())
}

/// Hands the URL to the desktop's opener; a failure is a warning, the URL
/// is printed anyway.
fn open(url: &str) {
    let opener = PathBuf::from("xdg-open");
    let spawned = std::process::Command::new(&opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        eprintln!("capwise: warning: cannot run xdg-open ({error}); open the address yourself");
    }
}
