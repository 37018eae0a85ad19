//! ut_pex (BEP 11): peers tell each other whom they are connected to.
//!
//! Two layers, both pure:
//! - the codec: [`PexMessage::encode`] and [`PexMessage::decode`] of the
//!   bencoded dictionary (`added`, `added.f`, `dropped`, `added6`,
//!   `added6.f`, `dropped6`; compact 6-byte IPv4 and 18-byte IPv6 entries),
//!   refusing messages over [`MAX_MESSAGE_LEN`] before parsing;
//! - [`PexPeer`], the state kept for one connected peer: the sender side
//!   diffs the torrent's connected peers against what this peer was last
//!   told and emits at most [`MAX_ADDED`] added and [`MAX_DROPPED`] dropped
//!   per message, at most one message per [`SEND_INTERVAL`] (it says when the
//!   next one is due: [`PexPeer::poll_timeout`]); the receiver side refuses
//!   floods (more than [`MAX_MESSAGES_PER_WINDOW`] in [`FLOOD_WINDOW`], or
//!   more than [`MAX_LISTED`] added in one message), oversized or malformed
//!   messages (any error from [`PexPeer::handle_message`] means: drop this
//!   peer), ignores a message that comes within [`MIN_RECEIVE_INTERVAL`] of
//!   the last one taken, takes at most [`MAX_ACCEPTED`] added from one
//!   message, and what it yields ([`Learnt`]) gives up its addresses only
//!   through [`Learnt::to_dial`], which leaves out LAN addresses learnt from
//!   a WAN peer ([`takes_from`]).
//!
//! A [`PexPeer`] needs a [`PeerSharing`]: PEX cannot run for an ordinary
//! private torrent (BEP 27); for a private channel torrent the swarm runs it
//! among proven members only. The extension id (the number in `Extended { id, .. }`)
//! is the caller's: it is negotiated in the BEP 10 handshake under
//! [`EXTENSION_NAME`].

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use crate::bencode::{self, BencodeError, Owned};
use crate::class::PeerClass;
use crate::privacy::{PeerSharing, PublicTorrent};

/// The name of this extension in the BEP 10 handshake's `m` dictionary.
pub const EXTENSION_NAME: &str = "ut_pex";
/// Largest message accepted, in bytes (libtorrent's limit): beyond it the
/// peer is dropped without parsing.
pub const MAX_MESSAGE_LEN: usize = 500 * 1024;
/// Most added peers (IPv4 and IPv6 together) in one message we send (BEP 11).
pub const MAX_ADDED: usize = 50;
/// Most dropped peers (IPv4 and IPv6 together) in one message we send (BEP 11).
pub const MAX_DROPPED: usize = 50;
/// Most added peers taken from one message we receive; the rest are ignored
/// (BEP 11 says 50 per message; libtorrent sends up to 100).
pub const MAX_ACCEPTED: usize = 50;
/// A message listing more added peers than this (twice libtorrent's 100)
/// is a flood: its sender is dropped.
pub const MAX_LISTED: usize = 200;
/// A message arriving sooner than this after the last one taken is ignored
/// (the sender's interval is 60 s; this leaves room for its clock and the
/// network).
pub const MIN_RECEIVE_INTERVAL: Duration = Duration::from_secs(50);
/// The extended message id we ask peers to use for ut_pex (libtorrent's).
pub const OUR_ID: u8 = 1;
/// Shortest time between two messages to one peer.
pub const SEND_INTERVAL: Duration = Duration::from_secs(60);
/// The window in which received messages are counted.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(60);
/// Most messages a peer may send within [`FLOOD_WINDOW`] (libtorrent's limit);
/// one more and it is dropped.
pub const MAX_MESSAGES_PER_WINDOW: usize = 6;

/// What a peer announces about itself or a peer it lists (`added.f`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerFlags(pub u8);

