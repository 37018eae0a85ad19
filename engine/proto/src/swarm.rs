//! The sans-IO state machine of one torrent's swarm: peer messages and `now`
//! go in; outgoing messages per peer and events (a piece to verify, a peer to
//! drop, the download finished) come out. No sockets, no clock, no disk.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bitfield::Bitfield;
use crate::choker::{choose_unchoked, next_optimistic, ChokeCandidate};
use crate::class::Direction;
use crate::class::PeerClass;
use crate::ext::metadata::{self, MetadataMsg};
use crate::ext::pex::PeerFlags;
use crate::picker::{Asker, BlockOutcome, PeerKey, Picker};
use crate::priority::Priority;
use crate::wire::{BlockRef, Handshake, Message, BLOCK_SIZE};

mod member;
mod pex;
mod site;
mod webseed;

/// Tunables of a swarm; the defaults suit both a LAN and a thin WAN link.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Peers unchoked at once, the optimistic slot included.
    pub upload_slots: usize,
    /// Requests kept in flight to a peer before its rate is known.
    pub initial_queue: usize,
    /// Fewest requests kept in flight to a peer that is not snubbed.
    pub min_queue: usize,
    /// Most requests kept in flight to one peer.
    pub max_queue: usize,
    /// The queue holds about this much time of the peer's rate. It must be
    /// well above the longest pause a peer makes between its sends: a peer
    /// that answers in bursts (Transmission writes every 500 ms) sends one
    /// burst per pause, so a queue of one pause's worth pins the rate where
    /// it started. 3 s, as libtorrent's `request_queue_time`.
    pub queue_time: Duration,
    /// A request unanswered for this long goes back to the pool.
    pub request_timeout: Duration,
    /// Requests a peer may have queued with us before it counts as flooding.
    pub max_peer_requests: usize,
    /// Largest block a peer may request.
    pub max_request_len: u32,
    /// A peer that alone sent this many pieces failing their hash check is
    /// banned (a shared bad piece puts its senders on parole instead).
    pub ban_after_hash_fails: u32,
    /// Unrequested blocks tolerated from one peer.
    pub max_unsolicited: u32,
    /// Silence after which a peer is dropped.
    pub idle_timeout: Duration,
    /// A peer that has said nothing useful (no bitfield, have, interest,
    /// request or block) this long after connecting is dropped: it only
    /// holds a connection slot an honest peer could use.
    pub unproductive_timeout: Duration,
    /// Our listen port, told to peers in the extension handshake.
    pub listen_port: u16,
    /// Whether payload needs credit: a request leaves only once its block's
    /// download bytes were granted ([`Swarm::grant_credit`]), a block is
    /// served only once its upload bytes were. The I/O layer obtains the
    /// credit from its byte gate ahead of time ([`Swarm::credit_wanted`]),
    /// so that waiting at the gate never runs a request's clock. Off, as in
    /// tests of the protocol alone, payload moves freely.
    pub needs_credit: bool,
    /// Peer exchange (BEP 11) for torrents that ask for it with
    /// [`Swarm::enable_pex`] (public ones only, BEP 27); off: never.
    pub pex: bool,
    /// Our QUIC offer (`ext/quic.rs`), told to every peer in the extension
    /// handshake; none: we run no QUIC endpoint.
    pub quic: Option<crate::ext::quic::QuicOffer>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            upload_slots: 4,
            initial_queue: 64,
            min_queue: 4,
            max_queue: 500,
            queue_time: Duration::from_secs(3),
            request_timeout: Duration::from_secs(40),
            max_peer_requests: 4000,
            max_request_len: 128 * 1024,
            ban_after_hash_fails: 2,
            max_unsolicited: 256,
            idle_timeout: Duration::from_secs(180),
            unproductive_timeout: Duration::from_secs(20),
            listen_port: 0,
            needs_credit: false,
            pex: true,
            quic: None,
        }
    }
}

/// Something the swarm wants sent to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A ready message.
    Message(Message),
    /// A block to read from disk and send as a `piece` message.
    Block(BlockRef),
}

/// Something the I/O layer must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Hash `data` against piece `index`, write it if good, then call
    /// [`Swarm::piece_verified`].
    PieceComplete {
        /// Piece index.
        index: u32,
        /// The assembled piece.
        data: Vec<u8>,
    },
    /// Close the connection to `peer` (already removed from the swarm).
    Disconnect {
        /// The peer.
        peer: PeerKey,
        /// Why, for the log.
        reason: String,
        /// Refuse this address from now on.
        ban: bool,
    },
    /// Every piece is verified.
    Finished,
    /// A peer's ut_pex message named peers to dial (BEP 11, bounded). Dial
    /// [`Learnt::to_dial`] with the classifier: it leaves out LAN
    /// addresses learnt from a WAN peer.
    ///
    /// [`Learnt::to_dial`]: crate::ext::pex::Learnt::to_dial
    PeersLearnt {
        /// The sender.
        peer: PeerKey,
        /// What it said, bounded.
        learnt: crate::ext::pex::Learnt,
    },
}

/// How a peer came to us, as far as the swarm needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOrigin {
    /// Its class: a WAN peer is never told LAN addresses.
    pub class: PeerClass,
    /// We dialled it: its address is one others can dial too.
    pub outgoing: bool,
}

impl Default for PeerOrigin {
    /// The cautious guess: a WAN peer that dialled us.
    fn default() -> Self {
        Self {
            class: PeerClass::Wan,
            outgoing: false,
        }
    }
}

/// Payload bytes a peer's traffic waits for, per direction: the I/O layer
/// debits them at its gate and hands them over with [`Swarm::grant_credit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CreditWanted {
    /// For requests we picked and have not sent.
    pub down: u64,
    /// For blocks the peer asked for that we have not served.
    pub up: u64,
}

/// Blocks picked for a peer ahead of their download credit: enough that a
/// grant of this many blocks' bytes keeps a fast peer's pipe full, few
/// enough that a peer stuck at a closed gate holds back little of the
/// torrent (they stay reserved to it, like sent requests).
const PICKED_AHEAD: usize = 8;

