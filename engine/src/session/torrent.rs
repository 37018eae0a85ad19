//! One torrent in a session: its shared state, its driver task, piece
//! verification off the executor, and resume data.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};
use tokio::sync::{watch, Notify};

use crate::bitfield::Bitfield;
use crate::class::{PeerSource, PeerSources};
use crate::hooks::{Counters, Direction, PeerClass, Switch};
use crate::metainfo::Metainfo;
use crate::picker::PeerKey;
use crate::priority::Priority;
use crate::storage::{self, Allocation, PieceJournal, ResumeData, Storage};
use crate::swarm::{Event, Swarm};
use crate::transport::{TransportKind, Transports};
use crate::{Error, Result};

use capwise_proto::admission::is_self;
use capwise_proto::torrent::{RunState, TorrentCore};

use super::handle::{AnnounceOutcome, Progress, TorrentHandle, TorrentOptions, TorrentState};
use super::rate::RateWindow;
use super::schedule::{earliest, Duties, Seen};
use super::{announce, files, peer, SessionInner};

/// A peer connection as the torrent sees it.
pub(crate) struct PeerLink {
    pub(crate) addr: SocketAddr,
    /// Our end of the connection (`session/addresses.rs`).
    pub(crate) local: SocketAddr,
    /// LAN or WAN now (`true`: WAN): a network change may make it the
    /// other (`session/reclassify.rs`); bytes are gated and counted by the
    /// class at the moment they move.
    pub(crate) wan: AtomicBool,
    /// Where we learnt of the peer.
    pub(crate) source: PeerSource,
    /// Whether the connection's payload is RC4-encrypted (MSE).
    pub(crate) encrypted: bool,
    /// What carries it.
    pub(crate) kind: TransportKind,
    /// The QUIC connection when we dialled it: it moves with our address
    /// rather than closing (`session/addresses.rs`).
    pub(crate) quic_path: Option<crate::transport::quic::QuicPath>,
    pub(crate) wake: Notify,
    pub(crate) closed: AtomicBool,
    /// Told when the link is closed, so a connection ends at once even
    /// while its writer waits at a gate and its reader for bytes.
    pub(crate) gone: Notify,
}

impl PeerLink {
    /// The peer's class now.
    pub(crate) fn class(&self) -> PeerClass {
        if self.wan.load(Ordering::Acquire) {
            PeerClass::Wan
        } else {
            PeerClass::Lan
        }
    }

    /// Class the peer as `class` from now on.
    pub(crate) fn set_class(&self, class: PeerClass) {
        self.wan.store(class == PeerClass::Wan, Ordering::Release);
    }

    /// Asks the connection's tasks to end (they do on their own); false if
    /// it was already closing.
    pub(crate) fn close(&self) -> bool {
        let was_open = !self.closed.swap(true, Ordering::AcqRel);
        self.wake.notify_one();
        self.gone.notify_waiters();
        was_open
    }

    /// Resolves once the link is closed.
    pub(crate) async fn until_closed(&self) {
        loop {
            let gone = self.gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            gone.await;
        }
    }
}