impl PeerFlags {
    /// 0x01: prefers encryption.
    pub const ENCRYPTION: PeerFlags = PeerFlags(0x01);
    /// 0x02: a seed (or upload only).
    pub const SEED: PeerFlags = PeerFlags(0x02);
    /// 0x04: supports uTP.
    pub const UTP: PeerFlags = PeerFlags(0x04);
    /// 0x08: supports ut_holepunch.
    pub const HOLEPUNCH: PeerFlags = PeerFlags(0x08);
    /// 0x10: reachable (we connected to it, or it accepted connections).
    pub const REACHABLE: PeerFlags = PeerFlags(0x10);

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: PeerFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for PeerFlags {
    type Output = PeerFlags;
    fn bitor(self, rhs: PeerFlags) -> PeerFlags {
        PeerFlags(self.0 | rhs.0)
    }
}

/// One peer in an `added` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PexEntry {
    /// Where to dial it (IPv4-mapped IPv6 addresses are given as IPv4).
    pub addr: SocketAddr,
    /// Its flags (zero when the sender gave none).
    pub flags: PeerFlags,
}

/// One ut_pex message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Peers the sender connected to since its last message.
    pub added: Vec<PexEntry>,
    /// Peers the sender disconnected from since its last message.
    pub dropped: Vec<SocketAddr>,
}

/// Why a ut_pex message is refused, or a [`PexPeer`] cannot be made. Every
/// error from [`PexPeer::handle_message`] means: drop the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    /// The torrent is private: BEP 27 forbids PEX.
    #[error(transparent)]
    Private(#[from] crate::privacy::PrivateTorrent),
    /// The message is larger than [`MAX_MESSAGE_LEN`].
    #[error("ut_pex message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// [`MAX_MESSAGE_LEN`].
        limit: usize,
    },
    /// The payload is not bencode.
    #[error("ut_pex message is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The payload is bencode but not a dictionary.
    #[error("ut_pex message is a {0}, not a dictionary")]
    NotADict(&'static str),
    /// A field is not a byte string, or its length is not a multiple of the entry size.
    #[error("ut_pex field {field:?} is malformed: {reason}")]
    BadField {
        /// The key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A message lists more than [`MAX_LISTED`] added peers.
    #[error("ut_pex message lists {count} added peers (at most {limit} allowed)")]
    TooManyAdded {
        /// Added entries in the message, IPv4 and IPv6.
        count: usize,
        /// [`MAX_LISTED`].
        limit: usize,
    },
    /// The peer sent more than [`MAX_MESSAGES_PER_WINDOW`] messages in [`FLOOD_WINDOW`].
    #[error("peer sent {count} ut_pex messages within {window:?} (at most {limit} allowed)")]
    Flood {
        /// Messages counted in the window, this one included.
        count: usize,
        /// [`FLOOD_WINDOW`].
        window: Duration,
        /// [`MAX_MESSAGES_PER_WINDOW`].
        limit: usize,
    },
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        v4 => v4,
    }
}

