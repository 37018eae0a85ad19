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
    /// The channels this machine publishes, with their public keys.
    List(ChannelListArgs),
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
