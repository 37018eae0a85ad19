//! The thin tokio layer: transports, timers and disk around the sans-IO
//! [`Swarm`](crate::swarm::Swarm).
//!
//! One task accepts connections; each torrent has a driver task (ticks,
//! events, resume data) and an announce task; each peer connection has a
//! reader and a writer. Shutdown is a broadcast every task listens to; each
//! torrent also has its own run state (active, paused, stopped) that its
//! tasks watch; a semaphore bounds connections across all torrents.

mod addresses;
mod announce;
mod carriers;
pub mod classify;
mod connect;
mod control;
mod dht;
mod evict;
mod files;
mod half_open;
mod handle;
mod interface;
mod local_discovery;
mod membership;
mod metadata;
mod metadata_peer;
mod peer;
mod pex;
mod rate;
mod recheck;
mod reclassify;
mod schedule;
mod site_share;
mod torrent;
mod tracker_status;
mod upgrade;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, Semaphore};

pub use crate::storage::{FileResumeStore, ResumeStore};
pub use addresses::NetworkChange;
pub use classify::SubnetClassifier;
pub use files::{file_progress, FileChoice, FileFilter, FileProgress};
pub use handle::{
    AnnounceOutcome, PeerInfo, Progress, TorrentHandle, TorrentOptions, TorrentState,
};
pub use interface::{InterfaceState, InterfaceStatus};
pub use local_discovery::InterfaceFilter;
pub use site_share::SiteShare;
pub use tracker_status::TrackerStatus;

use crate::hooks::{ByteGate, Classifier, Counters, OpenGate, PeerClass, Switch};
use crate::metainfo::{InfoHash, Metainfo};
use crate::swarm::SwarmConfig;
use crate::transport::{self, Transport};
use crate::wire::{Handshake, HANDSHAKE_LEN};
use crate::{Error, Result};
pub(crate) use torrent::TorrentShared;