pub(crate) struct TorrentShared {
    pub(crate) session: Arc<SessionInner>,
    pub(crate) info_hash: [u8; 20],
    pub(crate) metainfo: Arc<Metainfo>,
    pub(crate) storage: Arc<Storage>,
    /// The carriers its peers are dialled over, when not the session's
    /// ([`TorrentOptions::transports`]).
    pub(crate) transports: Option<Transports>,
    /// Its own WAN window ([`TorrentOptions::wan_window`]), if any.
    pub(crate) wan_window: Option<Switch>,
    /// Hashing runs on several threads, writes one at a time: concurrent
    /// writes to one file only spin on the kernel's inode lock.
    pub(crate) write_lock: Arc<Mutex<()>>,
    /// The protocol core (swarm, admission, run state): one lock for what
    /// must change together.
    core: Mutex<TorrentCore>,
    /// The connections' I/O ends, by the key the core gave each. Lock
    /// order: the core first, then this.
    pub(crate) links: Mutex<HashMap<PeerKey, Arc<PeerLink>>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) announce_key: u32,
    /// The core's run state, for the torrent's tasks to watch (the core
    /// holds the truth; this follows each change).
    pub(crate) run: watch::Sender<RunState>,
    /// Wakes the driver before its next deadline (a peer came, a control
    /// changed, the swarm has an earlier deadline).
    pub(crate) driver_wake: Notify,
    /// When the driver means to wake next; [`Planned::Awake`] while it works
    /// (it looks at every deadline again before it sleeps). Written under
    /// the swarm lock, read under it by [`TorrentShared::dispatch`].
    planned: Mutex<Planned>,
    /// Tells the announce task that the schedule changed (an announce is
    /// due now: completed, an error cleared, the address changed).
    pub(crate) reannounce: Notify,
    /// Files whose pieces are being hashed again after a failed read.
    pub(crate) rechecking: Mutex<HashSet<usize>>,
    progress: watch::Sender<Progress>,
    pub(crate) resume_dirty: AtomicBool,
    /// Held while resume data is saved or removed; `true` once removed, so a
    /// save racing the removal cannot bring the entry back.
    pub(crate) resume_removed: Mutex<bool>,
    /// Payload samples the rates are measured over.
    rates: Mutex<RateWindow>,
    /// How the last announce went (`None` before the first one).
    pub(crate) announce_outcome: Mutex<Option<AnnounceOutcome>>,
    /// Each tracker's standing.
    pub(crate) tracker_statuses: super::tracker_status::TrackerStatuses,
    /// Pieces written but not yet in a committed journal record.
    journal: Mutex<JournalState>,
    /// What its web seeds (BEP 19) are doing (`crate::webseed`).
    pub(crate) web_seeds: crate::webseed::Status,
    /// Each file's priority and sequential mode, as last set (the swarm
    /// holds the pieces' priorities made from them).
    pub(crate) files: Mutex<(Vec<Priority>, bool)>,
    /// Its own gate ([`TorrentOptions::gate`]), before the session's.
    gate: Option<crate::hooks::SharedGate>,
}

/// The driver's plan, for those that may need it sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Planned {
    /// Working: it looks at every deadline before it sleeps again.
    Awake,
    /// Asleep until then (`None`: until woken).
    Until(Option<Instant>),
}

/// The write side of the verified-piece journal (`storage/journal.rs`).
#[derive(Debug)]
struct JournalState {
    /// Written, waiting for the next commit; reported verified only after it.
    pending: Vec<u32>,
    /// A task is committing `pending` (at most one per torrent).
    flushing: bool,
    /// The lease of the last record: writes stop before it without a new one.
    lease_until: SystemTime,
}

/// How long a record lets the session write without another.
/// Short: a change to a file between a crash and the restart is noticed
/// only when it comes after the lease.
const JOURNAL_LEASE: Duration = Duration::from_secs(2);
/// A write less than this before the lease ends commits a record first.
const JOURNAL_RENEW: Duration = Duration::from_secs(1);
/// How long written pieces wait for others to share their commit...
const JOURNAL_COALESCE: Duration = Duration::from_millis(20);
/// ...unless this many are waiting already.
const JOURNAL_BATCH: usize = 64;

fn unix_pair(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(_) => (0, 0),
    }
}

/// Resume data for this torrent from the session's store, if any usable.
fn load_resume(session: &SessionInner, metainfo: &Metainfo) -> Option<ResumeData> {
    let store = session.config.resume.as_ref()?;
    let info_hash = metainfo.info_hash.0;
    let bytes = match store.load(&info_hash) {
        Ok(b) => b?,
        Err(e) => {
            tracing::warn!(torrent = %metainfo.info.name, error = %e, "cannot load resume data; checking all data");
            return None;
        }
    };
    let decoded = ResumeData::decode(
        &bytes,
        metainfo.info.piece_count(),
        metainfo.info.files.len(),
    )
    .and_then(|d| {
        if d.info_hash == info_hash {
            Ok(d)
        } else {
            Err(storage::ResumeError::InfoHash)
        }
    });
    match decoded {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(torrent = %metainfo.info.name, error = %e, "ignoring resume data; checking all data");
            None
        }
    }
}

/// The verified-piece journal for this torrent from the session's store, if
/// any usable.
fn load_journal(session: &SessionInner, metainfo: &Metainfo) -> Option<PieceJournal> {
    let store = session.config.resume.as_ref()?;
    let info_hash = metainfo.info_hash.0;
    let bytes = match store.load_journal(&info_hash) {
        Ok(b) => b?,
        Err(e) => {
            tracing::warn!(torrent = %metainfo.info.name, error = %e, "cannot load the piece journal");
            return None;
        }
    };
    match PieceJournal::decode(&bytes, metainfo.info.piece_count()) {
        Ok(j) if j.info_hash == info_hash => Some(j),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(torrent = %metainfo.info.name, error = %e, "ignoring the piece journal");
            None
        }
    }
}