/// A peer broke the protocol; the caller drops it with [`Swarm::remove_peer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    fast: bool,
    has: Bitfield,
    is_seed: bool,
    /// Pieces the peer has that we still lack: interest without a scan.
    wanted: u32,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    announced_pieces: bool,
    outstanding: HashMap<BlockRef, Instant>,
    /// No later than the oldest request in `outstanding` was sent (`None`
    /// when there is none): the next request time-out without a scan.
    /// `tick` makes it exact again.
    oldest_request: Option<Instant>,
    /// Picked for this peer, waiting for download credit; not yet requested
    /// (no clock runs for them).
    unsent: VecDeque<BlockRef>,
    /// Asked for by the peer and admitted, waiting for upload credit.
    unserved: VecDeque<BlockRef>,
    /// Granted download bytes not yet spent on a request.
    down_credit: u64,
    /// Granted upload bytes not yet spent on a block.
    up_credit: u64,
    allowed_fast: Vec<u32>,
    outbox: VecDeque<Outgoing>,
    queued_uploads: usize,
    down_bytes: u64,
    up_bytes: u64,
    down_rate: f64,
    up_rate: f64,
    peer_max_queue: usize,
    hash_fails: u32,
    /// Shared a piece that failed: fills pieces alone until proven.
    on_parole: bool,
    unsolicited: u32,
    snubbed: bool,
    last_recv: Instant,
    last_sent: Instant,
    connected_at: Instant,
    /// Has sent something that can lead to an exchange of data.
    useful: bool,
    /// The extended message id the peer gave ut_metadata (BEP 9).
    ut_metadata: Option<u8>,
    /// How it came to us.
    origin: PeerOrigin,
    /// Peer exchange with it (BEP 11).
    pex: pex::PeerPex,
    /// Its membership proof, for a torrent that requires one.
    member: Option<member::PeerMember>,
    /// The peer id from its handshake.
    peer_id: [u8; 20],
}

impl Peer {
    /// Takes `block` out of the outstanding requests; whether it was there.
    fn forget_request(&mut self, block: &BlockRef) -> bool {
        let was = self.outstanding.remove(block).is_some();
        if self.outstanding.is_empty() {
            self.oldest_request = None;
        }
        was
    }

    /// Whether payload moved or may be about to (blocks queued to send).
    fn bytes_moving(&self) -> bool {
        self.down_bytes > 0
            || self.up_bytes > 0
            || self.down_rate > 0.0
            || self.up_rate > 0.0
            || self.queued_uploads > 0
    }

    /// When a keep-alive is due. While messages wait in the outbox the
    /// writer has yet to send them (and set `last_sent`): counted from
    /// `since` at the latest, so the deadline is never one that a pending
    /// send would make moot.
    fn keepalive_at(&self, since: Instant) -> Instant {
        let from = if self.outbox.is_empty() {
            self.last_sent
        } else {
            self.last_sent.max(since)
        };
        from + KEEPALIVE_INTERVAL
    }

    fn queue_target(&self, config: &SwarmConfig) -> usize {
        if self.snubbed {
            return 1;
        }
        let by_rate = if self.down_rate > 0.0 {
            (self.down_rate * config.queue_time.as_secs_f64() / BLOCK_SIZE as f64) as usize
        } else {
            config.initial_queue
        };
        by_rate.clamp(config.min_queue, config.max_queue.min(self.peer_max_queue))
    }
}

/// Figures about a swarm, for progress displays.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SwarmStats {
    /// Pieces verified.
    pub pieces_have: u32,
    /// Pieces in the torrent.
    pub piece_count: u32,
    /// Bytes verified.
    pub bytes_have: u64,
    /// Bytes in wanted pieces (all of them unless files are skipped).
    pub bytes_wanted: u64,
    /// Bytes verified in wanted pieces.
    pub bytes_wanted_have: u64,
    /// Connected peers.
    pub peers: usize,
    /// Connected peers that have everything.
    pub seeds: usize,
    /// Payload rate in, bytes/s.
    pub download_rate: f64,
    /// Payload rate out, bytes/s.
    pub upload_rate: f64,
    /// Requests that went unanswered for `request_timeout` since the swarm
    /// began (they go back to the pool and the peer is snubbed).
    pub request_timeouts: u64,
}

/// One peer as `capwise peers` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSnapshot {
    /// Its client and version from its peer id, if in a known style.
    pub client: Option<String>,
    /// Payload in from it, bytes/s.
    pub download_rate: f64,
    /// Payload out to it, bytes/s.
    pub upload_rate: f64,
    /// Share of the pieces it has, 0 to 1.
    pub progress: f64,
    /// We want something it has.
    pub we_interested: bool,
    /// It does not serve us now.
    pub choked_by_peer: bool,
    /// It wants something we have.
    pub peer_interested: bool,
    /// We do not serve it now.
    pub we_choke: bool,
    /// It left our requests unanswered too long.
    pub snubbed: bool,
}

/// One torrent's swarm.
#[derive(Debug)]
pub struct Swarm {
    config: SwarmConfig,
    picker: Picker,
    have: Bitfield,
    peers: HashMap<PeerKey, Peer>,
    next_key: PeerKey,
    events: VecDeque<Event>,
    dirty: Vec<PeerKey>,
    seeding_allowed: bool,
    /// The torrent's own WAN window is shut ([`Swarm::set_wan_held`]).
    wan_held: bool,
    optimistic: Option<PeerKey>,
    last_tick: Instant,
    last_choke: Instant,
    last_optimistic: Instant,
    /// When the next rate sample is due; `None` while no payload moves.
    next_sample: Option<Instant>,
    /// When the current rate sample began.
    sampled_at: Instant,
    /// Blocks went back to the pool outside `tick` (a peer left, choked
    /// us, refused a request, a write failed): other peers may ask for them.
    refill: bool,
    scratch: Vec<BlockRef>,
    /// Peers that sent blocks of each piece being verified.
    contributors: HashMap<u32, Vec<PeerKey>>,
    /// The info dictionary's original bytes, served over ut_metadata.
    metadata: Option<Bytes>,
    /// See [`SwarmStats::request_timeouts`].
    request_timeouts: u64,
    /// Peer exchange (BEP 11), once enabled.
    pex: pex::SwarmPex,
    /// Site coordination ("LAN first, WAN once"), once enabled.
    site: site::SwarmSite,
    /// Channel membership, once required.
    member: member::SwarmMember,
}

/// A peer with this many messages waiting is refused metadata blocks
/// (rejected instead), so requests cannot queue megabytes.
const METADATA_OUTBOX_LIMIT: usize = 64;

const CHOKE_INTERVAL: Duration = Duration::from_secs(10);
const OPTIMISTIC_INTERVAL: Duration = Duration::from_secs(30);
/// A keep-alive goes out after this much silence on our side: under the
/// two minutes libtorrent (`peer_timeout`) waits before it drops a silent
/// peer, and well under our own `idle_timeout`.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(110);
/// Rates are smoothed over a few ticks so a single burst does not swing the queue.
const RATE_SMOOTHING: f64 = 0.5;
/// Rates are sampled this often while payload moves (and not at all when
/// none does).
pub const RATE_INTERVAL: Duration = Duration::from_secs(1);
/// A rate below this (bytes/s) after smoothing is taken as 0: a decaying
/// rate would otherwise keep the sampling going for ever.
const RATE_FLOOR: f64 = 1.0;

