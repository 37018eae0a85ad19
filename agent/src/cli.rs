//! The command line, as clap definitions (also the source of completions and
//! the man page).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// capwise: a BitTorrent agent that never surprises you with a bill.
#[derive(Debug, Parser)]
#[command(name = "capwise", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download a torrent in the foreground; exits 0 once every piece is verified.
    Get(GetArgs),
    /// Verify existing data, then seed it until SIGINT/SIGTERM.
    Seed(SeedArgs),
    /// Create a .torrent file from a file or directory.
    Create(CreateArgs),
    /// Signed channels of torrents: create, publish, list (with the subscriptions).
    Channel(crate::cli_channel::ChannelArgs),
    /// Have the running agent follow a channel: poll its signed manifest, add new items, remove retired ones.
    Subscribe(crate::cli_channel::SubscribeArgs),
    /// Stop following a channel and remove the torrents it added (data kept unless --delete-data).
    Unsubscribe(crate::cli_channel::UnsubscribeArgs),
    /// Data-cap budgets per network: set, list, rm.
    Budget(crate::cli_policy::BudgetArgs),
    /// Networks seen, and whether each is metered: list, set.
    Network(crate::cli_policy::NetworkArgs),
    /// Time windows with their own rules per network (free nights, business hours): add, list, rm.
    Schedule(crate::cli_schedule::ScheduleArgs),
    /// This period's traffic per network: capwise's share and the whole link's.
    Usage(crate::cli_policy::UsageArgs),
    /// Prometheus metrics: the read-only token for GET /metrics.
    Metrics(crate::metrics::token::MetricsArgs),
    /// Why transfers are (or are not) limited right now.
    Why(crate::cli_policy::WhyArgs),
    /// The uplink as capwise sees it now: name, kind, metered, roaming.
    Net(crate::cli_policy::WhyArgs),
    /// This agent's id for QUIC (the SHA-256 of its key): what other agents list in [quic] allow.
    Id(crate::commands::id::AgentIdArgs),
    /// Run the background service in the foreground (for systemd, launchd or a terminal).
    Run(crate::cli_agent::RunArgs),
    /// The running agent: version, pid, whether it is ready, how many torrents.
    Info(crate::cli_policy::StoreArgs),
    /// Add a torrent to the running agent; prints its id.
    Add(crate::cli_agent::AddArgs),
    /// List the agent's torrents.
    List(crate::cli_policy::StoreArgs),
    /// Progress of one torrent or all, once or with --watch.
    Status(crate::cli_agent::StatusArgs),
    /// Sign in to the dashboard in a browser: prints a one-time URL (--open opens it).
    Dashboard(crate::dashboard::command::DashboardArgs),
    /// Pause a torrent (kept across restarts).
    Pause(crate::cli_agent::IdArgs),
    /// Resume a paused torrent.
    Resume(crate::cli_agent::IdArgs),
    /// A torrent's trackers: status, last announce, peers, error.
    Trackers(crate::cli_agent::IdArgs),
    /// Hash all of a torrent's data again; waits for the result.
    Recheck(crate::cli_agent::IdArgs),
    /// A torrent's connected peers: address, client, LAN/WAN, rates, source, flags.
    Peers(crate::cli_agent::IdArgs),
    /// Change one torrent's settings: its own rate limits (kept across restarts).
    Set(crate::cli_agent::SetArgs),
    /// A torrent's files with their progress; skip, want, prioritise them,
    /// or download in order.
    Files(crate::cli_agent::FilesArgs),
    /// Remove a torrent from the agent, and its files with --delete-data.
    Remove(crate::cli_agent::RemoveArgs),
    /// Move a torrent's data to another directory (another disk too); it goes on from there.
    Move(crate::cli_agent::MoveArgs),
    /// The queue: which torrents go first when only so many may download
    /// or seed at once (`[queue]`); move one with --move top|up|down|bottom.
    Queue(crate::cli_agent::QueueArgs),
    /// The agent's own rate limits: show, set.
    Limits(crate::cli_agent::LimitsArgs),
    /// Print a shell completion script.
    Completions(crate::cli_agent::CompletionsArgs),
    /// Print the man page (roff).
    Man,
    /// The configuration: `show` prints each value in force and where it comes from.
    Config(crate::commands::config::ConfigArgs),
    /// The dashboard beyond loopback ([api] remote_listen): its password, its certificate.
    Api(crate::commands::api::ApiArgs),
}

