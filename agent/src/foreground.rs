//! `capwise get` and `capwise seed`: one torrent in the foreground, with a
//! progress bar on a terminal and plain lines otherwise.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{
    FileResumeStore, Hooks, Session, SessionConfig, TorrentHandle, TorrentOptions, TorrentState,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::TransferArgs;
use crate::limits::LimitGate;
use crate::paths::default_state_dir;
use crate::policy_gate::PolicyGate;
use crate::policy_runtime::{PolicyOptions, PolicyRuntime};
use crate::units::format_rate;

/// Read a .torrent file (a magnet link is for `get` only: `seed` needs
/// the metadata to check the data against).
pub fn load_torrent(source: &str) -> Result<Metainfo> {
    if source.starts_with("magnet:") {
        let magnet = Magnet::parse(source).context("invalid magnet link")?;
        bail!(
            "seeding needs the torrent's metadata to check the data: pass the .torrent file \
             (or `capwise get` the magnet link for {} first)",
            magnet.info_hash
        );
    }
    let bytes = std::fs::read(source).with_context(|| format!("cannot read {source}"))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{source} is not a usable torrent"))
}

/// The policy a foreground transfer follows: the configuration file's
/// settings and network file, as `capwise run` would use them; a
/// `--network-file` given here wins over the file's.
fn policy_options(
    args: &TransferArgs,
    config: &crate::config::Config,
    state_dir: PathBuf,
) -> Result<PolicyOptions> {
    Ok(PolicyOptions {
        state_dir,
        network_file: crate::network_source::NetworkFile::choose(
            args.network_file.as_deref(),
            config.network_file.as_deref(),
        ),
        settings: config.settings()?,
    })
}

/// The session, its policy, and the state directory's lock they run under
/// (and what follows the interfaces for LSD, to keep while it runs).
async fn start_session(
    args: &TransferArgs,
    command: &str,
) -> Result<(Session, PolicyRuntime, Running)> {
    let state_dir = args.state_dir.clone().unwrap_or_else(default_state_dir);
    crate::state_db::create_state_dir(&state_dir)?;
    // The agent's default state directory is ours too: never both at once.
    let state_lock = crate::lock::lock_state_dir(&state_dir, command)?;
    let file = crate::config::load_warning(args.config.as_deref())?;
    let hooks = Hooks {
        classifier: Arc::new(file.classifier()?),
        ..Hooks::default()
    };
    let policy =
        PolicyRuntime::start(&policy_options(args, &file, state_dir.clone())?, &hooks).await?;
    let limits = LimitGate::new(args.upload_limit, args.download_limit);
    let hooks = Hooks {
        gate: Arc::new(PolicyGate::new(&policy, limits)),
        ..hooks
    };
    let file = crate::config::load(args.config.as_deref())?.config;
    let mut config = SessionConfig {
        listen: args.listen,
        resume: Some(Arc::new(FileResumeStore::new(state_dir.join("resume")))),
        boot_id: capwise_policy::interface_counters::current_boot_id().ok(),
        dht: crate::dht::options(&args.discovery.dht, &file, &state_dir),
        encryption: file.encryption(args.wire.encryption)?,
        transports: file.transports(args.wire.transports.as_ref())?,
        interface: file.interface(args.wire.interface.as_deref())?,
        ..SessionConfig::default()
    };
    let lsd = file.lsd_enabled(args.discovery.no_lsd);
    crate::lsd::configure(&mut config, lsd);
    config.swarm.pex = file.pex_enabled(args.discovery.no_pex);
    let session = match Session::start(config.clone(), hooks.clone()).await {
        Ok(s) => s,
        Err(capwise_engine::Error::Net(e))
            if e.kind() == std::io::ErrorKind::AddrInUse && args.listen.port() == 6881 =>
        {
            tracing::warn!("port 6881 is taken; listening on a free port instead");
            config.listen.set_port(0);
            Session::start(config, hooks).await?
        }
        Err(e) => return Err(e).with_context(|| format!("cannot listen on {}", args.listen)),
    };
    // Detached: it ends with the runtime, when the command exits.
    crate::address_watch::follow(session.clone());
    let lsd = crate::lsd::follow_interfaces(&session, lsd);
    Ok((
        session,
        policy,
        Running {
            _state_lock: state_lock,
            _lsd: lsd,
        },
    ))
}

