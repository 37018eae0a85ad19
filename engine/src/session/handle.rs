//! What a caller holds on a torrent: progress, and the controls (connect,
//! pause, resume).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::class::{PeerSource, PeerSources};
use crate::hooks::{Counters, Switch};
use crate::metainfo::Metainfo;
use crate::transport::Transports;

use super::metadata::MagnetShared;
use super::torrent::TorrentShared;

/// Per-torrent choices.
#[derive(Debug, Clone, Default)]
pub struct TorrentOptions {
    /// Check the data, then stay paused: no peers, no announce, until
    /// [`TorrentHandle::resume`].
    pub paused: bool,
    /// The carriers to dial this torrent's peers over, in order, instead of
    /// the session's ([`Transports::background`] for a torrent that must
    /// yield to the user's own traffic); carriers the session does not run
    /// are skipped. Incoming connections are taken on whatever carrier the
    /// session accepts.
    pub transports: Option<Transports>,
    /// This torrent's own WAN window (a subscription limited to nights, say):
    /// while the switch is off, no payload moves between this torrent and
    /// WAN peers or web seeds; LAN peers go on. It only narrows the
    /// session's `wan` switch ([`Hooks::wan`](super::Hooks::wan)), never
    /// widens it: both must be on for WAN payload to move. Connections and
    /// announces stay (they cost a few bytes, and the tracker is how branch
    /// machines find each other).
    pub wan_window: Option<Switch>,
    /// Coordinate WAN fetching with this torrent's site members (LAN
    /// peers that speak `capwise_site`): each piece is fetched over the
    /// WAN by about one machine of the site and taken over the LAN by the
    /// others (`swarm/site.rs` in capwise-proto). Off by default: a member's
    /// claims hold our WAN sources back from a piece for up to 10 minutes,
    /// so it is for torrents whose LAN peers are trusted (a channel's,
    /// which are private and can require membership). With no site member
    /// connected it changes nothing.
    pub site_coordination: bool,
    /// The channel's membership secret (the token): every peer must prove
    /// membership before it gets anything, and a private torrent may then
    /// use LSD and PEX among proven members (`capwise_proto::ext::member`).
    pub membership: Option<crate::ext::member::MembershipKey>,
    /// Which files to download, and in which order (all of them, rarest
    /// first, by default).
    pub files: super::files::FileChoice,
    /// This torrent's own gate (a per-torrent rate limit), asked before
    /// the session's [`Hooks::gate`](super::Hooks::gate) for every payload
    /// byte of its peers and web seeds: it can only hold bytes back
    /// further, and a byte it holds is not debited from the session's yet.
    pub gate: Option<crate::hooks::SharedGate>,
}

/// Where a torrent stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// A magnet link's torrent fetching its metadata (BEP 9) from peers;
    /// nothing is on disk yet.
    FetchingMetadata,
    /// Hashing what is on disk.
    Checking,
    /// Fetching pieces.
    Downloading,
    /// Every piece verified; serving others.
    Seeding,
    /// Paused by the caller: no peers, no announces.
    Paused,
    /// Stopped by an error. A full disk (`"disk full: ..."`) is retried by
    /// itself; other errors stay until [`TorrentHandle::resume`].
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
    /// Bytes in the pieces of wanted files (`total_length` unless files
    /// are skipped); the download is over when `wanted_have` reaches it.
    pub wanted_length: u64,
    /// Bytes verified among those.
    pub wanted_have: u64,
    /// Connected peers.
    pub peers: usize,
    /// Payload in, bytes/s over the last 5 s (0 without peers).
    pub download_rate: f64,
    /// Payload out, bytes/s over the last 5 s (0 without peers).
    pub upload_rate: f64,
    /// Payload received so far in this session.
    pub downloaded: u64,
    /// Payload sent so far in this session.
    pub uploaded: u64,
    /// Requests that went unanswered too long, so far in this session: a
    /// slow or lying peer, or (were requests sent before their bytes were
    /// debited) a gate holding them back.
    pub request_timeouts: u64,
}

/// How the torrent's last announce went, so that a torrent finding no
/// peers can say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceOutcome {
    /// A tracker answered.
    Answered {
        /// When.
        at: std::time::SystemTime,
        /// How many peers it listed.
        peers: usize,
    },
    /// No tracker answered since `since` (the first failed round after the
    /// last answer); `error` is the last attempt's.
    Failed {
        /// Since when none answered.
        since: std::time::SystemTime,
        /// Why the last one did not.
        error: String,
    },
}

