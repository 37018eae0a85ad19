//! The JSON bodies of the local API, shared by the daemon that serves them
//! and the CLI that sends them. docs/api.md describes them for other programs.

use serde::{Deserialize, Serialize};

/// `GET /v1/agent`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentInfo {
    /// capwise's version.
    pub version: String,
    /// The agent's process id.
    pub pid: u32,
    /// Every stored torrent has been restored.
    pub ready: bool,
    /// Torrents known.
    pub torrents: usize,
    /// Bytes hashed to check existing data since the agent started.
    pub hashed_bytes: u64,
    /// Where peers reach the agent.
    pub listen: String,
    /// The state directory.
    pub state_dir: String,
    /// Where torrents go when added without a directory.
    pub download_dir: String,
    /// Connections to or from addresses on the blocklist refused since
    /// the agent started.
    #[serde(default)]
    pub blocked_connections: u64,
}

/// `POST /v1/torrents`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    /// The .torrent file, base64 (standard alphabet); or give `magnet`.
    #[serde(default)]
    pub torrent: Option<String>,
    /// A magnet link, instead of `torrent`.
    #[serde(default)]
    pub magnet: Option<String>,
    /// Absolute directory for the data; default: the agent's download directory.
    #[serde(default)]
    pub download_dir: Option<String>,
    /// Add without starting.
    #[serde(default)]
    pub paused: bool,
    /// Background work: waits on metered networks.
    #[serde(default)]
    pub background: bool,
    /// A channel's membership token (64 hex digits): every peer must prove
    /// membership before it gets anything of this torrent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_token: Option<String>,
    /// Globs of the files to download (paths inside the torrent; `*` also
    /// crosses `/`); all files when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    /// Globs of files not to download.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Download pieces in order (media), each file's first and last first.
    #[serde(default)]
    pub sequential: bool,
}

/// One file of a torrent (`GET /v1/torrents/{id}/files`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileView {
    /// Its number, for `capwise files ID --skip N`.
    pub index: usize,
    /// Its path inside the torrent.
    pub path: String,
    /// Bytes in all.
    pub length: u64,
    /// Bytes in verified pieces.
    pub bytes_have: u64,
    /// skip, normal or high.
    pub priority: String,
}

/// A torrent's files and whether it downloads in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FilesView {
    /// The torrent's id.
    pub id: String,
    /// Pieces in order (first and last of each file first).
    pub sequential: bool,
    /// Its files (BEP 47 pad files left out), by index.
    pub files: Vec<FileView>,
}

/// `POST /v1/torrents/{id}/files`: what to change; every list may be empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FilesChange {
    /// Files not to download (any data already there stays).
    #[serde(default)]
    pub skip: Vec<usize>,
    /// Files to download again, at normal priority.
    #[serde(default)]
    pub want: Vec<usize>,
    /// Files with a priority word each (skip, normal, high).
    #[serde(default)]
    pub priority: Vec<(usize, String)>,
    /// Sequential mode on or off; unchanged when absent.
    #[serde(default)]
    pub sequential: Option<bool>,
}

/// A torrent as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TorrentView {
    /// Info-hash, 40 lowercase hex digits.
    pub id: String,
    /// The torrent's name.
    pub name: String,
    /// checking, downloading, seeding, paused, waiting, queued, finished, moving or error.
    pub state: String,
    /// Why it waits or failed, in words.
    pub reason: Option<String>,
    /// Bytes verified.
    pub bytes_have: u64,
    /// Bytes in all.
    pub total_length: u64,
    /// Bytes in the pieces of wanted files (`total_length` unless files are
    /// skipped): progress is `wanted_have` of it.
    #[serde(default)]
    pub wanted_length: u64,
    /// Bytes verified among those.
    #[serde(default)]
    pub wanted_have: u64,
    /// The torrent's own rate limits (`capwise set`), bytes per second;
    /// `null`: none (the global limits and the policy still apply).
    #[serde(default)]
    pub limits: Limits,
    /// Pieces verified.
    pub pieces_have: u32,
    /// Pieces in all.
    pub piece_count: u32,
    /// Connected peers.
    pub peers: usize,
    /// The connected peers by where they came from.
    #[serde(default)]
    pub peer_sources: PeerSourceCounts,
    /// Of them, those whose payload is RC4-encrypted (MSE/PE).
    #[serde(default)]
    pub encrypted_peers: usize,
    /// Of them, those over uTP (the rest are over TCP). A background
    /// torrent dials uTP first, so its TCP peers are those without uTP.
    #[serde(default)]
    pub utp_peers: usize,
    /// Payload in, bytes/s.
    pub download_rate: f64,
    /// Payload out, bytes/s.
    pub upload_rate: f64,
    /// Payload received since the agent started.
    pub downloaded: u64,
    /// Payload sent since the agent started.
    pub uploaded: u64,
    /// Where the data lives.
    pub download_dir: String,
    /// Background work.
    pub background: bool,
    /// Seeding goals and lifetime totals.
    #[serde(default)]
    pub seeding: SeedingView,
    /// Its place in the queue, 1 for the first to go (`capwise queue`).
    #[serde(default)]
    pub queue_position: usize,
}

