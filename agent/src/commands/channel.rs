//! `capwise channel create | publish | list | token`: the publisher's side.
//! The key stays in `<state dir>/channels/NAME.key` (0600), the membership
//! secret beside it in `NAME.member` (0600, `membership.rs`); publishing
//! writes private .torrent files and `manifest.json` (with the membership
//! public key) into the output directory a web server serves, and has a
//! running agent seed the items, requiring membership of their peers.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use capwise_channel::{manifest::Manifest, ChannelKey, Item, Retired, Trust};

use crate::api_types::{AddRequest, TorrentView};
use crate::cli_channel::{
    ChannelArgs, ChannelCommand, ChannelCreateArgs, ChannelListArgs, ChannelPublishArgs,
    ChannelStatusArgs,
};

#[path = "channel_membership.rs"]
mod membership;

/// The manifest's file name in the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Retired entries kept across publications (the oldest are dropped).
const MAX_RETIRED: usize = 1024;

/// Runs a `capwise channel` subcommand.
pub async fn run(args: &ChannelArgs) -> Result<()> {
    match &args.command {
        ChannelCommand::Create(a) => create(a),
        ChannelCommand::Publish(a) => publish(a).await,
        ChannelCommand::List(a) => list(a).await,
        ChannelCommand::Status(a) => status(a),
        ChannelCommand::Token(a) => membership::token(a),
    }
}

fn keys_dir(state_dir: Option<&Path>) -> PathBuf {
    crate::state_db::state_dir(state_dir).join("channels")
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!("channel name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'");
    }
    Ok(())
}

fn key_path(state_dir: Option<&Path>, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    Ok(keys_dir(state_dir).join(format!("{name}.key")))
}

fn load_key(state_dir: Option<&Path>, name: &str) -> Result<ChannelKey> {
    let path = key_path(state_dir, name)?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no channel {name:?} here ({}); make it with `capwise channel create {name}`",
            path.display()
        )
    })?;
    ChannelKey::from_hex(&text).with_context(|| format!("cannot read {}", path.display()))
}

/// `capwise channel create NAME`
fn create(args: &ChannelCreateArgs) -> Result<()> {
    let path = key_path(args.state_dir.as_deref(), &args.name)?;
    crate::state_db::create_state_dir(&crate::state_db::state_dir(args.state_dir.as_deref()))?;
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(keys_dir(args.state_dir.as_deref()))
            .context("cannot create the channels directory")?;
    }
    let key = new_key_file(&path)
        .with_context(|| format!("cannot create {} (does the channel exist?)", path.display()))?;
    membership::load_or_create(args.state_dir.as_deref(), &args.name)?;
    println!("{}", key.public());
    Ok(())
}

/// A new ed25519 key from the OS's randomness, written to `path` (0600)
/// as hex. Never overwrites a key: a channel's subscribers pin it, and a
/// machine is known at its publishers by its agent key.
pub fn new_key_file(path: &Path) -> Result<ChannelKey> {
    Ok(ChannelKey::from_seed(new_secret_file(path)?))
}

/// 32 random bytes from the OS, written to a new file at `path` (0600) as
/// hex: the seed of an ed25519 key (a channel's, an agent's, a channel's
/// membership secret). Fails if the file exists.
pub fn new_secret_file(path: &Path) -> std::io::Result<[u8; 32]> {
    use rand::RngCore as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{}", hex::encode(seed)).and_then(|()| file.sync_all())?;
    Ok(seed)
}

/// Whether this machine publishes the channel whose public key is
/// `channel` (hex): one of its keys in `<state dir>/channels`.
pub fn publishes(state_dir: &Path, channel: &str) -> bool {
    published_channels(state_dir)
        .iter()
        .any(|(_, key)| key.eq_ignore_ascii_case(channel))
}

/// The channels published from `state_dir`: (name, public key hex), by name.
fn published_channels(state_dir: &Path) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(keys_dir(Some(state_dir))) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if let Ok(key) = load_key(Some(state_dir), name) {
                rows.push((name.to_owned(), key.public().to_hex()));
            }
        }
    }
    rows.sort();
    rows
}