/// How a session runs; every field has a sensible default.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to accept peers; port 0 picks a free one. A specific address
    /// (not `0.0.0.0` or `::`) is also the one tracker announces and
    /// outgoing peer connections leave from, so that the address others
    /// learn is the one we listen on.
    pub listen: SocketAddr,
    /// Connections across all torrents.
    pub max_connections: usize,
    /// Connections per torrent.
    pub max_peers_per_torrent: usize,
    /// Threads for hashing existing data.
    pub hash_threads: usize,
    /// Swarm tunables.
    pub swarm: SwarmConfig,
    /// Time allowed for one tracker announce.
    pub tracker_timeout: Duration,
    /// Where resume data is kept (the bytes of `ResumeData::encode`, saved
    /// every 30 s when changed, at completion, pause and shutdown); none
    /// keeps nothing and every start hashes what is on disk.
    pub resume: Option<Arc<dyn ResumeStore>>,
    /// How often a torrent stopped by a full disk (ENOSPC, EDQUOT) tries
    /// again by itself.
    pub disk_full_retry: Duration,
    /// The kernel's boot id (the caller reads it, e.g. with
    /// `capwise_policy::interface_counters::current_boot_id`). The
    /// verified-piece journal is trusted without hashing only when it was
    /// recorded on this boot; none: it never is.
    pub boot_id: Option<String>,
    /// Local service discovery (BEP 14) for active public torrents, on the
    /// LAN segments `lsd_interfaces` allows (never loopback or a tunnel;
    /// see `session/local_discovery.rs`). Off by default, so that nothing
    /// multicasts unless asked; the agent turns it on.
    pub lsd: bool,
    /// Which interfaces LSD may use, by name (the agent keeps it off VPNs).
    pub lsd_interfaces: InterfaceFilter,
    /// The Mainline DHT (BEP 5) on the listen address and port: its
    /// bootstrap nodes and state file. None (the default) runs no DHT, so
    /// a session sends no DHT packet unless asked to.
    pub dht: Option<crate::dht::DhtOptions>,
    /// Protocol encryption (MSE/PE): by default dial encrypted, fall back
    /// to plaintext, accept both (`session/connect.rs`).
    pub encryption: crate::Encryption,
    /// The carriers peers are dialled over, in order, and accepted on
    /// (`transport/carriers.rs`): TCP then uTP by default. Without TCP no
    /// TCP listener is opened; uTP shares the DHT's UDP socket.
    pub transports: transport::Transports,
    /// Peers never dialled and closed at once when they dial in (IP
    /// blocklists, `capwise_proto::blocklist`).
    pub blocklist: Arc<crate::blocklist::Blocklist>,
    /// The agent's QUIC identity (`transport/identity.rs`), used when
    /// `transports` names `quic`; none: a new one for this session only.
    pub quic_identity: Option<Arc<transport::identity::Identity>>,
    /// The UDP port of the QUIC endpoint, on the listen address (it cannot
    /// share the uTP and DHT socket: QUIC's first bytes overlap theirs);
    /// 0 picks a free one. Peers learn it from our extension handshake.
    pub quic_port: u16,
    /// The agents QUIC accepts and dials (`transport/allow_list.rs`):
    /// both ends then present certificates and any other agent stays on
    /// TCP or uTP. None (the default): any agent.
    pub quic_allow: Option<Arc<transport::allow_list::AllowList>>,
    /// The network interface all BitTorrent traffic is bound to, by name
    /// (`SO_BINDTODEVICE`, `egress.rs`): the listener, the UDP socket, the
    /// QUIC endpoint, every dial, tracker announce and web seed request; LSD
    /// runs on it alone. While it is down or missing nothing moves (nothing
    /// takes another route), and the session starts all the same;
    /// [`Session::interface`] says which. None: the routing table decides.
    pub interface: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:6881".parse().expect("literal address"),
            max_connections: 200,
            max_peers_per_torrent: 50,
            hash_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            swarm: SwarmConfig::default(),
            tracker_timeout: Duration::from_secs(15),
            resume: None,
            disk_full_retry: Duration::from_secs(30),
            boot_id: None,
            lsd: false,
            lsd_interfaces: InterfaceFilter::default(),
            dht: None,
            encryption: crate::Encryption::default(),
            transports: transport::Transports::default(),
            blocklist: Arc::default(),
            quic_identity: None,
            quic_port: 0,
            quic_allow: None,
            interface: None,
        }
    }
}

/// What the policy steers. Cloning shares the same gate, switch and counters.
#[derive(Clone)]
pub struct Hooks {
    /// Awaited before a block is sent or requested.
    pub gate: Arc<dyn ByteGate>,
    /// Uploads on or off.
    pub seeding: Switch,
    /// WAN traffic of any kind on or off.
    pub wan: Switch,
    /// LAN or WAN for a peer address.
    pub classifier: Arc<dyn Classifier>,
    /// Bytes across all torrents.
    pub counters: Arc<Counters>,
    /// The DHT's BEP 43 read-only mode (the agent: on a metered network).
    pub dht_read_only: Switch,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            gate: Arc::new(OpenGate),
            seeding: Switch::new(true),
            wan: Switch::new(true),
            classifier: Arc::new(SubnetClassifier::from_system()),
            counters: Arc::new(Counters::default()),
            dht_read_only: Switch::new(false),
        }
    }
}

impl SessionInner {
    /// The peer id we give in handshakes and announces now.
    pub(crate) fn peer_id(&self) -> [u8; 20] {
        *self.peer_id.lock().expect("peer id lock")
    }

    /// Take a new peer id. A peer still holding our connection from an
    /// address that is gone (it cannot hear that the connection ended)
    /// refuses a second one with the same id (libtorrent's duplicate
    /// peer-id rule drops the newcomer when its id is the lower), so after
    /// a move we come back as a new peer.
    pub(crate) fn new_identity(&self) {
        *self.peer_id.lock().expect("peer id lock") = new_peer_id();
    }
}