/// Where `capwise queue ID --move` puts a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMove {
    /// First in the queue.
    Top,
    /// One place earlier.
    Up,
    /// One place later.
    Down,
    /// Last in the queue.
    Bottom,
}

impl std::str::FromStr for QueueMove {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "top" => Ok(QueueMove::Top),
            "up" => Ok(QueueMove::Up),
            "down" => Ok(QueueMove::Down),
            "bottom" => Ok(QueueMove::Bottom),
            _ => Err(format!("{text:?}: say top, up, down or bottom")),
        }
    }
}

/// The body of `POST /v1/torrents/{id}/queue`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueChange {
    /// Where it goes.
    #[serde(rename = "move")]
    pub to: QueueMove,
}

/// A torrent's seeding goals and how far it has come, across restarts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct SeedingView {
    /// Uploaded over downloaded (over its size when seeded from data
    /// already here).
    pub ratio: f64,
    /// It stops seeding at this ratio; `null`: no ratio goal.
    pub ratio_goal: Option<f64>,
    /// The ratio goal is the config's `[seeding] ratio`.
    pub ratio_goal_from_config: bool,
    /// Seconds spent seeding (not paused).
    pub seeding_secs: u64,
    /// It stops seeding after this many seconds of it; `null`: no time goal.
    pub seed_time_goal_secs: Option<u64>,
    /// The time goal is the config's `[seeding] seed_time`.
    pub seed_time_goal_from_config: bool,
    /// Payload sent, all runs.
    pub uploaded_total: u64,
    /// Payload received, all runs.
    pub downloaded_total: u64,
}

/// `PUT /v1/torrents/{id}/seeding`: changes the goals it names, each a
/// value (`"2.0"`, `"7d"`), `"none"` (seed without that limit) or
/// `"default"` (the config's).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SeedGoalsChange {
    /// The ratio goal.
    #[serde(default)]
    pub ratio: Option<String>,
    /// The seeding-time goal.
    #[serde(default)]
    pub seed_time: Option<String>,
}

/// Connected peers by where we learnt of them (`capwise_engine::class::PeerSource`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerSourceCounts {
    /// Listed by a tracker.
    pub tracker: usize,
    /// Found in the DHT.
    pub dht: usize,
    /// Learnt from another peer (PEX).
    pub pex: usize,
    /// Heard through local service discovery.
    pub lsd: usize,
    /// They dialled us.
    pub incoming: usize,
    /// Named by the user (`--peer`, a magnet link's `x.pe`).
    pub manual: usize,
}

impl From<capwise_engine::class::PeerSources> for PeerSourceCounts {
    fn from(counts: capwise_engine::class::PeerSources) -> Self {
        use capwise_engine::class::PeerSource;
        PeerSourceCounts {
            tracker: counts.get(PeerSource::Tracker),
            dht: counts.get(PeerSource::Dht),
            pex: counts.get(PeerSource::Pex),
            lsd: counts.get(PeerSource::Lsd),
            incoming: counts.get(PeerSource::Incoming),
            manual: counts.get(PeerSource::Manual),
        }
    }
}