/// The caller's handle on a torrent. Cheap to clone; every clone controls
/// the same torrent. A torrent added from a magnet link starts without its
/// metadata; the handle follows it once the metadata is in.
#[derive(Clone)]
pub struct TorrentHandle {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Torrent {
        shared: Arc<TorrentShared>,
        progress: watch::Receiver<Progress>,
    },
    Magnet {
        magnet: Arc<MagnetShared>,
        progress: watch::Receiver<Progress>,
    },
}

impl TorrentHandle {
    pub(crate) fn new(shared: Arc<TorrentShared>) -> TorrentHandle {
        let progress = shared.subscribe_progress();
        TorrentHandle {
            inner: Inner::Torrent { shared, progress },
        }
    }

    pub(crate) fn magnet(magnet: Arc<MagnetShared>) -> TorrentHandle {
        match magnet.torrent.get() {
            Some(shared) => TorrentHandle::new(shared.clone()),
            None => {
                let progress = magnet.subscribe_progress();
                TorrentHandle {
                    inner: Inner::Magnet { magnet, progress },
                }
            }
        }
    }

    /// The torrent, when it has its metadata.
    fn torrent(&self) -> Option<&Arc<TorrentShared>> {
        match &self.inner {
            Inner::Torrent { shared, .. } => Some(shared),
            Inner::Magnet { magnet, .. } => magnet.torrent.get(),
        }
    }

    /// Follow the torrent once a magnet's metadata is in.
    fn upgrade(&mut self) {
        if let Inner::Magnet { magnet, .. } = &self.inner {
            if let Some(shared) = magnet.torrent.get() {
                *self = TorrentHandle::new(shared.clone());
            }
        }
    }

    /// The latest progress.
    pub fn progress(&self) -> Progress {
        match &self.inner {
            Inner::Torrent { progress, .. } => progress.borrow().clone(),
            Inner::Magnet { magnet, progress } => match magnet.torrent.get() {
                Some(shared) => shared.subscribe_progress().borrow().clone(),
                None => progress.borrow().clone(),
            },
        }
    }

    /// Where the torrent stands (the state of [`progress`](Self::progress)).
    pub fn state(&self) -> TorrentState {
        self.progress().state
    }

    /// Wait until the progress changes.
    pub async fn changed(&mut self) -> Progress {
        self.upgrade();
        match &mut self.inner {
            Inner::Torrent { progress, .. } | Inner::Magnet { progress, .. } => {
                let _ = progress.changed().await;
            }
        }
        self.upgrade();
        self.progress()
    }

    /// Wait until every piece is verified, or the torrent fails.
    pub async fn wait_finished(&mut self) -> std::result::Result<(), String> {
        loop {
            self.upgrade();
            match self.progress().state {
                TorrentState::Seeding => return Ok(()),
                TorrentState::Error(e) => return Err(e),
                _ => {}
            }
            let changed = match &mut self.inner {
                Inner::Torrent { progress, .. } | Inner::Magnet { progress, .. } => {
                    progress.changed().await
                }
            };
            if changed.is_err() {
                return Err("session stopped".into());
            }
        }
    }

    /// Wait until the torrent has its metadata (at once for one added from
    /// a .torrent); `None` if it was removed or the session stopped first.
    pub async fn wait_metadata(&mut self) -> Option<Arc<Metainfo>> {
        loop {
            self.upgrade();
            if let Some(m) = self.metainfo() {
                return Some(m);
            }
            let Inner::Magnet { progress, .. } = &mut self.inner else {
                continue;
            };
            progress.changed().await.ok()?;
        }
    }

    /// Byte counters of this torrent (while fetching metadata, those of
    /// that phase).
    pub fn counters(&self) -> Arc<Counters> {
        match (&self.inner, self.torrent()) {
            (_, Some(shared)) => shared.counters.clone(),
            (Inner::Magnet { magnet, .. }, None) => magnet.counters.clone(),
            (Inner::Torrent { shared, .. }, None) => shared.counters.clone(),
        }
    }

    /// Dial peers directly (a LAN peer, a peer named by the user), as if a
    /// tracker had listed them, recorded as [`PeerSource::Manual`]. They are
    /// dialled again after a pause or an error ends.
    pub fn connect(&self, peers: &[SocketAddr]) {
        if let Some(shared) = self.torrent() {
            shared.remember_peers(peers);
            shared.connect_peers(peers, PeerSource::Manual);
        } else if let Inner::Magnet { magnet, .. } = &self.inner {
            magnet.connect(peers);
        }
    }