/// `capwise channel list`: the channels published from here, then the
/// subscriptions (from the running agent, or as the database left them).
async fn list(args: &ChannelListArgs) -> Result<()> {
    let rows = published_channels(&crate::state_db::state_dir(args.state_dir.as_deref()));
    let subscriptions = crate::commands::subscribe::list(args.state_dir.as_deref()).await?;
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(name, key)| serde_json::json!({"name": name, "key": key}))
            .collect();
        crate::commands::output::print_json(&serde_json::json!({
            "channels": list,
            "subscriptions": subscriptions,
        }));
    } else {
        if rows.is_empty() {
            println!("no channels published from here");
        } else {
            for (name, key) in rows {
                println!("{name}\t{key}");
            }
        }
        crate::commands::subscribe::print(&subscriptions);
    }
    Ok(())
}

/// The last manifest published from here, unsigned (this machine's own record).
fn published_path(state_dir: Option<&Path>, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    Ok(keys_dir(state_dir).join(format!("{name}.published.json")))
}

/// `capwise channel status NAME`
fn status(args: &ChannelStatusArgs) -> Result<()> {
    let state_dir = crate::state_db::state_dir(args.state_dir.as_deref());
    let key = load_key(Some(&state_dir), &args.name)?;
    let path = published_path(Some(&state_dir), &args.name)?;
    let published: Option<Manifest> = match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let store =
        crate::delivery::store::DeliveryStore::open(&state_dir.join(crate::state_db::DB_FILE))?;
    let kept = store.for_channel(&key.public().to_hex())?;
    let rows: Vec<MachineStatus> = kept
        .iter()
        .map(|k| MachineStatus::of(&k.report, k.received_at, published.as_ref()))
        .collect();
    if args.json {
        let list: Vec<_> = rows.iter().map(MachineStatus::json).collect();
        crate::commands::output::print_json(&serde_json::json!({
            "channel": args.name,
            "key": key.public().to_hex(),
            "sequence": published.as_ref().map(|m| m.sequence),
            "machines": list,
        }));
        return Ok(());
    }
    match &published {
        Some(m) => println!(
            "channel {}: sequence {} published, {} items; {} machines reported",
            args.name,
            m.sequence,
            m.items.len(),
            rows.len()
        ),
        None => println!(
            "channel {}: nothing published from here yet; {} machines reported",
            args.name,
            rows.len()
        ),
    }
    if rows.is_empty() {
        println!("no machine has reported yet (subscribers report to the manifest's --report-url)");
        return Ok(());
    }
    for row in &rows {
        let version = match row.sequence {
            Some(s) if published.as_ref().is_some_and(|m| s < m.sequence) => {
                format!("{s} (behind)")
            }
            Some(s) => s.to_string(),
            None => "none yet".into(),
        };
        let missing = if row.missing.is_empty() {
            "has everything".to_string()
        } else {
            format!("missing {}", row.missing.join(", "))
        };
        let at = crate::commands::output::local_clock(capwise_policy::time::Timestamp(
            i64::try_from(row.received_at).unwrap_or(i64::MAX),
        ));
        println!(
            "{}\t{}\tversion {version}\t{missing}\treported at {at}{}",
            row.site,
            row.machine,
            row.problem
                .as_deref()
                .map(|p| format!("\tproblem: {p}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// One machine's line in `channel status`.
struct MachineStatus {
    machine: String,
    agent: String,
    site: String,
    sequence: Option<u64>,
    received_at: u64,
    /// The published items it does not hold in full, with how much it has.
    missing: Vec<String>,
    problem: Option<String>,
}

impl MachineStatus {
    fn of(
        report: &capwise_channel::report::Report,
        received_at: u64,
        published: Option<&Manifest>,
    ) -> Self {
        let missing = match published {
            Some(m) => m
                .items
                .iter()
                .filter_map(|item| {
                    let held = report.items.iter().find(|h| h.info_hash == item.info_hash);
                    match held {
                        Some(h) if h.complete() => None,
                        Some(h) if item.size > 0 => Some(format!(
                            "{} ({}%)",
                            item.name,
                            h.have.saturating_mul(100) / item.size
                        )),
                        _ => Some(item.name.clone()),
                    }
                })
                .collect(),
            None => report
                .items
                .iter()
                .filter(|h| !h.complete())
                .map(|h| h.name.clone())
                .collect(),
        };
        MachineStatus {
            machine: report.machine.clone(),
            agent: report.agent.clone(),
            site: report.site.clone(),
            sequence: report.sequence,
            received_at,
            missing,
            problem: report.problem.clone(),
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "machine": self.machine,
            "agent": self.agent,
            "site": self.site,
            "sequence": self.sequence,
            "received_at": self.received_at,
            "missing": self.missing,
            "problem": self.problem,
        })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The base URL as a directory (ends with '/'), checked.
fn base_url(text: &str) -> Result<capwise_channel::url::Url> {
    let mut url = capwise_channel::url::Url::parse(text)
        .with_context(|| format!("--web-seed {text:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("--web-seed {text:?}: an http:// or https:// URL with a host");
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// The previous manifest in `out`, if any, checked with our own key (its
/// expiry does not matter here: we are replacing it).
fn previous(
    out: &Path,
    key: &ChannelKey,
    base: &capwise_channel::url::Url,
) -> Result<Option<Manifest>> {
    let path = out.join(MANIFEST_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let public = key.public();
    let manifest_url = base.join(MANIFEST_FILE)?;
    let manifest = capwise_channel::verify(
        &bytes,
        &Trust {
            key: &public,
            manifest_url: &manifest_url,
            last_sequence: None,
            now: 0,
        },
    )
    .with_context(|| {
        format!(
            "{} is not a manifest of this channel; move it away to start afresh",
            path.display()
        )
    })?;
    Ok(Some(manifest))
}

/// Copies `from` (a file or a directory tree, symlinks skipped) to `to`,
/// replacing what is there.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta =
        std::fs::metadata(from).with_context(|| format!("cannot read {}", from.display()))?;
    if meta.is_dir() {
        if to.is_file() {
            std::fs::remove_file(to)?;
        }
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_type()?.is_symlink() {
                continue;
            }
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else {
        if to.is_dir() {
            std::fs::remove_dir_all(to)?;
        }
        std::fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// One item made: its manifest entry, its .torrent and where its data is.
struct Made {
    item: Item,
    torrent: Vec<u8>,
    data_parent: PathBuf,
}

fn make_item(
    path: &Path,
    args: &ChannelPublishArgs,
    out: &Path,
    base: Option<&capwise_channel::url::Url>,
) -> Result<Made> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: needs a UTF-8 file name", path.display()))?
        .to_owned();
    capwise_channel::checks::item_name(&name)?;
    let (source, data_parent, web_seeds): (PathBuf, PathBuf, Vec<String>) = match base {
        Some(base) => {
            let placed = out.join(&name);
            let same = std::fs::canonicalize(path).ok() == std::fs::canonicalize(&placed).ok();
            if !same {
                copy_tree(path, &placed)?;
            }
            // BEP 19: a URL ending in '/' gets the torrent's name appended.
            (placed, out.to_owned(), vec![base.to_string()])
        }
        None => {
            let absolute = std::path::absolute(path)?;
            let parent = absolute
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"));
            (absolute, parent, Vec::new())
        }
    };
    let opts = capwise_engine::create::CreateOptions {
        path: source,
        trackers: args.trackers.clone(),
        web_seeds,
        // BEP 27: the HQ tracker only, no DHT; LSD and PEX among proven
        // members only (engine/proto/src/privacy.rs). Deterministic, so an
        // unchanged file keeps its info-hash.
        private: true,
        ..Default::default()
    };
    let torrent = capwise_engine::create::create_torrent(&opts)
        .with_context(|| format!("cannot make a torrent of {}", path.display()))?;
    let metainfo = capwise_engine::metainfo::Metainfo::from_bytes(&torrent)
        .context("the torrent made does not parse back")?;
    Ok(Made {
        item: Item {
            info_hash: metainfo.info_hash.to_string(),
            name: name.clone(),
            size: metainfo.info.total_length,
            torrent: format!("{name}.torrent"),
            web_seeds: opts.web_seeds,
        },
        torrent,
        data_parent,
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// web server never serves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// `capwise channel publish NAME PATH... --out DIR`
async fn publish(args: &ChannelPublishArgs) -> Result<()> {
    if let Some(bad) = args
        .trackers
        .iter()
        .find(|t| !crate::looks_like_tracker_url(t))
    {
        bail!("'{bad}' is not a tracker URL (http://, https:// or udp:// with a host)");
    }
    let key = load_key(args.state_dir.as_deref(), &args.name)?;
    // A channel made before membership existed gets its secret now.
    let member = membership::load_or_create(args.state_dir.as_deref(), &args.name)?;
    let base = args.web_seed.as_deref().map(base_url).transpose()?;
    if let Some(report) = &args.report_url {
        match &base {
            // Subscribers refuse a report URL on another host than the manifest's.
            Some(base) => {
                capwise_channel::checks::report_url(report, &base.join(MANIFEST_FILE)?)?;
            }
            None => bail!("--report-url needs --web-seed: it must be on the web server's host"),
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // For reading back our own manifest: a stand-in host when there is no web seed.
    let check_base = match &base {
        Some(base) => base.clone(),
        None => capwise_channel::url::Url::parse("http://publisher.invalid/")?,
    };
    let previous = previous(&args.out, &key, &check_base)?;

    let mut made = Vec::new();
    for path in &args.paths {
        made.push(make_item(path, args, &args.out, base.as_ref())?);
    }
    let offered: std::collections::HashSet<&str> =
        made.iter().map(|m| m.item.info_hash.as_str()).collect();
    // Whatever the last publication offered or retired and this one does
    // not offer stays retired, newest first.
    let mut retired: Vec<Retired> = Vec::new();
    if let Some(prev) = &previous {
        let old = prev.items.iter().map(|i| &i.info_hash);
        let old_retired = prev.retired.iter().map(|r| &r.info_hash);
        for hash in old.chain(old_retired) {
            if !offered.contains(hash.as_str()) && !retired.iter().any(|r| &r.info_hash == hash) {
                retired.push(Retired {
                    info_hash: hash.clone(),
                    delete_data: false,
                });
            }
        }
    }
    retired.truncate(MAX_RETIRED);

    let published = now();
    let manifest = Manifest {
        channel: key.public().to_hex(),
        name: args.name.clone(),
        sequence: previous
            .as_ref()
            .map_or(1, |p| p.sequence.saturating_add(1)),
        published,
        expires: published.saturating_add(args.valid_days.saturating_mul(86_400)),
        items: made.iter().map(|m| m.item.clone()).collect(),
        retired,
        report: args.report_url.clone(),
        membership: Some(membership::public_hex(&member)),
    };
    for m in &made {
        write_atomically(&args.out.join(&m.item.torrent), &m.torrent)?;
    }
    let bytes = manifest.sign(&key)?;
    write_atomically(&args.out.join(MANIFEST_FILE), &bytes)?;
    // What `channel status` compares the machines' reports with.
    write_atomically(
        &published_path(args.state_dir.as_deref(), &args.name)?,
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    println!(
        "channel {} sequence {} ({} items, {} retired) in {}",
        args.name,
        manifest.sequence,
        manifest.items.len(),
        manifest.retired.len(),
        args.out.join(MANIFEST_FILE).display()
    );
    for m in &made {
        println!("{} {}", m.item.info_hash, m.item.name);
    }
    seed_through_agent(args.state_dir.as_deref(), &made, &member).await;
    Ok(())
}

/// Has the running agent (if any) seed the items; an item it already has
/// is fine. Failures are warnings: the publication itself is done.
async fn seed_through_agent(
    state_dir: Option<&Path>,
    made: &[Made],
    member: &capwise_engine::ext::member::MembershipKey,
) {
    let dir = crate::state_db::state_dir(state_dir);
    let Ok(client) = crate::client::AgentClient::connect(&dir) else {
        eprintln!("note: no agent is running here; start one and `capwise add` the .torrent files to seed them");
        return;
    };
    for m in made {
        let Some(download_dir) = std::path::absolute(&m.data_parent)
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned))
        else {
            eprintln!(
                "warning: {}: the data directory's name is not UTF-8",
                m.item.name
            );
            continue;
        };
        let request = AddRequest {
            torrent: Some(base64::engine::general_purpose::STANDARD.encode(&m.torrent)),
            download_dir: Some(download_dir),
            member_token: Some(member.to_hex()),
            ..AddRequest::default()
        };
        let added: Result<TorrentView> = client.post("/v1/torrents", &request).await;
        if let Err(error) = added {
            let text = format!("{error:#}");
            if !text.contains("already") {
                eprintln!("warning: the agent did not take {}: {text}", m.item.name);
            }
        }
    }
}