/// Whether an address can be dialled at all: a port, and an IP that is not
/// unspecified, multicast or broadcast.
pub fn is_dialable(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

impl PexMessage {
    /// Whether the message says nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }

    /// The bencoded payload (the part after the extended message id).
    /// Keys with no entries are left out, except `added` and `dropped`,
    /// which some clients expect always.
    pub fn encode(&self) -> Vec<u8> {
        let mut added = Vec::new();
        let mut added_f = Vec::new();
        let mut added6 = Vec::new();
        let mut added6_f = Vec::new();
        for entry in &self.added {
            match canonical(entry.addr) {
                SocketAddr::V4(a) => {
                    push_v4(&mut added, a);
                    added_f.push(entry.flags.0);
                }
                SocketAddr::V6(a) => {
                    push_v6(&mut added6, a);
                    added6_f.push(entry.flags.0);
                }
            }
        }
        let mut dropped = Vec::new();
        let mut dropped6 = Vec::new();
        for addr in &self.dropped {
            match canonical(*addr) {
                SocketAddr::V4(a) => push_v4(&mut dropped, a),
                SocketAddr::V6(a) => push_v6(&mut dropped6, a),
            }
        }
        let some = |bytes: Vec<u8>| (!bytes.is_empty()).then_some(Owned::Bytes(bytes));
        Owned::dict()
            .with_opt("added.f", some(added_f))
            .with("added", Owned::Bytes(added))
            .with_opt("added6", some(added6))
            .with_opt("added6.f", some(added6_f))
            .with("dropped", Owned::Bytes(dropped))
            .with_opt("dropped6", some(dropped6))
            .build()
            .to_bytes()
    }

    /// Parses a payload. Refuses more than [`MAX_MESSAGE_LEN`] bytes before
    /// looking at them, anything but a dictionary, and address fields that
    /// are not byte strings of whole entries. Unknown keys are ignored; a
    /// missing or short `added.f` gives zero flags. Entries are returned as
    /// sent (see [`PexPeer::handle_message`] for what is kept).
    pub fn decode(payload: &[u8]) -> Result<PexMessage, PexError> {
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(PexError::TooLarge {
                len: payload.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        let value = bencode::decode(payload)?;
        let dict = value.as_dict().ok_or(PexError::NotADict(value.kind()))?;
        let field = |key: &'static str, entry: usize| -> Result<&[u8], PexError> {
            let Some(v) = dict.get(key.as_bytes()) else {
                return Ok(&[]);
            };
            let bytes = v.as_bytes().ok_or_else(|| PexError::BadField {
                field: key,
                reason: format!("a {}, not a byte string", v.kind()),
            })?;
            if entry > 1 && bytes.len() % entry != 0 {
                return Err(PexError::BadField {
                    field: key,
                    reason: format!(
                        "{} bytes is not a whole number of {entry}-byte entries",
                        bytes.len()
                    ),
                });
            }
            Ok(bytes)
        };
        let added = field("added", 6)?;
        let added_f = field("added.f", 1)?;
        let added6 = field("added6", 18)?;
        let added6_f = field("added6.f", 1)?;
        let dropped = field("dropped", 6)?;
        let dropped6 = field("dropped6", 18)?;

        let mut msg = PexMessage::default();
        let flag = |flags: &[u8], i: usize| PeerFlags(flags.get(i).copied().unwrap_or(0));
        for (i, chunk) in added.chunks_exact(6).enumerate() {
            msg.added.push(PexEntry {
                addr: read_v4(chunk),
                flags: flag(added_f, i),
            });
        }
        for (i, chunk) in added6.chunks_exact(18).enumerate() {
            msg.added.push(PexEntry {
                addr: canonical(read_v6(chunk)),
                flags: flag(added6_f, i),
            });
        }
        msg.dropped.extend(dropped.chunks_exact(6).map(read_v4));
        msg.dropped
            .extend(dropped6.chunks_exact(18).map(|c| canonical(read_v6(c))));
        Ok(msg)
    }
}

fn push_v4(out: &mut Vec<u8>, addr: SocketAddrV4) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn push_v6(out: &mut Vec<u8>, addr: SocketAddrV6) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn read_v4(chunk: &[u8]) -> SocketAddr {
    let ip = Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]);
    SocketAddr::from((ip, u16::from_be_bytes([chunk[4], chunk[5]])))
}

fn read_v6(chunk: &[u8]) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&chunk[..16]);
    SocketAddr::from((
        Ipv6Addr::from(octets),
        u16::from_be_bytes([chunk[16], chunk[17]]),
    ))
}

/// Whether an address of class `addr` learnt from a sender of class
/// `sender` may be dialled: LAN addresses learnt from a WAN peer are not (a
/// WAN peer cannot know our LAN; such an address is a mistake or an attempt
/// to make us probe the LAN).
pub fn takes_from(sender: PeerClass, addr: PeerClass) -> bool {
    !(sender == PeerClass::Wan && addr == PeerClass::Lan)
}

/// What a received message taught us, bounded; its addresses come out only
/// through [`Learnt::to_dial`], which applies the LAN-from-WAN rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learnt {
    /// The sender's class.
    from: PeerClass,
    /// Dialable, not the sender itself; at most [`MAX_ACCEPTED`].
    added: Vec<PexEntry>,
    /// Peers the sender no longer talks to.
    dropped: Vec<SocketAddr>,
    /// Added entries left out (undialable, the sender itself, or beyond
    /// [`MAX_ACCEPTED`]).
    ignored: usize,
}

impl Learnt {
    /// The class of the peer that sent it.
    pub fn sender_class(&self) -> PeerClass {
        self.from
    }

    /// The added peers worth dialling, with their flags: LAN addresses are
    /// left out when the sender is a WAN peer ([`takes_from`]). `classify`
    /// tells LAN from WAN now (the session's classifier).
    pub fn to_dial(&self, classify: impl Fn(IpAddr) -> PeerClass) -> Vec<PexEntry> {
        self.added
            .iter()
            .filter(|e| takes_from(self.from, classify(e.addr.ip())))
            .copied()
            .collect()
    }

    /// Whether it names no peer to dial, whatever the classes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }

    /// Peers the sender no longer talks to.
    pub fn dropped(&self) -> &[SocketAddr] {
        &self.dropped
    }

    /// Added entries left out before classification.
    pub fn ignored(&self) -> usize {
        self.ignored
    }
}

/// The PEX state for one connected peer that negotiated ut_pex.
#[derive(Debug, Clone)]
pub struct PexPeer {
    /// The peer's own dialable address (never listed to it).
    addr: SocketAddr,
    /// Its class: LAN addresses are neither sent to nor taken from a WAN peer.
    class: PeerClass,
    /// What this peer has been told: the set as of our messages so far.
    told: BTreeMap<SocketAddr, PeerFlags>,
    /// When the next message may go.
    next_send: Instant,
    /// When its last messages arrived, at most `MAX_MESSAGES_PER_WINDOW + 1`.
    received: VecDeque<Instant>,
    /// When the last message we took from it arrived.
    last_taken: Option<Instant>,
}

impl PexPeer {
    /// State for a peer at `addr` (its dialable address) of class `class`,
    /// connected at `now`. The first message is due at once (once the BEP 10
    /// handshakes are through); `sharing` proves the torrent is not private,
    /// or is a channel torrent whose PEX runs among proven members only
    /// (the swarm then creates this only for a proven member).
    pub fn new(
        sharing: impl Into<PeerSharing>,
        addr: SocketAddr,
        class: PeerClass,
        now: Instant,
    ) -> Self {
        let _ = sharing.into();
        Self {
            addr: canonical(addr),
            class,
            told: BTreeMap::new(),
            next_send: now,
            received: VecDeque::new(),
            last_taken: None,
        }
    }

    /// The peer's dialable address became known (an incoming peer's listen
    /// port, from its BEP 10 handshake).
    pub fn set_addr(&mut self, addr: SocketAddr) {
        self.addr = canonical(addr);
    }

    /// The peer's dialable address as far as known.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Like [`PexPeer::new`] from the metainfo's BEP 27 flag: refuses a private torrent.
    pub fn for_torrent(
        private: bool,
        addr: SocketAddr,
        class: PeerClass,
        now: Instant,
    ) -> Result<Self, PexError> {
        Ok(Self::new(PublicTorrent::check(private)?, addr, class, now))
    }

