//! What a caller holds on a torrent: progress, and the controls (connect,
//! pause, resume).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::hooks::Counters;
use crate::metainfo::Metainfo;

use super::torrent::TorrentShared;

/// Per-torrent choices.
#[derive(Debug, Clone, Default)]
pub struct TorrentOptions {
    /// Check the data, then stay paused: no peers, no announce, until
    /// [`TorrentHandle::resume`].
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
/// the same torrent.
#[derive(Clone)]
pub struct TorrentHandle {
    shared: Arc<TorrentShared>,
    progress: watch::Receiver<Progress>,
}

impl TorrentHandle {
    pub(crate) fn new(shared: Arc<TorrentShared>) -> TorrentHandle {
        let progress = shared.subscribe_progress();
        TorrentHandle { shared, progress }
    }

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
    /// tracker had listed them. They are dialled again after a pause or an
    /// error ends.
    pub fn connect(&self, peers: &[SocketAddr]) {
        self.shared.remember_peers(peers);
        self.shared.connect_peers(peers);
    }

    /// Run a connection to a peer over a transport the caller made, as if
    /// we had dialled it (our handshake goes first). Dropped when no
    /// connection slot is free or the torrent takes no peers now.
    pub fn connect_transport(&self, transport: crate::transport::Transport) {
        super::peer::connect_over(self.shared.clone(), transport);
    }

    /// How the last announce went; `None` before the first one (or for a
    /// torrent without trackers: see [`Metainfo::trackers`](crate::metainfo::Metainfo)).
    pub fn announce_outcome(&self) -> Option<AnnounceOutcome> {
        self.shared
            .announce_outcome
            .lock()
            .expect("announce outcome lock")
            .clone()
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> [u8; 20] {
        self.shared.info_hash
    }

    /// The torrent's name (its file, or its top directory).
    pub fn name(&self) -> &str {
        &self.shared.metainfo.info.name
    }

    /// The torrent's metainfo.
    pub fn metainfo(&self) -> Arc<Metainfo> {
        self.shared.metainfo.clone()
    }

    /// The directory the torrent's files live in.
    pub fn download_dir(&self) -> PathBuf {
        self.shared.storage.root().to_path_buf()
    }

    /// Whether the torrent is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.is_paused()
    }

    /// Leave the swarm but keep the torrent: every connection closes, no
    /// peer is dialled or admitted, trackers are told `stopped` once and not
    /// announced to again; resume data is saved before this returns.
    /// Pausing a paused torrent does nothing.
    pub async fn pause(&self) {
        self.shared.pause().await;
    }

    /// Undo [`pause`](Self::pause): announce `started` again and redial the
    /// peers given to [`connect`](Self::connect). On a torrent in
    /// [`TorrentState::Error`] this clears the error and retries at once.
    /// Otherwise it does nothing. Returns without waiting for the network.
    pub async fn resume(&self) {
        self.shared.resume();
    }
}
