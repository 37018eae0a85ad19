//! A torrent before its metadata (BEP 9): known by its info-hash, the
//! magnet's `tr=` trackers, `x.pe=` peers and the peers the caller names.
//!
//! One driver task announces to the trackers (`left` unknown, so 1), dials
//! peers with the BitTorrent handshake and the extension bit, and runs the
//! sans-IO [`MetadataFetch`] over them; each connection
//! (`metadata_peer.rs`: dialled, accepted or the caller's transport, through
//! the byte gate) is a task that reads messages, feeds ut_metadata ones to
//! the fetch and writes the requests it is handed. Once the fetch yields info bytes whose SHA-1 is the info-hash,
//! the connections close, the torrent is opened as if from a .torrent
//! (`TorrentShared::open`) and dials the same peers again. Until then the
//! torrent is listed with [`TorrentState::FetchingMetadata`], and can be
//! paused (every connection closes, nothing is announced) and removed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_proto::admission::{is_self, Admission, Member, Refusal};
use capwise_proto::announce::AnnounceSchedule;
use capwise_proto::torrent::RunState;
use tokio::sync::{mpsc, watch, Notify};

use crate::class::{PeerSource, PeerSources};
use crate::ext::metadata::{MetadataFetch, MetadataMsg, MAX_MESSAGE_LEN, OUR_ID};
use crate::hooks::{Counters, PeerClass, Switch};
use crate::magnet::Magnet;
use crate::metainfo::Metainfo;
use crate::picker::PeerKey;
use crate::tracker::{AnnounceEvent, AnnounceRequest};
use crate::wire::{self, Message};
use crate::Result;

use super::handle::{AnnounceOutcome, Progress, TorrentOptions, TorrentState};
use super::metadata_peer::{self, Queued};
use super::torrent::TorrentShared;
use super::SessionInner;
use crate::transport::{TransportKind, Transports};
/// The driver looks at the fetch at least this often.
const BEAT: Duration = Duration::from_secs(1);
/// Peers redialled after this long when no connection is left.
const REDIAL: Duration = Duration::from_secs(30);
/// Peers kept to dial; the rest of a tracker's answer is dropped.
const MAX_KNOWN_PEERS: usize = 500;

/// A magnet torrent's state while its metadata is fetched.
pub(crate) struct MagnetShared {
    pub(crate) session: Arc<SessionInner>,
    pub(crate) info_hash: [u8; 20],
    pub(crate) magnet: Magnet,
    pub(crate) download_dir: PathBuf,
    /// The carriers its peers are dialled over, when not the session's
    /// (`TorrentOptions::transports`); the torrent keeps them.
    pub(crate) transports: Option<Transports>,
    /// Its WAN window (`TorrentOptions::wan_window`), kept for the torrent.
    pub(crate) wan_window: Option<Switch>,
    /// `TorrentOptions::site_coordination`, kept for the torrent.
    pub(crate) site_coordination: bool,
    /// `TorrentOptions::files`, applied once the file list is known.
    pub(crate) files: super::files::FileChoice,
    /// `TorrentOptions::gate`, kept for the torrent.
    pub(crate) gate: Option<crate::hooks::SharedGate>,
    pub(crate) run: watch::Sender<RunState>,
    progress: watch::Sender<Progress>,
    /// The torrent, once the metadata is in.
    pub(crate) torrent: OnceLock<Arc<TorrentShared>>,
    /// Set when the torrent exists (handles follow it from then on).
    pub(crate) ready: Notify,
    fetch: Mutex<MetadataFetch>,
    conns: Mutex<HashMap<PeerKey, Conn>>,
    /// Peers to dial: the magnet's, the caller's, the trackers', each with
    /// the source it was found by (the torrent keeps it).
    known: Mutex<Vec<(SocketAddr, PeerSource)>>,
    /// The caller's peers, handed to the torrent as its manual peers.
    manual: Mutex<Vec<SocketAddr>>,
    /// Peers heard over LSD, not handed on if the metadata says private.
    from_lsd: Mutex<HashSet<SocketAddr>>,
    /// Who may join the phase (the torrent's rules: limits, dials under
    /// way, crossed dials); open while active and not over. Lock order:
    /// this first, then `conns`.
    admission: Mutex<Admission>,
    next_key: AtomicU64,
    pub(crate) counters: Arc<Counters>,
    pub(crate) announce_outcome: Mutex<Option<AnnounceOutcome>>,
    /// Each of the link's trackers' standing.
    pub(crate) tracker_statuses: super::tracker_status::TrackerStatuses,
    /// When to announce to the magnet's trackers.
    announce: Mutex<AnnounceSchedule>,
    /// Wakes the announce task (the phase is over).
    announce_wake: Notify,
    announce_key: u32,
    /// Something changed: the driver polls the fetch now.
    wake: Notify,
    /// Why the metadata cannot be used (it verified but does not parse).
    failure: Mutex<Option<String>>,
    /// The verified metadata, for the driver to open the torrent with.
    fetched: Mutex<Option<Metainfo>>,
    /// The phase is over: no more dials, connections close.
    over: AtomicBool,
}