impl Command {
    /// Whether `--json` was asked for: errors are then also printed as a
    /// JSON object on stdout.
    pub fn wants_json(&self) -> bool {
        use crate::cli_agent::LimitsCommand;
        use crate::cli_policy::{BudgetCommand, NetworkCommand};
        match self {
            Command::Budget(a) => match &a.command {
                BudgetCommand::Set(a) => a.store.json,
                BudgetCommand::List(a) => a.json,
                BudgetCommand::Rm(a) => a.store.json,
            },
            Command::Network(a) => match &a.command {
                NetworkCommand::List(a) => a.json,
                NetworkCommand::Set(a) => a.store.json,
            },
            Command::Schedule(a) => match &a.command {
                crate::cli_schedule::ScheduleCommand::Add(a) => a.store.json,
                crate::cli_schedule::ScheduleCommand::List(a) => a.store.json,
                crate::cli_schedule::ScheduleCommand::Rm(a) => a.store.json,
            },
            Command::Usage(a) => a.store.json,
            Command::Metrics(_) | Command::Api(_) => false,
            Command::Id(a) => a.json,
            Command::Config(a) => match &a.command {
                crate::commands::config::ConfigCommand::Show(a) => a.json,
            },
            Command::Why(a) | Command::Net(a) => a.store.json,
            Command::Info(a) | Command::List(a) => a.json,
            Command::Add(a) => a.agent.json,
            Command::Status(a) => a.agent.json,
            Command::Dashboard(a) => a.agent.json,
            Command::Pause(a) | Command::Resume(a) | Command::Recheck(a) | Command::Trackers(a) => {
                a.agent.json
            }
            Command::Remove(a) => a.agent.json,
            Command::Move(a) => a.agent.json,
            Command::Queue(a) => a.agent.json,
            Command::Files(a) => a.agent.json,
            Command::Set(a) => a.agent.json,
            Command::Peers(a) => a.agent.json,
            Command::Limits(a) => match &a.command {
                LimitsCommand::Show(a) => a.json,
                LimitsCommand::Set(a) => a.agent.json,
            },
            Command::Subscribe(a) => a.agent.json,
            Command::Unsubscribe(a) => a.agent.json,
            Command::Channel(a) => match &a.command {
                crate::cli_channel::ChannelCommand::List(a) => a.json,
                _ => false,
            },
            Command::Get(_)
            | Command::Seed(_)
            | Command::Create(_)
            | Command::Run(_)
            | Command::Completions(_)
            | Command::Man => false,
        }
    }
}

/// Options shared by the foreground transfer commands.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Directory the data is (or goes) in.
    #[arg(short = 'd', long = "dir", default_value = ".")]
    pub dir: PathBuf,
    /// Upload limit, e.g. 500KB/s, 2MiB/s, 8Mbit/s.
    #[arg(long, value_parser = parse_rate_arg)]
    pub upload_limit: Option<u64>,
    /// Download limit, e.g. 500KB/s, 2MiB/s, 8Mbit/s.
    #[arg(long, value_parser = parse_rate_arg)]
    pub download_limit: Option<u64>,
    /// Address to accept peers on; port 0 picks a free port. A specific
    /// address is also the one announces and outgoing peer connections leave from.
    #[arg(long, default_value = "0.0.0.0:6881")]
    pub listen: SocketAddr,
    /// Where resume data and the policy database are kept (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Describe the uplink with this TOML file instead of asking NetworkManager
    /// or the kernel; re-read when it changes.
    #[arg(long)]
    pub network_file: Option<PathBuf>,
    /// Configuration file for the policy settings and the network file, as
    /// `capwise run` reads it (default: $XDG_CONFIG_HOME/capwise/config.toml, if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A peer to dial, HOST:PORT, like a magnet link's x.pe; repeatable.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Peer discovery switches.
    #[command(flatten)]
    pub discovery: DiscoveryArgs,
    /// How peer connections are made.
    #[command(flatten)]
    pub wire: WireArgs,
}

