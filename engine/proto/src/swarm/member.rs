//! Channel membership inside the swarm ([`crate::ext::member`] has the
//! proof and one peer's state): until a peer has proven membership on a
//! torrent that requires it, it gets nothing.
//!
//! - Not greeted: our bitfield (or have-all/none) is held back until its
//!   proof verified, so a stranger does not even learn what we hold.
//! - Never unchoked, never a choker candidate: its requests are refused (a
//!   reject under BEP 6) like any choked peer's.
//! - Not asked for anything, not told we are interested: a stranger cannot
//!   claim pieces it would feed us.
//! - No metadata (the info dictionary names the files): requests rejected.
//! - No PEX: it is neither told, listed nor heard ([`super::pex`]).
//! - Dropped at [`member::PROOF_TIMEOUT`] after connecting if still
//!   unproven, at once if its extension handshake cannot take part or its
//!   proof fails.
//!
//! A torrent that does not require membership has no such state at all and
//! behaves exactly as before.

use std::time::Instant;

use super::{Message, Outgoing, Swarm, Violation};
use crate::ext::member::{self, MemberPeer, Membership, NONCE_LEN};
use crate::picker::PeerKey;

/// The swarm's side: the membership it requires, if any.
#[derive(Debug, Default)]
pub(super) struct SwarmMember {
    membership: Option<Membership>,
}

/// One peer's side, for a torrent that requires membership.
#[derive(Debug)]
pub(super) struct PeerMember {
    state: MemberPeer,
    /// Our peer id in this connection's handshake (the session takes a new
    /// one after a move): what our proof must name.
    ours: [u8; 20],
    /// Our greeting (bitfield, have-all or have-none), sent once proven.
    held: Option<Message>,
}

impl PeerMember {
    fn is_proven(&self) -> bool {
        self.state.is_proven()
    }
}

/// Whether a peer with this state may be served and asked (always, for a
/// torrent that requires no membership).
pub(super) fn admitted(state: &Option<PeerMember>) -> bool {
    state.as_ref().is_none_or(PeerMember::is_proven)
}

impl Swarm {
    /// From now on every peer must prove membership of the channel before
    /// it gets anything (module docs). Call it before adding peers.
    pub fn require_membership(&mut self, membership: Membership) {
        self.member.membership = Some(membership);
    }

    /// Our peer id from now on (the one our next handshakes give): proofs
    /// for connections that join later name it.
    pub fn set_own_peer_id(&mut self, peer_id: [u8; 20]) {
        if let Some(m) = self.member.membership.as_mut() {
            m.peer_id = peer_id;
        }
    }

    /// Whether this torrent's peers must prove membership.
    pub fn requires_membership(&self) -> bool {
        self.member.membership.is_some()
    }

    /// Whether peer `key` proved channel membership on this torrent. False
    /// for every peer of a torrent that requires none (nobody proved
    /// anything) and for unknown keys. The one predicate for "is this peer
    /// one of ours": others (site coordination) combine it with theirs.
    pub fn is_proven_member(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .and_then(|p| p.member.as_ref())
            .is_some_and(PeerMember::is_proven)
    }

    /// Connected peers that proved membership.
    pub fn proven_members(&self) -> usize {
        self.peers
            .values()
            .filter(|p| p.member.as_ref().is_some_and(PeerMember::is_proven))
            .count()
    }

    /// A new peer's state and the nonce our extension handshake carries;
    /// `None` when the torrent requires no membership.
    pub(super) fn member_new(
        &self,
        their_peer_id: [u8; 20],
        now: Instant,
    ) -> Option<(PeerMember, [u8; NONCE_LEN])> {
        let membership = self.member.membership.as_ref()?;
        let nonce = member::fresh_nonce();
        Some((
            PeerMember {
                state: MemberPeer::new(nonce, their_peer_id, now),
                ours: membership.peer_id,
                held: None,
            },
            nonce,
        ))
    }

    /// Holds `greeting` back if the peer still has to prove membership;
    /// gives it back if it may be sent now.
    pub(super) fn member_hold(
        state: &mut Option<PeerMember>,
        greeting: Message,
    ) -> Option<Message> {
        match state {
            Some(m) if !m.is_proven() => {
                m.held = Some(greeting);
                None
            }
            _ => Some(greeting),
        }
    }

    /// The peer's extension handshake: send our proof, or drop it if it
    /// cannot take part.
    pub(super) fn member_handshake(
        &mut self,
        key: PeerKey,
        payload: &[u8],
    ) -> Result<(), Violation> {
        let Some(membership) = self.member.membership.as_ref() else {
            return Ok(());
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        let Some(state) = peer.member.as_mut() else {
            return Ok(());
        };
        let signer = Membership {
            peer_id: state.ours,
            ..membership.clone()
        };
        let Some((id, proof)) = state
            .state
            .on_handshake(&signer, payload)
            .map_err(|e| Violation(e.to_string()))?
        else {
            return Ok(());
        };
        peer.outbox.push_back(Outgoing::Message(Message::Extended {
            id,
            payload: proof.into(),
        }));
        self.dirty.push(key);
        Ok(())
    }

    /// The peer's proof message: once it verifies, the peer is greeted and
    /// takes part like any other; a bad one drops it. Ignored (like any
    /// extension we did not offer) for a torrent that requires none.
    pub(super) fn member_proof(
        &mut self,
        key: PeerKey,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), Violation> {
        let Some(membership) = self.member.membership.as_ref() else {
            return Ok(());
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        let Some(state) = peer.member.as_mut() else {
            return Ok(());
        };
        if state.is_proven() {
            return Ok(());
        }
        state
            .state
            .on_proof(membership, payload)
            .map_err(|e| Violation(e.to_string()))?;
        if let Some(greeting) = state.held.take() {
            peer.outbox.push_back(Outgoing::Message(greeting));
        }
        let interested = peer.peer_interested;
        self.dirty.push(key);
        self.pex_member_proven(key);
        // What it said before it was proven (bitfield, interest) counts now.
        self.update_interest(key, now);
        if interested {
            self.maybe_unchoke_now(key);
        }
        Ok(())
    }

    /// The earliest proof deadline of an unproven peer.
    pub(super) fn member_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.member.as_ref()?.state.deadline())
            .min()
    }

    /// Drops the peers whose proof deadline passed.
    pub(super) fn member_tick(&mut self, now: Instant) {
        let late: Vec<(PeerKey, String)> = self
            .peers
            .iter()
            .filter_map(|(&k, p)| {
                let e = p.member.as_ref()?.state.check_deadline(now).err()?;
                Some((k, e.to_string()))
            })
            .collect();
        for (key, reason) in late {
            self.drop_peer(key, reason, false);
        }
    }
}