    /// Run a connection to a peer over a transport the caller made, as if
    /// we had dialled it (our handshake goes first); its source is
    /// [`PeerSource::Manual`]. Before the metadata, it joins as a
    /// connection of the metadata phase. Dropped when no connection slot is
    /// free or the torrent takes no peers now.
    pub fn connect_transport(&self, transport: crate::transport::Transport) {
        if let Some(shared) = self.torrent() {
            super::peer::connect_over(shared.clone(), transport);
        } else if let Inner::Magnet { magnet, .. } = &self.inner {
            super::metadata_peer::connect_over(magnet.clone(), transport);
        }
    }

    /// Connected peers by where they came from (while fetching metadata,
    /// those of that phase).
    pub fn peer_sources(&self) -> PeerSources {
        match (&self.inner, self.torrent()) {
            (_, Some(shared)) => shared.peer_sources(),
            (Inner::Magnet { magnet, .. }, None) => magnet.peer_sources(),
            (Inner::Torrent { shared, .. }, None) => shared.peer_sources(),
        }
    }

    /// Each connected peer's source and carrier (while fetching metadata,
    /// those of that phase), for a monitor to count by both.
    pub fn peer_carriers(&self) -> Vec<(PeerSource, crate::transport::TransportKind)> {
        match (&self.inner, self.torrent()) {
            (_, Some(shared)) => shared.peer_carriers(),
            (Inner::Magnet { magnet, .. }, None) => magnet.peer_carriers(),
            (Inner::Torrent { shared, .. }, None) => shared.peer_carriers(),
        }
    }

    /// Each connected peer ([`PeerInfo`]); none while a magnet fetches its
    /// metadata (those connections live only for that).
    pub fn peer_list(&self) -> Vec<PeerInfo> {
        self.torrent()
            .map_or_else(Vec::new, |shared| shared.peer_list())
    }

    /// Connected peers whose payload is RC4-encrypted (MSE/PE); none while
    /// a magnet fetches its metadata.
    pub fn encrypted_peers(&self) -> usize {
        self.torrent().map_or(0, |shared| shared.encrypted_peers())
    }

    /// Connected peers that proved channel membership (none for a torrent
    /// that requires none, or while a magnet fetches its metadata).
    pub fn proven_members(&self) -> usize {
        self.torrent().map_or(0, |shared| shared.proven_members())
    }

    /// Whether the peer connected from `addr` proved channel membership:
    /// the predicate site coordination combines with "same site".
    pub fn is_proven_member(&self, addr: SocketAddr) -> bool {
        self.torrent()
            .is_some_and(|shared| shared.is_proven_member(addr))
    }

    /// Connected peers over uTP (the rest are over TCP); none while a
    /// magnet fetches its metadata.
    pub fn utp_peers(&self) -> usize {
        self.torrent().map_or(0, |shared| shared.utp_peers())
    }

    /// Its web seeds (BEP 19 `url-list`): in use, dropped, bytes delivered;
    /// none while a magnet fetches its metadata.
    pub fn web_seeds(&self) -> crate::WebSeedStats {
        self.torrent()
            .map_or_else(Default::default, |shared| shared.web_seeds.stats())
    }

    /// How the last announce went; `None` before the first one (or for a
    /// torrent without trackers: see [`Metainfo::trackers`](crate::metainfo::Metainfo)).
    pub fn announce_outcome(&self) -> Option<AnnounceOutcome> {
        let slot = match (&self.inner, self.torrent()) {
            (_, Some(shared)) => &shared.announce_outcome,
            (Inner::Magnet { magnet, .. }, None) => &magnet.announce_outcome,
            (Inner::Torrent { shared, .. }, None) => &shared.announce_outcome,
        };
        slot.lock().expect("announce outcome lock").clone()
    }