/// Which pieces are present: resume data (the synced checkpoint and the
/// journal of pieces written since) vouches for pieces of files only we
/// changed, the rest that may hold data is hashed (and counted in the
/// session's hashed bytes).
fn check_existing(
    session: &SessionInner,
    metainfo: &Metainfo,
    storage: &Storage,
) -> Result<Bitfield> {
    let layout = storage.layout();
    let resume = load_resume(session, metainfo);
    let journal = load_journal(session, metainfo);
    let (trusted, to_hash) = if resume.is_some() || journal.is_some() {
        let mut stamps = storage.stamps()?;
        for (f, stamp) in stamps.iter_mut().enumerate() {
            if storage.grown_at_open(f) {
                // Shorter than ours was: truncated since, whatever its mtime.
                stamp.length = 0;
            }
        }
        let plan = storage::resume_plan(
            layout,
            resume.as_ref(),
            journal.as_ref(),
            session.config.boot_id.as_deref(),
            &stamps,
        );
        if !plan.rehash.is_empty() {
            tracing::info!(
                torrent = %metainfo.info.name,
                pieces = plan.rehash.len(),
                "files changed, or pieces not synced before a reboot; re-hashing"
            );
        }
        (Some(plan.trusted), plan.rehash)
    } else {
        (None, storage.pieces_with_data())
    };
    let bytes: u64 = to_hash
        .iter()
        .map(|&p| layout.piece_size(p).unwrap_or(0))
        .sum();
    session.hashed.fetch_add(bytes, Ordering::Relaxed);
    let mut have = storage.verify_pieces(&to_hash, session.config.hash_threads)?;
    for p in trusted.iter().flat_map(Bitfield::ones) {
        have.set(p);
    }
    Ok(have)
}

