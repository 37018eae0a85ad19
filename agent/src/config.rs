//! The agent's optional TOML configuration. Every key is optional with a
//! safe default. A key capwise does not know in `[policy]` or `[limits]`
//! is refused with the closest known key (a typo there must not silently
//! leave the bill unprotected); elsewhere it is a warning that the log and
//! `capwise why` show.
//!
//! ```toml
//! download_dir = "/srv/downloads"
//! watch_dir = "/srv/torrents"   # .torrent files dropped here are added, then renamed .added (or .invalid)
//! incomplete_dir = "/srv/incomplete"   # data goes here while downloading, then to the download directory
//! on_complete = ["/usr/local/bin/done", "--quiet"]   # run with the data's path and the id appended (no shell)
//! listen = "0.0.0.0:6881"
//! encryption = "prefer"   # or "require", "allow"; `--encryption` overrides
//! network_file = "/run/capwise/network.toml"
//! transports = ["tcp", "utp"]   # dial order, both accepted (the default); add "quic" for QUIC between agents; `--transports` overrides it
//! notify = true      # a desktop notification when capwise starts holding back
//!
//! [limits]            # global; also [limits.wan] and [limits.lan]
//! up = "1MB/s"
//! down = "10MB/s"
//!
//! [policy]
//! upload_on_metered = false
//! background_on_metered = false
//! metered_download_rate = "500KB/s"
//! near_cap_percent = 80
//! near_cap_download_rate = "64KB/s"
//! suspend_when_roaming = true
//!
//! [power]             # on battery (UPower); on AC nothing changes
//! wan_uploads_on_battery = false   # seed to the internet on battery
//! background_below_percent = 30    # background torrents wait below this charge (0: never)
//!
//! [api]
//! address = "127.0.0.1:0"      # loopback only (default 127.0.0.1:7245)
//! remote_listen = "0.0.0.0:7246"   # the dashboard beyond loopback: HTTPS, password sign-in
//! tls_cert = "/etc/capwise/cert.pem"   # with tls_key; without both, a self-signed certificate
//! tls_key = "/etc/capwise/key.pem"
//!
//! [lsd]
//! enabled = true      # local service discovery (BEP 14); `--no-lsd` turns it off
//! [pex]
//! enabled = true      # peer exchange (BEP 11); never for private torrents
//! [dht]
//! enabled = true
//! bootstrap = ["router.bittorrent.com:6881", "dht.transmissionbt.com:6881"]
//! [site]
//! prefixes = ["10.20.0.0/16"]   # routed branch networks that count as LAN (this site)
//! wan_rate = "20Mbit/s"          # the site's WAN download cap, shared by its machines
//! [metrics]
//! listen = "127.0.0.1:9469"     # /metrics without a token, for a local Prometheus
//! [quic]              # with "quic" in transports: only these agents get QUIC (`capwise id` prints one's id)
//! allow = ["<64 hex digits>"]
//! allow_file = "/etc/capwise/agents.txt"   # one id a line, `#` comments
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use capwise_policy::decision::Settings;
use serde::Deserialize;

use crate::units::parse_rate;

/// The configuration file's name inside the XDG config directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Everything `capwise run` can be told in its file. `get`, `seed` and
/// `why` read the same file for the policy settings and the network file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where torrents added without `-d` are stored.
    pub download_dir: Option<PathBuf>,
    /// A folder whose `.torrent` files are added (to `download_dir`), then
    /// renamed `.added`, or `.invalid` when they cannot be.
    pub watch_dir: Option<PathBuf>,
    /// Where torrents download to before they move to their download
    /// directory on completion.
    pub incomplete_dir: Option<PathBuf>,
    /// A program (and its first arguments) run once per completed
    /// download, with the data's path and the torrent's id appended.
    pub on_complete: Option<Vec<String>>,
    /// Address to accept peers on.
    pub listen: Option<SocketAddr>,
    /// Describe the uplink with this file instead of detecting it.
    pub network_file: Option<PathBuf>,
    /// Protocol encryption: `allow`, `prefer` or `require`.
    pub encryption: Option<String>,
    /// The carriers peers are dialled over, in order (`tcp`, `utp`).
    pub transports: Option<Vec<String>>,
    /// Rate limits set by the user, below whatever the policy allows.
    pub limits: LimitsConfig,
    /// Changes to the metered-network defaults.
    pub policy: PolicyConfig,
    /// Changes to the battery defaults.
    pub power: PowerConfig,
    /// The local API.
    pub api: ApiConfig,
    /// Local service discovery.
    pub lsd: LsdConfig,
    /// Peer exchange.
    pub pex: PexConfig,
    /// The Mainline DHT.
    pub dht: DhtConfig,
    /// Channels published from here.
    pub channel: ChannelConfig,
    /// This machine's site (branch office).
    pub site: SiteConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Desktop notifications when capwise starts holding back (default true).
    pub notify: Option<bool>,
    /// `[net]`: reaching peers from home.
    pub net: NetConfig,
    /// `[quic]`: which agents may connect over QUIC.
    pub quic: crate::quic_config::QuicConfig,
    /// `[seeding]`: when torrents stop seeding, unless they say otherwise.
    pub seeding: SeedingConfig,
    /// `[queue]`: how many torrents download and seed at once.
    pub queue: QueueConfig,
    /// IP blocklist files (P2P, eMule DAT or CIDR lines; gzip or not): one
    /// path or several.
    pub blocklist: Option<Paths>,
    /// Sentences about keys that were ignored (unknown outside `[policy]`
    /// and `[limits]`), for the log and `capwise why`.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Rates as written by a person ("500KB/s", "8Mbit/s").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RatePair {
    /// Upload limit.
    pub up: Option<String>,
    /// Download limit.
    pub down: Option<String>,
}