    /// When [`PexPeer::poll_transmit`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        self.next_send
    }

    /// The message to send now, if one is due and the set changed.
    ///
    /// `connected` is the torrent's current peers by dialable address (for an
    /// incoming peer, its IP with the listen port from its BEP 10 `p`; leave
    /// out peers with no known listen port) and `classify` says which
    /// addresses are LAN. At most [`MAX_ADDED`] added and [`MAX_DROPPED`]
    /// dropped go in one message; the rest wait for the next. Whenever it is
    /// due, a call re-arms the timer [`SEND_INTERVAL`] ahead, message or not.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        connected: &BTreeMap<SocketAddr, PeerFlags>,
        classify: impl Fn(IpAddr) -> PeerClass,
    ) -> Option<PexMessage> {
        if now < self.next_send {
            return None;
        }
        self.next_send = now + SEND_INTERVAL;
        let wanted = |addr: &SocketAddr| {
            *addr != self.addr
                && is_dialable(*addr)
                && !(self.class == PeerClass::Wan && classify(addr.ip()) == PeerClass::Lan)
        };
        let now_set: BTreeMap<SocketAddr, PeerFlags> = connected
            .iter()
            .map(|(addr, flags)| (canonical(*addr), *flags))
            .filter(|(addr, _)| wanted(addr))
            .collect();
        let mut msg = PexMessage::default();
        msg.added.extend(
            now_set
                .iter()
                .filter(|(addr, _)| !self.told.contains_key(*addr))
                .take(MAX_ADDED)
                .map(|(addr, flags)| PexEntry {
                    addr: *addr,
                    flags: *flags,
                }),
        );
        msg.dropped.extend(
            self.told
                .keys()
                .filter(|addr| !now_set.contains_key(*addr))
                .take(MAX_DROPPED)
                .copied(),
        );
        for addr in &msg.dropped {
            self.told.remove(addr);
        }
        for entry in &msg.added {
            self.told.insert(entry.addr, entry.flags);
        }
        (!msg.is_empty()).then_some(msg)
    }

    /// Takes a message from the peer. An error means the peer is to be
    /// dropped: a flood (more than [`MAX_MESSAGES_PER_WINDOW`] in
    /// [`FLOOD_WINDOW`], counted before parsing, so malformed messages count
    /// too; or more than [`MAX_LISTED`] added), an oversized message, or a
    /// malformed one. `Ok(None)`: the message came within
    /// [`MIN_RECEIVE_INTERVAL`] of the last one taken and is ignored.
    pub fn handle_message(
        &mut self,
        now: Instant,
        payload: &[u8],
    ) -> Result<Option<Learnt>, PexError> {
        while self
            .received
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= FLOOD_WINDOW)
        {
            self.received.pop_front();
        }
        self.received.push_back(now);
        if self.received.len() > MAX_MESSAGES_PER_WINDOW {
            return Err(PexError::Flood {
                count: self.received.len(),
                window: FLOOD_WINDOW,
                limit: MAX_MESSAGES_PER_WINDOW,
            });
        }
        let msg = PexMessage::decode(payload)?;
        if msg.added.len() > MAX_LISTED {
            return Err(PexError::TooManyAdded {
                count: msg.added.len(),
                limit: MAX_LISTED,
            });
        }
        if self
            .last_taken
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_RECEIVE_INTERVAL)
        {
            return Ok(None);
        }
        self.last_taken = Some(now);
        let mut learnt = Learnt {
            from: self.class,
            added: Vec::new(),
            dropped: msg.dropped,
            ignored: 0,
        };
        for entry in msg.added {
            let keep = learnt.added.len() < MAX_ACCEPTED
                && entry.addr != self.addr
                && is_dialable(entry.addr);
            if keep {
                learnt.added.push(entry);
            } else {
                learnt.ignored += 1;
            }
        }
        Ok(Some(learnt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// 10/8, 192.168/16 and loopback are LAN; the rest WAN.
    fn classify(ip: IpAddr) -> PeerClass {
        match ip {
            IpAddr::V4(v4) if v4.is_private() || v4.is_loopback() => PeerClass::Lan,
            IpAddr::V6(v6) if v6.is_loopback() => PeerClass::Lan,
            _ => PeerClass::Wan,
        }
    }

    fn public() -> PublicTorrent {
        PublicTorrent::check(false).unwrap()
    }

    #[test]
    fn round_trip_keeps_addresses_flags_and_families() {
        let msg = PexMessage {
            added: vec![
                PexEntry {
                    addr: v4("1.2.3.4:6881"),
                    flags: PeerFlags::SEED | PeerFlags::UTP,
                },
                PexEntry {
                    addr: "[2001:db8::1]:51413".parse().unwrap(),
                    flags: PeerFlags::ENCRYPTION | PeerFlags::REACHABLE,
                },
                PexEntry {
                    addr: v4("5.6.7.8:1"),
                    flags: PeerFlags::HOLEPUNCH,
                },
            ],
            dropped: vec![v4("9.9.9.9:9"), "[2001:db8::2]:2".parse().unwrap()],
        };
        let bytes = msg.encode();
        let back = PexMessage::decode(&bytes).unwrap();
        let mut want = msg.clone();
        // Decoding lists IPv4 entries before IPv6 ones.
        want.added.swap(1, 2);
        assert_eq!(back, want);
        assert!(back.added[0].flags.contains(PeerFlags::SEED));
        assert!(!back.added[0].flags.contains(PeerFlags::ENCRYPTION));
    }

    #[test]
    fn decodes_a_libtorrent_style_message() {
        // added: 127.0.0.1:6881 and 10.0.0.2:80 with flags 0x02, 0x10; dropped: 1.1.1.1:256.
        let mut payload = b"d5:added12:".to_vec();
        payload.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
        payload.extend_from_slice(b"7:added.f2:\x02\x107:dropped6:");
        payload.extend_from_slice(&[1, 1, 1, 1, 1, 0]);
        payload.extend_from_slice(b"e");
        let msg = PexMessage::decode(&payload).unwrap();
        assert_eq!(msg.added.len(), 2);
        assert_eq!(msg.added[0].addr, v4("127.0.0.1:6881"));
        assert_eq!(msg.added[0].flags, PeerFlags::SEED);
        assert_eq!(msg.added[1].flags, PeerFlags::REACHABLE);
        assert_eq!(msg.dropped, vec![v4("1.1.1.1:256")]);
    }

    #[test]
    fn refuses_oversized_malformed_and_non_dict_messages() {
        let big = vec![b'x'; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            PexMessage::decode(&big),
            Err(PexError::TooLarge { len, limit: MAX_MESSAGE_LEN }) if len == MAX_MESSAGE_LEN + 1
        ));
        assert!(matches!(
            PexMessage::decode(b"d5:added5:abcdee"),
            Err(PexError::BadField { field: "added", .. })
        ));
        assert!(matches!(
            PexMessage::decode(b"d6:added6i1ee"),
            Err(PexError::BadField {
                field: "added6",
                ..
            })
        ));
        assert!(matches!(
            PexMessage::decode(b"li1ee"),
            Err(PexError::NotADict("list"))
        ));
        assert!(matches!(
            PexMessage::decode(b"d5:added"),
            Err(PexError::Bencode(_))
        ));
        // A missing added.f gives zero flags; unknown keys are ignored.
        let msg = PexMessage::decode(b"d5:added6:\x01\x02\x03\x04\x00\x015:xtrasi1ee").unwrap();
        assert_eq!(msg.added[0].flags, PeerFlags::default());
    }

    #[test]
    fn mapped_ipv6_travels_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:7".parse().unwrap();
        let msg = PexMessage {
            added: vec![PexEntry {
                addr: mapped,
                flags: PeerFlags::default(),
            }],
            dropped: vec![],
        };
        let back = PexMessage::decode(&msg.encode()).unwrap();
        assert_eq!(back.added[0].addr, v4("1.2.3.4:7"));
    }

    #[test]
    fn private_torrent_gets_no_pex_state() {
        let now = Instant::now();
        let err = PexPeer::for_torrent(true, v4("1.2.3.4:1"), PeerClass::Wan, now).unwrap_err();
        assert!(matches!(err, PexError::Private(_)));
        assert!(err.to_string().contains("private"));
        assert!(PexPeer::for_torrent(false, v4("1.2.3.4:1"), PeerClass::Wan, now).is_ok());
    }

    fn peers(n: usize, base: u8) -> BTreeMap<SocketAddr, PeerFlags> {
        (0..n)
            .map(|i| {
                let ip = Ipv4Addr::new(base, 0, (i / 250) as u8, (i % 250) as u8 + 1);
                (SocketAddr::from((ip, 6881)), PeerFlags::SEED)
            })
            .collect()
    }

    #[test]
    fn sender_diffs_and_bounds_each_message() {
        let t0 = Instant::now();
        let mut p = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        let mut set = peers(120, 20);
        // The recipient itself is never listed to it.
        set.insert(v4("8.8.8.8:1"), PeerFlags::default());

        let m1 = p.poll_transmit(t0, &set, classify).unwrap();
        assert_eq!(m1.added.len(), MAX_ADDED);
        assert!(m1.dropped.is_empty());
        assert_eq!(p.poll_timeout(), t0 + SEND_INTERVAL);
        // Not again within the interval, whatever changed.
        assert!(p
            .poll_transmit(t0 + Duration::from_secs(59), &set, classify)
            .is_none());

        let t1 = t0 + SEND_INTERVAL;
        let m2 = p.poll_transmit(t1, &set, classify).unwrap();
        assert_eq!(m2.added.len(), MAX_ADDED);
        assert!(m1.added.iter().all(|e| !m2.added.contains(e)));

        // 60 of the 100 told peers leave: 50 dropped now, 10 later, with the last 20 added.
        let told: Vec<SocketAddr> = m1.added.iter().chain(&m2.added).map(|e| e.addr).collect();
        for addr in &told[..60] {
            set.remove(addr);
        }
        let t2 = t1 + SEND_INTERVAL;
        let m3 = p.poll_transmit(t2, &set, classify).unwrap();
        assert_eq!(m3.added.len(), 20);
        assert!(!m3.added.iter().any(|e| e.addr == v4("8.8.8.8:1")));
        assert_eq!(m3.dropped.len(), MAX_DROPPED);
        let m4 = p.poll_transmit(t2 + SEND_INTERVAL, &set, classify).unwrap();
        assert_eq!(m4.dropped.len(), 10);
        assert!(m4.added.is_empty());
        // Nothing changed: no message, but the timer is re-armed.
        let t5 = t2 + 2 * SEND_INTERVAL;
        assert!(p.poll_transmit(t5, &set, classify).is_none());
        assert_eq!(p.poll_timeout(), t5 + SEND_INTERVAL);
    }

    #[test]
    fn lan_peers_are_not_sent_to_a_wan_peer_but_are_to_a_lan_peer() {
        let t0 = Instant::now();
        let mut set = BTreeMap::new();
        set.insert(v4("192.168.1.5:6881"), PeerFlags::default());
        set.insert(v4("44.0.0.1:6881"), PeerFlags::default());
        let mut wan = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        let m = wan.poll_transmit(t0, &set, classify).unwrap();
        assert_eq!(m.added.len(), 1);
        assert_eq!(m.added[0].addr, v4("44.0.0.1:6881"));
        let mut lan = PexPeer::new(public(), v4("192.168.1.9:1"), PeerClass::Lan, t0);
        assert_eq!(
            lan.poll_transmit(t0, &set, classify).unwrap().added.len(),
            2
        );
    }

    #[test]
    fn receiver_ignores_lan_from_wan_and_undialable_entries() {
        let t0 = Instant::now();
        let msg = PexMessage {
            added: vec![
                PexEntry {
                    addr: v4("10.1.2.3:6881"),
                    flags: PeerFlags::default(),
                },
                PexEntry {
                    addr: v4("127.0.0.1:6881"),
                    flags: PeerFlags::default(),
                },
                PexEntry {
                    addr: v4("44.0.0.1:6881"),
                    flags: PeerFlags::SEED,
                },
                PexEntry {
                    addr: v4("44.0.0.2:0"),
                    flags: PeerFlags::default(),
                },
                PexEntry {
                    addr: v4("224.0.0.1:6881"),
                    flags: PeerFlags::default(),
                },
                PexEntry {
                    addr: v4("8.8.8.8:1"),
                    flags: PeerFlags::default(),
                },
            ],
            dropped: vec![v4("44.0.0.9:1")],
        }
        .encode();
        let mut wan = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        let learnt = wan.handle_message(t0, &msg).unwrap().unwrap();
        assert_eq!(learnt.sender_class(), PeerClass::Wan);
        assert_eq!(
            learnt.to_dial(classify),
            vec![PexEntry {
                addr: v4("44.0.0.1:6881"),
                flags: PeerFlags::SEED
            }]
        );
        // Undialable entries and the sender itself; the two LAN ones are
        // left out by `to_dial`, once classified.
        assert_eq!(learnt.ignored(), 3);
        assert_eq!(learnt.dropped(), &[v4("44.0.0.9:1")]);
        // From a LAN peer, LAN addresses are kept.
        let mut lan = PexPeer::new(public(), v4("10.9.9.9:1"), PeerClass::Lan, t0);
        let learnt = lan.handle_message(t0, &msg).unwrap().unwrap();
        assert_eq!(learnt.to_dial(classify).len(), 4);
    }

    #[test]
    fn lan_from_wan_is_the_only_refused_pair() {
        use PeerClass::{Lan, Wan};
        assert!(!takes_from(Wan, Lan));
        assert!(takes_from(Wan, Wan));
        assert!(takes_from(Lan, Lan));
        assert!(takes_from(Lan, Wan));
    }

    #[test]
    fn receiver_takes_at_most_max_accepted() {
        let t0 = Instant::now();
        let msg = PexMessage {
            added: peers(MAX_LISTED, 30)
                .into_iter()
                .map(|(addr, flags)| PexEntry { addr, flags })
                .collect(),
            dropped: vec![],
        }
        .encode();
        let mut p = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        let learnt = p.handle_message(t0, &msg).unwrap().unwrap();
        assert_eq!(learnt.to_dial(classify).len(), MAX_ACCEPTED);
        assert_eq!(learnt.ignored(), MAX_LISTED - MAX_ACCEPTED);
    }

    #[test]
    fn a_huge_list_drops_the_peer() {
        let t0 = Instant::now();
        let msg = PexMessage {
            added: peers(MAX_LISTED + 1, 30)
                .into_iter()
                .map(|(addr, flags)| PexEntry { addr, flags })
                .collect(),
            dropped: vec![],
        }
        .encode();
        let mut p = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        assert!(matches!(
            p.handle_message(t0, &msg),
            Err(PexError::TooManyAdded { count, limit: MAX_LISTED }) if count == MAX_LISTED + 1
        ));
    }

    #[test]
    fn a_second_message_within_the_interval_is_ignored() {
        let t0 = Instant::now();
        let one = |ip: &str| {
            PexMessage {
                added: vec![PexEntry {
                    addr: v4(ip),
                    flags: PeerFlags::default(),
                }],
                dropped: vec![],
            }
            .encode()
        };
        let mut p = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        assert!(p.handle_message(t0, &one("44.0.0.1:1")).unwrap().is_some());
        let soon = t0 + MIN_RECEIVE_INTERVAL - Duration::from_secs(1);
        assert_eq!(p.handle_message(soon, &one("44.0.0.2:1")).unwrap(), None);
        // The interval counts from the last message taken, not the ignored one.
        let later = t0 + MIN_RECEIVE_INTERVAL;
        let learnt = p
            .handle_message(later, &one("44.0.0.3:1"))
            .unwrap()
            .unwrap();
        assert_eq!(learnt.to_dial(classify)[0].addr, v4("44.0.0.3:1"));
    }

    #[test]
    fn a_seventh_message_within_a_minute_drops_the_peer() {
        let t0 = Instant::now();
        let msg = PexMessage::default().encode();
        let mut p = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        for i in 0..MAX_MESSAGES_PER_WINDOW as u64 {
            p.handle_message(t0 + Duration::from_secs(i * 9), &msg)
                .unwrap();
        }
        // The first left the window at t0 + 60 s: one more is fine then, not before.
        let mut q = p.clone();
        assert!(q.handle_message(t0 + Duration::from_secs(60), &msg).is_ok());
        let err = p
            .handle_message(t0 + Duration::from_secs(59), &msg)
            .unwrap_err();
        assert!(matches!(err, PexError::Flood { count: 7, .. }));
        // Malformed messages count too, and are themselves a reason to drop.
        let mut r = PexPeer::new(public(), v4("8.8.8.8:1"), PeerClass::Wan, t0);
        assert!(matches!(
            r.handle_message(t0, b"garbage"),
            Err(PexError::Bencode(_))
        ));
    }

    mod convergence {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the connected set does, every message is bounded,
            /// the recipient's view (its own copy of added minus dropped)
            /// never lists itself or a LAN peer, and once the set stays still
            /// the view becomes exactly the set within a few messages.
            #[test]
            fn the_recipients_view_follows_the_set(
                steps in proptest::collection::vec(proptest::collection::btree_set(0u16..300, 0..200), 1..6)
            ) {
                let t0 = Instant::now();
                let me = v4("8.8.8.8:1");
                let mut p = PexPeer::new(public(), me, PeerClass::Wan, t0);
                let addr = |n: u16| -> SocketAddr {
                    // Every tenth is a LAN address; 0 is the recipient itself.
                    if n == 0 { me } else if n.is_multiple_of(10) {
                        SocketAddr::from(([192, 168, (n / 250) as u8, (n % 250) as u8], 6881))
                    } else {
                        SocketAddr::from(([44, 1, (n / 250) as u8, (n % 250) as u8], 6881))
                    }
                };
                let mut view: BTreeSet<SocketAddr> = BTreeSet::new();
                let mut now = t0;
                for step in steps {
                    let set: BTreeMap<SocketAddr, PeerFlags> =
                        step.iter().map(|n| (addr(*n), PeerFlags::default())).collect();
                    let want: BTreeSet<SocketAddr> = set
                        .keys()
                        .filter(|a| **a != me && classify(a.ip()) == PeerClass::Wan)
                        .copied()
                        .collect();
                    for _ in 0..6 {
                        if let Some(msg) = p.poll_transmit(now, &set, classify) {
                            prop_assert!(msg.added.len() <= MAX_ADDED);
                            prop_assert!(msg.dropped.len() <= MAX_DROPPED);
                            let back = PexMessage::decode(&msg.encode()).unwrap();
                            for a in &back.dropped {
                                prop_assert!(view.remove(a), "dropped {a} it was never told");
                            }
                            for e in &back.added {
                                prop_assert!(view.insert(e.addr), "added {} twice", e.addr);
                            }
                        }
                        prop_assert!(!view.contains(&me));
                        prop_assert!(view.iter().all(|a| classify(a.ip()) == PeerClass::Wan));
                        now = p.poll_timeout();
                    }
                    prop_assert_eq!(&view, &want);
                }
            }
        }
    }
}
