//! Peer exchange (BEP 11) inside the swarm: which peers speak it, what
//! each was told, when its next message is due, and what a received one
//! taught us. The per-peer bounds live in [`crate::ext::pex::PexPeer`];
//! this module feeds it the connected set and the clock.
//!
//! - PEX runs only after [`Swarm::enable_pex`], which takes a
//!   [`PublicTorrent`] (BEP 27: never for a private torrent) and does
//!   nothing when [`SwarmConfig::pex`] is off. Only then does our extension
//!   handshake name `ut_pex`.
//! - Sending: to each peer that named `ut_pex` in its handshake, at most
//!   one message per [`pex::SEND_INTERVAL`], and only when the set of
//!   connected peers with a dialable address changed since it was last
//!   told (so an idle swarm asks for no timer). A peer's dialable address
//!   is the one we dialled, or for one that dialled us its IP with the
//!   listen port (`p`) of its extension handshake; peers with neither are
//!   not listed. Flags: seed, and reachable for peers we dialled (we speak
//!   neither MSE, uTP nor holepunch, so those bits stay off).
//! - Receiving: [`pex::PexPeer::handle_message`]'s bounds; an error is a
//!   [`Violation`] (the caller drops the peer), and what it learnt leaves as
//!   [`Event::PeersLearnt`], whose addresses the I/O layer gets through
//!   [`pex::Learnt::to_dial`] with its classifier (LAN addresses from a
//!   WAN peer are left out there: the swarm has no classifier of its own).
//! - Membership ([`super::member`]): on a torrent whose peers must prove
//!   channel membership (and always for a private channel torrent, whose
//!   [`PeerSharing::Members`] allows PEX among members only), a peer takes
//!   part only once proven: before that it is not sent to, not listed to
//!   others and its messages are ignored.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use super::{Event, Message, Outgoing, PeerOrigin, Swarm, Violation};
use crate::class::PeerClass;
use crate::ext::pex::{self, PeerFlags, PexPeer};
use crate::picker::PeerKey;
use crate::privacy::PeerSharing;
use crate::wire::extension;

/// The swarm's side: whether PEX runs, and a version of the connected set.
#[derive(Debug, Default)]
pub(super) struct SwarmPex {
    /// Set by [`Swarm::enable_pex`] when the config allows it.
    public: Option<PeerSharing>,
    /// Bumped whenever a peer with a dialable address comes or goes.
    version: u64,
}

/// One peer's side.
#[derive(Debug, Default)]
pub(super) struct PeerPex {
    /// Bounds and diffs; `None` when PEX does not run for the torrent.
    state: Option<PexPeer>,
    /// The id it gave ut_pex in its extension handshake: we send only then.
    their_id: Option<u8>,
    /// Where others can dial it, once known.
    dialable: Option<SocketAddr>,
    /// The set version it was last fully told.
    told_version: Option<u64>,
    /// What its connection showed it speaks: uTP (0x04) when it came over
    /// uTP, encryption (0x01) when it came through an MSE handshake. Others
    /// are told.
    shown: PeerFlags,
    /// It may take part: no membership is required, or it proved it.
    member_ok: bool,
}

impl PeerPex {
    /// State for a peer that just connected.
    pub(super) fn new(
        swarm: &mut SwarmPex,
        addr: SocketAddr,
        origin: PeerOrigin,
        no_membership: bool,
        now: Instant,
    ) -> Self {
        let Some(public) = swarm.public else {
            return Self::default();
        };
        let member_ok = no_membership && !public.members_only();
        let dialable = origin.outgoing.then(|| pex::canonical(addr));
        if dialable.is_some() {
            swarm.version += 1;
        }
        Self {
            state: Some(PexPeer::new(public, addr, origin.class, now)),
            their_id: None,
            dialable,
            told_version: None,
            shown: PeerFlags::default(),
            member_ok,
        }
    }

    /// When a message to it is due: it speaks ut_pex and has not been told
    /// the current set.
    fn due(&self, version: u64) -> Option<Instant> {
        let state = self.state.as_ref()?;
        self.their_id?;
        if !self.member_ok {
            return None;
        }
        (self.told_version != Some(version)).then(|| state.poll_timeout())
    }
}

impl Swarm {
    /// Run PEX for this torrent (unless [`SwarmConfig::pex`] is off): from
    /// now on our extension handshake names ut_pex, and peers that connect
    /// take part. Call it before adding peers. Only a public torrent
    /// (BEP 27) or a private channel torrent (PEX among proven members
    /// only) can ask for it: see [`PeerSharing`].
    ///
    /// [`SwarmConfig::pex`]: super::SwarmConfig::pex
    pub fn enable_pex(&mut self, sharing: impl Into<PeerSharing>) {
        if self.config.pex {
            self.pex.public = Some(sharing.into());
        }
    }

