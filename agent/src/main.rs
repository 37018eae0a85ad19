//! The `capwise` binary: foreground transfers, torrent creation, and (later)
//! the background service with its local API.

mod accounting;
mod cli;
mod cli_policy;
mod commands;
mod foreground;
mod limits;
mod network_source;
mod paths;
mod policy_gate;
mod policy_runtime;
mod policy_state;
mod state_db;
mod units;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Command};

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPWISE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn create(args: &cli::CreateArgs) -> Result<()> {
    let opts = capwise_engine::create::CreateOptions {
        path: args.path.clone(),
        trackers: args.trackers.clone(),
        piece_length: args.piece_size,
        private: args.private,
        comment: args.comment.clone(),
        ..Default::default()
    };
    let bytes = capwise_engine::create::create_torrent(&opts)
        .with_context(|| format!("cannot create a torrent from {}", args.path.display()))?;
    let metainfo = capwise_engine::metainfo::Metainfo::from_bytes(&bytes)
        .context("created torrent does not parse back")?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("{} {}", metainfo.info_hash, args.output.display());
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Get(a) => foreground::get(&a.source, a.seed, &a.transfer).await,
        Command::Seed(a) => foreground::seed(&a.torrent, &a.transfer).await,
        Command::Create(a) => create(&a),
        Command::Budget(a) => commands::budget::run(&a),
        Command::Network(a) => commands::network::run(&a),
        Command::Usage(a) => commands::usage::run(&a),
        Command::Why(a) => commands::why::run(&a).await,
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// message before it already shows (library errors often embed their source).
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    let mut last = line.clone();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        last = text;
    }
    line
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("capwise: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capwise: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
