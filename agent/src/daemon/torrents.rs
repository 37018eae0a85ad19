//! The agent's torrents: the engine's handles plus what the user and the
//! policy decided for each (paused by the user; background work waiting on
//! a metered network), kept in step with the database.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Session, TorrentHandle, TorrentOptions, TorrentState};
use capwise_engine::transport::Transports;
use capwise_policy::time::Timestamp;

use crate::api_types::TorrentView;
use capwise_engine::session::AnnounceOutcome;

/// Why a downloading torrent has no peer, when capwise knows: no tracker
/// answered (since when, and the last error), or it lists no tracker at all
/// (and then whether the DHT, `dht` when the session runs one, is looking:
/// never for a private torrent). A torrent fetching from its web seeds
/// (BEP 19) has a source and needs no excuse; one whose web seeds all
/// failed says so.
pub fn no_peers_reason(handle: &TorrentHandle, dht: bool) -> Option<String> {
    let (no_trackers, private) = match (handle.metainfo(), handle.magnet_link()) {
        (Some(m), _) => (m.trackers.is_empty(), m.info.private),
        (None, Some(link)) => (link.trackers.is_empty() && link.peers.is_empty(), false),
        (None, None) => (false, false),
    };
    let web_seeds = handle.web_seeds();
    if web_seeds.active > 0 {
        return None;
    }
    if no_trackers && web_seeds.dropped > 0 {
        return Some(format!(
            "no peers: the torrent lists no tracker, and its web {} failed too often \
             and {} dropped (the log says why)",
            if web_seeds.dropped == 1 {
                "seed"
            } else {
                "seeds"
            },
            if web_seeds.dropped == 1 {
                "was"
            } else {
                "were"
            },
        ));
    }
    if no_trackers {
        let why = if private {
            "no peers: the torrent lists no tracker, and it is private (no DHT)"
        } else if dht {
            "no peers: the torrent lists no tracker, and the DHT has found none yet"
        } else {
            "no peers: the torrent lists no tracker, and the DHT is off"
        };
        return Some(why.into());
    }
    match handle.announce_outcome()? {
        AnnounceOutcome::Failed { since, error } => Some(format!(
            "no tracker answered since {}: {error}",
            crate::commands::output::local_clock(Timestamp::from_system_time(since))
        )),
        AnnounceOutcome::Answered { peers: 0, at } => Some(format!(
            "no peers: the tracker listed none at {}",
            crate::commands::output::local_clock(Timestamp::from_system_time(at))
        )),
        AnnounceOutcome::Answered { .. } => None,
    }
}
use crate::torrent_db::{hex, StoredTorrent, TorrentDb};

mod completion;
mod files;
mod limits;
mod membership;
mod queue;
mod recheck;
pub mod relocate;
mod seeding;
mod space;
pub mod watch;
pub use completion::Completion;
pub use files::FileSettings;
pub use membership::parse_token;
pub use queue::{QueueLimits, DEFAULT_MAX_ACTIVE_DOWNLOADS};
pub use seeding::{parse_ratio, parse_seed_time, Goal, SeedDefaults};

/// Why a request about torrents failed; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// No torrent has this id (or prefix).
    #[error("no torrent with id {0}")]
    NotFound(String),
    /// The prefix matches several torrents.
    #[error("id {0} matches several torrents; give more digits")]
    Ambiguous(String),
    /// Already added.
    #[error("torrent {0} is already added")]
    Duplicate(String),
    /// The request cannot be served as asked.
    #[error("{0}")]
    Invalid(String),
    /// Another process writes this torrent's data (its lock beside the data).
    #[error("{0}")]
    InUse(String),
    /// The wanted files do not fit in the download directory's free space.
    #[error("{0}")]
    NoSpace(String),
    /// The engine or the database failed.
    #[error("{}", crate::commands::output::error_chain(.0))]
    Internal(anyhow::Error),
}

/// What a torrent is added or restored from: a .torrent, or a magnet
/// link whose metadata is still to fetch (stored as its URI, in the same
/// column as a .torrent's bytes).
enum Source {
    Torrent(Metainfo),
    Magnet(Magnet),
}

impl Source {
    fn parse(bytes: &[u8]) -> Result<Source, String> {
        if bytes.starts_with(b"magnet:") {
            let text = std::str::from_utf8(bytes).map_err(|_| "magnet link is not UTF-8")?;
            return Magnet::parse(text)
                .map(Source::Magnet)
                .map_err(|e| format!("invalid magnet link: {e}"));
        }
        Metainfo::from_bytes(bytes)
            .map(Source::Torrent)
            .map_err(|e| format!("not a usable torrent: {e}"))
    }