impl TorrentShared {
    pub(crate) async fn open(
        session: Arc<SessionInner>,
        metainfo: Metainfo,
        download_dir: std::path::PathBuf,
        options: TorrentOptions,
    ) -> Result<(Arc<TorrentShared>, TorrentHandle)> {
        let metainfo = Arc::new(metainfo);
        let info_hash = metainfo.info_hash.0;
        for note in &metainfo.info.notes {
            tracing::warn!(torrent = %metainfo.info.name, "{note}");
        }
        let file_priorities = options.files.resolve(&metainfo.info);
        let sequential = options.files.sequential;
        let (storage, have) = {
            let metainfo = metainfo.clone();
            let session = session.clone();
            let skipped = files::skipped(&file_priorities);
            tokio::task::spawn_blocking(move || -> Result<_> {
                let storage = Storage::open_selected(
                    &metainfo.info,
                    &download_dir,
                    Allocation::Sparse,
                    &skipped,
                    &files::parts_name(&info_hash),
                )?;
                let have = check_existing(&session, &metainfo, &storage)?;
                Ok((storage, have))
            })
            .await
            .map_err(|e| Error::Net(std::io::Error::other(e.to_string())))??
        };
        let info = &metainfo.info;
        let mut swarm_config = session.config.swarm.clone();
        swarm_config.listen_port = session.local_addr.port();
        // A torrent with its own carriers and no QUIC among them (a
        // background one: uTP, whose LEDBAT yields) is not moved onto
        // QUIC, whose controller here is quinn's CUBIC.
        let quic_allowed = options
            .transports
            .as_ref()
            .is_none_or(|t| t.uses(crate::transport::Carrier::Quic));
        swarm_config.quic = session.quic_offer().filter(|_| quic_allowed);
        // The writers obtain credit from the gate ahead of the swarm's sends.
        swarm_config.needs_credit = true;
        let mut swarm = Swarm::new(
            info.piece_length,
            info.total_length,
            have,
            swarm_config,
            Instant::now(),
        );
        swarm.set_metadata(bytes::Bytes::from(metainfo.info_bytes.clone()));
        swarm.set_priorities(
            &files::pieces_for(info, &file_priorities, sequential),
            sequential,
            Instant::now(),
        );
        // BEP 11 unless the torrent is private (BEP 27) or the config says
        // no; among proven members only for a private channel torrent.
        let member = options.membership.is_some();
        if let Some(key) = options.membership.clone() {
            swarm.require_membership(capwise_proto::ext::member::Membership {
                key,
                info_hash,
                peer_id: session.peer_id(),
            });
        }
        if let Ok(sharing) = capwise_proto::privacy::PeerSharing::check(info.private, member) {
            swarm.enable_pex(sharing);
        }
        // A member id of its own per torrent and run: the site's split
        // must not move when the session renews its peer id.
        if options.site_coordination {
            swarm.enable_site(rand::random());
        }
        // Start as the switch says, not from a default, so no request is
        // accepted before the first tick only to be withheld.
        swarm.set_seeding(session.hooks.seeding.is_on(), Instant::now());
        // Likewise the torrent's own WAN window.
        swarm.set_wan_held(
            options.wan_window.as_ref().is_some_and(|w| !w.is_on()),
            Instant::now(),
        );
        let run = if options.paused {
            RunState::Paused
        } else {
            RunState::Active
        };
        let mut initial = progress_of(&swarm, info.total_length, (0, 0));
        if options.paused {
            initial.state = TorrentState::Paused;
        }
        let (progress, _) = watch::channel(initial);
        let core = TorrentCore::new(swarm, session.config.max_peers_per_torrent, run);
        let tracker_statuses = super::tracker_status::TrackerStatuses::new(&metainfo.trackers);
        let shared = Arc::new(TorrentShared {
            session,
            info_hash,
            metainfo,
            storage: Arc::new(storage),
            transports: options.transports,
            wan_window: options.wan_window,
            write_lock: Arc::new(Mutex::new(())),
            core: Mutex::new(core),
            links: Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
            announce_key: rand::random(),
            run: watch::channel(run).0,
            driver_wake: Notify::new(),
            planned: Mutex::new(Planned::Awake),
            reannounce: Notify::new(),
            rechecking: Mutex::new(HashSet::new()),
            progress,
            resume_dirty: AtomicBool::new(true),
            resume_removed: Mutex::new(false),
            rates: Mutex::new(RateWindow::default()),
            announce_outcome: Mutex::new(None),
            tracker_statuses,
            journal: Mutex::new(JournalState {
                pending: Vec::new(),
                flushing: false,
                lease_until: UNIX_EPOCH,
            }),
            web_seeds: crate::webseed::Status::default(),
            files: Mutex::new((file_priorities, sequential)),
            gate: options.gate,
        });
        // Records what was just found (pieces hashed after a reboot count as
        // this boot's from now on) and takes the first lease.
        let me = shared.clone();
        let _ = tokio::task::spawn_blocking(move || me.commit_journal(&[], false)).await;
        let handle = TorrentHandle::new(shared.clone());
        Ok((shared, handle))
    }

