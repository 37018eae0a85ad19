//! Who may be connected to a torrent: the connection limit, bans, the
//! dials under way, the self-connection check, and which of two
//! connections to the same peer stays.
//!
//! Sans-IO: the I/O layer asks before it dials ([`Admission::begin_dial`])
//! and before a connection whose handshakes are done joins
//! ([`Admission::admit`], then [`Admission::insert`]), and says when a dial
//! or a connection ends. The same table serves a torrent and its metadata
//! phase (BEP 9), so both follow one set of rules.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::class::{PeerSource, PeerSources};
use crate::picker::PeerKey;

/// Addresses banned at most per torrent: a peer that keeps coming back
/// from new addresses must not grow the table without end.
pub const MAX_BANNED: usize = 4096;

/// A connected peer as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Its address (for a peer that dialled us, its ephemeral port).
    pub addr: SocketAddr,
    pub peer_id: [u8; 20],
    /// Where we learnt of it; [`PeerSource::Incoming`] if it dialled us.
    pub source: PeerSource,
}

impl Member {
    /// Whether we made this connection.
    pub fn outgoing(&self) -> bool {
        self.source != PeerSource::Incoming
    }
}

/// Why a peer is not taken (for the logs; the I/O layer just drops it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The torrent takes no peers now (paused, failed, removed, or its
    /// metadata phase is over).
    #[error("the torrent takes no peers now")]
    Closed,
    /// The address misbehaved before (sent data that failed its hash).
    #[error("the peer is banned")]
    Banned,
    /// Every connection slot is taken.
    #[error("no connection slot is free")]
    Full,
    /// A connection to this address exists already.
    #[error("already connected to this address")]
    Connected,
    /// A dial to this address is under way.
    #[error("already dialling this address")]
    Dialing,
    /// It is our own listen address, or our own peer id came back.
    #[error("that is ourselves")]
    Myself,
    /// The peer is connected already over another connection, which stays.
    #[error("the peer is connected already over a connection that stays")]
    Duplicate,
}

/// A join [`Admission::admit`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    /// The connection this one replaces (the caller closes it): the same
    /// peer id from another IP (the peer moved and the old connection is
    /// dead), or the one of two crossed dials that both ends drop.
    pub replaces: Option<PeerKey>,
}

/// The admission table of one torrent.
#[derive(Debug)]
pub struct Admission {
    max_peers: usize,
    open: bool,
    members: HashMap<PeerKey, Member>,
    dialing: HashSet<SocketAddr>,
    banned: HashSet<SocketAddr>,
}