impl Swarm {
    /// A swarm for a torrent of `total_length` bytes with the given verified pieces.
    pub fn new(
        piece_length: u64,
        total_length: u64,
        have: Bitfield,
        config: SwarmConfig,
        now: Instant,
    ) -> Self {
        Self {
            picker: Picker::new(piece_length, total_length, &have),
            have,
            config,
            peers: HashMap::new(),
            next_key: 1,
            events: VecDeque::new(),
            dirty: Vec::new(),
            seeding_allowed: true,
            wan_held: false,
            optimistic: None,
            last_tick: now,
            last_choke: now,
            last_optimistic: now,
            next_sample: None,
            sampled_at: now,
            refill: false,
            scratch: Vec::new(),
            contributors: HashMap::new(),
            metadata: None,
            request_timeouts: 0,
            pex: pex::SwarmPex::default(),
            site: site::SwarmSite::default(),
            member: member::SwarmMember::default(),
        }
    }

    /// The info dictionary's original bytes (whose SHA-1 is the
    /// info-hash): peers that connect from now on are told its size, and
    /// ut_metadata requests are answered from it.
    pub fn set_metadata(&mut self, info_bytes: Bytes) {
        self.metadata = Some(info_bytes);
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    /// Whether every wanted piece is verified: the download is over, even if
    /// skipped files leave pieces missing.
    pub fn is_done(&self) -> bool {
        self.picker.is_done()
    }

    /// Sets each piece's priority (see [`crate::priority::piece_priorities`])
    /// and sequential mode; interest in every peer follows at once. A slice
    /// of the wrong length changes nothing.
    pub fn set_priorities(&mut self, priority: &[Priority], sequential: bool, now: Instant) {
        if priority.len() != self.picker.piece_count() as usize {
            return;
        }
        let was_done = self.picker.is_done();
        self.picker.set_priorities(priority);
        self.picker.set_sequential(sequential);
        if !was_done && self.picker.is_done() {
            self.events.push_back(Event::Finished);
        }
        let wanted_left = self.picker.wanted_left();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in &keys {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            peer.wanted = if peer.is_seed {
                wanted_left
            } else {
                peer.has
                    .ones()
                    .filter(|&i| !self.have.has(i) && priority[i as usize].is_wanted())
                    .count() as u32
            };
        }
        for key in keys {
            self.update_interest(key, now);
        }
    }

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Peer `key`'s connection showed it speaks what `flags` say: uTP
    /// ([`PeerFlags::UTP`], it came over uTP) or encryption
    /// ([`PeerFlags::ENCRYPTION`], it came through an MSE handshake). PEX
    /// tells others (`added.f`).
    pub fn peer_shows(&mut self, key: PeerKey, flags: PeerFlags) {
        self.pex_peer_shows(key, flags);
    }

    /// Whether a peer at `addr` is connected already.
    pub fn is_connected(&self, addr: SocketAddr) -> bool {
        self.peers.values().any(|p| p.addr == addr)
    }

    /// What peer `key` is doing, for `capwise peers`.
    pub fn peer_snapshot(&self, key: PeerKey) -> Option<PeerSnapshot> {
        let p = self.peers.get(&key)?;
        let count = self.picker.piece_count().max(1);
        let have = if p.is_seed { count } else { p.has.count() };
        Some(PeerSnapshot {
            client: crate::client_name::client_name(&p.peer_id),
            download_rate: p.down_rate,
            upload_rate: p.up_rate,
            progress: f64::from(have) / f64::from(count),
            we_interested: p.am_interested,
            choked_by_peer: p.peer_choking,
            peer_interested: p.peer_interested,
            we_choke: p.am_choking,
            snubbed: p.snubbed,
        })
    }

    /// Progress figures.
    pub fn stats(&self) -> SwarmStats {
        SwarmStats {
            pieces_have: self.picker.have_count(),
            piece_count: self.picker.piece_count(),
            bytes_have: self.picker.bytes_have(),
            bytes_wanted: self.picker.bytes_wanted().1,
            bytes_wanted_have: self.picker.bytes_wanted().0,
            peers: self.peers.len(),
            seeds: self.peers.values().filter(|p| p.is_seed).count(),
            download_rate: self.peers.values().map(|p| p.down_rate).sum(),
            upload_rate: self.peers.values().map(|p| p.up_rate).sum(),
            request_timeouts: self.request_timeouts,
        }
    }

    /// A connection finished its handshake: greet the peer. `listen_port` in
    /// the config is announced when the peer speaks BEP 10. The peer is
    /// taken as a WAN peer that dialled us ([`PeerOrigin::default`]); see
    /// [`Swarm::add_peer_with`].
    pub fn add_peer(&mut self, addr: SocketAddr, handshake: &Handshake, now: Instant) -> PeerKey {
        self.add_peer_with(addr, handshake, PeerOrigin::default(), now)
    }

    /// [`Swarm::add_peer`] for a peer whose class and direction are known.
    pub fn add_peer_with(
        &mut self,
        addr: SocketAddr,
        handshake: &Handshake,
        origin: PeerOrigin,
        now: Instant,
    ) -> PeerKey {
        let key = self.next_key;
        self.next_key += 1;
        let fast = handshake.supports_fast();
        let (member, nonce) = self.member_new(handshake.peer_id, now).unzip();
        let mut peer = Peer {
            addr,
            fast,
            has: Bitfield::new(self.picker.piece_count()),
            is_seed: false,
            wanted: 0,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            announced_pieces: false,
            outstanding: HashMap::new(),
            oldest_request: None,
            unsent: VecDeque::new(),
            unserved: VecDeque::new(),
            down_credit: 0,
            up_credit: 0,
            allowed_fast: Vec::new(),
            outbox: VecDeque::new(),
            queued_uploads: 0,
            down_bytes: 0,
            up_bytes: 0,
            down_rate: 0.0,
            up_rate: 0.0,
            peer_max_queue: 250,
            hash_fails: 0,
            on_parole: false,
            unsolicited: 0,
            snubbed: false,
            last_recv: now,
            last_sent: now,
            connected_at: now,
            useful: false,
            ut_metadata: None,
            origin,
            pex: pex::PeerPex::new(&mut self.pex, addr, origin, member.is_none(), now),
            member,
            peer_id: handshake.peer_id,
        };
        if handshake.supports_extensions() {
            let pex = self
                .pex_enabled()
                .then_some((crate::ext::pex::EXTENSION_NAME, crate::ext::pex::OUR_ID));
            let site = self
                .site_offered(origin.class)
                .then_some((crate::ext::site::EXTENSION_NAME, crate::ext::site::OUR_ID));
            let extensions: Vec<(&str, u8)> = pex.into_iter().chain(site).collect();
            let payload = crate::wire::extension::our_handshake_offering(
                self.config.listen_port,
                self.config.max_peer_requests,
                self.metadata.as_ref().map(Bytes::len),
                &extensions,
                nonce.as_ref(),
                self.config.quic.as_ref(),
            );
            peer.outbox.push_back(Outgoing::Message(Message::Extended {
                id: 0,
                payload: Bytes::from(payload),
            }));
        }
        let greeting = if fast && self.have.is_full() {
            Message::HaveAll
        } else if fast && self.have.count() == 0 {
            Message::HaveNone
        } else {
            Message::Bitfield(Bytes::copy_from_slice(self.have.as_bytes()))
        };
        // Without BEP 6 an empty bitfield is simply not sent.
        if fast || self.have.count() > 0 {
            if let Some(greeting) = Self::member_hold(&mut peer.member, greeting) {
                peer.outbox.push_back(Outgoing::Message(greeting));
            }
        }
        self.peers.insert(key, peer);
        self.dirty.push(key);
        key
    }

    /// Forget a peer: its requests go back to the pool.
    pub fn remove_peer(&mut self, key: PeerKey) {
        if let Some(peer) = self.peers.remove(&key) {
            for block in peer.outstanding.keys().chain(peer.unsent.iter()) {
                self.picker.release(block);
            }
            self.refill |= !peer.outstanding.is_empty() || !peer.unsent.is_empty();
            self.picker
                .remove_peer_availability(&peer.has, peer.is_seed);
            self.picker.peer_gone(key);
            if self.optimistic == Some(key) {
                self.optimistic = None;
            }
            self.pex_peer_gone(&peer.pex);
            self.site_peer_gone(key, &peer.has);
        }
    }

    /// Take what should be sent to `key` (empty when nothing is queued).
    pub fn poll_outgoing(&mut self, key: PeerKey, now: Instant, out: &mut Vec<Outgoing>) {
        if let Some(peer) = self.peers.get_mut(&key) {
            if !peer.outbox.is_empty() {
                peer.last_sent = now;
            }
            for item in peer.outbox.drain(..) {
                match &item {
                    Outgoing::Block(_) => {
                        peer.queued_uploads = peer.queued_uploads.saturating_sub(1);
                    }
                    // A request's time-out runs from when it leaves.
                    Outgoing::Message(Message::Request(block)) => {
                        if let Some(sent) = peer.outstanding.get_mut(block) {
                            *sent = now;
                        }
                    }
                    Outgoing::Message(_) => {}
                }
                out.push(item);
            }
        }
    }

    /// Peers with something new to send since the last call.
    pub fn take_dirty(&mut self) -> Vec<PeerKey> {
        let mut d = std::mem::take(&mut self.dirty);
        d.sort_unstable();
        d.dedup();
        d
    }

    /// The next thing the I/O layer must do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The I/O layer sent `bytes` of payload to `key`.
    pub fn on_payload_sent(&mut self, key: PeerKey, bytes: u64) {
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.up_bytes += bytes;
        }
    }