/// A connection's I/O end; who it is, the admission table knows.
struct Conn {
    tx: mpsc::UnboundedSender<Queued>,
    /// Where we learnt of the peer, and what carries it (for the metrics).
    source: PeerSource,
    kind: TransportKind,
    /// The peer's extended message id for ut_metadata.
    their_id: Option<u8>,
}

/// A magnet link's `tr=` trackers, each a tier of its own (BEP 9 gives
/// them no tiers), tried in order.
fn one_tier_each(trackers: &[String]) -> Vec<Vec<String>> {
    trackers.iter().map(|t| vec![t.clone()]).collect()
}

impl MagnetShared {
    pub(crate) fn new(
        session: Arc<SessionInner>,
        magnet: Magnet,
        download_dir: PathBuf,
        options: &TorrentOptions,
    ) -> Arc<MagnetShared> {
        let run = if options.paused {
            RunState::Paused
        } else {
            RunState::Active
        };
        let session_max_peers = session.config.max_peers_per_torrent;
        let tracker_statuses =
            super::tracker_status::TrackerStatuses::new(&one_tier_each(&magnet.trackers));
        let shared = Arc::new(MagnetShared {
            info_hash: magnet.info_hash.0,
            transports: options.transports.clone(),
            wan_window: options.wan_window.clone(),
            site_coordination: options.site_coordination,
            files: options.files.clone(),
            gate: options.gate.clone(),
            fetch: Mutex::new(MetadataFetch::new(magnet.info_hash)),
            session,
            download_dir,
            run: watch::channel(run).0,
            progress: watch::channel(Progress {
                state: TorrentState::FetchingMetadata,
                pieces_have: 0,
                piece_count: 0,
                bytes_have: 0,
                total_length: magnet.exact_length.unwrap_or(0),
                wanted_length: magnet.exact_length.unwrap_or(0),
                wanted_have: 0,
                peers: 0,
                download_rate: 0.0,
                upload_rate: 0.0,
                downloaded: 0,
                uploaded: 0,
                request_timeouts: 0,
            })
            .0,
            magnet,
            torrent: OnceLock::new(),
            ready: Notify::new(),
            conns: Mutex::new(HashMap::new()),
            known: Mutex::new(Vec::new()),
            manual: Mutex::new(Vec::new()),
            from_lsd: Mutex::new(HashSet::new()),
            admission: Mutex::new(Admission::new(session_max_peers)),
            next_key: AtomicU64::new(1),
            counters: Arc::new(Counters::default()),
            announce_outcome: Mutex::new(None),
            tracker_statuses,
            announce: Mutex::new(AnnounceSchedule::new(false)),
            announce_wake: Notify::new(),
            announce_key: rand::random(),
            wake: Notify::new(),
            failure: Mutex::new(None),
            fetched: Mutex::new(None),
            over: AtomicBool::new(false),
        });
        shared.sync_admission();
        shared.publish();
        shared
    }

