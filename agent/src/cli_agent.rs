//! The command line of the service (`run`) and of the commands that talk to
//! a running agent (`add`, `list`, `status`, `pause`, `resume`, `remove`,
//! `limits`), plus `completions` and `man`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::cli_policy::StoreArgs;

/// `capwise run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (default: $XDG_CONFIG_HOME/capwise/config.toml, if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the database, token and API address are kept (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Describe the uplink with this TOML file instead of detecting it; re-read when it changes.
    #[arg(long)]
    pub network_file: Option<PathBuf>,
    /// Peer discovery switches.
    #[command(flatten)]
    pub discovery: crate::cli::DiscoveryArgs,
    /// How peer connections are made.
    #[command(flatten)]
    pub wire: crate::cli::WireArgs,
    /// A peer every torrent dials, HOST:PORT, like a magnet link's x.pe; repeatable.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
}

/// `capwise add`
#[derive(Debug, Args)]
pub struct AddArgs {
    /// A .torrent file, an http(s) link to one (fetched by this command:
    /// at most 10 MiB, 5 redirects, 30 s), or a magnet link.
    pub source: String,
    /// Directory for the data (default: the agent's download directory).
    #[arg(short = 'd', long = "dir")]
    pub dir: Option<PathBuf>,
    /// Add without starting.
    #[arg(long)]
    pub paused: bool,
    /// Background work: waits while the network is metered.
    #[arg(long)]
    pub background: bool,
    /// A channel's membership token (`capwise channel token NAME`): every
    /// peer must prove membership before it gets anything of this torrent.
    #[arg(long, value_name = "TOKEN")]
    pub member_token: Option<String>,
    /// Download only the files matching GLOB (a path inside the torrent;
    /// `*` also crosses `/`, so `*.mkv` finds them in any folder). Repeat
    /// for several; the others are not created on disk.
    #[arg(long, value_name = "GLOB")]
    pub only: Vec<String>,
    /// Do not download the files matching GLOB (after --only).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Download pieces in order, each file's first and last pieces first
    /// (to play media while it downloads).
    #[arg(long)]
    pub sequential: bool,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// `capwise set`
#[derive(Debug, Args)]
pub struct SetArgs {
    /// A torrent id (or a unique prefix of 4+ digits).
    pub id: String,
    /// This torrent's upload limit, e.g. 500KB/s, 2MiB/s, unlimited (under the
    /// global limits and the policy, never above them).
    #[arg(long, value_parser = parse_limit)]
    pub up: Option<u64>,
    /// This torrent's download limit, e.g. 500KB/s, 8Mbit/s, unlimited.
    #[arg(long, value_parser = parse_limit)]
    pub down: Option<u64>,
    /// Stop seeding once it has uploaded this many times what it took
    /// (e.g. 2.0); `none` seeds on; `default` takes `[seeding] ratio`.
    #[arg(long, value_name = "RATIO", value_parser = check_ratio)]
    pub ratio: Option<String>,
    /// Stop seeding after this long seeding (e.g. 7d, 12h); `none` seeds
    /// on; `default` takes `[seeding] seed_time`.
    #[arg(long, value_name = "DURATION", value_parser = check_seed_time)]
    pub seed_time: Option<String>,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

fn check_ratio(text: &str) -> Result<String, String> {
    crate::daemon::torrents::parse_ratio(text).map(|_| text.trim().to_string())
}

fn check_seed_time(text: &str) -> Result<String, String> {
    crate::daemon::torrents::parse_seed_time(text).map(|_| text.trim().to_string())
}

/// `capwise files`
#[derive(Debug, Args)]
pub struct FilesArgs {
    /// A torrent id (or a unique prefix of 4+ digits).
    pub id: String,
    /// Stop downloading these files (numbers as listed); data already there stays.
    #[arg(long, value_name = "N", num_args = 1..)]
    pub skip: Vec<usize>,
    /// Download these files again.
    #[arg(long, value_name = "N", num_args = 1..)]
    pub want: Vec<usize>,
    /// Set a file's priority: N=skip, N=normal or N=high.
    #[arg(long, value_name = "N=PRIORITY", num_args = 1.., value_parser = parse_file_priority)]
    pub priority: Vec<(usize, String)>,
    /// Download in order (on) or rarest first (off).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub sequential: Option<bool>,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

fn parse_file_priority(text: &str) -> Result<(usize, String), String> {
    let (n, word) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected N=PRIORITY, e.g. 3=high"))?;
    let n = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a file number"))?;
    let word = word.trim().to_ascii_lowercase();
    word.parse::<capwise_engine::priority::Priority>()
        .map_err(|e| e.to_string())?;
    Ok((n, word))
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        other => Err(format!("{other:?}: expected on or off")),
    }
}

/// `capwise status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A torrent id (or a unique prefix of 4+ digits); default: all.
    pub id: Option<String>,
    /// Keep showing progress bars until interrupted (or until all finish);
    /// with --json, one JSON object per torrent and line at each change.
    /// Follows the agent's event stream (GET /v1/events), not polling.
    #[arg(long)]
    pub watch: bool,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// `capwise pause` and `capwise resume`
#[derive(Debug, Args)]
pub struct IdArgs {
    /// A torrent id (or a unique prefix of 4+ digits).
    pub id: String,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// `capwise queue`
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// A torrent id (or a unique prefix of 4+ digits); without one, the
    /// queue is shown in order.
    pub id: Option<String>,
    /// Where it goes: top, up, down or bottom.
    #[arg(long = "move", value_name = "WHERE", requires = "id")]
    pub to: Option<crate::api_types::QueueMove>,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// `capwise move`
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// A torrent id (or a unique prefix of 4+ digits).
    pub id: String,
    /// The directory the data goes to (created if missing).
    pub dir: PathBuf,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// `capwise remove`
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// A torrent id (or a unique prefix of 4+ digits).
    pub id: String,
    /// Delete the torrent's downloaded files too (only its own files).
    #[arg(long)]
    pub delete_data: bool,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// `capwise limits`
#[derive(Debug, Args)]
pub struct LimitsArgs {
    /// What to do with the limits.
    #[command(subcommand)]
    pub command: LimitsCommand,
}

/// The limits subcommands.
#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Show the rate limits in force.
    Show(StoreArgs),
    /// Change rate limits (kept across restarts); "unlimited" or 0 removes one.
    Set(LimitsSetArgs),
}

/// `capwise limits set`
#[derive(Debug, Args)]
pub struct LimitsSetArgs {
    /// Upload limit, e.g. 500KB/s, 2MiB/s, 8Mbit/s, unlimited.
    #[arg(long, value_parser = parse_limit)]
    pub up: Option<u64>,
    /// Download limit, e.g. 500KB/s, 2MiB/s, 8Mbit/s, unlimited.
    #[arg(long, value_parser = parse_limit)]
    pub down: Option<u64>,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: StoreArgs,
}

/// `capwise completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: ShellArg,
}

/// Shells completions are generated for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellArg {
    /// bash
    Bash,
    /// zsh
    Zsh,
    /// fish
    Fish,
}

fn parse_limit(s: &str) -> Result<u64, String> {
    if s.eq_ignore_ascii_case("unlimited") || s == "0" {
        return Ok(0);
    }
    crate::units::parse_rate(s).map_err(|e| e.to_string())
}