impl PeerSourceCounts {
    /// The non-zero counts in words, `2 tracker, 1 incoming`; empty when
    /// no peer is connected.
    pub fn describe(&self) -> String {
        [
            ("tracker", self.tracker),
            ("dht", self.dht),
            ("pex", self.pex),
            ("lsd", self.lsd),
            ("incoming", self.incoming),
            ("manual", self.manual),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {name}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// `DELETE /v1/torrents/{id}` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RemoveQuery {
    /// Delete the torrent's files too.
    #[serde(default)]
    pub delete_data: bool,
}

/// `GET /v1/limits` answers the user's limits in bytes per second (`null`
/// is unlimited). `PUT /v1/limits` changes only the fields it names; 0
/// removes a limit. Limits persist across restarts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Upload across all peers.
    #[serde(default)]
    pub up: Option<u64>,
    /// Download across all peers.
    #[serde(default)]
    pub down: Option<u64>,
}

/// `GET /v1/why`: the decision in force. `capwise why --json` prints the same
/// shape with or without a running agent ([`crate::commands::why::why_view`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Why {
    /// The reason, as an identifier (Metered, AtCap, ...).
    pub reason: String,
    /// One sentence for a person.
    pub explanation: String,
    /// Uploads to internet (WAN) peers go on.
    pub seeding_wan: bool,
    /// Uploads to LAN peers go on (not counted against a budget).
    pub seeding_lan: bool,
    /// Background torrents may run.
    pub background_allowed: bool,
    /// Per direction and class: "unlimited", "suspended" or a rate.
    pub allowances: serde_json::Value,
    /// Whether traffic now counts against the budget (false in free windows).
    #[serde(default)]
    pub counts_against_budget: bool,
    /// The network, if one is known.
    pub network: Option<serde_json::Value>,
    /// Where the network was learnt from ("NetworkManager", "network file", ...).
    #[serde(default)]
    pub source: String,
    /// The network file is missing (offline until it appears) or invalid
    /// (since when, and the network assumed meanwhile), in words; also the
    /// start of `explanation`.
    #[serde(default)]
    pub source_problem: Option<String>,
    /// What the configuration file had that was ignored (unknown keys), in
    /// words; absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The interface all BitTorrent traffic is bound to (`[net] interface`,
    /// `--interface`), when the agent has one; its problem, when it is down
    /// or missing, is also the start of `explanation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<BoundInterface>,
}

/// The interface traffic is bound to, in [`Why`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BoundInterface {
    /// Its name.
    pub name: String,
    /// "up", "down", "missing", or "stale" (back as a new device the
    /// listening sockets could not follow: a restart is needed).
    pub state: String,
    /// Why no traffic moves, in words; absent while it is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// `POST /v1/subscriptions`: subscribe to a channel's manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// The manifest's URL (http or https).
    pub url: String,
    /// The channel's public key, 64 hex digits: only manifests it signed are accepted.
    pub key: String,
    /// Absolute directory for the items' data; default: the agent's download directory.
    #[serde(default)]
    pub download_dir: Option<String>,
    /// The items are background work (as `capwise add --background`).
    #[serde(default)]
    pub background: bool,
    /// Seconds between polls (2 to 604800; default 900).
    #[serde(default)]
    pub interval_secs: Option<u64>,
    /// The channel's membership token (64 hex digits, `capwise channel
    /// token` at the publisher), for a channel whose swarms admit members only.
    #[serde(default)]
    pub token: Option<String>,
    /// Its WAN window, e.g. `22:00-06:00` or `weekdays 19:00-07:00` (local
    /// time): outside it the items move nothing over the WAN and the
    /// manifest is not polled; LAN sharing goes on.
    #[serde(default)]
    pub wan_window: Option<String>,
}

/// `DELETE /v1/subscriptions` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnsubscribeQuery {
    /// The manifest's URL.
    pub url: String,
    /// Delete the data of the torrents the subscription added.
    #[serde(default)]
    pub delete_data: bool,
}

/// A subscription as the API shows it (`GET /v1/subscriptions`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubscriptionView {
    /// The manifest's URL.
    pub url: String,
    /// The pinned channel key.
    pub key: String,
    /// Where its items go (`null`: the agent's download directory).
    pub download_dir: Option<String>,
    /// Its items are background work.
    pub background: bool,
    /// Seconds between polls.
    pub interval_secs: u64,
    /// The sequence of the last accepted manifest.
    pub last_sequence: Option<u64>,
    /// When it was last polled, Unix seconds.
    pub polled_at: Option<i64>,
    /// pending, accepted, unchanged, refused, failed or waiting.
    pub outcome: String,
    /// The last poll's result in words (a refusal says why).
    pub result: String,
    /// The items the subscription added and holds.
    pub items: Vec<HeldItem>,
    /// Its WAN window (`22:00-06:00`), if it has one.
    #[serde(default)]
    pub wan_window: Option<String>,
    /// While the window holds WAN traffic back, why, in words ("outside
    /// its window 22:00–06:00; next opens at 22:00").
    #[serde(default)]
    pub wan_held: Option<String>,
}