    fn lock_admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission.lock().expect("admission lock")
    }

    /// Open the admission table while active and not over, else close it.
    fn sync_admission(&self) {
        let open = !self.over.load(Ordering::Acquire) && *self.run.borrow() == RunState::Active;
        self.lock_admission().set_open(open);
    }

    pub(crate) fn subscribe_progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The name to show: the magnet's `dn`, else the info-hash.
    pub(crate) fn display_name(&self) -> String {
        self.magnet
            .display_name
            .clone()
            .unwrap_or_else(|| self.magnet.info_hash.to_hex())
    }

    pub(crate) fn is_paused(&self) -> bool {
        *self.run.borrow() == RunState::Paused
    }

    fn publish(&self) {
        let peers = self.conns.lock().expect("conns lock").len();
        let failure = self.failure.lock().expect("failure lock").clone();
        let state = match (failure, *self.run.borrow()) {
            (Some(e), _) => TorrentState::Error(e),
            (None, RunState::Paused) => TorrentState::Paused,
            _ => TorrentState::FetchingMetadata,
        };
        self.progress.send_if_modified(|p| {
            let changed = p.peers != peers || p.state != state;
            p.peers = peers;
            p.state = state;
            changed
        });
    }

    /// Connected peers by where they came from.
    pub(crate) fn peer_sources(&self) -> PeerSources {
        self.lock_admission().sources()
    }

    /// Each connected peer's source and carrier.
    pub(crate) fn peer_carriers(&self) -> Vec<(PeerSource, TransportKind)> {
        let conns = self.conns.lock().expect("conns lock");
        conns.values().map(|c| (c.source, c.kind)).collect()
    }

    /// Peers the caller names ([`PeerSource::Manual`]): dialled now and
    /// after a pause, and handed to the torrent once it exists.
    pub(crate) fn connect(self: &Arc<Self>, peers: &[SocketAddr]) {
        {
            let mut manual = self.manual.lock().expect("manual lock");
            for p in peers {
                if !manual.contains(p) {
                    manual.push(*p);
                }
            }
        }
        self.learn(peers, PeerSource::Manual);
    }

    /// Peers heard over local service discovery: dialled like the others,
    /// but dropped once the metadata says the torrent is private (BEP 27).
    pub(crate) fn learn_from_lsd(self: &Arc<Self>, peers: &[SocketAddr]) {
        {
            let mut from_lsd = self.from_lsd.lock().expect("lsd peers lock");
            for p in peers {
                if from_lsd.len() < MAX_KNOWN_PEERS {
                    from_lsd.insert(*p);
                }
            }
        }
        self.learn(peers, PeerSource::Lsd);
    }

    /// Connections of this phase now.
    pub(crate) fn peer_count(&self) -> usize {
        self.conns.lock().expect("conns lock").len()
    }

    /// Add peers found through `source` to dial, and dial them while
    /// active. A peer known already keeps its first source.
    pub(crate) fn learn(self: &Arc<Self>, peers: &[SocketAddr], source: PeerSource) {
        let found: Vec<(SocketAddr, PeerSource)> = {
            let mut known = self.known.lock().expect("known lock");
            for &p in peers {
                if !known.iter().any(|&(k, _)| k == p) && known.len() < MAX_KNOWN_PEERS {
                    known.push((p, source));
                }
            }
            peers
                .iter()
                .map(|&p| {
                    let first = known.iter().find(|&&(k, _)| k == p).map(|&(_, s)| s);
                    (p, first.unwrap_or(source))
                })
                .collect()
        };
        if *self.run.borrow() == RunState::Active {
            self.dial(&found);
        }
    }

    fn dial(self: &Arc<Self>, peers: &[(SocketAddr, PeerSource)]) {
        let me = self.session.local_addr;
        for &(addr, source) in peers {
            if is_self(addr, me) {
                continue;
            }
            let class = self.session.hooks.classifier.classify(addr.ip());
            if class == PeerClass::Wan && !self.session.hooks.wan.is_on() {
                continue;
            }
            match self.lock_admission().begin_dial(addr, false) {
                Ok(()) => {}
                Err(Refusal::Full | Refusal::Closed) => return,
                Err(_) => continue,
            }
            let Ok(permit) = self.session.connections.clone().try_acquire_owned() else {
                self.lock_admission().end_dial(addr);
                return;
            };
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = metadata_peer::dial(me.clone(), addr, permit, source).await {
                    tracing::debug!(%addr, error = %e, "metadata peer ended");
                }
                me.lock_admission().end_dial(addr);
            });
        }
    }

    /// Whether a connection from `addr` may join the phase now. One from an
    /// address already connected may still be the peer's half of a crossed
    /// dial (over uTP both come from its one port): [`Self::register`]
    /// decides by peer id which of the two both ends keep.
    pub(crate) fn takes_peer(&self, addr: SocketAddr) -> bool {
        self.lock_admission().admits(addr)
    }

    /// A connection whose handshakes are done joins the phase: it gets a
    /// key and our extension handshake is queued. None: the phase takes no
    /// peer now, or keeps the other of two connections to this peer.
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        peer_id: [u8; 20],
        source: PeerSource,
        kind: TransportKind,
        tx: mpsc::UnboundedSender<Queued>,
    ) -> Option<PeerKey> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            addr,
            peer_id,
            source,
        };
        let replaced = {
            let mut admission = self.lock_admission();
            // Both sides dialled each other: keep the one both ends keep
            // (by peer id, as the torrent does: over uTP both connections
            // share the addresses); its rival ends once its queue is dropped.
            let admit = match admission.admit(&member, &self.session.peer_id()) {
                Ok(admit) => admit,
                Err(refusal) => {
                    tracing::debug!(%addr, %refusal, "metadata connection not taken");
                    return None;
                }
            };
            admission.insert(key, member, admit);
            let greeting =
                wire::extension::our_handshake(self.session.local_addr.port(), 250, None);
            let _ = tx.send(Queued {
                msg: Message::Extended {
                    id: 0,
                    payload: Bytes::from(greeting),
                },
                debit: 0,
            });
            let mut conns = self.conns.lock().expect("conns lock");
            if let Some(old) = admit.replaces {
                conns.remove(&old);
            }
            conns.insert(
                key,
                Conn {
                    tx,
                    source,
                    kind,
                    their_id: None,
                },
            );
            admit.replaces
        };
        if let Some(old_key) = replaced {
            self.fetch.lock().expect("fetch lock").remove_peer(old_key);
        }
        self.publish();
        Some(key)
    }

    /// A connection of the phase ended.
    pub(crate) fn unregister(&self, key: PeerKey) {
        self.lock_admission().remove(key);
        self.conns.lock().expect("conns lock").remove(&key);
        self.fetch.lock().expect("fetch lock").remove_peer(key);
        self.publish();
        self.wake.notify_one();
    }

    /// A message from a peer of this phase; `Err` drops it.
    pub(crate) fn on_message(&self, key: PeerKey, class: PeerClass, msg: Message) -> Result<()> {
        let Message::Extended { id, payload } = msg else {
            // Bitfields, haves and the rest matter only once the torrent
            // exists; it learns them again on its own connections.
            return Ok(());
        };
        let now = Instant::now();
        let violation = |e: String| -> crate::Error {
            std::io::Error::new(std::io::ErrorKind::InvalidData, e).into()
        };
        if id == 0 {
            let (ext_id, size) = wire::extension::peer_ut_metadata(&payload);
            if let Some(conn) = self.conns.lock().expect("conns lock").get_mut(&key) {
                conn.their_id = ext_id;
            }
            self.fetch
                .lock()
                .expect("fetch lock")
                .add_peer(key, ext_id, size)
                .map_err(|e| violation(e.to_string()))?;
            self.wake.notify_one();
            return Ok(());
        }
        if id != OUR_ID {
            return Ok(());
        }
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(violation(format!(
                "ut_metadata message of {} bytes",
                payload.len()
            )));
        }
        match MetadataMsg::decode(&payload).map_err(|e| violation(e.to_string()))? {
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                // What the gate admitted for the request has come.
                self.session.hooks.gate.arrived(class, data.len() as u64);
                let done = self
                    .fetch
                    .lock()
                    .expect("fetch lock")
                    .on_data(key, piece, total_size, data, now)
                    .map_err(|e| violation(e.to_string()))?;
                if let Some(info) = done {
                    self.finish(info);
                }
                self.wake.notify_one();
            }
            MetadataMsg::Reject { piece } => {
                self.fetch
                    .lock()
                    .expect("fetch lock")
                    .on_reject(key, piece, now);
                self.wake.notify_one();
            }
            MetadataMsg::Request { piece } => {
                // We have nothing to serve yet.
                self.send(key, MetadataMsg::Reject { piece });
            }
            MetadataMsg::Unknown => {}
        }
        Ok(())
    }

    /// Send a ut_metadata message to `key` under the id it gave (none: it
    /// said it does not speak ut_metadata, so nothing is sent).
    fn send(&self, key: PeerKey, msg: MetadataMsg) {
        if let Some(conn) = self.conns.lock().expect("conns lock").get(&key) {
            if let Some(id) = conn.their_id {
                let _ = conn.tx.send(Queued {
                    msg: Message::Extended {
                        id,
                        payload: msg.encode(),
                    },
                    debit: 0,
                });
            }
        }
    }

    /// Verified metadata: hand it to the driver.
    fn finish(&self, info: Vec<u8>) {
        let trackers = self
            .magnet
            .trackers
            .iter()
            .map(|t| vec![t.clone()])
            .collect();
        match Metainfo::from_info_bytes(&info, self.magnet.info_hash, trackers) {
            Ok(metainfo) => {
                *self.fetched.lock().expect("fetched lock") = Some(metainfo);
            }
            Err(e) => {
                tracing::warn!(torrent = %self.display_name(), error = %e, "fetched metadata is unusable");
                *self.failure.lock().expect("failure lock") = Some(format!("metadata: {e}"));
                self.publish();
            }
        }
    }

    /// Send the fetch's requests to their peers.
    fn pump(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut fetch = self.fetch.lock().expect("fetch lock");
        let requests = fetch.poll_requests(now);
        let next = fetch.poll_timeout();
        drop(fetch);
        let conns = self.conns.lock().expect("conns lock");
        for r in requests {
            if let Some(conn) = conns.get(&r.peer) {
                let _ = conn.tx.send(Queued {
                    msg: Message::Extended {
                        id: r.ext_id,
                        payload: MetadataMsg::Request { piece: r.piece }.encode(),
                    },
                    debit: r.len as u64,
                });
            }
        }
        next
    }
}