/// `[limits]`, `[limits.wan]`, `[limits.lan]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Upload limit across all peers.
    pub up: Option<String>,
    /// Download limit across all peers.
    pub down: Option<String>,
    /// Limits for peers beyond the local network.
    pub wan: RatePair,
    /// Limits for peers on the local network.
    pub lan: RatePair,
}

/// `[policy]`: each key overrides one zero-configuration default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// Seed to WAN peers on metered networks.
    pub upload_on_metered: Option<bool>,
    /// Let background torrents run on metered networks.
    pub background_on_metered: Option<bool>,
    /// Download rate cap on metered networks.
    pub metered_download_rate: Option<String>,
    /// Percent of the cap at which downloads are throttled.
    pub near_cap_percent: Option<u8>,
    /// Download rate near the cap.
    pub near_cap_download_rate: Option<String>,
    /// Suspend everything while roaming.
    pub suspend_when_roaming: Option<bool>,
}

/// `[power]`: what being on battery holds back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PowerConfig {
    /// Seed to WAN peers while on battery (default false).
    pub wan_uploads_on_battery: Option<bool>,
    /// Background torrents wait on battery below this charge (default 30).
    pub background_below_percent: Option<u8>,
}

/// The API's (and the dashboard's) port unless `[api] address` says
/// otherwise: stable, so a dashboard bookmark keeps working; when it is
/// taken the agent takes a free one and says so.
pub const DEFAULT_API_PORT: u16 = 7245;

/// `[api]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    /// Where the HTTP API listens (default 127.0.0.1:7245; a free port if
    /// that is taken). Loopback only: beyond it see `remote_listen`.
    pub address: Option<SocketAddr>,
    /// Also serve the API and the dashboard here, beyond loopback, over
    /// HTTPS with a password sign-in (default: nowhere).
    pub remote_listen: Option<SocketAddr>,
    /// The remote listener's certificate chain (PEM); with `tls_key`.
    /// Without both, a self-signed certificate kept in the state directory.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
}

/// `[lsd]`: local service discovery (BEP 14).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LsdConfig {
    /// Announce and hear torrents on the LAN (default true).
    pub enabled: Option<bool>,
}

/// `[pex]`: peer exchange (BEP 11).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PexConfig {
    /// Exchange peers with peers (default true; private torrents never do).
    pub enabled: Option<bool>,
}

/// `[dht]`: the Mainline DHT (see `crate::dht`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DhtConfig {
    /// Whether to run the DHT (default true).
    pub enabled: Option<bool>,
    /// Nodes to join through, `HOST:PORT` (default: the public routers).
    pub bootstrap: Option<Vec<String>>,
}

/// `[channel]`: what a publishing agent offers its subscribers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ChannelConfig {
    /// Where subscribers' delivery reports are received, `ADDR:PORT`
    /// (default: nowhere). Publish with `--report-url` naming it.
    pub report_listen: Option<SocketAddr>,
}

/// `[metrics]`: `GET /metrics` is always on the API's listener (with the
/// metrics token); this serves it without a token too.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Serve `/metrics` without a token on this address (default: nowhere),
    /// for a Prometheus on the same machine.
    pub listen: Option<SocketAddr>,
}

/// One path or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Paths {
    /// `key = "path"`.
    One(PathBuf),
    /// `key = ["a", "b"]`.
    Many(Vec<PathBuf>),
}