    /// The payload bytes `key`'s traffic waits for (zero without
    /// [`SwarmConfig::needs_credit`]). Obtain them from the gate, then
    /// [`Swarm::grant_credit`]; asking again before granting names the same
    /// bytes again.
    pub fn credit_wanted(&self, key: PeerKey) -> CreditWanted {
        let Some(peer) = self.peers.get(&key) else {
            return CreditWanted::default();
        };
        let owed = |blocks: &VecDeque<BlockRef>, credit: u64| {
            blocks
                .iter()
                .map(|b| b.length as u64)
                .sum::<u64>()
                .saturating_sub(credit)
        };
        CreditWanted {
            down: owed(&peer.unsent, peer.down_credit),
            up: owed(&peer.unserved, peer.up_credit),
        }
    }

    /// `bytes` in `direction` were debited for `key`: the requests and
    /// blocks they cover go to its outbox. Credit a peer cannot use (it
    /// left, choked us, cancelled) is kept for its next ones and lost with it.
    pub fn grant_credit(&mut self, key: PeerKey, direction: Direction, bytes: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        match direction {
            Direction::Down => peer.down_credit += bytes,
            Direction::Up => peer.up_credit += bytes,
        }
        self.release_credited(key, now);
        if direction == Direction::Down {
            self.fill_requests(key, now);
        }
    }

    /// Moves what the peer's credit covers from `unsent`/`unserved` to the
    /// outbox.
    fn release_credited(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let mut moved = false;
        while let Some(&block) = peer.unsent.front() {
            let length = block.length as u64;
            if self.config.needs_credit {
                if peer.down_credit < length {
                    break;
                }
                peer.down_credit -= length;
            }
            peer.unsent.pop_front();
            peer.oldest_request.get_or_insert(now);
            peer.outstanding.insert(block, now);
            peer.outbox
                .push_back(Outgoing::Message(Message::Request(block)));
            moved = true;
        }
        while let Some(&block) = peer.unserved.front() {
            let length = block.length as u64;
            if self.config.needs_credit {
                if peer.up_credit < length {
                    break;
                }
                peer.up_credit -= length;
            }
            peer.unserved.pop_front();
            peer.outbox.push_back(Outgoing::Block(block));
            moved = true;
        }
        // Still waiting: the I/O layer must hear of it to go for credit.
        if moved || !peer.unsent.is_empty() || !peer.unserved.is_empty() {
            self.dirty.push(key);
        }
    }