/// Start the phase's tasks: the driver and the announces.
pub(crate) fn spawn_tasks(shared: Arc<MagnetShared>) {
    tokio::spawn(super::announce::run(shared.clone()));
    tokio::spawn(drive(shared));
}

/// `x.pe` values are `HOST:PORT`; names are looked up, bad ones skipped.
async fn resolve(peers: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for peer in peers {
        match tokio::net::lookup_host(peer.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::debug!(peer, error = %e, "x.pe peer skipped"),
        }
    }
    out
}

async fn drive(me: Arc<MagnetShared>) {
    let xpe = resolve(&me.magnet.peers).await;
    me.learn(&xpe, PeerSource::Manual);
    let mut run = me.run.subscribe();
    let mut shutdown = me.session.shutdown.subscribe();
    let mut last_dial = Instant::now();
    let mut was = *run.borrow();
    loop {
        let fetched = me.fetched.lock().expect("fetched lock").take();
        if let Some(metainfo) = fetched {
            me.open_torrent(metainfo).await;
            return;
        }
        let state = *run.borrow_and_update();
        if state == RunState::Stopped {
            return;
        }
        let now = Instant::now();
        let mut next = now + BEAT;
        if state == RunState::Active {
            let known = me.known.lock().expect("known lock").clone();
            if was != RunState::Active
                || (me.conns.lock().expect("conns lock").is_empty()
                    && now.duration_since(last_dial) >= REDIAL)
            {
                me.dial(&known);
                last_dial = now;
            }
            if let Some(t) = me.pump() {
                next = next.min(t.max(now));
            }
        }
        was = state;
        me.publish();
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = me.wake.notified() => {}
            _ = run.changed() => {}
            _ = shutdown.recv() => return,
        }
    }
}