impl Paths {
    /// The paths, in order.
    pub fn as_slice(&self) -> &[PathBuf] {
        match self {
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }
}

/// `[net]`: reaching peers from home.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetConfig {
    /// Map the peer ports on the home router (PCP/NAT-PMP, UPnP IGD) while
    /// the uplink is unmetered and not a VPN (default true).
    pub port_mapping: Option<bool>,
    /// Bind all BitTorrent traffic to this network interface (e.g. "wg0"):
    /// when it is down or gone nothing moves, rather than leaving by
    /// another route (default: none, the routing table decides).
    pub interface: Option<String>,
}

/// `[seeding]`: the default seeding goals (none: seed on).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SeedingConfig {
    /// Stop seeding once a torrent has uploaded this many times what it took.
    pub ratio: Option<f64>,
    /// Stop seeding after this long seeding ("7d", "12h").
    pub seed_time: Option<String>,
}

/// `[queue]`: at most this many torrents download (and seed) at once, the
/// others queued in order; 0 is no limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct QueueConfig {
    /// Torrents downloading at once (default 5).
    pub max_active_downloads: Option<usize>,
    /// Torrents seeding at once (default: no limit).
    pub max_active_seeds: Option<usize>,
}

/// `[site]`: the branch office this machine belongs to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SiteConfig {
    /// CIDRs of the site's routed networks: their peers count as LAN (for
    /// budgets and for sharing pieces within the site), like the subnets of
    /// the machine's own interfaces.
    pub prefixes: Vec<String>,
    /// The site's WAN download cap, shared by its machines ("20Mbit/s"):
    /// each takes an equal share among those fetching over the WAN now.
    pub wan_rate: Option<String>,
}

/// Limits in bytes per second, `None` meaning unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Upload across all peers.
    pub up: Option<u64>,
    /// Download across all peers.
    pub down: Option<u64>,
    /// Upload to WAN peers.
    pub wan_up: Option<u64>,
    /// Download from WAN peers.
    pub wan_down: Option<u64>,
    /// Upload to LAN peers.
    pub lan_up: Option<u64>,
    /// Download from LAN peers.
    pub lan_down: Option<u64>,
}

/// A loaded configuration (its warnings in [`Config::warnings`]).
#[derive(Debug, Default)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
}

/// The default configuration file: `$XDG_CONFIG_HOME/capwise/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("capwise").join(CONFIG_FILE))
}

/// The keys each table knows, by the table's dotted path.
pub(crate) const KNOWN_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "download_dir",
            "listen",
            "network_file",
            "encryption",
            "transports",
            "limits",
            "policy",
            "power",
            "api",
            "lsd",
            "pex",
            "dht",
            "site",
            "metrics",
            "notify",
            "channel",
            "net",
            "quic",
            "blocklist",
            "seeding",
            "queue",
            "watch_dir",
            "incomplete_dir",
            "on_complete",
        ],
    ),
    ("seeding", &["ratio", "seed_time"]),
    ("queue", &["max_active_downloads", "max_active_seeds"]),
    ("net", &["port_mapping", "interface"]),
    ("quic", &["allow", "allow_file"]),
    ("lsd", &["enabled"]),
    ("metrics", &["listen"]),
    ("site", &["prefixes", "wan_rate"]),
    ("limits", &["up", "down", "wan", "lan"]),
    ("limits.wan", &["up", "down"]),
    ("limits.lan", &["up", "down"]),
    (
        "policy",
        &[
            "upload_on_metered",
            "background_on_metered",
            "metered_download_rate",
            "near_cap_percent",
            "near_cap_download_rate",
            "suspend_when_roaming",
        ],
    ),
    (
        "power",
        &["wan_uploads_on_battery", "background_below_percent"],
    ),
    ("api", &["address", "remote_listen", "tls_cert", "tls_key"]),
    ("channel", &["report_listen"]),
    ("pex", &["enabled"]),
    ("dht", &["enabled", "bootstrap"]),
];

/// Edits (insertions, deletions, substitutions) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The known key closest to unknown `path` (`policy.upload_on_metred`), if
/// one is close enough to be a typo of it.
fn suggestion(path: &str) -> Option<&'static str> {
    let (table, key) = path.rsplit_once('.').unwrap_or(("", path));
    let known = KNOWN_KEYS.iter().find(|(t, _)| *t == table)?.1;
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k)
}