    fn info_hash(&self) -> [u8; 20] {
        match self {
            Source::Torrent(m) => m.info_hash.0,
            Source::Magnet(m) => m.info_hash.0,
        }
    }

    /// The name to show and to lock: the torrent's, or the link's `dn`, or the hash.
    fn name(&self) -> String {
        match self {
            Source::Torrent(m) => m.info.name.clone(),
            Source::Magnet(m) => m
                .display_name
                .clone()
                .unwrap_or_else(|| m.info_hash.to_hex()),
        }
    }
}

struct Entry {
    handle: TorrentHandle,
    download_dir: PathBuf,
    user_paused: bool,
    background: bool,
    /// Paused by the agent because background work waits now.
    waiting: bool,
    /// Held while the engine has the torrent: no other process writes its files.
    data_lock: Option<crate::lock::Lock>,
    /// Its own rate limits (`capwise set`), asked before the session's gate.
    limit: Arc<limits::TorrentLimit>,
    /// Its seeding goals and lifetime totals.
    seeding: Arc<seeding::Seeding>,
    /// Set while `capwise recheck` hashes its data again.
    rechecking: bool,
    /// Its data is being moved (`capwise move`): released by the engine.
    moving: bool,
    /// Waiting for a place in the queue, and where in line.
    queued: Option<queue::Queued>,
    /// Whether the engine was last told to run it (`Torrents::settle`).
    running: bool,
    /// Held because its wanted files do not fit (a magnet's size is known
    /// once its metadata is in): why, until a resume finds room.
    no_space: Option<String>,
}

impl Entry {
    /// Whether it should run now: not paused by the user, not waiting on
    /// the policy, not stopped by a seeding goal.
    fn should_run(&self) -> bool {
        !self.user_paused
            && !self.waiting
            && self.no_space.is_none()
            && self.seeding.finished().is_none()
    }