impl MagnetShared {
    /// The metadata is in: close this phase's connections and run the
    /// torrent as if it came from a .torrent, with the same peers.
    async fn open_torrent(self: &Arc<Self>, metainfo: Metainfo) {
        self.over.store(true, Ordering::Release);
        self.sync_admission();
        // The torrent announces from now on, `started` again.
        self.announce_wake.notify_one();
        self.ready.notify_waiters();
        tracing::info!(torrent = %metainfo.info.name, "metadata fetched and verified");
        let paused = self.is_paused();
        let opened = TorrentShared::open(
            self.session.clone(),
            metainfo,
            self.download_dir.clone(),
            TorrentOptions {
                paused,
                transports: self.transports.clone(),
                wan_window: self.wan_window.clone(),
                site_coordination: self.site_coordination,
                // A magnet has no membership token (channel torrents come
                // as .torrent files).
                membership: None,
                files: self.files.clone(),
                gate: self.gate.clone(),
            },
        )
        .await;
        let shared = match opened {
            Ok((shared, _)) => shared,
            Err(e) => {
                tracing::warn!(torrent = %self.display_name(), error = %e, "cannot open the torrent");
                *self.failure.lock().expect("failure lock") = Some(e.to_string());
                self.publish();
                return;
            }
        };
        // Paused or resumed while the data was checked: the torrent follows.
        if self.is_paused() != paused {
            if paused {
                shared.resume();
            } else {
                shared.pause().await;
            }
        }
        if !self.session.adopt(self.info_hash, shared.clone()) {
            // Removed meanwhile.
            return;
        }
        let _ = self.torrent.set(shared.clone());
        super::torrent::spawn_tasks(shared.clone());
        let manual = self.manual.lock().expect("manual lock").clone();
        shared.remember_peers(&manual);
        let mut known = self.known.lock().expect("known lock").clone();
        if shared.metainfo.info.private {
            // A private torrent takes no LSD peers (BEP 27).
            let from_lsd = self.from_lsd.lock().expect("lsd peers lock");
            known.retain(|(p, _)| !from_lsd.contains(p) || manual.contains(p));
        }
        shared.connect_found(&known);
        redial_while_alone(Arc::downgrade(&shared), known);
        // Handles waiting on the magnet's progress move to the torrent's.
        let now = shared.subscribe_progress().borrow().clone();
        self.progress.send_replace(now);
        self.ready.notify_waiters();
    }