/// How `get`, `seed` and `run` connect to peers; each overrides its
/// configuration key.
#[derive(Debug, Clone, Default, Args)]
pub struct WireArgs {
    /// Protocol encryption (MSE/PE, RC4): `prefer` dials encrypted and
    /// falls back to plaintext, `require` refuses plaintext peers, `allow`
    /// dials plaintext; all but `require` accept both [encryption = "prefer"].
    #[arg(long, value_name = "MODE")]
    pub encryption: Option<capwise_engine::Encryption>,

    /// The carriers peers are dialled over, in order, and accepted on:
    /// `tcp,utp` (the default), `utp,tcp`, `tcp` or `utp` (no TCP listener);
    /// add `quic` to move connections to other capwise agents onto QUIC
    /// (`tcp,utp,quic`; the key is `quic-key` in the state directory)
    /// [transports = ["tcp", "utp"]].
    #[arg(long, value_name = "LIST", value_parser = parse_transports)]
    pub transports: Option<capwise_engine::transport::Transports>,

    /// Bind all BitTorrent traffic (peers, trackers, DHT, web seeds) to this
    /// network interface, e.g. a VPN's `wg0`: while it is down or gone
    /// nothing moves, rather than leaving by another route; port mapping is
    /// off [net.interface].
    #[arg(long, value_name = "NAME", value_parser = parse_interface)]
    pub interface: Option<String>,
}

fn parse_interface(s: &str) -> Result<String, String> {
    crate::config::check_interface_name(s).map(|()| s.to_string())
}

/// Peer discovery switches of `get`, `seed` and `run`; each overrides its
/// configuration key.
#[derive(Debug, Clone, Default, Args)]
pub struct DiscoveryArgs {
    /// No local service discovery (BEP 14 multicast on the LAN) [lsd.enabled = false].
    #[arg(long)]
    pub no_lsd: bool,

    /// No peer exchange (PEX, BEP 11): neither tell peers whom we know nor
    /// dial whom they tell us of (config: `pex.enabled = false`).
    #[arg(long)]
    pub no_pex: bool,

    /// The DHT.
    #[command(flatten)]
    pub dht: DhtArgs,
}

fn parse_transports(s: &str) -> Result<capwise_engine::transport::Transports, String> {
    s.parse()
        .map_err(|e: capwise_engine::transport::carriers::TransportsError| e.to_string())
}

/// The Mainline DHT (on `get`, `seed` and `run`).
#[derive(Debug, Clone, Default, Args)]
pub struct DhtArgs {
    /// No DHT: peers come from trackers and the peers given only
    /// (the configuration's `dht.enabled = false`).
    #[arg(long)]
    pub no_dht: bool,
    /// A DHT node to join through, HOST:PORT; repeatable. Replaces the
    /// configuration's `dht.bootstrap` (default: the public routers).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
}

/// `capwise get`
#[derive(Debug, Args)]
pub struct GetArgs {
    /// A .torrent file or a magnet link.
    pub source: String,
    /// Keep seeding after the download completes, until SIGINT/SIGTERM.
    #[arg(long)]
    pub seed: bool,
    /// Transfer options.
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `capwise seed`
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The .torrent file of the data.
    pub torrent: PathBuf,
    /// Download what is missing or damaged in -d DIR instead of refusing to start.
    #[arg(long)]
    pub fetch_missing: bool,
    /// Transfer options.
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `capwise create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// File or directory to describe.
    pub path: PathBuf,
    /// Where to write the .torrent file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Tracker URL; repeat for several (each its own tier).
    #[arg(long = "tracker")]
    pub trackers: Vec<String>,
    /// Piece size, e.g. 1MiB (default: chosen from the total size).
    #[arg(long, value_parser = parse_size_arg)]
    pub piece_size: Option<u64>,
    /// Mark the torrent private (BEP 27): trackers only, no DHT or PEX.
    #[arg(long)]
    pub private: bool,
    /// A comment stored in the torrent.
    #[arg(long)]
    pub comment: Option<String>,
    /// Overwrite an existing output file, and take tracker URLs that do not
    /// look like http://, https:// or udp:// URLs.
    #[arg(long)]
    pub force: bool,
}

pub(crate) fn parse_rate_arg(s: &str) -> Result<u64, String> {
    crate::units::parse_rate(s).map_err(|e| e.to_string())
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    crate::units::parse_size(s).map_err(|e| e.to_string())
}
