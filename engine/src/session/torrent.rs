//! One torrent in a session: its shared state, its driver task, piece
//! verification off the executor, and resume data.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use tokio::sync::{watch, Notify};

use crate::hooks::{Counters, Direction, PeerClass};
use crate::metainfo::Metainfo;
use crate::picker::PeerKey;
use crate::storage::{self, ResumeData, Storage};
use crate::swarm::{Event, Swarm};
use crate::{Error, Result};

use super::{announce, peer, SessionInner};

/// Per-torrent choices.
#[derive(Debug, Clone, Default)]
pub struct TorrentOptions {
    /// Start without joining the swarm (not used by the foreground commands).
    pub paused: bool,
}

/// Where a torrent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Hashing what is on disk.
    Checking,
    /// Fetching pieces.
    Downloading,
    /// Every piece verified; serving others.
    Seeding,
    /// Stopped by an error (disk full, unwritable directory, ...).
    Error(String),
}

/// A snapshot of a torrent's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Where it stands.
    pub state: TorrentState,
    /// Pieces verified.
    pub pieces_have: u32,
    /// Pieces in all.
    pub piece_count: u32,
    /// Bytes verified.
    pub bytes_have: u64,
    /// Bytes in all.
    pub total_length: u64,
    /// Connected peers.
    pub peers: usize,
    /// Payload in, bytes/s.
    pub download_rate: f64,
    /// Payload out, bytes/s.
    pub upload_rate: f64,
    /// Payload received so far in this session.
    pub downloaded: u64,
    /// Payload sent so far in this session.
    pub uploaded: u64,
}

/// A peer connection as the torrent sees it.
pub(crate) struct PeerLink {
    pub(crate) addr: SocketAddr,
    pub(crate) peer_id: [u8; 20],
    pub(crate) class: PeerClass,
    pub(crate) wake: Notify,
    pub(crate) closed: AtomicBool,
}

pub(crate) struct TorrentShared {
    pub(crate) session: Arc<SessionInner>,
    pub(crate) info_hash: [u8; 20],
    pub(crate) metainfo: Arc<Metainfo>,
    pub(crate) storage: Arc<Storage>,
    /// Hashing runs on several threads, writes one at a time: concurrent
    /// writes to one file only spin on the kernel's inode lock.
    write_lock: Arc<Mutex<()>>,
    pub(crate) swarm: Mutex<Swarm>,
    pub(crate) links: Mutex<HashMap<PeerKey, Arc<PeerLink>>>,
    pub(crate) dialing: Mutex<HashSet<SocketAddr>>,
    pub(crate) banned: Mutex<HashSet<SocketAddr>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) completed: Notify,
    pub(crate) last_tracker: Mutex<Option<String>>,
    pub(crate) announce_key: u32,
    progress: watch::Sender<Progress>,
    resume_path: Option<PathBuf>,
    resume_dirty: AtomicBool,
    error: Mutex<Option<String>>,
}

/// The caller's handle on a torrent.
#[derive(Clone)]
pub struct TorrentHandle {
    shared: Arc<TorrentShared>,
    progress: watch::Receiver<Progress>,
}

impl TorrentHandle {
    /// The latest progress.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Wait until the progress changes.
    pub async fn changed(&mut self) -> Progress {
        let _ = self.progress.changed().await;
        self.progress()
    }

    /// Wait until every piece is verified, or the torrent fails.
    pub async fn wait_finished(&mut self) -> std::result::Result<(), String> {
        loop {
            match self.progress().state {
                TorrentState::Seeding => return Ok(()),
                TorrentState::Error(e) => return Err(e),
                _ => {}
            }
            if self.progress.changed().await.is_err() {
                return Err("session stopped".into());
            }
        }
    }

    /// Byte counters of this torrent.
    pub fn counters(&self) -> Arc<Counters> {
        self.shared.counters.clone()
    }