    pub(crate) fn pause(&self) {
        self.run.send_if_modified(|s| {
            let was = *s == RunState::Active;
            if was {
                *s = RunState::Paused;
            }
            was
        });
        self.sync_admission();
        self.publish();
        self.session.torrents_changed();
    }

    pub(crate) fn resume(&self) {
        self.run.send_if_modified(|s| {
            let was = *s == RunState::Paused;
            if was {
                *s = RunState::Active;
            }
            was
        });
        self.sync_admission();
        self.publish();
        self.session.torrents_changed();
    }

    /// Leave the session: every task and connection ends.
    pub(crate) fn remove(&self) {
        self.run.send_replace(RunState::Stopped);
        self.over.store(true, Ordering::Release);
        self.sync_admission();
        self.announce_wake.notify_one();
        self.ready.notify_waiters();
    }
}

impl super::announce::Announcer for MagnetShared {
    fn session(&self) -> &SessionInner {
        &self.session
    }

    fn tiers(&self) -> Vec<Vec<String>> {
        one_tier_each(&self.magnet.trackers)
    }

    fn request(&self, event: AnnounceEvent) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.session.peer_id(),
            port: self.session.local_addr.port(),
            uploaded: 0,
            downloaded: 0,
            // Unknown until the metadata is in; not 0, which reads as a seed.
            left: self.magnet.exact_length.unwrap_or(1).max(1),
            event,
            num_want: Some(200),
            key: self.announce_key,
        }
    }

    fn schedule<R>(&self, f: impl FnOnce(&mut AnnounceSchedule) -> R) -> R {
        f(&mut self.announce.lock().expect("announce lock"))
    }

    fn run_state(&self) -> watch::Receiver<RunState> {
        self.run.subscribe()
    }

    fn schedule_changed(&self) -> &Notify {
        &self.announce_wake
    }

    fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    fn found(self: &Arc<Self>, peers: &[SocketAddr]) {
        self.learn(peers, PeerSource::Tracker);
    }

    fn outcome(&self) -> &Mutex<Option<AnnounceOutcome>> {
        &self.announce_outcome
    }

    fn statuses(&self) -> &super::tracker_status::TrackerStatuses {
        &self.tracker_statuses
    }
}

/// Waits before the peers of the metadata phase are dialled again while the
/// new torrent has none: a peer may refuse a connection that follows the
/// one just closed too closely (Transmission closes it at once), and the
/// next announce can be half an hour away.
const REDIAL_AFTER_METADATA: [u64; 5] = [2, 5, 10, 20, 40];

fn redial_while_alone(
    torrent: std::sync::Weak<TorrentShared>,
    peers: Vec<(SocketAddr, PeerSource)>,
) {
    tokio::spawn(async move {
        for secs in REDIAL_AFTER_METADATA {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let Some(shared) = torrent.upgrade() else {
                return;
            };
            if *shared.run.borrow() == RunState::Stopped {
                return;
            }
            if shared.lock_core().swarm.peer_count() > 0 {
                return;
            }
            shared.connect_found(&peers);
        }
    });
}