    /// A peer proved membership: it takes part in PEX from now on.
    pub(super) fn pex_member_proven(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.pex.state.is_some() && !p.pex.member_ok {
            p.pex.member_ok = true;
            if p.pex.dialable.is_some() {
                self.pex.version += 1;
            }
        }
    }

    /// Whether PEX runs for this torrent.
    pub fn pex_enabled(&self) -> bool {
        self.pex.public.is_some()
    }

    /// The peer's extension handshake: whether it speaks ut_pex, and (for
    /// one that dialled us) the listen port that makes it dialable.
    pub(super) fn pex_handshake(&mut self, key: PeerKey, payload: &[u8]) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(state) = peer.pex.state.as_mut() else {
            return;
        };
        peer.pex.their_id = extension::peer_ut_pex(payload);
        if peer.origin.outgoing {
            return;
        }
        if let Some(port) = extension::peer_listen_port(payload) {
            let addr = pex::canonical(SocketAddr::new(peer.addr.ip(), port));
            if peer.pex.dialable != Some(addr) {
                peer.pex.dialable = Some(addr);
                state.set_addr(addr);
                self.pex.version += 1;
            }
        }
    }

    /// A ut_pex message from `key`. An error drops the peer (a flood, a
    /// huge list, an oversized or malformed message); without PEX for the
    /// torrent it is ignored like any extension we did not offer.
    pub(super) fn pex_message(
        &mut self,
        key: PeerKey,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), Violation> {
        let Some(state) = self
            .peers
            .get_mut(&key)
            .filter(|p| p.pex.member_ok)
            .and_then(|p| p.pex.state.as_mut())
        else {
            return Ok(());
        };
        match state.handle_message(now, payload) {
            Err(e) => Err(Violation(e.to_string())),
            Ok(Some(learnt)) if !learnt.is_empty() => {
                self.events
                    .push_back(Event::PeersLearnt { peer: key, learnt });
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    /// The peer's connection showed it speaks what `flags` say (uTP,
    /// encryption): others are told.
    pub(super) fn pex_peer_shows(&mut self, key: PeerKey, flags: PeerFlags) {
        if let Some(p) = self.peers.get_mut(&key) {
            let before = p.pex.shown;
            p.pex.shown = before | flags;
            if p.pex.shown != before && p.pex.dialable.is_some() {
                self.pex.version += 1;
            }
        }
    }

    /// A peer left: the set changed if others could have been told of it.
    pub(super) fn pex_peer_gone(&mut self, pex: &PeerPex) {
        if pex.dialable.is_some() {
            self.pex.version += 1;
        }
    }

    /// The next instant a PEX message is due to someone.
    pub(super) fn pex_timeout(&self) -> Option<Instant> {
        if !self.pex_enabled() {
            return None;
        }
        let version = self.pex.version;
        self.peers.values().filter_map(|p| p.pex.due(version)).min()
    }

    /// Send the PEX messages due at `now`.
    pub(super) fn pex_tick(&mut self, now: Instant) {
        let version = self.pex.version;
        let due: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.pex.due(version).is_some_and(|t| t <= now))
            .map(|(&k, _)| k)
            .collect();
        if due.is_empty() {
            return;
        }
        let mut connected = BTreeMap::new();
        let mut classes = HashMap::new();
        for p in self.peers.values().filter(|p| p.pex.member_ok) {
            if let Some(addr) = p.pex.dialable {
                let mut flags = p.pex.shown;
                if p.is_seed {
                    flags = flags | PeerFlags::SEED;
                }
                if p.origin.outgoing {
                    flags = flags | PeerFlags::REACHABLE;
                }
                connected.insert(addr, flags);
                classes.insert(addr.ip(), p.origin.class);
            }
        }
        // Every listed address is a connected peer's, whose class we know.
        let classify = |ip: IpAddr| classes.get(&ip).copied().unwrap_or(PeerClass::Wan);
        for key in due {
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            let (Some(state), Some(id)) = (peer.pex.state.as_mut(), peer.pex.their_id) else {
                continue;
            };
            let msg = state.poll_transmit(now, &connected, classify);
            // A full message may have left more for the next one.
            let complete = msg.as_ref().is_none_or(|m| {
                m.added.len() < pex::MAX_ADDED && m.dropped.len() < pex::MAX_DROPPED
            });
            if complete {
                peer.pex.told_version = Some(version);
            }
            if let Some(msg) = msg {
                peer.outbox.push_back(Outgoing::Message(Message::Extended {
                    id,
                    payload: Bytes::from(msg.encode()),
                }));
                self.dirty.push(key);
            }
        }
    }
}