    /// Waits for the torrent's own gate, then the session's: the credit
    /// every payload byte of this torrent's peers and web seeds needs.
    pub(crate) fn acquire(
        &self,
        direction: Direction,
        class: PeerClass,
        bytes: u64,
    ) -> crate::hooks::GateFuture<'_> {
        let session = self.session.hooks.gate.acquire(direction, class, bytes);
        match &self.gate {
            None => session,
            Some(own) => {
                let own = own.0.acquire(direction, class, bytes);
                Box::pin(async move {
                    own.await;
                    session.await;
                })
            }
        }
    }

    pub(crate) fn subscribe_progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub(crate) fn lock_core(&self) -> MutexGuard<'_, TorrentCore> {
        self.core.lock().expect("core lock poisoned")
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.lock_core().swarm.is_complete()
    }

    pub(crate) fn bytes_left(&self) -> u64 {
        let have = self.lock_core().swarm.stats().bytes_have;
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

    /// Whether this torrent's own WAN window lets payload move to or from a
    /// peer of `class` now (always for LAN peers, and without a window).
    pub(crate) fn window_admits(&self, class: PeerClass) -> bool {
        class == PeerClass::Lan || self.wan_window.as_ref().is_none_or(Switch::is_on)
    }

    /// Resolves when the WAN window opens or closes (never without one).
    pub(crate) async fn window_changed(window: &mut Option<watch::Receiver<bool>>) {
        match window {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    // The switch is gone with its owner: it cannot change again.
                    *window = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// A watch on the WAN window, for [`Self::window_changed`].
    pub(crate) fn window_watch(&self) -> Option<watch::Receiver<bool>> {
        self.wan_window.as_ref().map(Switch::subscribe)
    }

    /// Whether peers may be connected now: active and not failed.
    pub(crate) fn takes_peers(&self) -> bool {
        self.lock_core().takes_peers()
    }

    /// Whether a peer at `addr` may connect now.
    pub(crate) fn admits(&self, addr: SocketAddr) -> bool {
        self.lock_core().admission().admits(addr)
    }

    /// Connected peers by where they came from.
    pub(crate) fn peer_sources(&self) -> PeerSources {
        self.lock_core().admission().sources()
    }

    /// Connected peers whose payload is RC4-encrypted.
    pub(crate) fn encrypted_peers(&self) -> usize {
        let links = self.links.lock().expect("links lock");
        links.values().filter(|link| link.encrypted).count()
    }

    /// Count a fault in this torrent's counters and the session's.
    pub(crate) fn count_fault(&self, add: fn(&Counters)) {
        add(&self.counters);
        add(&self.session.hooks.counters);
    }

    /// Each connected peer's source and carrier.
    pub(crate) fn peer_carriers(&self) -> Vec<(PeerSource, TransportKind)> {
        let links = self.links.lock().expect("links lock");
        links
            .values()
            .map(|link| (link.source, link.kind))
            .collect()
    }

    /// Connected peers over uTP.
    pub(crate) fn utp_peers(&self) -> usize {
        let links = self.links.lock().expect("links lock");
        links
            .values()
            .filter(|link| link.kind == TransportKind::Utp)
            .count()
    }

    /// Dial peers, each found through its own source ([`Self::connect_peers`]).
    pub(crate) fn connect_found(self: &Arc<Self>, peers: &[(SocketAddr, PeerSource)]) {
        for source in PeerSource::ALL {
            let these: Vec<SocketAddr> = peers
                .iter()
                .filter(|&&(_, s)| s == source)
                .map(|&(addr, _)| addr)
                .collect();
            if !these.is_empty() {
                self.connect_peers(&these, source);
            }
        }
    }

    /// Dial peers found through `source`, skipping ourselves, known and
    /// banned ones; each connection records the source.
    pub(crate) fn connect_peers(self: &Arc<Self>, peers: &[SocketAddr], source: PeerSource) {
        let me = self.session.local_addr;
        // Peers that may evict an unproductive one to get in (session/evict.rs).
        let mut evictions = super::evict::PER_ANNOUNCE;
        for &addr in peers {
            if is_self(addr, me) {
                continue;
            }
            if !self.session.hooks.wan.is_on()
                && self.session.hooks.classifier.classify(addr.ip()) == PeerClass::Wan
            {
                continue;
            }
            let must_evict = {
                let mut core = self.lock_core();
                let full = core.admission().is_full();
                if core.begin_dial(addr, evictions > 0 && full).is_err() {
                    continue;
                }
                full
            };
            let permit = self.session.connections.clone().try_acquire_owned().ok();
            if permit.is_none() || must_evict {
                if evictions == 0 {
                    self.lock_core().end_dial(addr);
                    return;
                }
                evictions -= 1;
            }
            let shared = self.clone();
            tokio::spawn(async move {
                let permit = match permit {
                    Some(p) => Some(p),
                    None => shared.session.permit_for_newcomer().await,
                };
                if let Some(permit) = permit {
                    if shared.make_room(addr).await {
                        peer::dial_and_redial(&shared, addr, permit, source).await;
                    }
                }
                shared.lock_core().end_dial(addr);
            });
        }
    }

    /// Announce now, if active (an error cleared, the address changed).
    pub(crate) fn announce_now(&self) {
        self.lock_core().announce.reannounce(Instant::now());
        self.reannounce.notify_one();
    }

    /// Close the connections to WAN peers (the WAN switch went off).
    pub(crate) fn close_wan_links(&self) {
        for link in self.links.lock().expect("links lock").values() {
            if link.class() == PeerClass::Wan && link.close() {
                tracing::info!(addr = %link.addr, "WAN off: closing the connection");
            }
        }
    }

    /// Close every connection (their tasks end on their own).
    pub(crate) fn close_links(&self) {
        for link in self.links.lock().expect("links lock").values() {
            link.close();
        }
    }

    /// Hand on what the swarm produced: wake writers, verify pieces, drop peers.
    pub(crate) fn dispatch(self: &Arc<Self>, mut core: MutexGuard<'_, TorrentCore>) {
        let swarm = &mut core.swarm;
        let dirty = swarm.take_dirty();
        let mut events = Vec::new();
        while let Some(ev) = swarm.poll_event() {
            events.push(ev);
        }
        let finished_now = events.contains(&Event::Finished);
        // A piece assembled, or one verified (or lost) since the last
        // publication: watchers see it now, not at the driver's next wake.
        let verified_changed = swarm.stats().pieces_have != self.progress.borrow().pieces_have;
        let progress = (finished_now
            || verified_changed
            || events
                .iter()
                .any(|e| matches!(e, Event::PieceComplete { .. })))
        .then(|| self.progress_now(swarm));
        // An input may have brought a deadline forward (a request sent, a
        // block queued, blocks back in the pool): the driver, asleep until
        // later, must wake for it.
        let due = core.poll_timeout();
        let planned = *self.planned.lock().expect("planned lock");
        let sooner = match (due, planned) {
            (Some(due), Planned::Until(Some(until))) => due < until,
            (Some(_), Planned::Until(None)) => true,
            _ => false,
        };
        if sooner {
            self.driver_wake.notify_one();
        }
        if finished_now {
            core.announce.completed(Instant::now());
            self.reannounce.notify_one();
        }
        // Peers to ban are banned before the lock goes, so none slips back in.
        for ev in &events {
            if let Event::Disconnect {
                peer, ban: true, ..
            } = ev
            {
                if let Some(addr) = core.admission().member(*peer).map(|m| m.addr) {
                    core.ban(addr);
                }
            }
        }
        drop(core);
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
                        link.close();
                    }
                }
                Event::PeersLearnt { peer, learnt } => self.pex_learnt(peer, learnt),
                Event::Finished => {
                    tracing::info!(torrent = %self.metainfo.info.name, "download complete");
                }
            }
        }
        if let Some(p) = progress {
            self.resume_dirty.store(true, Ordering::Relaxed);
            self.publish(p);
        }
        if finished_now {
            // A completed download is worth keeping now, not in 30 s.
            let me = self.clone();
            tokio::spawn(async move {
                let _ = tokio::task::spawn_blocking(move || me.save_resume()).await;
            });
        }
    }

    /// Publish `p`, with the state a pause or an error imposes.
    pub(crate) fn publish(&self, mut p: Progress) {
        {
            let core = self.lock_core();
            if core.run_state() == RunState::Paused {
                p.state = TorrentState::Paused;
            } else if let Some(f) = core.fault() {
                p.state = TorrentState::Error(f.message.clone());
            }
        }
        self.progress.send_replace(p);
    }

    /// Publish the current progress.
    pub(crate) fn publish_now(&self) {
        let p = self.progress_now(&self.lock_core().swarm);
        self.publish(p);
    }

    /// The progress now, its rates measured over the last few seconds of
    /// payload ([`RateWindow`]); 0 without peers or web seeds in use, since
    /// nothing can move (a web-seed-only download still shows its rate).
    pub(crate) fn progress_now(&self, swarm: &Swarm) -> Progress {
        let totals = self.payload_totals();
        let mut p = progress_of(swarm, self.metainfo.info.total_length, totals);
        let (up, down) =
            self.rates
                .lock()
                .expect("rates lock")
                .sample(Instant::now(), totals.0, totals.1);
        let sources = p.peers + self.web_seeds.stats().active;
        (p.upload_rate, p.download_rate) = if sources == 0 { (0.0, 0.0) } else { (up, down) };
        p
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
            let me = self.clone();
            let outcome = tokio::task::spawn_blocking(move || -> (Result<bool>, Vec<u8>) {
                let digest: [u8; 20] = Sha1::digest(&data).into();
                if digest != expected {
                    return (Ok(false), data);
                }
                let written = {
                    let _one_writer = write_lock.lock().unwrap_or_else(|e| e.into_inner());
                    me.renew_journal_lease();
                    storage.write_piece(index, &data).map(|()| true)
                };
                (written, data)
            })
            .await;
            match outcome {
                Ok((Ok(true), buf)) if self.session.config.resume.is_some() => {
                    // Reported (and announced) once its record is committed,
                    // so a kill -9 never loses a piece the user saw verified.
                    self.lock_core().swarm.recycle_buffer(buf);
                    self.journal_written(index);
                }
                Ok((Ok(ok), buf)) => {
                    if !ok {
                        tracing::warn!(piece = index, "piece failed its hash check");
                        self.count_fault(Counters::add_hash_failure);
                    }
                    let mut core = self.lock_core();
                    core.swarm.recycle_buffer(buf);
                    core.swarm.piece_verified(index, ok, Instant::now());
                    self.dispatch(core);
                }
                Ok((Err(e), buf)) => {
                    let mut core = self.lock_core();
                    core.swarm.recycle_buffer(buf);
                    core.swarm.piece_unwritten(index);
                    self.dispatch(core);
                    self.write_failed(index, &e);
                }
                Err(e) => self.fail(format!("verification task failed: {e}"), None),
            }
        });
    }

    /// Before a write (blocking, under the write lock): commits a record
    /// when the last one's lease is about to end, so no write of ours lands
    /// after the lease a record on disk states.
    fn renew_journal_lease(&self) {
        if self.session.config.resume.is_none() {
            return;
        }
        let due = {
            let j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            SystemTime::now() + JOURNAL_RENEW >= j.lease_until
        };
        if due {
            self.commit_journal(&[], true);
        }
    }

    /// A verified piece was written: queue it for the next journal commit.
    fn journal_written(self: &Arc<Self>, index: u32) {
        let start = {
            let mut j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            j.pending.push(index);
            !std::mem::replace(&mut j.flushing, true)
        };
        if start {
            tokio::spawn(self.clone().flush_journal());
        }
    }

    /// Commits the pending pieces in batches (one record per batch), then
    /// reports them verified; ends when none are left.
    async fn flush_journal(self: Arc<Self>) {
        loop {
            let waiting = self
                .journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pending
                .len();
            if waiting < JOURNAL_BATCH {
                tokio::time::sleep(JOURNAL_COALESCE).await;
            }
            let batch = {
                let mut j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
                if j.pending.is_empty() {
                    j.flushing = false;
                    return;
                }
                std::mem::take(&mut j.pending)
            };
            let me = self.clone();
            let committed = batch.clone();
            let _ = tokio::task::spawn_blocking(move || me.commit_journal(&committed, true)).await;
            let mut core = self.lock_core();
            let now = Instant::now();
            for p in batch {
                core.swarm.piece_verified(p, true, now);
            }
            self.dispatch(core);
        }
    }

    /// Records the pieces had, written and pending, plus `extra`, with a new
    /// lease: [`JOURNAL_LEASE`] ahead when `writes_follow`, else ending now
    /// (so a file changed from now on without a newer record is someone
    /// else's doing). Blocking. A failed commit is logged: the record on
    /// disk keeps its older lease, so files we write after it are hashed
    /// after a crash.
    fn commit_journal(&self, extra: &[u32], writes_follow: bool) {
        let Some(store) = &self.session.config.resume else {
            return;
        };
        let removed = self
            .resume_removed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *removed {
            return;
        }
        let mut pieces = self.lock_core().swarm.have().clone();
        let until = if writes_follow {
            SystemTime::now() + JOURNAL_LEASE
        } else {
            SystemTime::now()
        };
        {
            let mut j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
            for &p in j.pending.iter().chain(extra) {
                pieces.set(p);
            }
            // Also after a failure: retry at the next renewal, not every write.
            j.lease_until = until;
        }
        let record = PieceJournal {
            info_hash: self.info_hash,
            boot_id: self.session.config.boot_id.clone().unwrap_or_default(),
            lease_until: unix_pair(until),
            pieces,
        };
        if let Err(e) = store.save_journal(&self.info_hash, &record.encode()) {
            tracing::warn!(torrent = %self.metainfo.info.name, error = %e, "could not record written pieces");
        }
    }

    /// Save resume data if anything changed since the last save. Blocking:
    /// run it with `spawn_blocking`.
    pub(crate) fn save_resume(&self) {
        let Some(store) = &self.session.config.resume else {
            return;
        };
        let removed = self
            .resume_removed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *removed || !self.resume_dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut pieces = self.lock_core().swarm.have().clone();
        // Written pieces awaiting their journal commit are synced below too.
        for &p in &self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
        {
            pieces.set(p);
        }
        let result = self.storage.sync_all().and_then(|()| {
            let data = ResumeData {
                info_hash: self.info_hash,
                pieces,
                files: self.storage.stamps()?,
            };
            store
                .save(&self.info_hash, &data.encode())
                .map_err(Error::Net)
        });
        if let Err(e) = result {
            tracing::warn!(torrent = %self.metainfo.info.name, error = %e, "could not save resume data");
            self.resume_dirty.store(true, Ordering::Relaxed);
            return;
        }
        drop(removed);
        // The checkpoint's stamps are the truth now: end the journal's lease
        // here, with no write in flight, so a change to a file after a stop
        // is noticed however soon it comes. The next write takes a new one.
        let _one_writer = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.commit_journal(&[], false);
    }

    /// Save resume data now, off the executor.
    pub(crate) async fn save_resume_now(self: &Arc<Self>) {
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.save_resume()).await;
    }

    /// Leave the swarm: trackers told, resume data saved.
    pub(crate) async fn stop(self: &Arc<Self>) {
        self.close_links();
        self.save_resume_now().await;
        announce::stopped(&**self).await;
    }
}

