//! `capwise channel …`: signed publish of torrents to subscribers.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `capwise channel`
#[derive(Debug, Args)]
pub struct ChannelArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ChannelCommand,
}

/// The channel subcommands.
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Make a new channel: an ed25519 key in the state directory; prints its public key.
    Create(ChannelCreateArgs),
    /// Make torrents of PATHs and write them with a signed manifest into --out DIR.
    Publish(ChannelPublishArgs),
    /// The channels this machine publishes, with their public keys, and the subscriptions.
    List(ChannelListArgs),
    /// Every subscribed machine that reported: its site, its version and what it is missing.
    Status(ChannelStatusArgs),
    /// Print the channel's membership token, for subscribers (`--token`):
    /// only peers holding it get the channel's torrents. Keep it secret.
    Token(ChannelTokenArgs),
}

/// `capwise channel token`
#[derive(Debug, Args)]
pub struct ChannelTokenArgs {
    /// The channel's name, as given to `channel create`.
    pub name: String,
    /// Where the keys are kept (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// `capwise channel create`
#[derive(Debug, Args)]
pub struct ChannelCreateArgs {
    /// The channel's name (letters, digits, '.', '_', '-').
    pub name: String,
    /// Where the key is kept (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// `capwise channel publish`
#[derive(Debug, Args)]
pub struct ChannelPublishArgs {
    /// The channel's name, as given to `channel create`.
    pub name: String,
    /// Files or directories to publish: the whole publication (items of the
    /// previous manifest not given again are retired).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The directory a web server serves: .torrent files, the manifest, and
    /// with --web-seed a copy of the data.
    #[arg(long = "out")]
    pub out: PathBuf,
    /// The URL at which the web server serves --out DIR; each torrent lists
    /// it as a web seed (BEP 19 url-list) and the data is copied into DIR.
    #[arg(long = "web-seed", value_name = "BASE_URL")]
    pub web_seed: Option<String>,
    /// Tracker URL; repeat for several.
    #[arg(long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Days until the manifest expires; subscribers refuse it after that,
    /// so publish again before.
    #[arg(long, default_value_t = 30)]
    pub valid_days: u64,
    /// Where subscribers send their delivery reports: this machine's
    /// report endpoint (`[channel] report_listen` in the config), on the
    /// host of --web-seed, e.g. http://hq.example:7979/v1/reports.
    #[arg(long = "report-url", value_name = "URL")]
    pub report_url: Option<String>,
    /// Where the channel's key is kept, and whose running agent seeds the items.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

/// `capwise channel list`
#[derive(Debug, Args)]
pub struct ChannelListArgs {
    /// Where the keys are kept (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `capwise channel status`
#[derive(Debug, Args)]
pub struct ChannelStatusArgs {
    /// The channel's name, as given to `channel create`.
    pub name: String,
    /// Where the keys and reports are kept (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `capwise subscribe`
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The channel's manifest URL (http:// or https://), e.g. https://hq.example/ch/manifest.json.
    pub url: String,
    /// The channel's public key (64 hex digits, as `channel create` printed it):
    /// only manifests it signed are accepted.
    #[arg(long)]
    pub key: String,
    /// Directory for the items' data (default: the agent's download directory).
    #[arg(short = 'd', long = "dir")]
    pub dir: Option<PathBuf>,
    /// The items are background work: they wait while the network is metered.
    #[arg(long)]
    pub background: bool,
    /// Seconds between polls of the manifest (at least 2).
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub interval: u64,
    /// The channel's membership token, as `capwise channel token NAME` printed
    /// it at the publisher: needed when the channel admits members only.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Limit the channel's WAN traffic to a local-time window, as schedules
    /// write it: "22:00-06:00", "weekdays 19:00-07:00". Outside it nothing
    /// of the channel crosses the WAN (no data, no manifest poll); LAN
    /// sharing goes on. It narrows the network's schedule, never widens it.
    #[arg(long, value_name = "WINDOW")]
    pub wan_window: Option<String>,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: crate::cli_policy::StoreArgs,
}

/// `capwise unsubscribe`
#[derive(Debug, Args)]
pub struct UnsubscribeArgs {
    /// The manifest URL given to `subscribe`.
    pub url: String,
    /// Also delete the data of the torrents the subscription added (kept by default).
    #[arg(long)]
    pub delete_data: bool,
    /// Agent selection and output.
    #[command(flatten)]
    pub agent: crate::cli_policy::StoreArgs,
}
