//! `capwise run`: the background service. Composes the policy (network,
//! budgets, gates), the engine session, the torrents stored in the
//! database and the local API; tells systemd when it is ready and stops
//! within 5 s of SIGTERM.

pub(crate) mod api;
pub(crate) mod control;
pub(crate) mod own_names;
pub(crate) mod remote;
mod site_share;
pub(crate) mod tls;
pub(crate) mod torrents;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use capwise_engine::session::{Hooks, Session, SessionConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use control::Control;
use torrents::Torrents;

use crate::cli_agent::RunArgs;
use crate::commands::id::QUIC_KEY_FILE;
use crate::config::{self, default_download_dir};
use crate::discovery::{self, AgentFile};
use crate::limits::LimitGate;
use crate::policy_gate::PolicyGate;
use crate::policy_runtime::{PolicyOptions, PolicyRuntime};
use crate::state_db::{state_dir, DB_FILE};
use crate::torrent_db::TorrentDb;

/// What systemd's TimeoutStopSec leaves us, minus a margin: trackers get
/// this long to hear `stopped` while state is flushed.
const STOP_BUDGET: Duration = Duration::from_secs(4);
/// Torrents opened at once while restoring: enough to overlap file system
/// latency, few enough not to flood the hashing queue.
const RESTORE_PARALLELISM: usize = 32;

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: &RunArgs) -> Result<()> {
    let started = Instant::now();
    raise_open_file_limit();
    let state_dir = state_dir(args.state_dir.as_deref());
    crate::state_db::create_state_dir(&state_dir)?;
    // Before anything reads or writes the state: one capwise per directory.
    let _state_lock = crate::lock::lock_state_dir(&state_dir, "run")?;
    let config = config::load_warning(args.config.as_deref())?;
    remote::preflight(&config, &state_dir)?;
    let manual_peers = crate::foreground::resolve_peers(&args.peers).await?;
    let network_file = crate::network_source::NetworkFile::choose(
        args.network_file.as_deref(),
        config.network_file.as_deref(),
    );

    let hooks = Hooks {
        classifier: Arc::new(config.classifier()?),
        ..Hooks::default()
    };
    let policy = PolicyRuntime::start(
        &PolicyOptions {
            state_dir: state_dir.clone(),
            network_file,
            settings: config.settings()?,
        },
        &hooks,
    )
    .await?;
    // The same file as the policy store: a lock taken since is waited out
    // the same way.
    let db_path = state_dir.join(DB_FILE);
    let db = Arc::new(
        crate::state_db::retry_while_locked(
            "the torrents database",
            Duration::from_secs(1),
            crate::state_db::LOCKED_RETRY_LIMIT,
            || TorrentDb::open(&db_path),
        )
        .await?,
    );
    let user_limits = control::effective_limits(&config.limits()?, &db)?;
    let limits = LimitGate::with_limits(&user_limits);
    let hooks = Hooks {
        gate: Arc::new(PolicyGate::new(&policy, limits.clone())),
        ..hooks
    };
    let listen = config
        .listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 6881)));
    let lsd = config.lsd_enabled(args.discovery.no_lsd);
    let mut session_config = SessionConfig {
        listen,
        resume: Some(db.clone()),
        boot_id: capwise_policy::interface_counters::current_boot_id().ok(),
        dht: crate::dht::options(&args.discovery.dht, &config, &state_dir),
        encryption: config.encryption(args.wire.encryption)?,
        transports: config.transports(args.wire.transports.as_ref())?,
        interface: config.interface(args.wire.interface.as_deref())?,
        ..SessionConfig::default()
    };
    let maps_tcp = session_config
        .transports
        .uses(capwise_engine::transport::Carrier::Tcp);
    let bound_to = session_config.interface.clone();
    if session_config
        .transports
        .uses(capwise_engine::transport::Carrier::Quic)
    {
        // The agent id peers pin: the same across restarts.
        let key = state_dir.join(QUIC_KEY_FILE);
        let identity = capwise_engine::transport::identity::Identity::load_or_create(&key)?;
        tracing::info!(agent = %identity.id(), "QUIC identity");
        session_config.quic_identity = Some(Arc::new(identity));
        if let Some(list) = config.quic.allow_list()? {
            tracing::info!(
                agents = list.len(),
                "QUIC allow-list: only the agents listed get QUIC, others stay on TCP or uTP"
            );
            if list.is_empty() {
                tracing::warn!("the QUIC allow-list is empty: no agent gets QUIC");
            }
            session_config.quic_allow = Some(Arc::new(list));
        }
    } else if config.quic.restricts() {
        tracing::warn!(
            "[quic] allow has no effect: QUIC is not among the transports (add \"quic\" to transports or --transports)"
        );
    }
    if let Some(paths) = &config.blocklist {
        session_config.blocklist = Arc::new(crate::blocklist::load(paths.as_slice())?);
    }
    crate::lsd::configure(&mut session_config, lsd);
    session_config.swarm.pex = config.pex_enabled(args.discovery.no_pex);
    let session = start_session(session_config, hooks).await?;
    let addresses = crate::address_watch::follow(session.clone());
    let _lsd_follower = crate::lsd::follow_interfaces(&session, lsd);
    crate::notify::follow(policy.subscribe(), config.notify.unwrap_or(true));
    let mut decisions = policy.subscribe();
    let background_allowed = decisions.borrow_and_update().background_allowed;
    // Before the restore: each subscription's torrents start with its WAN window.
    let wan_windows = crate::subscriptions::window::Windows::load(&db)?;
    let _window_clock = wan_windows.follow_clock();
    let torrents = Arc::new(
        Torrents::new(session, db.clone(), background_allowed)
            .with_manual_peers(manual_peers)
            .with_wan_windows(wan_windows.clone())
            .with_seed_defaults(config.seed_defaults()?)
            .with_queue_limits(config.queue_limits())
            .with_completion(crate::daemon::torrents::Completion::new(
                config.on_complete.clone().unwrap_or_default(),
                config.incomplete_dir.clone(),
            )),
    );

    // `[site] wan_rate`: this machine's share of the site's WAN cap.
    let _site_share = config
        .site_wan_rate()?
        .map(|cap| site_share::follow(torrents.session().clone(), limits.clone(), cap));

    let download_dir = config
        .download_dir
        .clone()
        .unwrap_or_else(|| default_download_dir(&state_dir));
    let ready = Arc::new(AtomicBool::new(false));
    let control = Arc::new(Control {
        torrents: torrents.clone(),
        db: db.clone(),
        decisions: policy.subscribe(),
        policy: policy.reloader(),
        limits,
        config_limits: config.limits()?,
        user_limits: std::sync::Mutex::new(user_limits),
        ready: ready.clone(),
        state_dir: state_dir.clone(),
        download_dir,
        config_warnings: config.warnings.clone(),
    });
    let subscriptions =
        crate::subscriptions::Subscriptions::new(crate::subscriptions::poller::Context {
            db: db.clone(),
            torrents: torrents.clone(),
            download_dir: control.download_dir.clone(),
            client: crate::subscriptions::fetch::client(bound_to.as_deref())
                .map_err(anyhow::Error::msg)?,
            decisions: policy.subscribe(),
            reporter: Arc::new(
                crate::subscriptions::report::Reporter::new(
                    crate::delivery::agent_key::load_or_create(&state_dir)?,
                    String::new(),
                )
                .with_interface(bound_to.clone()),
            ),
            windows: wan_windows,
        });
    let watch_folder = config
        .watch_dir
        .clone()
        .map(|dir| (dir, control.download_dir.clone()));
    let metrics = crate::metrics::Metrics::new(&state_dir, torrents.clone(), &policy).await?;
    let _metrics_follower = metrics.follow_decisions();
    let (stop_api, api_task, api_state) = start_api(
        &state_dir,
        config.api_address(),
        torrents.clone(),
        control,
        subscriptions.clone(),
        metrics.clone(),
    )
    .await?;
    if let Some(addr) = config.api.remote_listen {
        remote::serve(
            addr,
            &config,
            &state_dir,
            &api_state,
            metrics.clone(),
            stop_api.subscribe(),
        )
        .await?;
    }
    if let Some(addr) = config.metrics.listen {
        crate::metrics::http::serve_local(addr, metrics, stop_api.subscribe()).await?;
    }
    if let Some(addr) = config.channel.report_listen {
        // Stops with the API.
        crate::delivery::listener::start(addr, state_dir.clone(), &db_path, stop_api.subscribe())
            .await?;
    }

    // Before the restore: each torrent opens where its data is.
    crate::daemon::torrents::relocate::recover(db.clone()).await;
    restore(&torrents, &db).await;
    let seeding_follower = torrents.follow_seeding();
    // After the restore: the pollers find the items they hold in the session.
    subscriptions.resume_all();
    ready.store(true, Ordering::Release);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(
        torrents = torrents.len(),
        hashed_bytes = torrents.session().hashed_bytes(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ready"
    );

    // After the restore: a dropped torrent already stored is a duplicate.
    let watch_folder = watch_folder
        .map(|(dir, into)| crate::daemon::torrents::watch::follow(torrents.clone(), dir, into));
    // After the restore: the router is asked once the ports serve torrents.
    // Not while traffic is bound to one interface: the mapping protocols'
    // sockets (PCP/NAT-PMP, SSDP and SOAP) are the crates' own and cannot be
    // held to it, and a mapping would be made on whichever router the
    // routing table leads to.
    let maps = match (&bound_to, config.port_mapping_enabled()) {
        (Some(name), true) => {
            tracing::info!(
                interface = %name,
                "no port mapping: all traffic is bound to {name}, and the router's protocols cannot be held to it"
            );
            false
        }
        (_, enabled) => enabled,
    };
    let port_mapper = maps.then(|| {
        crate::portmap::PortMapper::start(
            peer_ports(torrents.session(), maps_tcp),
            policy.subscribe(),
            policy.reloader(),
            state_dir.clone(),
        )
    });

    let follower = tokio::spawn({
        let torrents = torrents.clone();
        async move {
            loop {
                let (allowed, why, wan) = {
                    let d = decisions.borrow_and_update();
                    let wan = crate::policy_runtime::wan_allowed(&d);
                    (d.background_allowed, d.explanation.clone(), wan)
                };
                torrents.set_wan_held(!wan);
                torrents.apply_background(allowed, &why).await;
                if decisions.changed().await.is_err() {
                    return;
                }
            }
        }
    });

    stop_signal().await;
    tracing::info!("stopping");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    follower.abort();
    addresses.abort();
    seeding_follower.abort();
    // The lifetime totals as they stand, before the torrents go.
    torrents.check_seeding(true).await;
    if let Some(watch) = &watch_folder {
        watch.abort();
    }
    // Before the session stops: a poll under way finishes adding its item.
    subscriptions.stop(Duration::from_millis(500)).await;
    let _ = stop_api.send(true);
    discovery::remove_agent_file(&state_dir);
    if let Some(mapper) = port_mapper {
        mapper.stop().await;
    }
    if tokio::time::timeout(STOP_BUDGET, torrents.session().clone().shutdown())
        .await
        .is_err()
    {
        tracing::warn!("trackers did not all answer in time; stopping anyway");
    }
    let blocked = torrents.session().blocked_peers();
    if blocked > 0 {
        tracing::info!(blocked, "connections refused by the blocklist");
    }
    torrents.release_all();
    let _ = tokio::time::timeout(Duration::from_millis(500), api_task).await;
    drop(policy);
    tracing::info!("stopped");
    Ok(())
}