pub(crate) fn progress_of(
    swarm: &Swarm,
    total_length: u64,
    (uploaded, downloaded): (u64, u64),
) -> Progress {
    let s = swarm.stats();
    let state = if swarm.is_done() {
        TorrentState::Seeding
    } else {
        TorrentState::Downloading
    };
    Progress {
        state,
        pieces_have: s.pieces_have,
        piece_count: s.piece_count,
        bytes_have: s.bytes_have,
        total_length,
        wanted_length: s.bytes_wanted,
        wanted_have: s.bytes_wanted_have,
        peers: s.peers,
        download_rate: s.download_rate,
        upload_rate: s.upload_rate,
        downloaded,
        uploaded,
        request_timeouts: s.request_timeouts,
    }
}

/// Start a torrent's driver and announce tasks.
pub(crate) fn spawn_tasks(shared: Arc<TorrentShared>) {
    tokio::spawn(announce::run(shared.clone()));
    crate::webseed::spawn(&shared);
    tokio::spawn(drive(shared));
}

/// The driver: sleeps until the swarm's next deadline or its own duties
/// ([`schedule::Duties`]: resume data, the vanished-file check, progress
/// sampling while bytes move), or until woken (a peer came or left, the
/// swarm has an earlier deadline, a control, the seeding or WAN switch
/// changed). An idle seeding torrent with a quiet peer wakes for its
/// keep-alives only.
async fn drive(shared: Arc<TorrentShared>) {
    let hooks = &shared.session.hooks;
    let mut shutdown = shared.session.shutdown.subscribe();
    let mut run = shared.run.subscribe();
    let mut seeding_changes = hooks.seeding.subscribe();
    let mut wan_changes = hooks.wan.subscribe();
    let mut window = shared.window_watch();
    let mut duties = Duties::new(Instant::now());
    let mut site_members = 0;
    loop {
        let now = Instant::now();
        shared.retry_if_due(now);
        if !hooks.wan.is_on() {
            shared.close_wan_links();
        }
        let (p, serving) = {
            let mut core = shared.lock_core();
            core.swarm.set_seeding(hooks.seeding.is_on(), now);
            core.swarm
                .set_wan_held(!shared.window_admits(PeerClass::Wan), now);
            core.swarm.tick(now);
            if core.swarm.site_enabled() && core.swarm.site_members() != site_members {
                site_members = core.swarm.site_members();
                tracing::debug!(torrent = %shared.metainfo.info.name, site_members, "site members");
            }
            let p = shared.progress_now(&core.swarm);
            let serving = core.swarm.serving();
            shared.dispatch(core);
            (p, serving)
        };
        let rates_moving = p.upload_rate > 0.0 || p.download_rate > 0.0;
        shared.publish(p);
        let seen = |shared: &TorrentShared| Seen {
            resume_dirty: shared.resume_dirty.load(Ordering::Relaxed),
            serving,
            totals: shared.payload_totals(),
            rates_moving,
        };
        let due = duties.wake(now, &seen(&shared));
        if due.vanished {
            shared.check_vanished().await;
        }
        if due.resume {
            shared.save_resume_now().await;
        }
        let next = {
            let core = shared.lock_core();
            let next = earliest(core.poll_timeout(), duties.next(&seen(&shared)));
            *shared.planned.lock().expect("planned lock") = Planned::Until(next);
            next
        };
        tokio::select! {
            () = crate::deadline::sleep_until(next) => {}
            () = shared.driver_wake.notified() => {}
            changed = run.changed() => {
                if changed.is_err() || *run.borrow_and_update() == RunState::Stopped {
                    return;
                }
            }
            _ = seeding_changes.changed() => {}
            _ = wan_changes.changed() => {}
            () = TorrentShared::window_changed(&mut window) => {}
            _ = shutdown.recv() => return,
        }
        *shared.planned.lock().expect("planned lock") = Planned::Awake;
    }
}