    /// Allow or stop uploads. Stopping chokes everyone and drops queued
    /// blocks (rejecting them to peers that speak BEP 6) at once.
    pub fn set_seeding(&mut self, on: bool, now: Instant) {
        if self.seeding_allowed == on {
            return;
        }
        self.seeding_allowed = on;
        if on {
            self.run_choker(now);
        } else {
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                self.choke(key);
            }
        }
    }

    /// The I/O layer did not send a queued block (uploads were stopped
    /// meanwhile): under BEP 6 the peer is told, so it asks elsewhere at once.
    pub fn block_withheld(&mut self, key: PeerKey, block: BlockRef) {
        if let Some(peer) = self.peers.get_mut(&key) {
            if peer.fast {
                peer.outbox
                    .push_back(Outgoing::Message(Message::RejectRequest(block)));
                self.dirty.push(key);
            }
        }
    }

    /// The I/O layer could not send `blocks` now (the gate closed for this
    /// peer's class after admitting them, e.g. a metered switch): they go
    /// back to the front of the peer's queue, in order, and with
    /// [`SwarmConfig::needs_credit`] need credit again, so the I/O layer
    /// waits at the gate until it opens instead of being handed them
    /// again at once. Not a reject: a peer we keep unchoked would take
    /// a reject as the piece being lost. Dropped if the peer is choked
    /// meanwhile (a choke already discarded its requests).
    pub fn blocks_deferred(&mut self, key: PeerKey, blocks: Vec<BlockRef>, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.am_choking || blocks.is_empty() {
            return;
        }
        for block in blocks.into_iter().rev() {
            peer.unserved.push_front(block);
            peer.queued_uploads += 1;
        }
        self.release_credited(key, now);
    }

    /// Whether uploads are allowed.
    pub fn seeding_allowed(&self) -> bool {
        self.seeding_allowed
    }

    /// The torrent's own WAN window (the engine's
    /// `TorrentOptions::wan_window`) shut or opened. Shut, no block is
    /// picked for a WAN peer or web seed (the writers would get no credit
    /// for it anyway), and what was picked but not sent goes back to the
    /// pool, so a site member whose window is shut neither claims pieces it
    /// cannot fetch nor says it wants WAN bytes: its claims are renewed
    /// (released) at the next tick.
    pub fn set_wan_held(&mut self, held: bool, now: Instant) {
        if self.wan_held == held {
            return;
        }
        self.wan_held = held;
        self.refill = true;
        if held {
            for peer in self.peers.values_mut() {
                if peer.origin.class == PeerClass::Wan {
                    for block in peer.unsent.drain(..) {
                        self.picker.release(&block);
                    }
                }
            }
            self.site_renew_now(now);
        }
    }

    /// Whether the torrent's WAN window is shut.
    pub fn wan_held(&self) -> bool {
        self.wan_held
    }

    /// Feed one message from `key`. On `Err` the caller removes the peer.
    pub fn on_message(
        &mut self,
        key: PeerKey,
        msg: Message,
        now: Instant,
    ) -> Result<(), Violation> {
        let count = self.picker.piece_count();
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        peer.last_recv = now;
        peer.useful |= is_useful(&msg);
        let need_fast = |peer: &Peer, what: &str| {
            if peer.fast {
                Ok(())
            } else {
                Err(Violation(format!("{what} without the fast extension")))
            }
        };
        match msg {
            Message::KeepAlive | Message::Port(_) | Message::SuggestPiece(_) => {}
            Message::Extended { id, payload } => {
                if id == 0 {
                    if let Some(reqq) = crate::wire::extension::peer_request_queue(&payload) {
                        peer.peer_max_queue = reqq.clamp(1, self.config.max_queue);
                    }
                    peer.ut_metadata = crate::wire::extension::peer_ut_metadata(&payload).0;
                    self.pex_handshake(key, &payload);
                    // Our proof goes out before our site message: a peer
                    // that requires membership ignores a site message from
                    // a peer not proven yet, and would then learn of us
                    // only at our next renewal.
                    self.member_handshake(key, &payload)?;
                    self.site_handshake(key, &payload, now);
                } else if id == crate::ext::member::OUR_ID {
                    self.member_proof(key, &payload, now)?;
                } else if id == crate::ext::pex::OUR_ID {
                    self.pex_message(key, &payload, now)?;
                } else if id == crate::ext::site::OUR_ID {
                    self.site_message(key, &payload, now)?;
                } else if id == metadata::OUR_ID {
                    let msg =
                        MetadataMsg::decode(&payload).map_err(|e| Violation(e.to_string()))?;
                    if let (MetadataMsg::Request { piece }, Some(their_id)) =
                        (msg, peer.ut_metadata)
                    {
                        let answer = match &self.metadata {
                            Some(info)
                                if peer.outbox.len() < METADATA_OUTBOX_LIMIT
                                    && member::admitted(&peer.member) =>
                            {
                                metadata::serve(info, piece)
                            }
                            _ => MetadataMsg::Reject { piece },
                        };
                        peer.outbox.push_back(Outgoing::Message(Message::Extended {
                            id: their_id,
                            payload: answer.encode(),
                        }));
                        self.dirty.push(key);
                    }
                }
            }
            Message::Choke => {
                peer.peer_choking = true;
                // Not asked for yet: back to the pool (allowed-fast ones
                // are picked again).
                self.refill |= !peer.unsent.is_empty();
                for block in peer.unsent.drain(..) {
                    self.picker.release(&block);
                }
                if !peer.fast {
                    self.refill |= !peer.outstanding.is_empty();
                    peer.oldest_request = None;
                    for block in peer.outstanding.drain().map(|(b, _)| b) {
                        self.picker.release(&block);
                    }
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.fill_requests(key, now);
            }
            Message::Interested => {
                peer.peer_interested = true;
                self.maybe_unchoke_now(key);
            }
            Message::NotInterested => {
                peer.peer_interested = false;
            }
            Message::Have(index) => {
                if index >= count {
                    return Err(Violation(format!("have {index} beyond {count} pieces")));
                }
                peer.announced_pieces = true;
                if !peer.is_seed && !peer.has.has(index) {
                    peer.has.set(index);
                    self.site_peer_has(key, index);
                    let Some(peer) = self.peers.get_mut(&key) else {
                        return Ok(());
                    };
                    self.picker.add_availability(index);
                    if !self.have.has(index) && self.picker.is_wanted(index) {
                        peer.wanted += 1;
                    }
                    if peer.has.is_full() {
                        // Counted as a seed from now on, like one that said so.
                        peer.is_seed = true;
                        self.picker.remove_peer_availability(&peer.has, false);
                        self.picker.add_seed();
                    }
                }
                self.update_interest(key, now);
            }
            Message::Bitfield(bytes) => {
                let has =
                    Bitfield::from_bytes(&bytes, count).map_err(|e| Violation(e.to_string()))?;
                if peer.announced_pieces {
                    // Some clients (aria2) follow have-none or haves with a
                    // bitfield: take it as more haves rather than drop them.
                    for index in has.ones() {
                        self.on_message(key, Message::Have(index), now)?;
                    }
                } else {
                    peer.announced_pieces = true;
                    self.set_peer_pieces(key, has, now);
                }
            }
            Message::HaveAll => {
                need_fast(peer, "have-all")?;
                if peer.announced_pieces {
                    return Err(Violation("have-all after other piece announcements".into()));
                }
                peer.announced_pieces = true;
                self.set_peer_pieces(key, Bitfield::full(count), now);
            }
            Message::HaveNone => {
                need_fast(peer, "have-none")?;
                if peer.announced_pieces {
                    return Err(Violation(
                        "have-none after other piece announcements".into(),
                    ));
                }
                peer.announced_pieces = true;
            }
            Message::Request(block) => self.on_request(key, block, now)?,
            Message::Cancel(block) => {
                let before = peer.outbox.len() + peer.unserved.len();
                peer.outbox.retain(|o| *o != Outgoing::Block(block));
                peer.unserved.retain(|b| *b != block);
                if peer.outbox.len() + peer.unserved.len() < before {
                    peer.queued_uploads -= 1;
                    if peer.fast {
                        peer.outbox
                            .push_back(Outgoing::Message(Message::RejectRequest(block)));
                        self.dirty.push(key);
                    }
                }
            }
            Message::RejectRequest(block) => {
                need_fast(peer, "reject")?;
                if peer.forget_request(&block) {
                    self.picker.release(&block);
                    self.refill = true;
                    // Refused while unchoked: the peer lost the piece (its
                    // disk copy went bad) and cannot unsay its `have`. Asking
                    // again would only be refused again.
                    if !peer.peer_choking && !peer.allowed_fast.contains(&block.index) {
                        self.peer_lacks(key, block.index, now);
                    }
                }
            }
            Message::AllowedFast(index) => {
                need_fast(peer, "allowed-fast")?;
                if index < count
                    && !peer.allowed_fast.contains(&index)
                    && peer.allowed_fast.len() < 64
                {
                    peer.allowed_fast.push(index);
                    self.fill_requests(key, now);
                }
            }
            Message::Piece { index, begin, data } => self.on_piece(key, index, begin, data, now)?,
        }
        Ok(())
    }

    fn set_peer_pieces(&mut self, key: PeerKey, has: Bitfield, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if has.is_full() {
            peer.is_seed = true;
            self.picker.add_seed();
            peer.wanted = self.picker.wanted_left();
        } else {
            let mut wanted = 0;
            for i in has.ones() {
                self.picker.add_availability(i);
                if !self.have.has(i) && self.picker.is_wanted(i) {
                    wanted += 1;
                }
            }
            peer.wanted = wanted;
        }
        peer.has = has;
        self.site_peer_pieces(key);
        self.update_interest(key, now);
    }

    fn update_interest(&mut self, key: PeerKey, now: Instant) {
        let done = self.picker.is_done();
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !member::admitted(&peer.member) {
            return;
        }
        let want = peer.wanted > 0 && !done;
        if want != peer.am_interested {
            peer.am_interested = want;
            peer.outbox.push_back(Outgoing::Message(if want {
                Message::Interested
            } else {
                Message::NotInterested
            }));
            self.dirty.push(key);
        }
        if want {
            self.fill_requests(key, now);
        }
    }

    fn on_request(&mut self, key: PeerKey, block: BlockRef, now: Instant) -> Result<(), Violation> {
        let count = self.picker.piece_count();
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        if block.index >= count
            || block.length == 0
            || block.length > self.config.max_request_len
            || block.begin as u64 + block.length as u64 > self.picker.piece_size(block.index) as u64
        {
            return Err(Violation(format!("request out of range: {block:?}")));
        }
        if peer.queued_uploads >= self.config.max_peer_requests {
            return Err(Violation(format!(
                "more than {} requests queued",
                self.config.max_peer_requests
            )));
        }
        if peer.am_choking || !self.seeding_allowed || !self.have.has(block.index) {
            if peer.fast {
                peer.outbox
                    .push_back(Outgoing::Message(Message::RejectRequest(block)));
                self.dirty.push(key);
            }
            return Ok(());
        }
        peer.queued_uploads += 1;
        peer.unserved.push_back(block);
        self.release_credited(key, now);
        self.start_sampling(now);
        Ok(())
    }

    fn on_piece(
        &mut self,
        key: PeerKey,
        index: u32,
        begin: u32,
        data: Bytes,
        now: Instant,
    ) -> Result<(), Violation> {
        if index >= self.picker.piece_count() {
            return Err(Violation(format!("piece {index} out of range")));
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        let block = BlockRef {
            index,
            begin,
            length: data.len() as u32,
        };
        if !peer.forget_request(&block) {
            peer.unsolicited += 1;
            if peer.unsolicited > self.config.max_unsolicited {
                return Err(Violation("too many unrequested blocks".into()));
            }
        }
        peer.down_bytes += data.len() as u64;
        peer.snubbed = false;
        self.start_sampling(now);
        let endgame = self.picker.in_endgame();
        match self.picker.on_block(key, index, begin, &data) {
            BlockOutcome::PieceComplete {
                index,
                data,
                contributors,
            } => self.piece_assembled(index, data, contributors),
            BlockOutcome::Stored | BlockOutcome::Duplicate | BlockOutcome::Unexpected => {}
        }
        if endgame {
            // Others were asked for the same block: take the request back.
            for (&other, p) in self.peers.iter_mut() {
                if other != key {
                    p.unsent.retain(|b| *b != block);
                }
                if other != key && p.forget_request(&block) {
                    p.outbox
                        .push_back(Outgoing::Message(Message::Cancel(block)));
                    self.dirty.push(other);
                }
            }
        }
        self.fill_requests(key, now);
        Ok(())
    }

    fn fill_requests(&mut self, key: PeerKey, now: Instant) {
        let wan_waits = self.wan_held || self.site_meeting(now);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.am_interested
            || (peer.peer_choking && peer.allowed_fast.is_empty())
            || !member::admitted(&peer.member)
            || (wan_waits && peer.origin.class == PeerClass::Wan)
        {
            return;
        }
        let target = peer.queue_target(&self.config);
        let asked = peer.outstanding.len() + peer.unsent.len();
        if asked >= target {
            return;
        }
        let mut want = target - asked;
        if self.config.needs_credit {
            want = want.min(PICKED_AHEAD.saturating_sub(peer.unsent.len()));
            if want == 0 {
                return;
            }
        }
        self.scratch.clear();
        let outstanding = &peer.outstanding;
        let unsent = &peer.unsent;
        let allowed_fast = &peer.allowed_fast;
        let choked = peer.peer_choking;
        let wan = peer.origin.class == PeerClass::Wan;
        // A WAN peer, with site members around, first for our share (and
        // our claims), then for any piece no member holds or claims.
        let coordinated = wan && self.site.active();
        for reach in site::Reach::ALL {
            let site = if coordinated {
                self.site.wan_filter(now, reach)
            } else {
                None
            };
            if coordinated && site.is_none() {
                break;
            }
            let allowed_fn = |i: u32| {
                (!choked || allowed_fast.contains(&i)) && site.as_ref().is_none_or(|f| f.allows(i))
            };
            let allowed: Option<&dyn Fn(u32) -> bool> = if choked || site.is_some() {
                Some(&allowed_fn)
            } else {
                None
            };
            let asker = Asker {
                peer: key,
                on_parole: peer.on_parole,
                has: &peer.has,
                is_seed: peer.is_seed,
                already: &|b| outstanding.contains_key(b) || unsent.contains(b),
                allowed,
            };
            self.picker.pick(&asker, want, &mut self.scratch);
            if !self.scratch.is_empty() || !coordinated {
                break;
            }
        }
        if self.scratch.is_empty() {
            return;
        }
        let mut pieces: Vec<u32> = Vec::new();
        if wan && self.site.enabled() {
            pieces = self.scratch.iter().map(|b| b.index).collect();
            pieces.dedup();
        }
        peer.unsent.extend(self.scratch.drain(..));
        self.release_credited(key, now);
        if !pieces.is_empty() {
            self.site_claim(&pieces);
        }
    }

    /// The hash check of piece `index` finished: `ok` means it matched and is
    /// on disk. Failing contributors are penalized, then banned on repeat.
    pub fn piece_verified(&mut self, index: u32, ok: bool, now: Instant) {
        self.picker.on_verified(index, ok);
        let contributors = self.contributors.remove(&index).unwrap_or_default();
        if !ok {
            // Only a piece a peer sent alone proves it lied. Peers that shared
            // a bad piece go on parole: they fill pieces alone from now on, so
            // the next failure names the culprit and honest peers go free.
            let sole = contributors.len() == 1;
            for key in contributors {
                let Some(peer) = self.peers.get_mut(&key) else {
                    continue;
                };
                peer.on_parole = true;
                if sole {
                    peer.hash_fails += 1;
                    peer.snubbed = true;
                    if peer.hash_fails >= self.config.ban_after_hash_fails {
                        let reason =
                            format!("sent {} pieces failing their hash check", peer.hash_fails);
                        self.picker.discard_blocks_from(key);
                        self.drop_peer(key, reason, true);
                    }
                }
            }
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                self.fill_requests(key, now);
            }
            return;
        }
        self.have.set(index);
        self.site_piece_had(index);
        // Done with what we want: a seed has nothing more for us, nor we for it.
        let complete = self.picker.is_done();
        let wanted = self.picker.is_wanted(index);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if peer.is_seed || peer.has.has(index) {
                if wanted {
                    peer.wanted = peer.wanted.saturating_sub(1);
                }
            } else {
                peer.outbox
                    .push_back(Outgoing::Message(Message::Have(index)));
                self.dirty.push(key);
            }
            if complete && peer.is_seed {
                self.drop_peer(key, "done, and the peer is a seed".into(), false);
                continue;
            }
            self.update_interest(key, now);
        }
        // Only the piece that completed the wanted set finishes the download.
        if complete && wanted {
            self.events.push_back(Event::Finished);
        }
    }

    /// Hand back a piece buffer from [`Event::PieceComplete`] once written.
    pub fn recycle_buffer(&mut self, buf: Vec<u8>) {
        self.picker.recycle(buf);
    }

    /// Peer `key` turned out not to have `index` after all: stop counting on it.
    fn peer_lacks(&mut self, key: PeerKey, index: u32, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.is_seed {
            // From the seed count back to per-piece availability.
            peer.is_seed = false;
            self.picker.remove_peer_availability(&peer.has, true);
            for i in peer.has.ones() {
                self.picker.add_availability(i);
            }
        }
        if !peer.has.has(index) {
            return;
        }
        peer.has.clear(index);
        self.site_peer_lacks(key, index);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        self.picker.remove_availability(index);
        if !self.have.has(index) && self.picker.is_wanted(index) {
            peer.wanted = peer.wanted.saturating_sub(1);
        }
        self.update_interest(key, now);
    }

    /// A verified piece turned out unreadable on disk: forget it so that it is
    /// downloaded again and never served. Returns whether it was had.
    pub fn piece_lost(&mut self, index: u32) -> bool {
        if !self.have.has(index) {
            return false;
        }
        self.picker.forget(index);
        self.have.clear(index);
        // Peers holding it are worth asking again.
        let now = self.last_tick;
        let wanted = self.picker.is_wanted(index);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            if let Some(peer) = self.peers.get_mut(&key) {
                if wanted && (peer.is_seed || peer.has.has(index)) {
                    peer.wanted += 1;
                }
            }
            self.update_interest(key, now);
        }
        true
    }

    /// A piece that matched its hash could not be written (disk full, I/O
    /// error): it is missing again, and no peer is blamed for it.
    pub fn piece_unwritten(&mut self, index: u32) {
        self.picker.on_verified(index, false);
        self.contributors.remove(&index);
        self.refill = true;
    }

    fn drop_peer(&mut self, key: PeerKey, reason: String, ban: bool) {
        self.remove_peer(key);
        self.events.push_back(Event::Disconnect {
            peer: key,
            reason,
            ban,
        });
    }

    fn choke(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.am_choking {
            peer.am_choking = true;
            let fast = peer.fast;
            let mut kept = VecDeque::with_capacity(peer.outbox.len());
            for item in peer.outbox.drain(..) {
                match item {
                    Outgoing::Block(b) if fast => {
                        kept.push_back(Outgoing::Message(Message::RejectRequest(b)))
                    }
                    Outgoing::Block(_) => {}
                    other => kept.push_back(other),
                }
            }
            for b in peer.unserved.drain(..) {
                if fast {
                    kept.push_back(Outgoing::Message(Message::RejectRequest(b)));
                }
            }
            peer.outbox = kept;
            peer.queued_uploads = 0;
            peer.outbox.push_back(Outgoing::Message(Message::Choke));
            self.dirty.push(key);
        }
    }

    fn unchoke(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.am_choking && member::admitted(&peer.member) {
            peer.am_choking = false;
            peer.outbox.push_back(Outgoing::Message(Message::Unchoke));
            self.dirty.push(key);
        }
    }

    fn maybe_unchoke_now(&mut self, key: PeerKey) {
        if !self.seeding_allowed {
            return;
        }
        let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
        if unchoked < self.config.upload_slots || self.site_always_unchoked(key) {
            self.unchoke(key);
        }
    }

    fn run_choker(&mut self, now: Instant) {
        self.last_choke = now;
        let seeding = self.picker.is_done();
        let candidates: Vec<ChokeCandidate> = self
            .peers
            .iter()
            .filter(|(_, p)| p.peer_interested && member::admitted(&p.member))
            .map(|(&peer, p)| ChokeCandidate {
                peer,
                download_rate: p.down_rate,
                upload_rate: p.up_rate,
                unchoked: !p.am_choking,
            })
            .collect();
        if now.duration_since(self.last_optimistic) >= OPTIMISTIC_INTERVAL
            || self.optimistic.is_none()
        {
            let keys: Vec<PeerKey> = candidates.iter().map(|c| c.peer).collect();
            self.optimistic = next_optimistic(&keys, self.optimistic);
            self.last_optimistic = now;
        }
        let chosen = if self.seeding_allowed {
            choose_unchoked(
                &candidates,
                seeding,
                self.config.upload_slots,
                self.optimistic,
            )
        } else {
            Vec::new()
        };
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            if chosen.contains(&key) || (self.seeding_allowed && self.site_always_unchoked(key)) {
                self.unchoke(key);
            } else {
                self.choke(key);
            }
        }
    }

    /// Payload moved (a block came, one was queued to send): rates are
    /// sampled from now on, every [`RATE_INTERVAL`], until none moves.
    /// A piece's last block is in, from peers or a web seed: the caller
    /// hashes and stores it, and who sent it is kept for the verdict.
    fn piece_assembled(&mut self, index: u32, data: Vec<u8>, contributors: Vec<PeerKey>) {
        self.events.push_back(Event::PieceComplete { index, data });
        self.contributors.insert(index, contributors);
    }

    fn start_sampling(&mut self, now: Instant) {
        if self.next_sample.is_none() {
            // The first sample spans the movement, not the idle spell before.
            self.sampled_at = now;
            self.next_sample = Some(now + RATE_INTERVAL);
        }
    }

    /// Whether a choker round can change anything: someone is unchoked, or
    /// someone interested could be (uploads allowed). An idle seed whose
    /// peers want nothing needs no round.
    fn choker_needed(&self) -> bool {
        self.peers
            .values()
            .any(|p| !p.am_choking || (self.seeding_allowed && p.peer_interested))
    }

    /// Whether some peer is being served or asks to be (interested or
    /// unchoked): the I/O layer's checks of the data served are worth
    /// their cost then.
    pub fn serving(&self) -> bool {
        self.peers
            .values()
            .any(|p| !p.am_choking || p.peer_interested)
    }

    /// The earliest instant at which [`Swarm::tick`] has something to do
    /// (`None`: nothing until a message or a call comes): a request time-out,
    /// a silent or useless peer to drop, a keep-alive to send, a choker
    /// round (only while one can change anything), a rate sample (only while
    /// payload moves), blocks back in the pool to hand out. It may lie in
    /// the past (due now). Ticking earlier is harmless; ticking only at this
    /// instant, or after any other input, misses nothing. Recompute it
    /// after every input: inputs move it earlier (a request sent, a block
    /// queued), only `tick` and sends move it later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if self.refill {
            earliest(self.last_tick);
        }
        if let Some(t) = self.next_sample {
            earliest(t);
        }
        if let Some(t) = self.pex_timeout() {
            earliest(t);
        }
        if let Some(t) = self.site_timeout() {
            earliest(t);
        }
        if let Some(t) = self.member_timeout() {
            earliest(t);
        }
        if self.choker_needed() {
            earliest(self.last_choke + CHOKE_INTERVAL);
        }
        for peer in self.peers.values() {
            earliest(peer.last_recv + self.config.idle_timeout);
            if !peer.useful {
                earliest(peer.connected_at + self.config.unproductive_timeout);
            }
            if let Some(sent) = peer.oldest_request {
                earliest(sent + self.config.request_timeout);
            }
            earliest(peer.keepalive_at(self.last_tick));
        }
        at
    }

    /// Timed work: rates, request time-outs, idle peers, keep-alives, and the
    /// choker every ten seconds while it has anyone to serve. Call it at
    /// [`Swarm::poll_timeout`] (or any time before: nothing comes early).
    pub fn tick(&mut self, now: Instant) {
        self.last_tick = now;
        let sample = self.next_sample.is_some_and(|t| now >= t);
        let dt = now.duration_since(self.sampled_at).as_secs_f64();
        if sample {
            self.sampled_at = now;
        }
        let mut idle = Vec::new();
        let mut timed_out = Vec::new();
        for (&key, peer) in self.peers.iter_mut() {
            if sample && dt > 0.0 {
                peer.down_rate = smoothed(peer.down_rate, peer.down_bytes as f64 / dt);
                peer.up_rate = smoothed(peer.up_rate, peer.up_bytes as f64 / dt);
                peer.down_bytes = 0;
                peer.up_bytes = 0;
            }
            if now.duration_since(peer.last_recv) >= self.config.idle_timeout {
                idle.push((key, "idle"));
                continue;
            }
            if !peer.useful
                && now.duration_since(peer.connected_at) >= self.config.unproductive_timeout
            {
                idle.push((key, "sent nothing useful since connecting"));
                continue;
            }
            if peer
                .oldest_request
                .is_some_and(|t| now >= t + self.config.request_timeout)
            {
                let before = timed_out.len();
                for (block, sent) in peer.outstanding.iter() {
                    if now.duration_since(*sent) >= self.config.request_timeout {
                        timed_out.push(*block);
                    }
                }
                if timed_out.len() > before {
                    for block in &timed_out[before..] {
                        peer.outstanding.remove(block);
                    }
                    peer.snubbed = true;
                }
                peer.oldest_request = peer.outstanding.values().min().copied();
            }
            if now.duration_since(peer.last_sent) >= KEEPALIVE_INTERVAL && peer.outbox.is_empty() {
                peer.outbox.push_back(Outgoing::Message(Message::KeepAlive));
                self.dirty.push(key);
            }
        }
        self.request_timeouts += timed_out.len() as u64;
        for block in &timed_out {
            self.picker.release(block);
        }
        for (key, reason) in idle {
            self.drop_peer(key, reason.into(), false);
        }
        self.member_tick(now);
        if now.duration_since(self.last_choke) >= CHOKE_INTERVAL && self.choker_needed() {
            self.run_choker(now);
        }
        if sample {
            self.next_sample = self
                .peers
                .values()
                .any(Peer::bytes_moving)
                .then_some(now + RATE_INTERVAL);
        }
        self.pex_tick(now);
        self.site_tick(now);
        self.refill = false;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.fill_requests(key, now);
        }
    }
}