/// A torrent's peers waiting for the session's interface to come back.
pub(crate) type ParkedPeers = (
    std::sync::Weak<TorrentShared>,
    Vec<(SocketAddr, crate::class::PeerSource)>,
);

pub(crate) struct SessionInner {
    pub(crate) config: SessionConfig,
    pub(crate) hooks: Hooks,
    /// Our peer id: a new one when an address of ours went away
    /// ([`SessionInner::peer_id`], `session/addresses.rs`).
    peer_id: Mutex<[u8; 20]>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) connections: Arc<Semaphore>,
    /// Incoming peers waiting to see whether an eviction makes room.
    pub(crate) newcomers: Arc<Semaphore>,
    /// Incoming handshakes under way, a few per address (`half_open.rs`).
    half_open: Arc<half_open::HalfOpen>,
    /// One permit per hashing thread: pieces queue here, not in threads.
    pub(crate) hashing: Arc<Semaphore>,
    pub(crate) shutdown: broadcast::Sender<()>,
    /// Bytes hashed while checking existing data as torrents were added.
    pub(crate) hashed: AtomicU64,
    /// Connections refused, dialled or not, because the blocklist names the peer.
    pub(crate) blocked: AtomicU64,
    /// The machine's addresses when last looked at (`session/addresses.rs`).
    pub(crate) addresses: Mutex<Vec<IpAddr>>,
    torrents: Mutex<HashMap<[u8; 20], Arc<TorrentShared>>>,
    /// Magnet torrents still fetching their metadata (session/metadata.rs);
    /// locked before `torrents` when both are.
    magnets: Mutex<HashMap<[u8; 20], Arc<metadata::MagnetShared>>>,
    /// Local service discovery's drivers (idle unless `config.lsd`).
    lsd: local_discovery::LocalDiscovery,
    /// The DHT, when configured and its socket could be opened.
    dht: OnceLock<dht::SessionDht>,
    /// Bounds the exponentiations incoming MSE handshakes cost.
    dh_budget: crate::transport::mse::DhBudget,
    /// Whether a peer refused for want of encryption was warned of yet.
    told_refusal: std::sync::atomic::AtomicBool,
    /// Peers that refused an encrypted handshake (`session/connect.rs`).
    plaintext_only: Mutex<std::collections::HashSet<SocketAddr>>,
    /// The UDP socket the DHT and uTP share, while either runs.
    _udp: Option<crate::udp::UdpEndpoint>,
    /// How peers are dialled: the carriers in order (`transport/carriers.rs`).
    pub(crate) dialer: transport::Dialer,
    /// The QUIC endpoint, when `quic` is among the transports (`upgrade.rs`).
    pub(crate) quic: Option<transport::quic::QuicEndpoint>,
    /// The interface every socket is bound to, when `config.interface`
    /// names one (`interface.rs`).
    pub(crate) interface: Option<interface::BoundInterface>,
    /// Peers whose connections closed while that interface was missing,
    /// dialled again when it is back (`addresses.rs`).
    pub(crate) parked: Mutex<Vec<ParkedPeers>>,
}

impl SessionInner {
    /// A magnet's metadata is in: its torrent takes the magnet's place.
    /// False if the magnet was removed meanwhile.
    pub(crate) fn adopt(&self, info_hash: [u8; 20], torrent: Arc<TorrentShared>) -> bool {
        let mut magnets = self.magnets.lock().expect("magnets lock");
        if magnets.remove(&info_hash).is_none() {
            return false;
        }
        self.torrents
            .lock()
            .expect("torrents lock")
            .insert(info_hash, torrent);
        drop(magnets);
        // Its metadata may say private: LSD lets it go then.
        self.torrents_changed();
        true
    }

    /// A torrent was added, removed, paused or resumed (or its metadata
    /// came): LSD announces exactly the active public torrents, and the
    /// DHT looks up the ones now due.
    pub(crate) fn torrents_changed(&self) {
        if self.config.lsd {
            self.lsd.sync(self);
        }
        if let Some(dht) = self.dht.get() {
            dht.torrents_changed();
        }
    }