/// Parses configuration text. An unknown key in `[policy]` or `[limits]`
/// (or a table that is most likely one of them misspelt) is an error naming
/// the key and the closest known one; other unknown keys become warnings.
/// Values of the wrong type, unparsable rates and a relative
/// `download_dir` are errors.
pub fn parse(text: &str) -> Result<Loaded> {
    let mut unknown_keys = Vec::new();
    let deserializer = toml::Deserializer::new(text);
    let mut config: Config = serde_ignored::deserialize(deserializer, |path| {
        unknown_keys.push(path.to_string());
    })?;
    for key in &unknown_keys {
        let suggested = suggestion(key);
        let hint = suggested
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        let guards_the_bill = key.starts_with("policy.")
            || key.starts_with("limits.")
            || (!key.contains('.') && matches!(suggested, Some("policy" | "limits")));
        if guards_the_bill {
            bail!(
                "unknown key `{key}`{hint}: keys in [policy] and [limits] protect your data plan, so capwise does not start with one it does not know"
            );
        }
        config.warnings.push(format!(
            "unknown key `{key}` in the configuration ignored{hint}"
        ));
    }
    for (key, path) in [
        ("download_dir", &config.download_dir),
        ("network_file", &config.network_file),
        ("watch_dir", &config.watch_dir),
        ("incomplete_dir", &config.incomplete_dir),
        ("api.tls_cert", &config.api.tls_cert),
        ("api.tls_key", &config.api.tls_key),
    ] {
        if let Some(path) = path.as_ref().filter(|p| !p.is_absolute()) {
            bail!("{key} = \"{}\": must be an absolute path", path.display());
        }
    }
    if let Some(argv) = &config.on_complete {
        match argv.first() {
            None => bail!("on_complete = []: give the program to run, e.g. [\"/usr/local/bin/done\"]"),
            Some(program) if !Path::new(program).is_absolute() => bail!(
                "on_complete = [\"{program}\", ...]: the program must be an absolute path (it is run without a shell or $PATH)"
            ),
            Some(_) => {}
        }
    }
    config.quic.validate()?;
    config.limits()?;
    config.settings()?;
    config.site_prefixes()?;
    config.site_wan_rate()?;
    Ok(Loaded { config })
}

/// Loads `path` if given (it must exist), else the default file if it
/// exists, else the defaults.
pub fn load(path: Option<&Path>) -> Result<Loaded> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match default_config_path() {
            Some(p) => (p, false),
            None => return Ok(Loaded::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Loaded::default())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse(&text).with_context(|| format!("invalid configuration in {}", path.display()))
}

/// [`load`] for a command: the same file `capwise run` reads (`--config`,
/// else the default file if present), with its unknown keys logged as
/// warnings, so that every command decides with the user's settings.
pub fn load_warning(path: Option<&Path>) -> Result<Config> {
    let loaded = load(path)?;
    for warning in &loaded.config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.config)
}

fn rate(field: &str, value: &Option<String>) -> Result<Option<u64>> {
    value
        .as_deref()
        .map(|v| parse_rate(v).with_context(|| format!("{field} = \"{v}\"")))
        .transpose()
}

impl Config {
    /// The user's rate limits, parsed.
    pub fn limits(&self) -> Result<RateLimits> {
        let l = &self.limits;
        Ok(RateLimits {
            up: rate("limits.up", &l.up)?,
            down: rate("limits.down", &l.down)?,
            wan_up: rate("limits.wan.up", &l.wan.up)?,
            wan_down: rate("limits.wan.down", &l.wan.down)?,
            lan_up: rate("limits.lan.up", &l.lan.up)?,
            lan_down: rate("limits.lan.down", &l.lan.down)?,
        })
    }

    /// The policy settings: defaults with the file's changes applied.
    pub fn settings(&self) -> Result<Settings> {
        let p = &self.policy;
        let mut s = Settings::default();
        if let Some(v) = p.upload_on_metered {
            s.upload_on_metered = v;
        }
        if let Some(v) = p.background_on_metered {
            s.background_on_metered = v;
        }
        if let Some(v) = rate("policy.metered_download_rate", &p.metered_download_rate)? {
            s.metered_download_rate = Some(v);
        }
        if let Some(v) = p.near_cap_percent {
            if !(1..=100).contains(&v) {
                bail!("policy.near_cap_percent = {v}: must be between 1 and 100");
            }
            s.near_cap_percent = v;
        }
        if let Some(v) = rate("policy.near_cap_download_rate", &p.near_cap_download_rate)? {
            s.near_cap_download_rate = v;
        }
        if let Some(v) = p.suspend_when_roaming {
            s.suspend_when_roaming = v;
        }
        if let Some(v) = self.power.wan_uploads_on_battery {
            s.wan_uploads_on_battery = v;
        }
        if let Some(v) = self.power.background_below_percent {
            if v > 100 {
                bail!("power.background_below_percent = {v}: must be between 0 and 100");
            }
            s.background_below_percent = v;
        }
        Ok(s)
    }