    /// Dial peers directly (a LAN peer, a peer named by the user), as if a
    /// tracker had listed them.
    pub fn connect(&self, peers: &[SocketAddr]) {
        self.shared.connect_peers(peers);
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> [u8; 20] {
        self.shared.info_hash
    }
}

fn resume_file(state_dir: &std::path::Path, info_hash: &[u8; 20]) -> PathBuf {
    let hex: String = info_hash.iter().map(|b| format!("{b:02x}")).collect();
    state_dir.join("resume").join(format!("{hex}.resume"))
}

impl TorrentShared {
    pub(crate) async fn open(
        session: Arc<SessionInner>,
        metainfo: Metainfo,
        download_dir: PathBuf,
        _options: TorrentOptions,
    ) -> Result<(Arc<TorrentShared>, TorrentHandle)> {
        let metainfo = Arc::new(metainfo);
        let info_hash = metainfo.info_hash.0;
        let resume_path = session
            .config
            .state_dir
            .as_deref()
            .map(|d| resume_file(d, &info_hash));
        let threads = session.config.hash_threads;
        let (storage, have) = {
            let metainfo = metainfo.clone();
            let resume_path = resume_path.clone();
            tokio::task::spawn_blocking(move || -> Result<_> {
                let storage = Storage::open(&metainfo.info, &download_dir)?;
                let resume = match &resume_path {
                    Some(p) => storage::load_resume(
                        p,
                        &info_hash,
                        metainfo.info.piece_count(),
                        metainfo.info.files.len(),
                    )?,
                    None => None,
                };
                let have = match resume {
                    Some(resume) => storage::resume_check(&storage, Some(&resume), threads)?,
                    None => storage.verify_pieces(&storage.pieces_with_data(), threads)?,
                };
                Ok((storage, have))
            })
            .await
            .map_err(|e| Error::Net(std::io::Error::other(e.to_string())))??
        };
        let info = &metainfo.info;
        let mut swarm_config = session.config.swarm.clone();
        swarm_config.listen_port = session.local_addr.port();
        let mut swarm = Swarm::new(
            info.piece_length,
            info.total_length,
            have,
            swarm_config,
            Instant::now(),
        );
        // Start as the switch says, not from a default, so no request is
        // accepted before the first tick only to be withheld.
        swarm.set_seeding(session.hooks.seeding.is_on(), Instant::now());
        let initial = progress_of(&swarm, info.total_length, None, (0, 0));
        let (tx, rx) = watch::channel(initial);
        let shared = Arc::new(TorrentShared {
            session,
            info_hash,
            metainfo,
            storage: Arc::new(storage),
            write_lock: Arc::new(Mutex::new(())),
            swarm: Mutex::new(swarm),
            links: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            banned: Mutex::new(HashSet::new()),
            counters: Arc::new(Counters::default()),
            completed: Notify::new(),
            last_tracker: Mutex::new(None),
            announce_key: rand::random(),
            progress: tx,
            resume_path,
            resume_dirty: AtomicBool::new(true),
            error: Mutex::new(None),
        });
        let handle = TorrentHandle {
            shared: shared.clone(),
            progress: rx,
        };
        Ok((shared, handle))
    }

    pub(crate) fn lock_swarm(&self) -> MutexGuard<'_, Swarm> {
        self.swarm.lock().expect("swarm lock poisoned")
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.lock_swarm().is_complete()
    }

    pub(crate) fn bytes_left(&self) -> u64 {
        let have = self.lock_swarm().stats().bytes_have;
        self.metainfo.info.total_length.saturating_sub(have)
    }

    pub(crate) fn payload_totals(&self) -> (u64, u64) {
        let c = &self.counters;
        let up =
            c.payload(Direction::Up, PeerClass::Lan) + c.payload(Direction::Up, PeerClass::Wan);
        let down =
            c.payload(Direction::Down, PeerClass::Lan) + c.payload(Direction::Down, PeerClass::Wan);
        (up, down)
    }

    /// Whether a peer at `addr` may connect now.
    pub(crate) fn admits(&self, addr: SocketAddr) -> bool {
        !self.banned.lock().expect("ban lock").contains(&addr)
            && self.links.lock().expect("links lock").len()
                < self.session.config.max_peers_per_torrent
            && self.error.lock().expect("error lock").is_none()
    }