    fn has_torrent(&self, info_hash: &[u8; 20]) -> bool {
        self.magnets
            .lock()
            .expect("magnets lock")
            .contains_key(info_hash)
            || self
                .torrents
                .lock()
                .expect("torrents lock")
                .contains_key(info_hash)
    }
}

/// A running engine: a listener and the torrents added to it.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

fn new_peer_id() -> [u8; 20] {
    let mut id = *b"-CW0100-000000000000";
    for b in &mut id[8..] {
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[rand::random::<usize>() % 36];
    }
    id
}

impl Session {
    /// Bind the listener and start accepting peers.
    pub async fn start(config: SessionConfig, hooks: Hooks) -> Result<Session> {
        let bound = config
            .interface
            .as_deref()
            .map(interface::BoundInterface::new);
        let device = bound
            .as_ref()
            .map_or(crate::egress::Device::Any, |b| b.device());
        let sockets = carriers::bind(&config, &hooks, device)?;
        let local_addr = sockets.local_addr;
        let dialer = transport::Dialer {
            transports: config.transports.clone(),
            utp: sockets.utp.as_ref().map(|(driver, _)| driver.clone()),
            egress: crate::egress::Egress {
                ip: (!local_addr.ip().is_unspecified()).then_some(local_addr.ip()),
                device: bound.as_ref().map(|b| b.name().clone()),
            },
        };
        let (shutdown, _) = broadcast::channel(1);
        let quic = if config.transports.uses(transport::Carrier::Quic) {
            let identity = match &config.quic_identity {
                Some(identity) => identity.clone(),
                None => Arc::new(
                    transport::identity::Identity::ephemeral()
                        .map_err(|e| Error::Net(std::io::Error::other(e.to_string())))?,
                ),
            };
            let at = SocketAddr::new(local_addr.ip(), config.quic_port);
            let socket = crate::egress::udp_socket(at, device)?;
            if let Some(b) = &bound {
                b.hold_socket(&socket);
            }
            let (endpoint, accepted) = transport::quic::QuicEndpoint::with_socket(
                socket,
                identity,
                config.quic_allow.clone(),
            )?;
            tracing::debug!(addr = ?endpoint.local_addr().ok(), agent = %endpoint.id(), "QUIC endpoint bound");
            Some((endpoint, accepted))
        } else {
            None
        };
        let (quic, quic_accepted) = match quic {
            Some((endpoint, accepted)) => (Some(endpoint), Some(accepted)),
            None => (None, None),
        };
        if let Some(b) = &bound {
            if let Some(listener) = &sockets.listener {
                b.hold_listener(listener);
            }
            if let Some(udp) = &sockets.udp {
                b.hold_udp(&udp.socket());
            }
        }
        let inner = Arc::new(SessionInner {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            newcomers: Arc::new(Semaphore::new(evict::NEWCOMERS)),
            half_open: Arc::default(),
            hashing: Arc::new(Semaphore::new(config.hash_threads.max(1))),
            config,
            hooks,
            peer_id: Mutex::new(new_peer_id()),
            local_addr,
            shutdown,
            hashed: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            addresses: Mutex::new(addresses::local_ips().unwrap_or_default()),
            torrents: Mutex::new(HashMap::new()),
            magnets: Mutex::new(HashMap::new()),
            lsd: Default::default(),
            dht: OnceLock::new(),
            dh_budget: crate::transport::mse::DhBudget::new(connect::DH_SPACING),
            told_refusal: Default::default(),
            plaintext_only: Default::default(),
            _udp: sockets.udp,
            dialer,
            quic,
            interface: bound,
            parked: Mutex::default(),
        });
        if let Some(accepted) = quic_accepted {
            tokio::spawn(accept_quic(inner.clone(), accepted));
        }
        if let (Some(options), Some(datagrams)) = (inner.config.dht.clone(), sockets.dht_datagrams)
        {
            let socket = inner._udp.as_ref().map(|u| u.socket());
            if let Some(socket) = socket {
                let dht = dht::SessionDht::start(&inner, options, socket, datagrams);
                let _ = inner.dht.set(dht);
            }
        }
        if let Some(listener) = sockets.listener {
            tokio::spawn(accept_loop(inner.clone(), listener));
        }
        if let Some((_, accepted)) = sockets.utp {
            let shutdown = inner.shutdown.subscribe();
            tokio::spawn(carriers::accept_utp(inner.clone(), accepted, shutdown));
        }
        if inner.config.lsd {
            inner.lsd.start(&inner);
        }
        Ok(Session { inner })
    }