    /// `site.prefixes`, parsed: networks whose peers count as LAN.
    pub fn site_prefixes(&self) -> Result<Vec<capwise_engine::session::classify::IpNet>> {
        self.site
            .prefixes
            .iter()
            .map(|p| {
                p.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "site.prefixes: \"{p}\" is not a network prefix; write an address, a slash and the prefix length, such as \"10.20.0.0/16\" or \"fd00:20::/48\""
                    )
                })
            })
            .collect()
    }

    /// `site.wan_rate`, parsed: the site's shared WAN download cap.
    pub fn site_wan_rate(&self) -> Result<Option<u64>> {
        match rate("site.wan_rate", &self.site.wan_rate)? {
            Some(0) => bail!("site.wan_rate must be above 0 (leave it out for no site cap)"),
            r => Ok(r),
        }
    }

    /// The LAN/WAN classifier: the machine's interfaces, plus the site's
    /// prefixes.
    pub fn classifier(&self) -> Result<capwise_engine::session::SubnetClassifier> {
        Ok(capwise_engine::session::SubnetClassifier::from_system()
            .with_site_prefixes(self.site_prefixes()?))
    }

    /// Whether local service discovery runs: `lsd.enabled` (default on),
    /// unless `--no-lsd` was given.
    pub fn lsd_enabled(&self, no_lsd: bool) -> bool {
        !no_lsd && self.lsd.enabled.unwrap_or(true)
    }

    /// The default seeding goals (`[seeding] ratio`, `seed_time`).
    pub fn seed_defaults(&self) -> Result<crate::daemon::torrents::SeedDefaults> {
        use crate::daemon::torrents::{parse_ratio, parse_seed_time, Goal};
        let ratio = match self.seeding.ratio {
            None => None,
            Some(r) => match parse_ratio(&r.to_string())
                .map_err(|e| anyhow::anyhow!("[seeding] ratio: {e}"))?
            {
                Some(Goal::At(r)) => Some(r),
                _ => None,
            },
        };
        let seed_time = match self.seeding.seed_time.as_deref() {
            None => None,
            Some(t) => {
                match parse_seed_time(t).map_err(|e| anyhow::anyhow!("[seeding] seed_time: {e}"))? {
                    Some(Goal::At(d)) => Some(d),
                    _ => None,
                }
            }
        };
        Ok(crate::daemon::torrents::SeedDefaults { ratio, seed_time })
    }

    /// The queue's limits (`[queue]`).
    pub fn queue_limits(&self) -> crate::daemon::torrents::QueueLimits {
        crate::daemon::torrents::QueueLimits::from_config(
            self.queue.max_active_downloads,
            self.queue.max_active_seeds,
        )
    }

    /// Whether to map the peer ports on the home router (`[net]
    /// port_mapping`, default true).
    pub fn port_mapping_enabled(&self) -> bool {
        self.net.port_mapping.unwrap_or(true)
    }

    /// The network interface all BitTorrent traffic is bound to: `flag`
    /// (`--interface`) if given, else `[net] interface`; none by default.
    pub fn interface(&self, flag: Option<&str>) -> Result<Option<String>> {
        let Some(name) = flag.or(self.net.interface.as_deref()) else {
            return Ok(None);
        };
        check_interface_name(name).map_err(|e| anyhow::anyhow!("interface: {e}"))?;
        Ok(Some(name.to_string()))
    }

    /// The encryption mode: `flag` (`--encryption`) if given, else the
    /// file's `encryption` (default `prefer`).
    pub fn encryption(
        &self,
        flag: Option<capwise_engine::Encryption>,
    ) -> Result<capwise_engine::Encryption> {
        if let Some(mode) = flag {
            return Ok(mode);
        }
        match &self.encryption {
            None => Ok(capwise_engine::Encryption::default()),
            Some(name) => name
                .parse()
                .map_err(|e: String| anyhow::anyhow!("encryption: {e}")),
        }
    }

    /// The carriers to use: `flag` (`--transports`) if given, else the
    /// file's `transports`, else TCP then uTP (`Transports::default`).
    pub fn transports(
        &self,
        flag: Option<&capwise_engine::transport::Transports>,
    ) -> Result<capwise_engine::transport::Transports> {
        use capwise_engine::transport::{Carrier, Transports};
        if let Some(t) = flag {
            return Ok(t.clone());
        }
        let Some(names) = &self.transports else {
            return Ok(Transports::default());
        };
        let carriers = names
            .iter()
            .map(|n| n.parse::<Carrier>())
            .collect::<Result<Vec<_>, _>>()
            .and_then(Transports::new)
            .map_err(|e| anyhow::anyhow!("transports: {e}"))?;
        Ok(carriers)
    }

    /// Whether PEX runs: `pex.enabled` (default true), unless `no_pex`
    /// (`--no-pex`) says no.
    pub fn pex_enabled(&self, no_pex: bool) -> bool {
        !no_pex && self.pex.enabled.unwrap_or(true)
    }

    /// Where the API listens.
    pub fn api_address(&self) -> SocketAddr {
        self.api
            .address
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)))
    }
}