    /// Dial peers a tracker listed, skipping ourselves, known and banned ones.
    pub(crate) fn connect_peers(self: &Arc<Self>, peers: &[SocketAddr]) {
        let me = self.session.local_addr;
        for &addr in peers {
            let is_me = addr.port() == me.port()
                && (addr.ip() == me.ip() || me.ip().is_unspecified() && addr.ip().is_loopback());
            if is_me || !self.admits(addr) {
                continue;
            }
            if self
                .links
                .lock()
                .expect("links lock")
                .values()
                .any(|l| l.addr == addr)
            {
                continue;
            }
            if !self.dialing.lock().expect("dial lock").insert(addr) {
                continue;
            }
            let Ok(permit) = self.session.connections.clone().try_acquire_owned() else {
                self.dialing.lock().expect("dial lock").remove(&addr);
                return;
            };
            let shared = self.clone();
            tokio::spawn(async move {
                if let Err(e) = peer::dial(shared.clone(), addr, permit).await {
                    tracing::debug!(%addr, error = %e, "dial failed");
                }
                shared.dialing.lock().expect("dial lock").remove(&addr);
            });
        }
    }

    /// Hand on what the swarm produced: wake writers, verify pieces, drop peers.
    pub(crate) fn dispatch(self: &Arc<Self>, mut swarm: MutexGuard<'_, Swarm>) {
        let dirty = swarm.take_dirty();
        let mut events = Vec::new();
        while let Some(ev) = swarm.poll_event() {
            events.push(ev);
        }
        let finished_now = events.contains(&Event::Finished);
        let progress = (finished_now
            || events
                .iter()
                .any(|e| matches!(e, Event::PieceComplete { .. })))
        .then(|| {
            progress_of(
                &swarm,
                self.metainfo.info.total_length,
                None,
                self.payload_totals(),
            )
        });
        drop(swarm);
        if !dirty.is_empty() {
            let links = self.links.lock().expect("links lock");
            for key in dirty {
                if let Some(link) = links.get(&key) {
                    link.wake.notify_one();
                }
            }
        }
        for ev in events {
            match ev {
                Event::PieceComplete { index, data } => self.clone().verify(index, data),
                Event::Disconnect { peer, reason, ban } => {
                    let link = self.links.lock().expect("links lock").get(&peer).cloned();
                    if let Some(link) = link {
                        tracing::info!(addr = %link.addr, %reason, ban, "dropping peer");
                        if ban {
                            self.banned.lock().expect("ban lock").insert(link.addr);
                        }
                        link.closed.store(true, Ordering::Release);
                        link.wake.notify_one();
                    }
                }
                Event::Finished => {
                    tracing::info!(torrent = %self.metainfo.info.name, "download complete");
                    self.completed.notify_one();
                }
            }
        }
        if let Some(p) = progress {
            self.resume_dirty.store(true, Ordering::Relaxed);
            self.publish(p);
        }
    }

    fn publish(&self, mut p: Progress) {
        if let Some(e) = self.error.lock().expect("error lock").clone() {
            p.state = TorrentState::Error(e);
        }
        self.progress.send_replace(p);
    }