/// The ports peers dial: the TCP listener's (unless TCP is off) and the
/// UDP socket uTP and the DHT share.
fn peer_ports(
    session: &Session,
    maps_tcp: bool,
) -> Vec<(capwise_engine::portmap::IpProtocol, u16)> {
    use capwise_engine::portmap::IpProtocol;
    let mut ports = Vec::new();
    if maps_tcp {
        ports.push((IpProtocol::Tcp, session.local_addr().port()));
    }
    if let Some(udp) = session.udp_addr() {
        ports.push((IpProtocol::Udp, udp.port()));
    }
    ports
}

async fn start_session(config: SessionConfig, hooks: Hooks) -> Result<Session> {
    let listen = config.listen;
    match Session::start(config.clone(), hooks.clone()).await {
        Ok(s) => Ok(s),
        Err(capwise_engine::Error::Net(e))
            if e.kind() == std::io::ErrorKind::AddrInUse && listen.port() == 6881 =>
        {
            tracing::warn!("port 6881 is taken; listening on a free port instead");
            let mut config = config;
            config.listen.set_port(0);
            Ok(Session::start(config, hooks).await?)
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen for peers on {listen}")),
    }
}

/// Binds the API, writes the token and `agent.json`, and serves until told
/// to stop.
async fn start_api(
    state_dir: &std::path::Path,
    address: SocketAddr,
    torrents: Arc<Torrents>,
    control: Arc<Control>,
    subscriptions: Arc<crate::subscriptions::Subscriptions>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<(
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
    Arc<api::ApiState>,
)> {
    let token = discovery::ensure_token(state_dir)?;
    let metrics_token = crate::metrics::token::load_or_create(state_dir)?;
    let listener = match TcpListener::bind(address).await {
        Ok(l) => l,
        // Another agent (another user, another state directory) or another
        // program has the port: the CLI finds this agent through
        // agent.json whatever its port; only a bookmark would miss it.
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && address.port() != 0 => {
            let mut free = address;
            free.set_port(0);
            let l = TcpListener::bind(free)
                .await
                .with_context(|| format!("cannot listen for the API on {free}"))?;
            tracing::warn!(
                wanted = %address,
                api = %l.local_addr()?,
                "the API's port is taken; listening on a free port instead (the CLI finds it; a dashboard bookmark will not)"
            );
            l
        }
        Err(e) => return Err(e).with_context(|| format!("cannot listen for the API on {address}")),
    };
    let bound = listener.local_addr()?;
    let names = own_names::OwnNames::of(bound);
    let state = Arc::new(api::ApiState {
        torrents,
        token,
        names: names.clone(),
        control,
        subscriptions,
        dashboard: Arc::new(crate::dashboard::Dashboard::new(bound)),
    });
    let (stop, mut stopped) = watch::channel(false);
    // Beside the API's routes, outside their guard: it checks its own token.
    let app = api::router(state.clone()).merge(crate::metrics::http::api_routes(
        metrics,
        metrics_token,
        names,
    ));
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the API stopped");
        }
    });
    discovery::write_agent_file(
        state_dir,
        &AgentFile {
            api: format!("http://{bound}"),
            pid: std::process::id(),
        },
    )?;
    tracing::info!(api = %bound, "API listening");
    Ok((stop, task, state))
}

/// Opens every stored torrent, several at a time.
async fn restore(torrents: &Arc<Torrents>, db: &TorrentDb) {
    match db.torrents() {
        Ok(stored) => torrents.restore_all(stored, RESTORE_PARALLELISM).await,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "cannot read the stored torrents");
        }
    }
}

/// A service opens a file per torrent file and a socket per peer; the soft
/// limit (often 1024) is far below what 1,000 torrents need.
fn raise_open_file_limit() {
    let limits = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(hard) = limits.maximum {
        if limits.current.is_some_and(|soft| soft < hard) {
            let raised = rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if let Err(error) =
                rustix::process::setrlimit(rustix::process::Resource::Nofile, raised)
            {
                tracing::debug!(%error, "cannot raise the open-file limit");
            }
        }
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