    /// The address peers reach us at.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The address of the UDP socket uTP and the DHT share, if one is open
    /// (its port may differ from the TCP listener's when that was taken).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.inner._udp.as_ref().and_then(|u| u.local_addr().ok())
    }

    /// The interface all traffic is bound to and its state, when the
    /// session has one ([`SessionConfig::interface`]).
    pub fn interface(&self) -> Option<InterfaceStatus> {
        self.inner.interface.as_ref().map(|b| b.status())
    }

    /// The QUIC endpoint's address, when `quic` is among the transports.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.inner.quic.as_ref().and_then(|q| q.local_addr().ok())
    }

    /// Our agent id, when `quic` is among the transports.
    pub fn agent_id(&self) -> Option<transport::identity::AgentId> {
        self.inner.quic.as_ref().map(|q| q.id())
    }

    /// QUIC connections refused because the dialling agent's key is not
    /// on the allow-list ([`SessionConfig::quic_allow`]), so far.
    pub fn quic_refused_agents(&self) -> u64 {
        self.inner.quic.as_ref().map_or(0, |q| q.refused_agents())
    }

    /// Bytes across all torrents.
    pub fn counters(&self) -> Arc<Counters> {
        self.inner.hooks.counters.clone()
    }

    /// Take an incoming connection over a transport the caller made (its
    /// peer speaks first, as to our listener): it goes through the same
    /// checks, handshake and slots as one accepted on the listen socket.
    pub fn accept(&self, transport: Transport) {
        self.inner.accept_transport(transport);
    }

    /// Add a torrent whose data lives in (or goes to) `download_dir`: checks
    /// what is there (trusting resume data where files are unchanged), then
    /// joins the swarm.
    pub async fn add_torrent(
        &self,
        metainfo: Metainfo,
        download_dir: PathBuf,
        options: TorrentOptions,
    ) -> Result<TorrentHandle> {
        let key = metainfo.info_hash.0;
        if self.inner.has_torrent(&key) {
            return Err(Error::Io {
                path: download_dir,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "torrent already added",
                ),
            });
        }
        let (shared, handle) =
            TorrentShared::open(self.inner.clone(), metainfo, download_dir, options).await?;
        self.inner
            .torrents
            .lock()
            .expect("torrents lock")
            .insert(key, shared.clone());
        torrent::spawn_tasks(shared);
        self.inner.torrents_changed();
        Ok(handle)
    }

    /// Add a torrent known only by a magnet link: its metadata is fetched
    /// from the peers its trackers (`tr`), its `x.pe` peers and those given
    /// to [`TorrentHandle::connect`] name, checked against the info-hash,
    /// and then it runs as if added with [`add_torrent`](Self::add_torrent).
    /// Until then its state is [`TorrentState::FetchingMetadata`].
    pub fn add_magnet(
        &self,
        magnet: crate::magnet::Magnet,
        download_dir: PathBuf,
        options: TorrentOptions,
    ) -> Result<TorrentHandle> {
        let key = magnet.info_hash.0;
        let shared = {
            let mut magnets = self.inner.magnets.lock().expect("magnets lock");
            let taken = magnets.contains_key(&key)
                || self
                    .inner
                    .torrents
                    .lock()
                    .expect("torrents lock")
                    .contains_key(&key);
            if taken {
                return Err(Error::Io {
                    path: download_dir,
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "torrent already added",
                    ),
                });
            }
            let shared =
                metadata::MagnetShared::new(self.inner.clone(), magnet, download_dir, &options);
            magnets.insert(key, shared.clone());
            shared
        };
        metadata::spawn_tasks(shared.clone());
        self.inner.torrents_changed();
        Ok(TorrentHandle::magnet(shared))
    }

    /// Bytes hashed so far while checking data already on disk as torrents
    /// were added (pieces that resume data could not vouch for).
    pub fn hashed_bytes(&self) -> u64 {
        self.inner.hashed.load(Ordering::Relaxed)
    }

    /// Connections to or from blocklisted peers refused so far.
    pub fn blocked_peers(&self) -> u64 {
        self.inner.blocked.load(Ordering::Relaxed)
    }

    /// The torrent with this info-hash, if it is in the session.
    pub fn torrent(&self, info_hash: [u8; 20]) -> Option<TorrentHandle> {
        let magnet = self.lock_magnets().get(&info_hash).cloned();
        if let Some(magnet) = magnet {
            return Some(TorrentHandle::magnet(magnet));
        }
        let shared = self.lock_torrents().get(&info_hash).cloned()?;
        Some(TorrentHandle::new(shared))
    }

    /// Every torrent in the session, in no particular order.
    pub fn torrents(&self) -> Vec<TorrentHandle> {
        let magnets: Vec<_> = self.lock_magnets().values().cloned().collect();
        let mut all: Vec<TorrentHandle> = magnets.into_iter().map(TorrentHandle::magnet).collect();
        all.extend(
            self.inner
                .torrents_snapshot()
                .into_iter()
                .map(TorrentHandle::new),
        );
        all
    }

    /// Take a torrent out of the session: its connections and tasks end,
    /// trackers are told `stopped` (within a few seconds), its resume data is
    /// removed from the store. With `delete_data`, the torrent's own files
    /// are deleted and then the directories its layout names, if empty;
    /// nothing else in the download directory is touched. An info-hash not
    /// in the session is [`Error::UnknownTorrent`].
    pub async fn remove_torrent(&self, info_hash: [u8; 20], delete_data: bool) -> Result<()> {
        match self.take_out(info_hash)? {
            Some(shared) => shared.remove(delete_data).await,
            None => Ok(()),
        }
    }

    /// Takes torrent `info_hash` out of the session's maps: a magnet still
    /// fetching its metadata is removed here (it has no file yet) and gives
    /// `None`; a torrent is handed back for its owner to end.
    fn take_out(&self, info_hash: [u8; 20]) -> Result<Option<Arc<TorrentShared>>> {
        let magnet = self.lock_magnets().remove(&info_hash);
        if let Some(magnet) = magnet {
            magnet.remove();
            self.inner.torrents_changed();
            return Ok(None);
        }
        let shared = self
            .lock_torrents()
            .remove(&info_hash)
            .ok_or(Error::UnknownTorrent(InfoHash(info_hash)))?;
        self.inner.torrents_changed();
        Ok(Some(shared))
    }

    /// Take a torrent out of the session keeping its resume data, so that
    /// it can be added again later, e.g. from another directory after its
    /// files were moved there: verified pieces are trusted where a file's
    /// size and modification time are unchanged. Connections and tasks end
    /// and trackers are told `stopped`, as for
    /// [`remove_torrent`](Self::remove_torrent); its files are not written
    /// once this returns. A magnet still fetching its metadata has no file
    /// and is simply removed. An info-hash not in the session is
    /// [`Error::UnknownTorrent`].
    pub async fn release_torrent(&self, info_hash: [u8; 20]) -> Result<()> {
        if let Some(shared) = self.take_out(info_hash)? {
            shared.release().await;
        }
        Ok(())
    }

    /// Local service discovery follows the interfaces there are now: call
    /// after a network change (an interface or address came or went).
    /// Drivers on unchanged interfaces go on undisturbed. Does nothing
    /// unless [`SessionConfig::lsd`] is on.
    pub fn rescan_lsd(&self) {
        if self.inner.config.lsd {
            self.inner.lsd.rescan(&self.inner);
        }
    }

    /// The interfaces (and groups) local service discovery runs on now.
    pub fn lsd_interfaces(&self) -> Vec<crate::lsd::LsdInterface> {
        self.inner.lsd.interfaces()
    }

    fn lock_magnets(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<[u8; 20], Arc<metadata::MagnetShared>>> {
        self.inner.magnets.lock().expect("magnets lock")
    }

    fn lock_torrents(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 20], Arc<TorrentShared>>> {
        self.inner.torrents.lock().expect("torrents lock")
    }

    /// Stop everything: trackers are told `stopped` (briefly), resume data is
    /// saved, connections close.
    pub async fn shutdown(self) {
        let torrents = self.inner.torrents_snapshot();
        let _ = self.inner.shutdown.send(());
        self.inner.lsd.stop();
        for t in torrents {
            t.stop().await;
        }
        if let Some(dht) = self.inner.dht.get() {
            // Saves the node id and routing table.
            dht.handle.shutdown().await;
        }
    }

    /// Whether the session runs a DHT node ([`SessionConfig::dht`], and its
    /// socket could be had).
    pub fn runs_dht(&self) -> bool {
        self.inner.dht.get().is_some()
    }

    /// The DHT node's state, when the session runs one.
    pub async fn dht_snapshot(&self) -> Option<crate::dht::Snapshot> {
        self.inner.dht.get()?.handle.inspect().await
    }
}