/// The default download directory: the XDG download dir, else ~/Downloads,
/// else `downloads` in the state directory (a system service has no home).
pub fn default_download_dir(state_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DOWNLOAD_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) if Path::new(&home).is_dir() && home != "/" => {
            PathBuf::from(home).join("Downloads")
        }
        _ => state_dir.join("downloads"),
    }
}

/// Whether `name` can name a Linux network interface (what the kernel takes
/// for `SO_BINDTODEVICE`): 1 to 15 bytes, no `/`, `:`, whitespace or NUL,
/// not `.` or `..`. Whether such a device exists is another matter: it may
/// come later (a VPN not up yet).
pub fn check_interface_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if name.len() > 15 {
        return Err(format!(
            "{name:?} is longer than an interface name can be (15 bytes)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not an interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{name:?} cannot name an interface (it has {c:?})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pex_is_on_unless_the_file_or_no_pex_says_no() {
        assert!(parse("").unwrap().config.pex_enabled(false));
        assert!(!parse("").unwrap().config.pex_enabled(true));
        let off = parse("[pex]\nenabled = false\n").unwrap().config;
        assert!(!off.pex_enabled(false));
        let on = parse("[pex]\nenabled = true\n").unwrap().config;
        assert!(on.pex_enabled(false) && !on.pex_enabled(true));
        // A typo there is a warning with the key meant, not a refusal.
        let typo = parse("[pex]\nenabeld = false\n").unwrap().config;
        assert!(
            typo.warnings[0].contains("`enabled`"),
            "{:?}",
            typo.warnings
        );
        assert!(parse("[pex]\nenabled = \"no\"\n").is_err());
    }

    #[test]
    fn no_pex_is_taken_by_get_seed_and_run() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let no_pex = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Get(a) => a.transfer.discovery.no_pex,
            Command::Seed(a) => a.transfer.discovery.no_pex,
            Command::Run(a) => a.discovery.no_pex,
            other => panic!("{other:?}"),
        };
        assert!(no_pex(&["capwise", "get", "x.torrent", "--no-pex"]));
        assert!(!no_pex(&["capwise", "get", "x.torrent"]));
        assert!(no_pex(&["capwise", "seed", "x.torrent", "--no-pex"]));
        assert!(no_pex(&["capwise", "run", "--no-pex"]));
        assert!(!no_pex(&["capwise", "run"]));
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let loaded = parse("").unwrap();
        assert!(loaded.config.warnings.is_empty());
        assert_eq!(loaded.config.limits().unwrap(), RateLimits::default());
        assert_eq!(loaded.config.settings().unwrap(), Settings::default());
        assert!(loaded.config.api_address().ip().is_loopback());
        assert_eq!(loaded.config.api_address().port(), DEFAULT_API_PORT);
    }

    #[test]
    fn unknown_keys_outside_policy_and_limits_are_warnings_with_a_suggestion() {
        let loaded = parse("listn = \"0.0.0.0:1\"\n[api]\nadress = \"127.0.0.1:0\"\n[limits.wan]\ndown = \"1MB/s\"\n").unwrap();
        assert_eq!(
            loaded.config.warnings.len(),
            2,
            "{:?}",
            loaded.config.warnings
        );
        assert!(
            loaded.config.warnings[0].contains("`listn`")
                && loaded.config.warnings[0].contains("`listen`")
        );
        assert!(loaded.config.warnings[1].contains("did you mean `address`"));
        assert_eq!(loaded.config.limits().unwrap().wan_down, Some(1_000_000));
        let loaded = parse("colour = \"blue\"\n").unwrap();
        assert!(
            !loaded.config.warnings[0].contains("did you mean"),
            "{:?}",
            loaded.config.warnings
        );
    }

    #[test]
    fn unknown_keys_in_policy_and_limits_are_refused_with_the_closest_key() {
        for (text, key, closest) in [
            (
                "[policy]\nupload_on_metred = true\n",
                "policy.upload_on_metred",
                Some("upload_on_metered"),
            ),
            ("[limits]\nupp = \"1MB/s\"\n", "limits.upp", Some("up")),
            (
                "[limits.wan]\ndonw = \"1MB/s\"\n",
                "limits.wan.donw",
                Some("down"),
            ),
            ("[policy]\nwhatever = 1\n", "policy.whatever", None),
            (
                "[polcy]\nupload_on_metered = true\n",
                "polcy",
                Some("policy"),
            ),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(&format!("unknown key `{key}`")), "{e}");
            assert!(!e.contains("  "), "{e}");
            match closest {
                Some(k) => assert!(e.contains(&format!("did you mean `{k}`?")), "{e}"),
                None => assert!(!e.contains("did you mean"), "{e}"),
            }
        }
    }

    #[test]
    fn on_complete_needs_an_absolute_program_and_incomplete_dir_an_absolute_path() {
        let e = parse("on_complete = []\n").unwrap_err().to_string();
        assert!(e.contains("give the program"), "{e}");
        let e = parse("on_complete = [\"notify-send\", \"done\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("absolute path") && e.contains("without a shell"),
            "{e}"
        );
        let ok = parse("on_complete = [\"/usr/bin/notify-send\", \"done\"]\n").unwrap();
        assert_eq!(ok.config.on_complete.unwrap().len(), 2);
        let e = parse("incomplete_dir = \"part\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("incomplete_dir") && e.contains("absolute"),
            "{e}"
        );
    }

    #[test]
    fn a_relative_download_dir_is_refused() {
        let e = parse("download_dir = \"Downloads\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("download_dir") && e.contains("absolute"), "{e}");
        assert!(parse("download_dir = \"/srv/data\"\n").is_ok());
        // The working directory of the service is nobody's choice either.
        let e = parse("network_file = \"rel.toml\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("network_file") && e.contains("absolute"), "{e}");
    }

    #[test]
    fn bad_values_are_errors_that_name_the_key() {
        let e = parse("[limits]\nup = \"fast\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("limits.up"), "{e:#}");
        let e = parse("[policy]\nnear_cap_percent = 0\n").unwrap_err();
        assert!(format!("{e:#}").contains("near_cap_percent"), "{e:#}");
        assert!(parse("listen = 5\n").is_err());
    }

    #[test]
    fn encryption_is_preferred_unless_the_file_or_the_flag_says_otherwise() {
        use capwise_engine::Encryption;
        let plain = parse("").unwrap().config;
        assert_eq!(plain.encryption(None).unwrap(), Encryption::Prefer);
        let file = parse("encryption = \"require\"\n").unwrap().config;
        assert_eq!(file.encryption(None).unwrap(), Encryption::Require);
        assert_eq!(
            file.encryption(Some(Encryption::Allow)).unwrap(),
            Encryption::Allow,
            "the flag wins"
        );
        let typo = parse("encryption = \"requird\"\n").unwrap().config;
        let err = typo.encryption(None).unwrap_err().to_string();
        assert!(err.contains("allow, prefer or require"), "{err}");
    }

    #[test]
    fn the_interface_comes_from_the_flag_then_the_file_and_must_be_a_name() {
        assert_eq!(parse("").unwrap().config.interface(None).unwrap(), None);
        let file = parse("[net]\ninterface = \"wg0\"\n").unwrap().config;
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
        assert_eq!(file.interface(None).unwrap().as_deref(), Some("wg0"));
        assert_eq!(
            file.interface(Some("tun1")).unwrap().as_deref(),
            Some("tun1"),
            "the flag wins"
        );
        for bad in ["", "a/b", "eth0:1", "wg 0", "sixteen-bytes-xx", ".."] {
            let err = file.interface(Some(bad)).unwrap_err().to_string();
            assert!(err.starts_with("interface: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn transports_come_from_the_flag_then_the_file_then_the_default() {
        use capwise_engine::transport::{Carrier, Transports};
        assert_eq!(
            parse("").unwrap().config.transports(None).unwrap(),
            Transports::default()
        );
        let file = parse("transports = [\"tcp\", \"utp\"]\n").unwrap().config;
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
        let t = file.transports(None).unwrap();
        assert_eq!(t.order(), &[Carrier::Tcp, Carrier::Utp]);
        let flag: Transports = "utp".parse().unwrap();
        assert_eq!(file.transports(Some(&flag)).unwrap(), flag, "the flag wins");
        let bad = parse("transports = [\"tcp\", \"sctp\"]\n").unwrap().config;
        let err = bad.transports(None).unwrap_err().to_string();
        assert!(
            err.contains("sctp") && err.contains("tcp, utp and quic"),
            "{err}"
        );
        let quic = parse("transports = [\"tcp\", \"quic\"]\n").unwrap().config;
        assert!(quic.transports(None).unwrap().uses(Carrier::Quic));
        let none = parse("transports = []\n").unwrap().config;
        assert!(none.transports(None).is_err());
    }

    #[test]
    fn lsd_is_on_unless_the_file_or_the_flag_says_otherwise() {
        assert!(parse("").unwrap().config.lsd_enabled(false));
        assert!(!parse("").unwrap().config.lsd_enabled(true));
        let off = parse("[lsd]\nenabled = false\n").unwrap().config;
        assert!(!off.lsd_enabled(false));
        let on = parse("[lsd]\nenabled = true\n").unwrap().config;
        assert!(!on.lsd_enabled(true), "--no-lsd wins");
        let typo = parse("[lsd]\nenabeld = false\n").unwrap().config;
        assert!(
            typo.warnings[0].contains("did you mean `enabled`"),
            "{:?}",
            typo.warnings
        );
        assert!(parse("[lsd]\nenabled = \"no\"\n").is_err());
    }

    #[test]
    fn the_site_wan_rate_is_a_rate() {
        let c = parse("[site]\nwan_rate = \"20Mbit/s\"\n").unwrap().config;
        assert_eq!(c.site_wan_rate().unwrap(), Some(2_500_000));
        assert_eq!(parse("").unwrap().config.site_wan_rate().unwrap(), None);
        for bad in ["fast", "0MB/s", "20MB"] {
            let e = format!(
                "{:#}",
                parse(&format!("[site]\nwan_rate = \"{bad}\"\n")).unwrap_err()
            );
            assert!(e.contains("site.wan_rate"), "{bad}: {e}");
        }
    }

    #[test]
    fn site_prefixes_are_parsed_and_a_bad_one_is_named() {
        assert!(parse("")
            .unwrap()
            .config
            .site_prefixes()
            .unwrap()
            .is_empty());
        let c = parse("[site]\nprefixes = [\"10.20.0.0/16\", \"fd00:20::/48\"]\n")
            .unwrap()
            .config;
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let p = c.site_prefixes().unwrap();
        assert_eq!(p.len(), 2);
        let classifier = c.classifier().unwrap();
        use capwise_engine::hooks::{Classifier, PeerClass};
        assert_eq!(
            classifier.classify("10.20.77.1".parse().unwrap()),
            PeerClass::Lan
        );
        for bad in ["10.20.0.0", "10.20.0.0/33", "branch", "10.300.0.0/16"] {
            let e = parse(&format!("[site]\nprefixes = [\"{bad}\"]\n")).unwrap_err();
            let e = format!("{e:#}");
            assert!(
                e.contains("site.prefixes") && e.contains(bad) && e.contains("10.20.0.0/16"),
                "{e}"
            );
        }
        assert!(
            parse("[site]\nprefixes = \"10.20.0.0/16\"\n").is_err(),
            "a list"
        );
    }

    #[test]
    fn policy_keys_change_the_defaults() {
        let loaded =
            parse("[policy]\nupload_on_metered = true\nmetered_download_rate = \"500KB/s\"\n")
                .unwrap();
        let s = loaded.config.settings().unwrap();
        assert!(s.upload_on_metered);
        assert_eq!(s.metered_download_rate, Some(500_000));
        assert!(!s.background_on_metered);
    }

    #[test]
    fn power_keys_change_the_battery_defaults() {
        let s = parse("").unwrap().config.settings().unwrap();
        assert!(!s.wan_uploads_on_battery);
        assert_eq!(s.background_below_percent, 30);
        let c = parse("[power]\nwan_uploads_on_battery = true\nbackground_below_percent = 15\n")
            .unwrap()
            .config;
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let s = c.settings().unwrap();
        assert!(s.wan_uploads_on_battery);
        assert_eq!(s.background_below_percent, 15);
        let e = format!(
            "{:#}",
            parse("[power]\nbackground_below_percent = 101\n").unwrap_err()
        );
        assert!(e.contains("power.background_below_percent"), "{e}");
        let typo = parse("[power]\nwan_uploads_on_batery = true\n")
            .unwrap()
            .config;
        assert!(
            typo.warnings[0].contains("did you mean `wan_uploads_on_battery`"),
            "{:?}",
            typo.warnings
        );
    }
}