impl Admission {
    /// A closed table (nothing admitted until [`Admission::set_open`])
    /// allowing `max_peers` connections.
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            open: false,
            members: HashMap::new(),
            dialing: HashSet::new(),
            banned: HashSet::new(),
        }
    }

    /// Whether peers are taken at all: the owner opens the table while the
    /// torrent is active and healthy and closes it on a pause or an error.
    pub fn set_open(&mut self, open: bool) {
        self.open = open;
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Connected peers.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// No slot is free (a newcomer may still get in by eviction).
    pub fn is_full(&self) -> bool {
        self.members.len() >= self.max_peers
    }

    /// Whether `addr` would be admitted if a slot were free.
    pub fn could_admit(&self, addr: SocketAddr) -> bool {
        self.open && !self.banned.contains(&addr)
    }

    /// Whether `addr` would be admitted now.
    pub fn admits(&self, addr: SocketAddr) -> bool {
        self.could_admit(addr) && !self.is_full()
    }

    /// Whether a connection to `addr` exists.
    pub fn is_connected(&self, addr: SocketAddr) -> bool {
        self.members.values().any(|m| m.addr == addr)
    }

    pub fn member(&self, key: PeerKey) -> Option<&Member> {
        self.members.get(&key)
    }

    /// Connected peers by key.
    pub fn members(&self) -> impl Iterator<Item = (PeerKey, &Member)> {
        self.members.iter().map(|(&k, m)| (k, m))
    }

    /// Connected peers by where they came from.
    pub fn sources(&self) -> PeerSources {
        self.members.values().map(|m| m.source).collect()
    }

    /// A dial to `addr` may start (it is then counted as under way until
    /// [`Admission::end_dial`]). `may_evict`: the caller will make room by
    /// evicting an unproductive peer, so a full table does not refuse it.
    pub fn begin_dial(&mut self, addr: SocketAddr, may_evict: bool) -> Result<(), Refusal> {
        if !self.could_admit(addr) {
            return Err(if self.open {
                Refusal::Banned
            } else {
                Refusal::Closed
            });
        }
        if self.is_full() && !may_evict {
            return Err(Refusal::Full);
        }
        if self.is_connected(addr) {
            return Err(Refusal::Connected);
        }
        if !self.dialing.insert(addr) {
            return Err(Refusal::Dialing);
        }
        Ok(())
    }

    /// The dial to `addr` is over (its connection, if any, joined or not).
    pub fn end_dial(&mut self, addr: SocketAddr) {
        self.dialing.remove(&addr);
    }

    /// Whether a connection whose handshakes are done may join: `ours` is
    /// our peer id. Nothing changes until [`Admission::insert`].
    pub fn admit(&self, candidate: &Member, ours: &[u8; 20]) -> Result<Admit, Refusal> {
        if candidate.peer_id == *ours {
            return Err(Refusal::Myself);
        }
        if !self.open {
            return Err(Refusal::Closed);
        }
        if self.banned.contains(&candidate.addr) {
            return Err(Refusal::Banned);
        }
        let mut replaces = None;
        if let Some((&old_key, old)) = self
            .members
            .iter()
            .find(|(_, m)| m.peer_id == candidate.peer_id)
        {
            // From another address the peer has moved (its address
            // changed): the old connection is dead, although we may not
            // hear so before a time-out. From the same address both sides
            // dialled: both ends must keep the same one of the two.
            if old.addr.ip() == candidate.addr.ip()
                && !second_connection_wins(
                    ours,
                    &candidate.peer_id,
                    candidate.outgoing(),
                    old.outgoing(),
                )
            {
                return Err(Refusal::Duplicate);
            }
            replaces = Some(old_key);
        }
        let slots_taken = self.members.len() - usize::from(replaces.is_some());
        if slots_taken >= self.max_peers {
            return Err(Refusal::Full);
        }
        Ok(Admit { replaces })
    }

    /// A connection [`Admission::admit`] allowed joins under `key`; the one
    /// it replaces, if any, is gone from the table.
    pub fn insert(&mut self, key: PeerKey, member: Member, admit: Admit) {
        if let Some(old) = admit.replaces {
            self.members.remove(&old);
        }
        self.members.insert(key, member);
    }

    /// A connection ended.
    pub fn remove(&mut self, key: PeerKey) -> Option<Member> {
        self.members.remove(&key)
    }

    /// Refuse `addr` from now on (its connection is closed by the caller).
    pub fn ban(&mut self, addr: SocketAddr) {
        if self.banned.len() < MAX_BANNED {
            self.banned.insert(addr);
        }
    }

    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.banned.contains(&addr)
    }
}

/// Whether `addr` is our own listen address `listen` (a tracker or PEX
/// hands us back to ourselves; bound to the unspecified address, any
/// loopback address with our port is us).
pub fn is_self(addr: SocketAddr, listen: SocketAddr) -> bool {
    addr.port() == listen.port()
        && (addr.ip() == listen.ip() || listen.ip().is_unspecified() && addr.ip().is_loopback())
}

/// A peer we are connected to connects again with the same peer id from
/// the same IP: whether the new connection replaces the old one. When both
/// sides dialled each other at once, each end keeps the connection that
/// the side with the higher peer id made (libtorrent's rule), so both keep
/// the same one; keeping the first on both ends could close both. Else
/// (the same direction twice) the first stays.
pub fn second_connection_wins(
    ours: &[u8; 20],
    theirs: &[u8; 20],
    new_outgoing: bool,
    old_outgoing: bool,
) -> bool {
    new_outgoing != old_outgoing && new_outgoing == (ours > theirs)
}

/// What a newcomer's first messages prove ([`first_useful`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Proof {
    /// One announces pieces or interest: worth a slot.
    Useful,
    /// The look-ahead is full of messages that prove nothing.
    NotUseful,
    /// Not enough bytes yet.
    NotYet,
}