/// The next smoothed rate from the last one and a new sample. A first sample
/// (nothing moved before) is taken as it is: averaging it with the zero before
/// it would halve the first estimate, and with it the first request queue.
fn smoothed(rate: f64, sample: f64) -> f64 {
    let next = if rate == 0.0 {
        sample
    } else {
        RATE_SMOOTHING * rate + (1.0 - RATE_SMOOTHING) * sample
    };
    if next < RATE_FLOOR {
        0.0
    } else {
        next
    }
}

/// Whether a message can lead to an exchange of data (keep-alives, choke
/// state, extension greetings and the like cannot).
fn is_useful(msg: &Message) -> bool {
    matches!(
        msg,
        Message::Bitfield(_)
            | Message::Have(_)
            | Message::HaveAll
            | Message::HaveNone
            | Message::Interested
            | Message::Request(_)
            | Message::Piece { .. }
    )
}

impl Swarm {
    /// The peer to evict when connection slots are full and a newcomer
    /// waits: of the peers connected for at least `grace` that have sent
    /// nothing useful, the one silent longest, with that silence. Peers
    /// that announced pieces or interest are never candidates.
    pub fn eviction_candidate(&self, now: Instant, grace: Duration) -> Option<(PeerKey, Duration)> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.useful && now.duration_since(p.connected_at) >= grace)
            .map(|(&k, p)| (k, now.duration_since(p.last_recv)))
            .max_by_key(|&(k, idle)| (idle, std::cmp::Reverse(k)))
    }

    /// Drop `key` to make room for a newcomer (an `Event::Disconnect`
    /// follows); false if it is not a candidate (any more).
    pub fn evict(&mut self, key: PeerKey, now: Instant, grace: Duration) -> bool {
        let evictable = self
            .peers
            .get(&key)
            .is_some_and(|p| !p.useful && now.duration_since(p.connected_at) >= grace);
        if evictable {
            self.drop_peer(
                key,
                "evicted for a newcomer: nothing useful sent".into(),
                false,
            );
        }
        evictable
    }
}