/// What a foreground session keeps while it runs: the state directory's
/// lock and the LSD interface follower.
pub(crate) struct Running {
    _state_lock: crate::lock::Lock,
    _lsd: crate::lsd::InterfaceFollower,
}

/// Run `get`: download (a magnet link: its metadata first), then seed if asked.
pub async fn get(source: &str, seed_after: bool, args: &TransferArgs) -> Result<()> {
    if source.starts_with("magnet:") {
        let magnet = Magnet::parse(source).context("invalid magnet link")?;
        return get_magnet(magnet, args, seed_after).await;
    }
    let metainfo = load_torrent(source)?;
    run(metainfo, args, seed_after, false, true).await
}

/// `--peer HOST:PORT` values, looked up; one that does not resolve is an error.
pub async fn resolve_peers(peers: &[String]) -> Result<Vec<std::net::SocketAddr>> {
    let mut out = Vec::new();
    for peer in peers {
        let addrs = tokio::net::lookup_host(peer.as_str())
            .await
            .with_context(|| format!("--peer {peer}: not a HOST:PORT that resolves"))?;
        out.extend(addrs);
    }
    Ok(out)
}

/// `get MAGNET`: the metadata from peers (the link's trackers and x.pe,
/// and `--peer`), then the download, as from a .torrent.
async fn get_magnet(magnet: Magnet, args: &TransferArgs, keep_seeding: bool) -> Result<()> {
    let peers = resolve_peers(&args.peers).await?;
    let hash = magnet.info_hash.to_hex();
    let name = magnet.display_name.clone().unwrap_or_else(|| hash.clone());
    let (session, _policy, _state_lock) = start_session(args, "get").await?;
    tracing::info!(listen = %session.local_addr(), info_hash = %hash, "fetching metadata");
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let _data_lock = crate::lock::lock_data(&args.dir, &hash, &name, "get")?;
    let mut handle = session
        .add_magnet(magnet, args.dir.clone(), TorrentOptions::default())
        .with_context(|| format!("cannot add the magnet link for {hash}"))?;
    handle.connect(&peers);
    let outcome = tokio::select! {
        r = follow(&mut handle, &name) => r,
        _ = stop_signal() => {
            session.shutdown().await;
            bail!("interrupted before the download completed");
        }
    };
    if let Err(e) = outcome {
        session.shutdown().await;
        bail!(e);
    }
    if keep_seeding {
        eprintln!("seeding '{}' (Ctrl-C to stop)", handle.name());
        stop_signal().await;
    }
    session.shutdown().await;
    Ok(())
}

/// Run `seed`: verify what is on disk, then seed until stopped. Data that
/// is missing or damaged is refused (a typo in `-d` must not turn into a
/// full download on a metered link) unless `fetch_missing`.
pub async fn seed(
    torrent: &std::path::Path,
    fetch_missing: bool,
    args: &TransferArgs,
) -> Result<()> {
    let metainfo = load_torrent(&torrent.to_string_lossy())?;
    if !fetch_missing {
        missing_data(&metainfo, &args.dir)?;
    }
    run(metainfo, args, true, true, fetch_missing).await
}

/// How many missing or short files `seed`'s refusal names.
const MISSING_NAMED: usize = 3;