/// Scans whole peer-wire messages from the start of `buf` (all a
/// newcomer's bytes read ahead so far, after both handshakes, at most
/// `limit`), without decoding them: only their ids matter, and a bitfield
/// may be larger than the look-ahead. When slots are full, only a newcomer
/// that proves useful may evict a silent peer
/// (`Swarm::eviction_candidate`).
pub fn first_useful(buf: &[u8], limit: usize) -> Proof {
    // have, bitfield, have-all, have-none, interested, request.
    const USEFUL: [u8; 6] = [4, 5, 0x0E, 0x0F, 2, 6];
    let mut rest = buf;
    loop {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Proof::NotYet;
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 {
            rest = tail;
            continue;
        }
        let Some(&id) = tail.first() else {
            return Proof::NotYet;
        };
        if USEFUL.contains(&id) {
            return Proof::Useful;
        }
        if tail.len() < len {
            // A large non-useful message (an extension handshake is small)
            // filling the peek buffer proves nothing either.
            return if buf.len() >= limit {
                Proof::NotUseful
            } else {
                Proof::NotYet
            };
        }
        rest = &tail[len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn member(a: &str, id: u8, source: PeerSource) -> Member {
        Member {
            addr: addr(a),
            peer_id: [id; 20],
            source,
        }
    }

    const OURS: [u8; 20] = [5; 20];

    /// Peers a and b dial each other at once: X is a's dial, Y is b's.
    /// Whichever arrives first at each end, both ends keep the same one.
    #[test]
    fn both_ends_keep_the_same_of_two_crossed_connections() {
        for (a, b) in [([1u8; 20], [2u8; 20]), ([9u8; 20], [3u8; 20])] {
            for x_first_at_a in [true, false] {
                for x_first_at_b in [true, false] {
                    // At a, X is outgoing; at b, incoming.
                    let a_keeps_x = if x_first_at_a {
                        !second_connection_wins(&a, &b, false, true)
                    } else {
                        second_connection_wins(&a, &b, true, false)
                    };
                    let b_keeps_x = if x_first_at_b {
                        !second_connection_wins(&b, &a, true, false)
                    } else {
                        second_connection_wins(&b, &a, false, true)
                    };
                    assert_eq!(a_keeps_x, b_keeps_x, "{x_first_at_a} {x_first_at_b}");
                }
            }
        }
        // The same direction twice: the first stays.
        assert!(!second_connection_wins(&[1; 20], &[2; 20], true, true));
        assert!(!second_connection_wins(&[1; 20], &[2; 20], false, false));
    }

    #[test]
    fn a_closed_table_admits_nothing_and_an_open_one_up_to_its_limit() {
        let mut t = Admission::new(2);
        let a = member("10.0.0.1:6881", 1, PeerSource::Tracker);
        assert_eq!(t.admit(&a, &OURS), Err(Refusal::Closed));
        assert_eq!(t.begin_dial(a.addr, false), Err(Refusal::Closed));
        t.set_open(true);
        for (key, m) in [(1, a), (2, member("10.0.0.2:6881", 2, PeerSource::Pex))] {
            let admit = t.admit(&m, &OURS).expect("a free slot");
            t.insert(key, m, admit);
        }
        let third = member("10.0.0.3:6881", 3, PeerSource::Dht);
        assert_eq!(t.admit(&third, &OURS), Err(Refusal::Full));
        assert_eq!(t.begin_dial(third.addr, false), Err(Refusal::Full));
        assert_eq!(
            t.begin_dial(third.addr, true),
            Ok(()),
            "may evict to get in"
        );
        assert_eq!(t.begin_dial(third.addr, true), Err(Refusal::Dialing));
        t.end_dial(third.addr);
        t.remove(1);
        assert!(t.admits(third.addr));
        assert_eq!(t.sources().get(PeerSource::Pex), 1);
    }

    #[test]
    fn our_own_peer_id_and_address_are_refused() {
        let mut t = Admission::new(10);
        t.set_open(true);
        let me = Member {
            peer_id: OURS,
            ..member("127.0.0.1:7000", 0, PeerSource::Tracker)
        };
        assert_eq!(t.admit(&me, &OURS), Err(Refusal::Myself));
        assert!(is_self(addr("127.0.0.9:7000"), addr("0.0.0.0:7000")));
        assert!(is_self(addr("10.1.1.1:7000"), addr("10.1.1.1:7000")));
        assert!(!is_self(addr("10.1.1.2:7000"), addr("10.1.1.1:7000")));
        assert!(!is_self(addr("10.1.1.1:7000"), addr("0.0.0.0:7000")));
    }

    #[test]
    fn a_banned_address_is_refused_and_the_ban_list_is_bounded() {
        let mut t = Admission::new(10);
        t.set_open(true);
        let bad = member("10.0.0.66:6881", 6, PeerSource::Tracker);
        t.ban(bad.addr);
        assert_eq!(t.admit(&bad, &OURS), Err(Refusal::Banned));
        assert_eq!(t.begin_dial(bad.addr, true), Err(Refusal::Banned));
        for i in 0..(MAX_BANNED as u32 + 100) {
            t.ban(SocketAddr::from((i.to_be_bytes(), 1)));
        }
        assert_eq!(t.banned.len(), MAX_BANNED);
    }

    #[test]
    fn a_peer_that_moved_replaces_its_dead_connection() {
        let mut t = Admission::new(1);
        t.set_open(true);
        let old = member("10.0.0.1:6881", 1, PeerSource::Tracker);
        let admit = t.admit(&old, &OURS).expect("first");
        t.insert(1, old, admit);
        let moved = member("10.9.0.1:6881", 1, PeerSource::Tracker);
        let admit = t.admit(&moved, &OURS).expect("replaces, even when full");
        assert_eq!(admit.replaces, Some(1));
        t.insert(2, moved, admit);
        assert_eq!(t.len(), 1);
        assert!(t.is_connected(moved.addr) && !t.is_connected(old.addr));
    }

    #[test]
    fn of_two_crossed_connections_the_higher_peer_ids_outgoing_one_stays() {
        // Ours (5) is lower than theirs (7): their dial to us, incoming for
        // us, is the one both ends keep.
        let mut t = Admission::new(10);
        t.set_open(true);
        let ours_out = member("10.0.0.7:6881", 7, PeerSource::Tracker);
        let admit = t.admit(&ours_out, &OURS).expect("first");
        t.insert(1, ours_out, admit);
        let theirs_in = member("10.0.0.7:50000", 7, PeerSource::Incoming);
        assert_eq!(t.admit(&theirs_in, &OURS).map(|a| a.replaces), Ok(Some(1)));

        let mut t = Admission::new(10);
        t.set_open(true);
        let admit = t.admit(&theirs_in, &OURS).expect("first");
        t.insert(1, theirs_in, admit);
        assert_eq!(t.admit(&ours_out, &OURS), Err(Refusal::Duplicate));
        let again = member("10.0.0.7:50001", 7, PeerSource::Incoming);
        assert_eq!(
            t.admit(&again, &OURS),
            Err(Refusal::Duplicate),
            "the same direction twice: the first stays"
        );
    }

    #[test]
    fn a_bitfield_after_an_extension_handshake_is_useful() {
        let mut b = vec![0, 0, 0, 4, 20, 0, b'd'];
        assert_eq!(
            first_useful(&b, 4096),
            Proof::NotYet,
            "extension handshake cut short"
        );
        b.push(b'e');
        assert_eq!(first_useful(&b, 4096), Proof::NotYet, "nothing useful yet");
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 5]);
        assert_eq!(
            first_useful(&b, 4096),
            Proof::Useful,
            "a bitfield's header is enough"
        );
    }

    #[test]
    fn keep_alives_and_choke_messages_are_not_useful() {
        let b = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0];
        assert_eq!(first_useful(&b, 4096), Proof::NotYet);
        assert_eq!(first_useful(&[], 4096), Proof::NotYet);
        assert_eq!(first_useful(&[0, 0, 0, 1, 0x0E], 4096), Proof::Useful);
        // A large extension message that fills the look-ahead proves nothing.
        let mut big = vec![0, 0, 0x40, 0, 20];
        big.resize(4096, 0);
        assert_eq!(first_useful(&big, 4096), Proof::NotUseful);
        assert_eq!(first_useful(&big[..4000], 4096), Proof::NotYet);
    }
}
