//! The `capwise` binary: the background service (`run`) with its local API,
//! the CLI that talks to it, foreground transfers, torrent creation, and
//! the policy commands.

mod accounting;
mod address_watch;
mod api_types;
mod blocklist;
mod cli;
mod cli_agent;
mod cli_channel;
mod cli_policy;
mod cli_schedule;
mod client;
mod commands;
mod config;
mod daemon;
mod dashboard;
mod delivery;
mod dht;
mod discovery;
mod foreground;
mod limits;
mod lock;
mod lsd;
mod metrics;
mod network_source;
mod notify;
mod paths;
mod policy_gate;
mod policy_runtime;
mod policy_state;
mod portmap;
mod power_source;
mod quic_config;
mod state_db;
mod subscriptions;
mod torrent_db;
mod units;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::{Cli, Command};

/// Logs go to stderr; the service logs more by default, and straight to
/// journald when systemd connected its stderr to the journal. A log line
/// that cannot be written (stderr closed: `capwise run 2>&1 | head`) is
/// dropped: tracing-subscriber's own report of it would go through
/// `eprintln!`, which panics on a closed stderr.
fn init_logging(service: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = if service { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPWISE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    if service && stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(journald)
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
}

/// systemd sets `JOURNAL_STREAM=dev:inode` of the stream it gave us.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    // st_dev and st_ino are u64 here but narrower on some platforms.
    #[allow(clippy::unnecessary_cast)]
    let (st_dev, st_ino) = (stat.st_dev as u64, stat.st_ino as u64);
    dev.parse::<u64>() == Ok(st_dev) && ino.parse::<u64>() == Ok(st_ino)
}

/// Whether `url` looks like a tracker's: http, https or udp, with a host.
pub(crate) fn looks_like_tracker_url(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    ["http", "https", "udp"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        && !host.is_empty()
        && !host.starts_with(':')
        && !host.contains(char::is_whitespace)
}

/// `capwise create`: refuses to overwrite a file or to store a tracker URL
/// that cannot be one, unless `--force`.
fn create(args: &cli::CreateArgs) -> Result<()> {
    if !args.force {
        if let Some(bad) = args.trackers.iter().find(|t| !looks_like_tracker_url(t)) {
            bail!(
                "'{bad}' is not a tracker URL (http://, https:// or udp:// with a host); \
                 --force stores it anyway"
            );
        }
        if std::fs::symlink_metadata(&args.output).is_ok() {
            bail!(
                "{} already exists; --force overwrites it",
                args.output.display()
            );
        }
    }
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
        Command::Seed(a) => foreground::seed(&a.torrent, a.fetch_missing, &a.transfer).await,
        Command::Create(a) => create(&a),
        Command::Channel(a) => commands::channel::run(&a).await,
        Command::Metrics(a) => metrics::token::run(&a),
        Command::Subscribe(a) => commands::subscribe::subscribe(&a).await,
        Command::Unsubscribe(a) => commands::subscribe::unsubscribe(&a).await,
        Command::Budget(a) => {
            commands::budget::run(&a)?;
            if let Some(dir) = a.command.edited_state_dir() {
                commands::tell_agent_policy_changed(dir).await;
            }
            Ok(())
        }
        Command::Network(a) => {
            commands::network::run(&a)?;
            if let Some(dir) = a.command.edited_state_dir() {
                commands::tell_agent_policy_changed(dir).await;
            }
            Ok(())
        }
        Command::Schedule(a) => {
            commands::schedule::run(&a)?;
            if let Some(dir) = a.command.edited_state_dir() {
                commands::tell_agent_policy_changed(dir).await;
            }
            Ok(())
        }
        Command::Usage(a) => commands::usage::run(&a),
        Command::Why(a) => commands::why::run(&a).await,
        Command::Net(a) => commands::net::run(&a).await,
        Command::Id(a) => commands::id::run(&a),
        Command::Run(a) => daemon::run(&a).await,
        Command::Info(a) => commands::torrents::info(&a).await,
        Command::Add(a) => commands::torrents::add(&a).await,
        Command::List(a) => commands::torrents::list(&a).await,
        Command::Status(a) => commands::torrents::status(&a).await,
        Command::Dashboard(a) => dashboard::command::run(&a).await,
        Command::Pause(a) => commands::torrents::set_paused(&a, true).await,
        Command::Resume(a) => commands::torrents::set_paused(&a, false).await,
        Command::Recheck(a) => commands::torrents::recheck(&a).await,
        Command::Trackers(a) => commands::trackers::run(&a).await,
        Command::Remove(a) => commands::torrents::remove(&a).await,
        Command::Move(a) => commands::relocate::relocate(&a).await,
        Command::Queue(a) => commands::torrents::queue(&a).await,
        Command::Files(a) => commands::files::run(&a).await,
        Command::Set(a) => commands::torrents::set(&a).await,
        Command::Peers(a) => commands::peers::run(&a).await,
        Command::Limits(a) => commands::limits::run(&a).await,
        Command::Completions(a) => {
            commands::docs::completions(a.shell);
            Ok(())
        }
        Command::Man => commands::docs::man(),
        Command::Config(a) => commands::config::run(&a),
        Command::Api(a) => commands::api::run(&a),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return parse_failure(&error),
    };
    let json = cli.command.wants_json();
    init_logging(matches!(cli.command, Command::Run(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            commands::output::report_error(&format!("cannot start the runtime: {e}"), json);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            commands::output::report_error(&commands::output::error_chain(&e), json);
            exit_code(&e)
        }
    }
}

/// clap's own message and status for bad arguments; with `--json` among
/// them, also the JSON error object on stdout (help and version are not
/// errors and print as usual).
fn parse_failure(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let is_help = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let _ = error.print();
    if !is_help && std::env::args_os().any(|a| a == "--json") {
        let message = commands::output::parse_error_message(&error.render().to_string());
        commands::output::print_json(&commands::output::error_json(&message));
    }
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// EX_CONFIG: the service units do not restart on it (RestartPreventExitStatus).
const EXIT_CONFIG: u8 = 78;

/// 78 for a failure no restart can mend (a database from a newer capwise),
/// so that systemd does not loop on it; 1 otherwise.
fn exit_code(error: &anyhow::Error) -> ExitCode {
    let too_new = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<capwise_policy::PolicyError>(),
            Some(capwise_policy::PolicyError::DatabaseTooNew { .. })
        )
    });
    if too_new {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tracker_urls_need_a_known_scheme_and_a_host() {
        for good in [
            "http://t.example/announce",
            "udp://10.0.0.1:6969",
            "HTTPS://t.example",
        ] {
            assert!(super::looks_like_tracker_url(good), "{good}");
        }
        for bad in [
            "notaurl",
            "http://",
            "ftp://t.example",
            "http://:80/x",
            "t.example/announce",
        ] {
            assert!(!super::looks_like_tracker_url(bad), "{bad}");
        }
    }
}