    /// Why the user cannot pause, resume or remove it just now: while a
    /// recheck or a move has it out of the session, its handle is the last
    /// run's and what the user asked would be lost.
    fn busy(&self) -> Result<(), TorrentError> {
        if self.rechecking {
            Err(TorrentError::Invalid(
                "it is being checked (capwise recheck); try again once that is over".into(),
            ))
        } else if self.moving {
            Err(TorrentError::Invalid(
                "its data is being moved (capwise move); try again once that is over".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// Torrents by id.
pub struct Torrents {
    session: Session,
    db: Arc<TorrentDb>,
    entries: Mutex<HashMap<String, Entry>>,
    background_allowed: AtomicBool,
    /// The decision's sentence, shown as the reason a torrent waits.
    waiting_reason: Mutex<String>,
    /// The policy holds every WAN byte (and announce) back: a torrent with
    /// no peer says the decision's sentence.
    wan_held: AtomicBool,
    /// `capwise run --peer`: dialled for every torrent, like its `x.pe`.
    manual_peers: Vec<SocketAddr>,
    /// Channel subscriptions' WAN windows: a torrent of a subscription
    /// with one starts with its switch.
    wan_windows: crate::subscriptions::window::Windows,
    /// `[seeding]`: the goals of torrents without their own.
    seed_defaults: SeedDefaults,
    /// What a torrent started again keeps from its last run, by id.
    carried: Mutex<HashMap<String, recheck::Carried>>,
    /// `incomplete_dir` and `on_complete`.
    completion: Arc<Completion>,
    /// Every torrent's id in queue order, first to go first.
    queue: Mutex<Vec<String>>,
    /// `[queue]`: how many download and seed at once.
    queue_limits: QueueLimits,
}

impl Torrents {
    /// Wraps a session; torrents come from [`Torrents::restore`] and [`Torrents::add`].
    pub fn new(session: Session, db: Arc<TorrentDb>, background_allowed: bool) -> Self {
        Torrents {
            session,
            db,
            entries: Mutex::new(HashMap::new()),
            background_allowed: AtomicBool::new(background_allowed),
            waiting_reason: Mutex::new(String::new()),
            wan_held: AtomicBool::new(false),
            manual_peers: Vec::new(),
            wan_windows: Default::default(),
            seed_defaults: SeedDefaults::default(),
            carried: Mutex::new(HashMap::new()),
            completion: Default::default(),
            queue: Mutex::new(Vec::new()),
            queue_limits: QueueLimits::default(),
        }
    }

    /// The config's seeding goals, for torrents without their own.
    pub fn with_seed_defaults(mut self, defaults: SeedDefaults) -> Self {
        self.seed_defaults = defaults;
        self
    }

    /// The subscriptions' WAN windows, looked up by each torrent's info-hash
    /// as it starts (added or restored).
    pub fn with_wan_windows(mut self, windows: crate::subscriptions::window::Windows) -> Self {
        self.wan_windows = windows;
        self
    }

    /// Peers every torrent dials (and dials again after a pause), like a
    /// magnet link's `x.pe`: `capwise run --peer`.
    pub fn with_manual_peers(mut self, peers: Vec<SocketAddr>) -> Self {
        self.manual_peers = peers;
        self
    }

    /// Whether the policy holds all WAN traffic back now (roaming, a spent
    /// budget, offline): then trackers are not asked, and that is why a
    /// torrent has no peer.
    pub fn set_wan_held(&self, held: bool) {
        self.wan_held.store(held, Ordering::Release);
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// How many torrents are running or paused.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Opens the stored torrents (in queue order, as the database lists
    /// them), `parallelism` at a time; the queue settles once they are all
    /// in, so none runs out of turn meanwhile.
    pub async fn restore_all(self: &Arc<Self>, stored: Vec<StoredTorrent>, parallelism: usize) {
        self.queue_in_order(stored.iter().map(|t| t.id.clone()).collect());
        let permits = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for t in stored {
            let me = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                me.restore(t).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        self.restored().await;
    }

    /// Opens a stored torrent in the engine (resume data trusted where files
    /// are unchanged). A torrent whose data cannot be opened is logged and
    /// skipped, not fatal: the others must still start.
    async fn restore(self: &Arc<Self>, stored: StoredTorrent) {
        let metainfo = match Source::parse(&stored.metainfo) {
            Ok(m) => m,
            Err(error) => {
                tracing::error!(id = %stored.id, %error, "stored torrent no longer parses; skipped");
                return;
            }
        };
        if let Err(error) = self
            .start_settled(
                metainfo,
                stored.download_dir,
                stored.paused,
                stored.background,
                false,
            )
            .await
        {
            tracing::error!(id = %stored.id, name = %stored.name, error = %error, "cannot restore torrent");
        }
    }

    async fn start(
        self: &Arc<Self>,
        source: Source,
        download_dir: PathBuf,
        user_paused: bool,
        background: bool,
    ) -> Result<TorrentView, TorrentError> {
        self.start_settled(source, download_dir, user_paused, background, true)
            .await
    }

    /// [`Torrents::start`]; the queue settles after it when `settle` (a
    /// restore settles once, after all).
    async fn start_settled(
        self: &Arc<Self>,
        source: Source,
        download_dir: PathBuf,
        user_paused: bool,
        background: bool,
        settle: bool,
    ) -> Result<TorrentView, TorrentError> {
        let id = hex(&source.info_hash());
        let waiting = background && !self.background_allowed.load(Ordering::Acquire);
        // The engine would create the directory anyway; the lock file goes in it.
        std::fs::create_dir_all(&download_dir).map_err(|e| {
            TorrentError::Invalid(format!("cannot create {}: {e}", download_dir.display()))
        })?;
        // A torrent started again (`recheck`) keeps its lock and its totals.
        let mut carried = self.take_carried(&id);
        let data_lock = match carried.as_mut().and_then(|c| c.data_lock.take()) {
            Some(lock) => Some(lock),
            None => crate::lock::lock_data(&download_dir, &id, &source.name(), "run")
                .map_err(|e| TorrentError::InUse(crate::commands::output::error_chain(&e)))?,
        };
        let limit = limits::TorrentLimit::new(self.stored_limits(&id));
        let seeding = match carried {
            Some(c) => c.seeding,
            None => self.load_seeding(&id),
        };
        // Restored (or started again) where it no longer fits: held with
        // the figures rather than failing on a full disk half-way.
        let no_space = match &source {
            Source::Torrent(m) => self.lacks_room(&m.info, &id, &download_dir),
            Source::Magnet(_) => None,
        };
        let stopped = user_paused || waiting || no_space.is_some() || seeding.finished().is_some();
        // Every field is set today; the rest stays the engine's default
        // when the engine grows another.
        #[allow(clippy::needless_update)]
        let options = TorrentOptions {
            // Under a queue it starts paused, and goes when its turn comes.
            paused: stopped || self.queue_limits.any(),
            // A background torrent stays out of the way of the user's own
            // traffic: uTP (LEDBAT) with every peer that answers it.
            transports: background.then(Transports::background),
            // Site members share WAN fetching for private torrents (a
            // channel's are): their LAN peers are the tracker's members.
            site_coordination: matches!(&source, Source::Torrent(m) if m.info.private),
            membership: self.member_token(&id),
            wan_window: self.wan_windows.switch_for(&id),
            files: self.file_choice(&id),
            gate: Some(capwise_engine::hooks::SharedGate(limit.clone())),
            ..TorrentOptions::default()
        };
        let handle = match source {
            Source::Torrent(metainfo) => self
                .session
                .add_torrent(metainfo, download_dir.clone(), options)
                .await
                .map_err(|e| TorrentError::Internal(anyhow::Error::new(e)))?,
            Source::Magnet(magnet) => {
                let handle = self
                    .session
                    .add_magnet(magnet, download_dir.clone(), options)
                    .map_err(|e| TorrentError::Internal(anyhow::Error::new(e)))?;
                self.store_metadata_when_fetched(id.clone(), handle.clone());
                handle
            }
        };
        if !self.manual_peers.is_empty() {
            // peer source: manual
            handle.connect(&self.manual_peers);
        }
        let entry = Entry {
            handle,
            download_dir,
            user_paused,
            background,
            waiting,
            data_lock,
            limit,
            seeding,
            rechecking: false,
            moving: false,
            queued: None,
            running: !stopped && !self.queue_limits.any(),
            no_space,
        };
        let handle = entry.handle.clone();
        self.entries().insert(id.clone(), entry);
        self.enqueue(&id);
        if settle {
            self.settle_now().await;
        }
        self.follow_completion(id.clone(), handle);
        self.get(&id)
    }

    /// Once a magnet's metadata is fetched, it is stored in place of the
    /// link, as a .torrent, so a restart does not fetch it again.
    fn store_metadata_when_fetched(self: &Arc<Self>, id: String, mut handle: TorrentHandle) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(metainfo) = handle.wait_metadata().await else {
                return;
            };
            let Some(me) = me.upgrade() else { return };
            if !me.entries().contains_key(&id) {
                return;
            }
            match me
                .db
                .set_metainfo(&id, &metainfo.info.name, &metainfo.to_torrent_bytes())
            {
                Ok(()) => {
                    tracing::info!(%id, name = %metainfo.info.name, "metadata fetched and stored")
                }
                Err(error) => tracing::warn!(%id, %error, "cannot store the fetched metadata"),
            }
            me.hold_unless_it_fits(&id, &metainfo.info).await;
        });
    }

    /// Adds a torrent (.torrent bytes, or a magnet link's URI): stored
    /// first, so a crash right after still knows it.
    pub async fn add(
        self: &Arc<Self>,
        metainfo_bytes: Vec<u8>,
        download_dir: PathBuf,
        paused: bool,
        background: bool,
    ) -> Result<TorrentView, TorrentError> {
        let metainfo = Source::parse(&metainfo_bytes).map_err(TorrentError::Invalid)?;
        if !download_dir.is_absolute() {
            return Err(TorrentError::Invalid(format!(
                "download directory {} is not absolute",
                download_dir.display()
            )));
        }
        let id = hex(&metainfo.info_hash());
        if self.entries().contains_key(&id) {
            return Err(TorrentError::Duplicate(id));
        }
        let download_dir = self.start_dir(&id, &metainfo, download_dir);
        std::fs::create_dir_all(&download_dir).map_err(|e| {
            TorrentError::Invalid(format!("cannot create {}: {e}", download_dir.display()))
        })?;
        if let Source::Torrent(m) = &metainfo {
            self.fits(&m.info, &id, &download_dir)?;
        }
        let stored = StoredTorrent {
            id: id.clone(),
            name: metainfo.name(),
            metainfo: metainfo_bytes,
            download_dir: download_dir.clone(),
            paused,
            background,
        };
        self.db
            .insert(&stored, Timestamp::now_from_system().0)
            .map_err(TorrentError::Internal)?;
        match self.start(metainfo, download_dir, paused, background).await {
            Ok(view) => {
                tracing::info!(%id, name = %view.name, "torrent added");
                Ok(view)
            }
            Err(e) => {
                let _ = self.db.remove(&id);
                Err(e)
            }
        }
    }

    /// Resolves a full id or a unique prefix of at least 4 hex digits;
    /// anything else is refused before it is looked up.
    fn resolve(&self, id_or_prefix: &str) -> Result<String, TorrentError> {
        let wanted = crate::api_types::torrent_id(id_or_prefix).map_err(TorrentError::Invalid)?;
        let entries = self.entries();
        if entries.contains_key(&wanted) {
            return Ok(wanted);
        }
        let mut matches = entries.keys().filter(|k| k.starts_with(&wanted));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one.clone()),
            (Some(_), Some(_)) => Err(TorrentError::Ambiguous(wanted)),
            _ => Err(TorrentError::NotFound(wanted)),
        }
    }

    /// Torrent `id`'s stored row and what it was added from, as a start
    /// again from that row (`recheck`, `move`) needs them.
    fn stored(&self, id: &str) -> Result<(StoredTorrent, Source), TorrentError> {
        let stored = self
            .db
            .torrents()
            .map_err(TorrentError::Internal)?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| TorrentError::NotFound(id.to_string()))?;
        let source = Source::parse(&stored.metainfo).map_err(TorrentError::Invalid)?;
        Ok((stored, source))
    }

    /// Every torrent, by name.
    pub fn list(&self) -> Vec<TorrentView> {
        let entries = self.entries();
        let mut views: Vec<TorrentView> = entries.iter().map(|(id, e)| self.view(id, e)).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        views
    }

    /// One torrent.
    pub fn get(&self, id: &str) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        let entries = self.entries();
        let entry = entries
            .get(&id)
            .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
        Ok(self.view(&id, entry))
    }