async fn accept_loop(inner: Arc<SessionInner>, listener: Arc<TcpListener>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => return,
        };
        inner.accept_transport(transport::tcp::accepted(stream, addr));
    }
}

/// Streams QUIC peers open go the way of the listener's connections; the
/// endpoint closes with the session.
async fn accept_quic(
    inner: Arc<SessionInner>,
    mut accepted: tokio::sync::mpsc::Receiver<Transport>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            transport = accepted.recv() => match transport {
                Some(t) => inner.accept_transport(t),
                None => return,
            },
            _ = shutdown.recv() => break,
        }
    }
    if let Some(endpoint) = &inner.quic {
        endpoint.close();
    }
}

impl SessionInner {
    /// Our QUIC offer for extension handshakes, when we run an endpoint.
    pub(crate) fn quic_offer(&self) -> Option<capwise_proto::ext::quic::QuicOffer> {
        let endpoint = self.quic.as_ref()?;
        Some(capwise_proto::ext::quic::QuicOffer {
            port: endpoint.local_addr().ok()?.port(),
            fingerprint: endpoint.id().0,
        })
    }

    /// Where outgoing connections, announces and web seed requests leave
    /// from: the address we listen on, when it is a specific one, and the
    /// session's interface, when it has one.
    pub(crate) fn egress(&self) -> &crate::egress::Egress {
        &self.dialer.egress
    }