/// Refuses, naming what is missing, unless every file of the torrent is in
/// `dir` at its full length (the engine's own paths, read-only).
fn missing_data(metainfo: &Metainfo, dir: &std::path::Path) -> Result<()> {
    let name = &metainfo.info.name;
    let hint =
        "give -d the directory that holds it, or --fetch-missing to download what is missing";
    if !dir.is_dir() {
        bail!(
            "no data to seed: {} is not a directory ({hint})",
            dir.display()
        );
    }
    let storage = capwise_engine::storage::Storage::open_readonly(&metainfo.info, dir)
        .with_context(|| format!("cannot open the data of '{name}' in {}", dir.display()))?;
    let mut missing = Vec::new();
    for (i, file) in metainfo.info.files.iter().enumerate() {
        let Some(path) = storage.file_path(i) else {
            continue;
        };
        match std::fs::metadata(path) {
            Ok(m) if m.len() >= file.length => {}
            Ok(m) => missing.push(format!(
                "{} ({} of {} bytes)",
                path.display(),
                m.len(),
                file.length
            )),
            Err(_) => missing.push(format!("{} (missing)", path.display())),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let count = missing.len();
    let mut named = missing
        .into_iter()
        .take(MISSING_NAMED)
        .collect::<Vec<_>>()
        .join(", ");
    if count > MISSING_NAMED {
        named.push_str(&format!(" and {} more", count - MISSING_NAMED));
    }
    bail!(
        "the data of '{name}' is not all in {}: {named} ({hint})",
        dir.display()
    )
}

async fn run(
    metainfo: Metainfo,
    args: &TransferArgs,
    keep_seeding: bool,
    seed_only: bool,
    fetch_missing: bool,
) -> Result<()> {
    let name = metainfo.info.name.clone();
    let command = if seed_only { "seed" } else { "get" };
    // The policy lives as long as the session; dropping it flushes the ledger.
    let (session, _policy, _state_lock) = start_session(args, command).await?;
    tracing::info!(listen = %session.local_addr(), torrent = %name, info_hash = %metainfo.info_hash, "starting");
    if fetch_missing {
        std::fs::create_dir_all(&args.dir)
            .with_context(|| format!("cannot create {}", args.dir.display()))?;
    }
    // No other process (an agent, another `get`) may write these files meanwhile.
    let _data_lock =
        crate::lock::lock_data(&args.dir, &metainfo.info_hash.to_hex(), &name, command)?;
    // Added paused: checked, but no peer or tracker hears of it before the
    // check's outcome is accepted.
    let mut handle = session
        .add_torrent(
            metainfo,
            args.dir.clone(),
            TorrentOptions {
                paused: true,
                ..TorrentOptions::default()
            },
        )
        .await
        .with_context(|| format!("cannot open the data of '{name}' in {}", args.dir.display()))?;
    let p = handle.progress();
    if seed_only && p.pieces_have < p.piece_count {
        if !fetch_missing {
            session.shutdown().await;
            bail!(
                "{} of {} pieces of '{name}' in {} do not match the torrent (changed or damaged files); \
                 nothing was downloaded (--fetch-missing downloads them)",
                p.piece_count - p.pieces_have,
                p.piece_count,
                args.dir.display()
            );
        }
        tracing::warn!(
            have = p.pieces_have,
            of = p.piece_count,
            "data incomplete; missing pieces will be fetched from peers (--fetch-missing)"
        );
    }
    handle.resume().await;
    handle.connect(&resolve_peers(&args.peers).await?);
    let outcome = tokio::select! {
        r = follow(&mut handle, &name) => r,
        _ = stop_signal() => {
            session.shutdown().await;
            return if seed_only { Ok(()) } else { bail!("interrupted before the download completed") };
        }
    };
    if let Err(e) = outcome {
        session.shutdown().await;
        bail!(e);
    }
    if keep_seeding {
        eprintln!("seeding '{name}' (Ctrl-C to stop)");
        stop_signal().await;
    }
    session.shutdown().await;
    Ok(())
}

/// Show progress until every piece is verified.
async fn follow(handle: &mut TorrentHandle, name: &str) -> Result<(), String> {
    let total = handle.progress().total_length;
    let bar = std::io::stderr().is_terminal().then(|| {
        // SI sizes and the session's own rates (bytes over its last
        // seconds), as every command shows them; `wide_msg` is cut to fit
        // the terminal.
        ProgressBar::new(total)
            .with_style(
                ProgressStyle::with_template(
                    "[{bar:30}] {decimal_bytes}/{decimal_total_bytes} {wide_msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            )
            .with_message(name.to_string())
    });
    let mut last_line = std::time::Instant::now();
    // Milestones get a line of their own when stderr is not a terminal
    // (logs, scripts): when the metadata came and the first piece passed.
    let mut told_metadata = handle.progress().state != TorrentState::FetchingMetadata;
    let mut told_first_piece = handle.progress().pieces_have > 0;
    loop {
        let p = handle.progress();
        if bar.is_none() {
            if !told_metadata && p.state != TorrentState::FetchingMetadata {
                told_metadata = true;
                eprintln!("{name}: metadata received, {} pieces", p.piece_count);
            }
            if !told_first_piece && p.pieces_have > 0 {
                told_first_piece = true;
                eprintln!("{name}: first piece verified");
            }
        }
        if let Some(bar) = &bar {
            // A magnet's size is known once its metadata is.
            bar.set_length(p.total_length);
            bar.set_position(p.bytes_have);
            bar.set_message(format!(
                "down {} up {} {} peers  {name}",
                format_rate(p.download_rate),
                format_rate(p.upload_rate),
                p.peers
            ));
        } else if p.state == TorrentState::FetchingMetadata {
            if last_line.elapsed() >= Duration::from_secs(2) {
                last_line = std::time::Instant::now();
                eprintln!("{name}: fetching metadata, {} peers", p.peers);
            }
        } else if last_line.elapsed() >= Duration::from_secs(2) || p.state == TorrentState::Seeding
        {
            last_line = std::time::Instant::now();
            eprintln!(
                "{name}: {}/{} pieces, {} peers, down {}, up {}",
                p.pieces_have,
                p.piece_count,
                p.peers,
                format_rate(p.download_rate),
                format_rate(p.upload_rate)
            );
        }
        match p.state {
            TorrentState::Seeding => {
                if let Some(bar) = &bar {
                    bar.finish_with_message(format!("{name}: complete"));
                }
                return Ok(());
            }
            TorrentState::Error(e) => return Err(e),
            _ => {}
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), handle.changed()).await;
    }
}

async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer_args(config: Option<PathBuf>, network_file: Option<PathBuf>) -> TransferArgs {
        TransferArgs {
            dir: PathBuf::from("."),
            upload_limit: None,
            download_limit: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: None,
            network_file,
            config,
            peers: Vec::new(),
            discovery: Default::default(),
            wire: Default::default(),
        }
    }

    #[tokio::test]
    async fn peers_resolve_and_a_bad_one_is_named() {
        let got = resolve_peers(&["127.0.0.1:6881".into(), "[::1]:1".into()])
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        let err = resolve_peers(&["no-port".into()]).await.unwrap_err();
        assert!(format!("{err:#}").contains("--peer no-port"), "{err:#}");
    }

    fn load_options(args: &TransferArgs, state_dir: PathBuf) -> Result<PolicyOptions> {
        let file = crate::config::load_warning(args.config.as_deref())?;
        policy_options(args, &file, state_dir)
    }

    #[test]
    fn get_and_seed_follow_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "network_file = \"/run/net.toml\"\n[policy]\nupload_on_metered = true\n\
             near_cap_percent = 70\nsuspend_when_roaming = false\n",
        )
        .unwrap();
        let options = load_options(
            &transfer_args(Some(config.clone()), None),
            dir.path().into(),
        )
        .unwrap();
        assert!(options.settings.upload_on_metered);
        assert_eq!(options.settings.near_cap_percent, 70);
        assert!(!options.settings.suspend_when_roaming);
        let chosen = options.network_file.unwrap();
        assert_eq!(chosen.path, PathBuf::from("/run/net.toml"));
        assert_eq!(chosen.origin, "network_file in the configuration file");
        // The command line's network file wins over the file's.
        let given = PathBuf::from("/tmp/other.toml");
        let options = load_options(
            &transfer_args(Some(config), Some(given.clone())),
            dir.path().into(),
        )
        .unwrap();
        let chosen = options.network_file.unwrap();
        assert_eq!((chosen.path, chosen.origin), (given, "--network-file"));
        // A --config that does not exist is an error, as for `run`.
        assert!(load_options(
            &transfer_args(Some(dir.path().join("missing.toml")), None),
            dir.path().into()
        )
        .is_err());
    }
}