    /// Each tracker's standing, tier by tier (a magnet link's `tr=` ones
    /// until its metadata is in).
    pub fn trackers(&self) -> Vec<super::TrackerStatus> {
        match (&self.inner, self.torrent()) {
            (_, Some(shared)) => shared.tracker_statuses.snapshot(),
            (Inner::Magnet { magnet, .. }, None) => magnet.tracker_statuses.snapshot(),
            (Inner::Torrent { shared, .. }, None) => shared.tracker_statuses.snapshot(),
        }
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> [u8; 20] {
        match &self.inner {
            Inner::Torrent { shared, .. } => shared.info_hash,
            Inner::Magnet { magnet, .. } => magnet.info_hash,
        }
    }

    /// The torrent's name (its file, or its top directory); before the
    /// metadata, the magnet's `dn`, else the info-hash in hex.
    pub fn name(&self) -> String {
        match (&self.inner, self.torrent()) {
            (_, Some(shared)) => shared.metainfo.info.name.clone(),
            (Inner::Magnet { magnet, .. }, None) => magnet.display_name(),
            (Inner::Torrent { shared, .. }, None) => shared.metainfo.info.name.clone(),
        }
    }

    /// The torrent's metainfo; `None` while a magnet's metadata is fetched.
    pub fn metainfo(&self) -> Option<Arc<Metainfo>> {
        self.torrent().map(|shared| shared.metainfo.clone())
    }

    /// The magnet link the torrent was added from, if it was.
    pub fn magnet_link(&self) -> Option<crate::magnet::Magnet> {
        match &self.inner {
            Inner::Magnet { magnet, .. } => Some(magnet.magnet.clone()),
            Inner::Torrent { .. } => None,
        }
    }

    /// The directory the torrent's files live in.
    pub fn download_dir(&self) -> PathBuf {
        match (&self.inner, self.torrent()) {
            (_, Some(shared)) => shared.storage.root().to_path_buf(),
            (Inner::Magnet { magnet, .. }, None) => magnet.download_dir.clone(),
            (Inner::Torrent { shared, .. }, None) => shared.storage.root().to_path_buf(),
        }
    }

    /// Whether the torrent is paused.
    pub fn is_paused(&self) -> bool {
        match (&self.inner, self.torrent()) {
            (_, Some(shared)) => shared.is_paused(),
            (Inner::Magnet { magnet, .. }, None) => magnet.is_paused(),
            (Inner::Torrent { shared, .. }, None) => shared.is_paused(),
        }
    }

    /// Leave the swarm but keep the torrent: every connection closes, no
    /// peer is dialled or admitted, trackers are told `stopped` once and not
    /// announced to again; resume data is saved before this returns.
    /// Pausing a paused torrent does nothing. A magnet's torrent paused
    /// while fetching its metadata stops fetching.
    pub async fn pause(&self) {
        if let Some(shared) = self.torrent() {
            shared.pause().await;
        } else if let Inner::Magnet { magnet, .. } = &self.inner {
            magnet.pause();
            // The metadata may have come in meanwhile.
            if let Some(shared) = magnet.torrent.get() {
                shared.pause().await;
            }
        }
    }

    /// Each file with its progress and priority, in the torrent's order
    /// (empty while a magnet's metadata is fetched).
    pub fn files(&self) -> Vec<super::files::FileProgress> {
        self.torrent().map(|s| s.files()).unwrap_or_default()
    }

    /// Whether pieces are fetched in order.
    pub fn is_sequential(&self) -> bool {
        self.torrent().is_some_and(|s| s.file_state().1)
    }

    /// Sets every file's priority (one per file, as [`files`](Self::files)
    /// lists them) and sequential mode, at once and for the running
    /// torrent; the caller keeps them for the next start
    /// ([`TorrentOptions::files`]). A skipped file kept off the disk is
    /// created when it is wanted again, with the bytes of the pieces it
    /// shares with others. Refused ([`Error::FileSelection`](crate::Error))
    /// when the list does not fit or the metadata is not in yet.
    pub async fn set_files(
        &self,
        priorities: Vec<crate::priority::Priority>,
        sequential: bool,
    ) -> crate::Result<()> {
        let shared = self.torrent().ok_or_else(|| {
            crate::Error::FileSelection("the torrent's metadata is not in yet".into())
        })?;
        shared.set_files(priorities, sequential).await
    }

    /// Undo [`pause`](Self::pause): announce `started` again and redial the
    /// peers given to [`connect`](Self::connect). On a torrent in
    /// [`TorrentState::Error`] this clears the error and retries at once.
    /// Otherwise it does nothing. Returns without waiting for the network.
    pub async fn resume(&self) {
        if let Some(shared) = self.torrent() {
            shared.resume();
        } else if let Inner::Magnet { magnet, .. } = &self.inner {
            magnet.resume();
            if let Some(shared) = magnet.torrent.get() {
                shared.resume();
            }
        }
    }
}

/// One connected peer, as [`TorrentHandle::peer_list`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Its address.
    pub addr: SocketAddr,
    /// Where we learnt of it.
    pub source: PeerSource,
    /// What carries the connection.
    pub transport: crate::transport::TransportKind,
    /// Whether the payload is RC4-encrypted (MSE/PE).
    pub encrypted: bool,
    /// A LAN peer now (else WAN): its bytes do not count against a budget.
    pub lan: bool,
    /// It proved channel membership (site coordination).
    pub proven_member: bool,
    /// Its client, rates, progress and choke/interest flags (`None` for a
    /// connection the swarm has not taken yet).
    pub snapshot: Option<crate::swarm::PeerSnapshot>,
}