    /// An incoming connection, from the listener or a caller: refused at
    /// once when the WAN is off or no slot can be had, else handshaken in
    /// a task of its own.
    fn accept_transport(self: &Arc<Self>, transport: Transport) {
        let addr = transport.remote_addr();
        if self.config.blocklist.contains(addr.ip()) {
            // Dropped before a byte is read: closed at once.
            self.blocked.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%addr, "blocklisted; refusing peer");
            return;
        }
        if !self.hooks.wan.is_on() && self.hooks.classifier.classify(addr.ip()) == PeerClass::Wan {
            // Closed before a byte is read or written: the WAN must stay silent.
            tracing::debug!(%addr, "WAN off; refusing peer");
            return;
        }
        let Some(place) = self.half_open.enter(addr.ip()) else {
            tracing::debug!(%addr, "too many handshakes under way from its address; refusing peer");
            return;
        };
        // With every slot taken, a newcomer may still get one by eviction
        // (session/evict.rs), once it has shown a handshake for one of our
        // torrents; a few such newcomers at a time.
        let permit = match self.connections.clone().try_acquire_owned() {
            Ok(p) => Slot::Held(p),
            Err(_) => match self.newcomers.clone().try_acquire_owned() {
                Ok(p) => Slot::Wanted(p),
                Err(_) => {
                    tracing::debug!(%addr, "connection limit reached; refusing peer");
                    return;
                }
            },
        };
        let inner = self.clone();
        tokio::spawn(async move {
            if let Err(e) = accept_peer(inner, transport, permit, place).await {
                tracing::debug!(%addr, error = %e, "incoming peer dropped");
            }
        });
    }
}