/// An item a subscription holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeldItem {
    /// Its info-hash.
    pub info_hash: String,
    /// Its name.
    pub name: String,
}

/// Every error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub error: String,
}

/// The fewest leading hex digits that name a torrent.
pub const MIN_ID_DIGITS: usize = 4;

/// Checks a torrent id as the CLI and the API take it: the info-hash (40
/// hex digits) or its first 4 or more; returned in lowercase. Anything else
/// (a path, a name, a 100,000-character string) is refused with a sentence
/// that says what an id is, showing at most the first 48 characters given.
pub fn torrent_id(given: &str) -> Result<String, String> {
    const SHOWN: usize = 48;
    let shown: String = if given.chars().count() > SHOWN {
        given.chars().take(SHOWN).chain(['…']).collect()
    } else {
        given.to_string()
    };
    let what = "a torrent id is its info-hash (40 hex digits) or its first 4 or more \
                (`capwise list` shows them)";
    if !given.bytes().all(|b| b.is_ascii_hexdigit()) || given.len() > 40 {
        return Err(format!("'{shown}' is not a torrent id: {what}"));
    }
    if given.len() < MIN_ID_DIGITS {
        return Err(format!(
            "id '{shown}' is too short: give at least {MIN_ID_DIGITS} hex digits ({what})"
        ));
    }
    Ok(given.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torrent_ids_are_4_to_40_hex_digits_and_nothing_else() {
        assert_eq!(torrent_id("C036").unwrap(), "c036");
        let full = "ab".repeat(20);
        assert_eq!(torrent_id(&full).unwrap(), full);
        let short = torrent_id("c03").unwrap_err();
        assert!(
            short.contains("too short") && short.contains("at least 4"),
            "{short}"
        );
        for bad in [
            "f9cb/../c036",
            "c036/../../torrents/f9cb",
            "",
            "xyz1",
            "ab cd",
        ] {
            let e = torrent_id(bad).unwrap_err();
            assert!(
                e.contains("not a torrent id") || e.contains("too short"),
                "{bad}: {e}"
            );
        }
        assert!(torrent_id(&"a".repeat(41)).is_err());
        let long = torrent_id(&"a".repeat(100_000)).unwrap_err();
        assert!(
            long.contains("not a torrent id") && long.len() < 300,
            "{long}"
        );
    }
}

/// `GET /v1/torrents/{id}/peers`: who the torrent talks to now.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TorrentPeers {
    /// The connected peers (none while a magnet fetches its metadata).
    pub peers: Vec<PeerView>,
    /// Web seeds (BEP 19 `url-list`, HTTP servers rather than peers).
    pub web_seeds: WebSeedView,
}

/// `GET /v1/torrents/{id}/trackers`: one tracker's standing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackerView {
    /// Its announce URL.
    pub url: String,
    /// Its tier (BEP 12), 0 first.
    pub tier: usize,
    /// `working` (its last answer came), `error` (the last attempt
    /// failed) or `not contacted` (an earlier tracker answered, or none
    /// was asked yet).
    pub status: String,
    /// When it was last asked, Unix seconds.
    pub last_announce: Option<i64>,
    /// When it last answered, Unix seconds.
    pub last_answer: Option<i64>,
    /// Peers in its last answer.
    pub peers: Option<usize>,
    /// Seeders it reported last.
    pub seeders: Option<u32>,
    /// Leechers it reported last.
    pub leechers: Option<u32>,
    /// Seconds between announces it asked for.
    pub interval_secs: Option<u64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Its last warning message.
    pub warning: Option<String>,
}