    /// A torrent's connected peers and web seeds.
    pub fn peers(&self, id: &str) -> Result<crate::api_types::TorrentPeers, TorrentError> {
        let id = self.resolve(id)?;
        let handle = self
            .entries()
            .get(&id)
            .ok_or_else(|| TorrentError::NotFound(id.clone()))?
            .handle
            .clone();
        let mut peers: Vec<crate::api_types::PeerView> =
            handle.peer_list().into_iter().map(Into::into).collect();
        peers.sort_by(|a, b| a.addr.cmp(&b.addr));
        let w = handle.web_seeds();
        Ok(crate::api_types::TorrentPeers {
            peers,
            web_seeds: crate::api_types::WebSeedView {
                active: w.active,
                dropped: w.dropped,
                bytes: w.bytes,
            },
        })
    }

    /// A torrent's trackers, tier by tier.
    pub fn trackers(&self, id: &str) -> Result<Vec<crate::api_types::TrackerView>, TorrentError> {
        let id = self.resolve(id)?;
        let handle = self
            .entries()
            .get(&id)
            .ok_or_else(|| TorrentError::NotFound(id.clone()))?
            .handle
            .clone();
        Ok(handle.trackers().into_iter().map(Into::into).collect())
    }

    /// Pauses (or resumes) a torrent for the user; remembered across restarts.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        if let Some(entry) = self.entries().get(&id) {
            entry.busy()?;
        }
        if !paused {
            self.room_again(&id)?;
        }
        let finished = self.entries().get(&id).and_then(|e| e.seeding.finished());
        if let (false, Some(why)) = (paused, finished) {
            return Err(TorrentError::Invalid(format!(
                "{why}; to seed on, raise or lift its goals: \
                 capwise set {} --ratio none --seed-time none",
                &id[..8]
            )));
        }
        self.db
            .set_paused(&id, paused)
            .map_err(TorrentError::Internal)?;
        self.entries()
            .get_mut(&id)
            .ok_or_else(|| TorrentError::NotFound(id.clone()))?
            .user_paused = paused;
        self.settle_now().await;
        // A resume also clears an error the engine holds (a full disk
        // retried by hand): the queue saw no change in a running torrent.
        let running = self
            .entries()
            .get(&id)
            .filter(|e| !paused && e.running)
            .map(|e| e.handle.clone());
        if let Some(handle) = running {
            handle.resume().await;
        }
        self.get(&id)
    }

    /// Removes a torrent, and its files if asked.
    pub async fn remove(&self, id: &str, delete_data: bool) -> Result<(), TorrentError> {
        let id = self.resolve(id)?;
        let info_hash = {
            let entries = self.entries();
            let entry = entries
                .get(&id)
                .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
            entry.busy()?;
            entry.handle.info_hash()
        };
        self.session
            .remove_torrent(info_hash, delete_data)
            .await
            .map_err(|e| TorrentError::Internal(anyhow::Error::new(e)))?;
        self.entries().remove(&id);
        self.dequeue(&id);
        self.db.remove(&id).map_err(TorrentError::Internal)?;
        self.forget_member_token(&id);
        self.forget_file_settings(&id);
        self.forget_limits(&id);
        self.forget_seeding(&id);
        tracing::info!(%id, delete_data, "torrent removed");
        Ok(())
    }

    /// Lets every torrent go after the session stopped: their data locks
    /// (and the lock files beside the data) are released.
    pub fn release_all(&self) {
        self.entries().clear();
    }

    /// Follows the policy: background torrents wait while background work
    /// is not allowed, and go on when it is again.
    pub async fn apply_background(&self, allowed: bool, reason: &str) {
        self.background_allowed.store(allowed, Ordering::Release);
        *self
            .waiting_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reason.to_string();
        for entry in self.entries().values_mut().filter(|e| e.background) {
            entry.waiting = !allowed;
        }
        self.settle_now().await;
    }

    fn view(&self, id: &str, entry: &Entry) -> TorrentView {
        let p = entry.handle.progress();
        let dht = self.session.runs_dht();
        let finished = entry.seeding.finished();
        let (state, reason) = if entry.moving {
            ("moving", None)
        } else if entry.rechecking {
            (
                "checking",
                Some("checking all its data again (capwise recheck)".to_string()),
            )
        } else if entry.user_paused {
            ("paused", None)
        } else if let Some(why) = &entry.no_space {
            ("error", Some(why.clone()))
        } else if finished.is_some() {
            ("finished", finished)
        } else if let Some(queued) = entry.queued {
            ("queued", Some(self.queued_reason(queued)))
        } else if entry.waiting {
            let why = self
                .waiting_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            // The decision's sentence says that background torrents wait
            // and why (or that everything is paused).
            ("waiting", Some(why))
        } else {
            match &p.state {
                TorrentState::FetchingMetadata if p.peers == 0 => {
                    ("fetching metadata", no_peers_reason(&entry.handle, dht))
                }
                TorrentState::FetchingMetadata => ("fetching metadata", None),
                TorrentState::Checking => ("checking", None),
                TorrentState::Downloading if p.peers == 0 => {
                    let reason = if self.wan_held.load(Ordering::Acquire) {
                        Some(
                            self.waiting_reason
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .clone(),
                        )
                    } else {
                        no_peers_reason(&entry.handle, dht)
                    };
                    ("downloading", reason)
                }
                TorrentState::Downloading => ("downloading", None),
                TorrentState::Seeding => ("seeding", None),
                TorrentState::Paused => ("paused", None),
                TorrentState::Error(e) => ("error", Some(e.clone())),
            }
        };
        TorrentView {
            id: id.to_string(),
            name: entry.handle.name().to_string(),
            state: state.into(),
            reason,
            bytes_have: p.bytes_have,
            total_length: p.total_length,
            wanted_length: p.wanted_length,
            wanted_have: p.wanted_have,
            pieces_have: p.pieces_have,
            piece_count: p.piece_count,
            peers: p.peers,
            peer_sources: entry.handle.peer_sources().into(),
            encrypted_peers: entry.handle.encrypted_peers(),
            utp_peers: entry.handle.utp_peers(),
            download_rate: crate::units::json_rate(p.download_rate),
            upload_rate: crate::units::json_rate(p.upload_rate),
            downloaded: p.downloaded,
            uploaded: p.uploaded,
            download_dir: entry.download_dir.display().to_string(),
            background: entry.background,
            limits: entry.limit.limits(),
            seeding: self.seeding_view(&entry.seeding, &p),
            queue_position: self.queue_position(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_types::PeerSourceCounts;
    use capwise_engine::create::{create_torrent, CreateOptions};
    use capwise_engine::session::{Hooks, SessionConfig};

    #[test]
    fn an_engine_error_shows_its_os_message_once() {
        let engine = capwise_engine::Error::Io {
            path: PathBuf::from("/srv/ro/payload"),
            source: std::io::Error::from_raw_os_error(30),
        };
        let text = TorrentError::Internal(anyhow::Error::new(engine)).to_string();
        assert_eq!(text.matches("Read-only file system").count(), 1, "{text}");
        assert!(text.contains("/srv/ro/payload"), "{text}");
    }

    /// A session on loopback, with the default hooks.
    pub(super) async fn loopback_session() -> Session {
        let config = SessionConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..SessionConfig::default()
        };
        Session::start(config, Hooks::default()).await.unwrap()
    }

    /// The agent's torrents over `session`, stored in a database in `dir`.
    pub(super) fn torrents_in(session: Session, dir: &std::path::Path) -> Arc<Torrents> {
        let db = Arc::new(TorrentDb::open(&dir.join("capwise.db")).unwrap());
        Arc::new(Torrents::new(session, db, true))
    }

    fn torrent_bytes(dir: &std::path::Path, name: &str, trackers: Vec<String>) -> Vec<u8> {
        let data = dir.join(name);
        std::fs::write(&data, vec![1u8; 50_000]).unwrap();
        create_torrent(&CreateOptions {
            path: data,
            trackers,
            ..CreateOptions::default()
        })
        .unwrap()
    }

    /// With the DHT on, a torrent without trackers is not said to be
    /// stuck for want of a DHT; a private one is said to get no DHT help.
    #[tokio::test]
    async fn a_torrent_without_trackers_says_whether_the_dht_looks() {
        let dir = tempfile::tempdir().unwrap();
        let session = Session::start(
            SessionConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                // No bootstrap node: the node runs and sends nothing.
                dht: Some(capwise_engine::dht::DhtOptions::default()),
                ..SessionConfig::default()
            },
            Hooks::default(),
        )
        .await
        .unwrap();
        assert!(session.runs_dht());
        let db = Arc::new(TorrentDb::open(&dir.path().join("capwise.db")).unwrap());
        let torrents = Arc::new(Torrents::new(session, db, true));
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let leech = dir.path().join("leech");
        let public = torrents
            .add(
                torrent_bytes(&src, "pub.bin", vec![]),
                leech.clone(),
                false,
                false,
            )
            .await
            .unwrap();
        let reason = torrents.get(&public.id).unwrap().reason.unwrap_or_default();
        assert!(reason.contains("the DHT has found none yet"), "{reason}");
        let data = src.join("priv.bin");
        std::fs::write(&data, vec![2u8; 50_000]).unwrap();
        let private = create_torrent(&CreateOptions {
            path: data,
            private: true,
            ..CreateOptions::default()
        })
        .unwrap();
        let private = torrents.add(private, leech, false, false).await.unwrap();
        let reason = torrents
            .get(&private.id)
            .unwrap()
            .reason
            .unwrap_or_default();
        assert!(reason.contains("private (no DHT)"), "{reason}");
    }

    /// A torrent without trackers whose web seed is in use has a source:
    /// no "no peers" sentence blames the missing tracker or the DHT.
    #[tokio::test]
    async fn a_torrent_with_a_web_seed_needs_no_tracker() {
        let dir = tempfile::tempdir().unwrap();
        let torrents = torrents_in(loopback_session().await, dir.path());
        let data = dir.path().join("seeded.bin");
        std::fs::write(&data, vec![3u8; 50_000]).unwrap();
        let bytes = create_torrent(&CreateOptions {
            path: data,
            // Port 1 on loopback refuses: the seed stays in use (backing
            // off) long after this test has looked.
            web_seeds: vec!["http://127.0.0.1:1/files/".into()],
            ..CreateOptions::default()
        })
        .unwrap();
        let added = torrents
            .add(bytes, dir.path().join("leech"), false, false)
            .await
            .unwrap();
        let mut view = torrents.get(&added.id).unwrap();
        for _ in 0..100 {
            if view.state == "downloading" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            view = torrents.get(&added.id).unwrap();
        }
        assert_eq!(view.state, "downloading", "{view:?}");
        assert_eq!(view.reason, None, "{view:?}");
        let plain = torrents
            .add(
                torrent_bytes(dir.path(), "plain.bin", vec![]),
                dir.path().join("leech"),
                false,
                false,
            )
            .await
            .unwrap();
        let reason = torrents.get(&plain.id).unwrap().reason.unwrap_or_default();
        assert!(reason.contains("lists no tracker"), "{reason}");
    }

    #[tokio::test]
    async fn a_torrent_says_why_it_waits_once_and_why_it_has_no_peer() {
        let dir = tempfile::tempdir().unwrap();
        let session = loopback_session().await;
        let torrents = torrents_in(session.clone(), dir.path());
        let sentence = "Uploads to the internet paused and background torrents wait: \
                        'Pixel hotspot' is metered (NetworkManager says so).";
        torrents.apply_background(false, sentence).await;
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let leech = dir.path().join("leech");
        let waiting = torrents
            .add(
                torrent_bytes(&src, "bg.bin", vec![]),
                leech.clone(),
                false,
                true,
            )
            .await
            .unwrap();
        assert_eq!(waiting.state, "waiting");
        // The decision's sentence, not "background work waits: ... background ... wait".
        assert_eq!(waiting.reason.as_deref(), Some(sentence));

        // A tracker that refuses connections: the torrent says so.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/announce");
        let added = torrents
            .add(
                torrent_bytes(&src, "fg.bin", vec![url]),
                leech.clone(),
                false,
                false,
            )
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let view = loop {
            let view = torrents.get(&added.id).unwrap();
            if view.reason.is_some() || std::time::Instant::now() > deadline {
                break view;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(view.state, "downloading");
        let reason = view.reason.unwrap_or_default();
        assert!(reason.starts_with("no tracker answered since "), "{reason}");

        // No tracker at all (and no DHT): said too.
        let bare = torrents
            .add(torrent_bytes(&src, "bare.bin", vec![]), leech, false, false)
            .await
            .unwrap();
        let reason = torrents.get(&bare.id).unwrap().reason.unwrap_or_default();
        assert!(reason.contains("lists no tracker"), "{reason}");
        assert!(reason.contains("the DHT is off"), "{reason}");

        // The policy holds the WAN back (trackers are not asked): its
        // sentence is why.
        torrents.set_wan_held(true);
        torrents
            .apply_background(false, "Paused: 'Pixel hotspot' is roaming.")
            .await;
        let reason = torrents.get(&added.id).unwrap().reason.unwrap_or_default();
        assert_eq!(reason, "Paused: 'Pixel hotspot' is roaming.");
        session.shutdown().await;
    }

    /// The API's view counts the connected peers by where they came from.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_view_counts_peers_by_source() {
        let dir = tempfile::tempdir().unwrap();
        let config = || SessionConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..SessionConfig::default()
        };
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let bytes = torrent_bytes(&src, "s.bin", vec![]);
        let meta = Metainfo::from_bytes(&bytes).unwrap();
        let session = Session::start(config(), Hooks::default()).await.unwrap();
        let db = Arc::new(TorrentDb::open(&dir.path().join("capwise.db")).unwrap());
        let torrents = Arc::new(Torrents::new(session.clone(), db, true));
        let seeding = torrents.add(bytes, src, false, false).await.unwrap();
        assert_eq!(seeding.peer_sources, PeerSourceCounts::default());
        // The leecher never downloads, so it stays connected (a finished
        // one leaves the seeder at once).
        struct NoDownloads;
        impl capwise_engine::hooks::ByteGate for NoDownloads {
            fn acquire(
                &self,
                direction: capwise_engine::hooks::Direction,
                _: capwise_engine::hooks::PeerClass,
                _: u64,
            ) -> capwise_engine::hooks::GateFuture<'_> {
                match direction {
                    capwise_engine::hooks::Direction::Up => Box::pin(std::future::ready(())),
                    capwise_engine::hooks::Direction::Down => Box::pin(std::future::pending()),
                }
            }
        }
        let hooks = Hooks {
            gate: Arc::new(NoDownloads),
            ..Hooks::default()
        };
        let leecher = Session::start(config(), hooks).await.unwrap();
        let leeching = leecher
            .add_torrent(meta, dir.path().join("leech"), TorrentOptions::default())
            .await
            .unwrap();
        leeching.connect(&[session.local_addr()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let view = loop {
            let view = torrents.get(&seeding.id).unwrap();
            if view.peers == 1 || std::time::Instant::now() > deadline {
                break view;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let incoming = PeerSourceCounts {
            incoming: 1,
            ..PeerSourceCounts::default()
        };
        assert_eq!(view.peer_sources, incoming, "{view:?}");
        assert_eq!(
            PeerSourceCounts::from(leeching.peer_sources()),
            PeerSourceCounts {
                manual: 1,
                ..PeerSourceCounts::default()
            }
        );
        leecher.shutdown().await;
        session.shutdown().await;
    }

    /// A magnet link is stored as its URI and listed as fetching metadata;
    /// restored, it goes on fetching; once a peer served the metadata it is
    /// stored as a .torrent, so the next restart does not fetch again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_magnet_is_kept_while_fetching_and_stored_as_a_torrent_once_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let config = || SessionConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..SessionConfig::default()
        };
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let bytes = torrent_bytes(&src, "m.bin", vec![]);
        let meta = Metainfo::from_bytes(&bytes).unwrap();
        let uri = format!("magnet:?xt=urn:btih:{}&dn=m.bin", meta.info_hash.to_hex());
        let db_path = dir.path().join("capwise.db");
        let leech = dir.path().join("leech");
        {
            let session = Session::start(config(), Hooks::default()).await.unwrap();
            let db = Arc::new(TorrentDb::open(&db_path).unwrap());
            let torrents = Arc::new(Torrents::new(session.clone(), db.clone(), true));
            let view = torrents
                .add(uri.clone().into_bytes(), leech.clone(), false, false)
                .await
                .unwrap();
            assert_eq!(view.state, "fetching metadata");
            assert_eq!(view.name, "m.bin");
            let stored = db.torrents().unwrap();
            assert!(stored[0].metainfo.starts_with(b"magnet:?"));
            session.shutdown().await;
            torrents.release_all();
        }
        // Restarted: fetching again; a seeder comes and the metadata is stored.
        let seeder = Session::start(config(), Hooks::default()).await.unwrap();
        seeder
            .add_torrent(meta.clone(), src.clone(), TorrentOptions::default())
            .await
            .unwrap();
        let session = Session::start(config(), Hooks::default()).await.unwrap();
        let db = Arc::new(TorrentDb::open(&db_path).unwrap());
        let torrents = Arc::new(Torrents::new(session.clone(), db.clone(), true));
        torrents.restore_all(db.torrents().unwrap(), 4).await;
        let id = hex(&meta.info_hash.0);
        assert_eq!(torrents.get(&id).unwrap().state, "fetching metadata");
        session
            .torrent(meta.info_hash.0)
            .unwrap()
            .connect(&[seeder.local_addr()]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let stored = db.torrents().unwrap();
            if Metainfo::from_bytes(&stored[0].metainfo).is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "metadata never stored"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let stored = db.torrents().unwrap();
        assert_eq!(
            Metainfo::from_bytes(&stored[0].metainfo).unwrap().info_hash,
            meta.info_hash
        );
        assert_eq!(stored[0].name, "m.bin");
        session.shutdown().await;
        seeder.shutdown().await;
    }
}