async fn read_handshake<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<Handshake> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
    Ok(Handshake::decode(&buf)?)
}

/// A connection slot an incoming peer holds, or is still to get by eviction.
enum Slot {
    Held(tokio::sync::OwnedSemaphorePermit),
    Wanted(tokio::sync::OwnedSemaphorePermit),
}

pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_peer(
    inner: Arc<SessionInner>,
    carrier: Transport,
    slot: Slot,
    half_open: half_open::HalfOpenPlace,
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let addr = carrier.remote_addr();
    let (mut stream, encrypted_for) = inner.open_incoming(carrier).await?;
    let theirs = read_handshake(&mut stream).await?;
    drop(half_open);
    if encrypted_for.is_some_and(|ih| ih != theirs.info_hash) {
        // Encrypted for one torrent, then asking for another.
        return Err(crate::wire::WireError::BadHandshake.into());
    }
    let torrent = inner
        .torrents
        .lock()
        .expect("torrents lock")
        .get(&theirs.info_hash)
        .cloned();
    let Some(torrent) = torrent else {
        // A magnet still fetching its metadata takes peers too: they may
        // have the metadata. With every slot taken it evicts no one.
        let magnet = inner
            .magnets
            .lock()
            .expect("magnets lock")
            .get(&theirs.info_hash)
            .cloned();
        let (Some(magnet), Slot::Held(permit)) = (magnet, slot) else {
            return Err(crate::wire::WireError::BadHandshake.into());
        };
        if !magnet.takes_peer(addr) {
            return Ok(());
        }
        stream
            .write_all(&Handshake::new(theirs.info_hash, inner.peer_id()).encode())
            .await?;
        return metadata_peer::run(
            magnet,
            stream,
            theirs,
            permit,
            crate::class::PeerSource::Incoming,
        )
        .await;
    };
    if !torrent.could_admit(addr) {
        return Ok(());
    }
    let mut source = crate::class::PeerSource::Incoming;
    if stream.kind() == transport::TransportKind::Quic {
        // An upgrade: the old connection goes before we answer, so that it
        // carries nothing more (`upgrade.rs`).
        let known = {
            let mut core = torrent.lock_core();
            upgrade::retire(&torrent, &mut core, &theirs.peer_id, addr.ip())
        };
        if let Some((known, was)) = known {
            stream = stream.with_known_addr(known);
            source = was;
        }
    }
    let full = matches!(slot, Slot::Wanted(_)) || !torrent.admits(addr);
    stream
        .write_all(&Handshake::new(theirs.info_hash, inner.peer_id()).encode())
        .await?;
    // When full, only a newcomer that announces pieces or interest at once
    // may take the slot of a silent peer (session/evict.rs).
    if full && !evict::shows_useful(&mut stream).await {
        tracing::debug!(%addr, "slots full and the newcomer sent nothing useful; refused");
        return Ok(());
    }
    let permit = match slot {
        Slot::Held(p) => p,
        Slot::Wanted(_newcomer) => match inner.permit_for_newcomer().await {
            Some(p) => p,
            None => return Ok(()),
        },
    };
    if !torrent.admits(addr) && !torrent.make_room(addr).await {
        return Ok(());
    }
    peer::run(torrent, stream, theirs, permit, source).await;
    Ok(())
}