impl From<capwise_engine::session::TrackerStatus> for TrackerView {
    fn from(t: capwise_engine::session::TrackerStatus) -> TrackerView {
        let secs = |at: Option<std::time::SystemTime>| {
            at.map(|at| capwise_policy::time::Timestamp::from_system_time(at).0)
        };
        let status = if t.error.is_some() {
            "error"
        } else if t.last_answer.is_some() {
            "working"
        } else {
            "not contacted"
        };
        TrackerView {
            url: t.url,
            tier: t.tier,
            status: status.into(),
            last_announce: secs(t.last_announce),
            last_answer: secs(t.last_answer),
            peers: t.peers,
            seeders: t.seeders,
            leechers: t.leechers,
            interval_secs: t.interval_secs,
            error: t.error,
            warning: t.warning,
        }
    }
}

/// One connected peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerView {
    /// Its address, `ip:port`.
    pub addr: String,
    /// Where we learnt of it: `tracker`, `dht`, `pex`, `lsd`, `incoming`
    /// (it dialled us), `manual` (named by the user, a magnet's `x.pe`).
    pub source: String,
    /// What carries it: `tcp`, `utp` (or `memory`, in tests).
    pub transport: String,
    /// Whether the payload is RC4-encrypted (MSE/PE).
    pub encrypted: bool,
    /// `lan` or `wan` now: only WAN bytes count against a budget.
    pub class: String,
    /// It proved channel membership (a member of the same site channel).
    pub site_member: bool,
    /// Its client and version, from its peer id, when in a known style.
    #[serde(default)]
    pub client: Option<String>,
    /// Payload from it, bytes/s.
    #[serde(default)]
    pub download_rate: f64,
    /// Payload to it, bytes/s.
    #[serde(default)]
    pub upload_rate: f64,
    /// Share of the pieces it has, 0 to 1.
    #[serde(default)]
    pub progress: f64,
    /// As qBittorrent shows them: `D` downloading from it, `d` we want
    /// from it but it chokes us, `U` uploading to it, `u` it wants from us
    /// but we choke it, `S` snubbed, `E` encrypted, `P` uTP, `L` LAN.
    #[serde(default)]
    pub flags: String,
}

/// A torrent's web seeds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebSeedView {
    /// In use.
    pub active: usize,
    /// Given up on (the log says why).
    pub dropped: usize,
    /// Payload bytes of verified pieces they delivered.
    pub bytes: u64,
}

/// The flags column of `capwise peers` (see [`PeerView::flags`]).
fn peer_flags(p: &capwise_engine::session::PeerInfo) -> String {
    let mut f = String::new();
    if let Some(s) = &p.snapshot {
        match (s.we_interested, s.choked_by_peer) {
            (true, false) => f.push('D'),
            (true, true) => f.push('d'),
            _ => {}
        }
        match (s.peer_interested, s.we_choke) {
            (true, false) => f.push('U'),
            (true, true) => f.push('u'),
            _ => {}
        }
        if s.snubbed {
            f.push('S');
        }
    }
    if p.encrypted {
        f.push('E');
    }
    if p.transport == capwise_engine::transport::TransportKind::Utp {
        f.push('P');
    }
    if p.lan {
        f.push('L');
    }
    f
}

impl From<capwise_engine::session::PeerInfo> for PeerView {
    fn from(p: capwise_engine::session::PeerInfo) -> Self {
        use capwise_engine::transport::TransportKind;
        PeerView {
            addr: p.addr.to_string(),
            source: p.source.name().to_string(),
            transport: match p.transport {
                TransportKind::Tcp => "tcp",
                TransportKind::Utp => "utp",
                TransportKind::Quic => "quic",
                TransportKind::Memory => "memory",
                _ => "other",
            }
            .to_string(),
            encrypted: p.encrypted,
            class: if p.lan { "lan" } else { "wan" }.to_string(),
            site_member: p.proven_member,
            client: p.snapshot.as_ref().and_then(|s| s.client.clone()),
            download_rate: p
                .snapshot
                .as_ref()
                .map_or(0.0, |s| crate::units::json_rate(s.download_rate)),
            upload_rate: p
                .snapshot
                .as_ref()
                .map_or(0.0, |s| crate::units::json_rate(s.upload_rate)),
            progress: p.snapshot.as_ref().map_or(0.0, |s| s.progress),
            flags: peer_flags(&p),
        }
    }
}

/// `POST /v1/torrents/{id}/move`: the directory the data goes to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// An absolute directory.
    pub dir: String,
}
