//! Making room for a newcomer when connection slots are full: peers that
//! handshook and then said nothing useful (slow loris, half-dead clients)
//! would otherwise hold every slot until their time-out, locking honest
//! peers out. The longest-silent such peer, connected for at least
//! [`GRACE`], is closed so the newcomer can take its slot.
//!
//! Only a newcomer worth it may evict: a peer we dial (a tracker or the
//! caller named it), or an incoming one whose first messages, peeked at
//! without consuming them, announce pieces or interest. Otherwise a flood
//! of silent connections would just evict one another, and an honest peer
//! arriving in the middle would find no slot old enough to take.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::torrent::TorrentShared;
use super::SessionInner;
use crate::picker::PeerKey;
use crate::transport::Transport;
use capwise_proto::admission::{first_useful, Proof};

/// A newcomer may not evict a peer younger than this: it has had no time
/// to say anything yet.
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// How long an incoming newcomer has to show a useful message when full.
pub(crate) const PROOF_WAIT: Duration = Duration::from_secs(1);

/// Incoming peers at most waiting at once for a slot to be freed.
pub(crate) const NEWCOMERS: usize = 32;

/// Dialled peers at most that may evict, per list of peers (announce).
pub(crate) const PER_ANNOUNCE: usize = 4;

/// How long a newcomer waits for the slot an eviction frees.
pub(crate) const WAIT: Duration = Duration::from_secs(3);

impl TorrentShared {
    /// Whether the torrent has no room for another peer (it may still
    /// refuse one for other reasons: paused, banned).
    pub(crate) fn is_full(&self) -> bool {
        self.lock_core().admission().is_full()
    }

    /// Whether `addr` would be admitted if there were room.
    pub(crate) fn could_admit(&self, addr: SocketAddr) -> bool {
        self.lock_core().admission().could_admit(addr)
    }

    fn eviction_candidate(&self, now: Instant) -> Option<(PeerKey, Duration)> {
        self.lock_core().swarm.eviction_candidate(now, GRACE)
    }

    fn evict(self: &Arc<Self>, key: PeerKey, now: Instant) -> bool {
        let mut core = self.lock_core();
        let evicted = core.swarm.evict(key, now, GRACE);
        self.dispatch(core);
        evicted
    }

    /// Close this torrent's longest-silent unproductive peer, if any.
    pub(crate) fn evict_one(self: &Arc<Self>) -> bool {
        let now = Instant::now();
        match self.eviction_candidate(now) {
            Some((key, _)) => self.evict(key, now),
            None => false,
        }
    }

    /// For a newcomer at `addr` when the torrent is full: evict one peer
    /// and wait (bounded) until the newcomer is admitted.
    pub(crate) async fn make_room(self: &Arc<Self>, addr: SocketAddr) -> bool {
        if !self.is_full() || !self.evict_one() {
            return self.admits(addr);
        }
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            if self.admits(addr) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl SessionInner {
    /// The torrents now, taken out of the lock so that no await or per-torrent
    /// lock happens under it.
    pub(super) fn torrents_snapshot(&self) -> Vec<Arc<TorrentShared>> {
        self.torrents
            .lock()
            .expect("torrents lock")
            .values()
            .cloned()
            .collect()
    }

    /// Close the longest-silent unproductive peer of any torrent.
    fn evict_any(&self) -> bool {
        let now = Instant::now();
        let torrents = self.torrents_snapshot();
        let best = torrents
            .iter()
            .filter_map(|t| t.eviction_candidate(now).map(|(k, idle)| (t, k, idle)))
            .max_by_key(|&(_, _, idle)| idle);
        best.is_some_and(|(t, key, _)| t.evict(key, now))
    }

    /// A connection permit for a newcomer: one free now, or the one an
    /// eviction frees (waited for, bounded).
    pub(crate) async fn permit_for_newcomer(self: &Arc<Self>) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.connections.clone().try_acquire_owned() {
            return Some(p);
        }
        if !self.evict_any() {
            return None;
        }
        tokio::time::timeout(WAIT, self.connections.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// How much of a newcomer's first messages is looked at.
const PEEK_LIMIT: usize = 4096;

/// Waits up to [`PROOF_WAIT`] for the peer's first messages (after both
/// handshakes) and tells whether one announces pieces or interest. Peeks
/// ([`Transport::fill_peek`]): the connection's reader later gets every byte.
pub(crate) async fn shows_useful(transport: &mut Transport) -> bool {
    let until = tokio::time::Instant::now() + PROOF_WAIT;
    loop {
        match tokio::time::timeout_at(until, transport.fill_peek(PEEK_LIMIT)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
        match first_useful(transport.peeked(), PEEK_LIMIT) {
            Proof::Useful => return true,
            Proof::NotUseful => return false,
            Proof::NotYet => {}
        }
    }
}