    /// Hash a finished piece off the executor; write it if it matches.
    fn verify(self: Arc<Self>, index: u32, data: Vec<u8>) {
        tokio::spawn(async move {
            let Some(expected) = self.metainfo.info.piece_hashes.get(index as usize).copied()
            else {
                return;
            };
            let storage = self.storage.clone();
            let write_lock = self.write_lock.clone();
            let Ok(_permit) = self.session.hashing.clone().acquire_owned().await else {
                return;
            };
            let outcome = tokio::task::spawn_blocking(move || -> (Result<bool>, Vec<u8>) {
                let digest: [u8; 20] = Sha1::digest(&data).into();
                if digest != expected {
                    return (Ok(false), data);
                }
                let written = {
                    let _one_writer = write_lock.lock().unwrap_or_else(|e| e.into_inner());
                    storage.write_piece(index, &data).map(|()| true)
                };
                (written, data)
            })
            .await;
            match outcome {
                Ok((Ok(ok), buf)) => {
                    if !ok {
                        tracing::warn!(piece = index, "piece failed its hash check");
                    }
                    let mut swarm = self.lock_swarm();
                    swarm.recycle_buffer(buf);
                    swarm.piece_verified(index, ok, Instant::now());
                    self.dispatch(swarm);
                }
                Ok((Err(e), _)) => self.fail(format!("cannot write piece {index}: {e}")),
                Err(e) => self.fail(format!("verification task failed: {e}")),
            }
        });
    }

    /// Stop the torrent with an error a person can act on; other torrents go on.
    pub(crate) fn fail(self: &Arc<Self>, message: String) {
        tracing::error!(torrent = %self.metainfo.info.name, error = %message, "torrent stopped");
        *self.error.lock().expect("error lock") = Some(message);
        for link in self.links.lock().expect("links lock").values() {
            link.closed.store(true, Ordering::Release);
            link.wake.notify_one();
        }
        let p = progress_of(
            &self.lock_swarm(),
            self.metainfo.info.total_length,
            None,
            self.payload_totals(),
        );
        self.publish(p);
    }

    fn save_resume(&self) {
        let Some(path) = &self.resume_path else {
            return;
        };
        if !self.resume_dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let pieces = self.lock_swarm().have().clone();
        let result = self.storage.sync_all().and_then(|()| {
            let files = self.storage.stamps()?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::Io {
                    path: dir.to_path_buf(),
                    source: e,
                })?;
            }
            storage::save_resume(
                path,
                &ResumeData {
                    info_hash: self.info_hash,
                    pieces,
                    files,
                },
            )
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not save resume data");
            self.resume_dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Leave the swarm: trackers told, resume data saved.
    pub(crate) async fn stop(self: &Arc<Self>) {
        for link in self.links.lock().expect("links lock").values() {
            link.closed.store(true, Ordering::Release);
            link.wake.notify_one();
        }
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.save_resume()).await;
        announce::stopped(self).await;
    }
}

fn progress_of(
    swarm: &Swarm,
    total_length: u64,
    error: Option<String>,
    (uploaded, downloaded): (u64, u64),
) -> Progress {
    let s = swarm.stats();
    let state = match error {
        Some(e) => TorrentState::Error(e),
        None if swarm.is_complete() => TorrentState::Seeding,
        None => TorrentState::Downloading,
    };
    Progress {
        state,
        pieces_have: s.pieces_have,
        piece_count: s.piece_count,
        bytes_have: s.bytes_have,
        total_length,
        peers: s.peers,
        download_rate: s.download_rate,
        upload_rate: s.upload_rate,
        downloaded,
        uploaded,
    }
}

/// Start a torrent's driver and announce tasks.
pub(crate) fn spawn_tasks(shared: Arc<TorrentShared>) {
    tokio::spawn(announce::run(shared.clone()));
    tokio::spawn(drive(shared));
}

const TICK: Duration = Duration::from_secs(1);
const RESUME_EVERY: Duration = Duration::from_secs(30);

async fn drive(shared: Arc<TorrentShared>) {
    let mut shutdown = shared.session.shutdown.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_resume = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        let now = Instant::now();
        let seeding = shared.session.hooks.seeding.is_on();
        {
            let mut swarm = shared.lock_swarm();
            swarm.set_seeding(seeding, now);
            swarm.tick(now);
            let p = progress_of(
                &swarm,
                shared.metainfo.info.total_length,
                None,
                shared.payload_totals(),
            );
            shared.dispatch(swarm);
            shared.publish(p);
        }
        if now.duration_since(last_resume) >= RESUME_EVERY {
            last_resume = now;
            let me = shared.clone();
            let _ = tokio::task::spawn_blocking(move || me.save_resume()).await;
        }
    }
}
