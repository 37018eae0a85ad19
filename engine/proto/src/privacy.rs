//! BEP 27: a private torrent finds its peers through its trackers only.
//!
//! Peer exchange ([`crate::ext::pex`]), local service discovery
//! ([`crate::lsd`]) and the DHT take a [`PublicTorrent`] to run for a
//! torrent, and the only way to get one is from a private flag that is off,
//! so "no PEX, LSD or DHT for a private torrent" is a type error rather than
//! a check each caller must remember.
//!
//! One exception, also by type: a private torrent whose peers must prove
//! channel membership ([`crate::ext::member`]) gets a [`MemberTorrent`].
//! PEX and LSD take a [`PeerSharing`], which a [`PublicTorrent`] or a
//! [`MemberTorrent`] gives: PEX then runs among proven members only (none
//! other is told, listed or heard), and LSD, which never leaves the LAN,
//! finds the site's machines (who must still prove membership before they
//! get anything). The DHT still takes a [`PublicTorrent`] only, so a channel
//! torrent is never looked up or announced there, and an ordinary private
//! torrent (no membership) gets none of the three, as before.

use crate::metainfo::Info;

/// Proof that a torrent is not private (BEP 27): its `info` has no
/// `private = 1`. Only [`PublicTorrent::check`] and
/// [`PublicTorrent::from_info`] make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicTorrent {
    _sealed: (),
}

/// The torrent is private: only its trackers may give it peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the torrent is private (BEP 27): it takes peers from its trackers only, never from PEX, LSD or the DHT")]
pub struct PrivateTorrent;

impl PublicTorrent {
    /// `Ok` when `private` (the metainfo's BEP 27 flag, [`Info::private`]) is off.
    ///
    /// A magnet link whose metadata has not arrived yet has no flag to give;
    /// callers treat it as public until the metadata says otherwise, and then
    /// drop what PEX, LSD and the DHT brought (as libtorrent does).
    pub fn check(private: bool) -> Result<Self, PrivateTorrent> {
        if private {
            Err(PrivateTorrent)
        } else {
            Ok(Self { _sealed: () })
        }
    }

    /// `Ok` when the torrent's `info` is not private.
    pub fn from_info(info: &Info) -> Result<Self, PrivateTorrent> {
        Self::check(info.private)
    }
}

/// Proof that a torrent is private (BEP 27) and that its peers must prove
/// channel membership before they get anything. Only
/// [`MemberTorrent::check`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberTorrent {
    _sealed: (),
}

impl MemberTorrent {
    /// `Some` when the torrent is private and the swarm requires membership
    /// (the caller passes whether it has a membership key for it).
    pub fn check(private: bool, requires_membership: bool) -> Option<Self> {
        (private && requires_membership).then_some(Self { _sealed: () })
    }
}

/// What PEX and LSD need to run for a torrent: it is public, or it is a
/// channel torrent whose peers prove membership (PEX among proven members
/// only). An ordinary private torrent has neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSharing {
    /// A public torrent: PEX with every peer, LSD.
    Public(PublicTorrent),
    /// A private channel torrent: PEX with proven members only, LSD (whose
    /// peers prove membership like any other).
    Members(MemberTorrent),
}

impl PeerSharing {
    /// Whether only proven members may take part in PEX.
    pub fn members_only(self) -> bool {
        matches!(self, PeerSharing::Members(_))
    }

    /// Sharing for a torrent: public, or private with membership required;
    /// `Err` for an ordinary private torrent.
    pub fn check(private: bool, requires_membership: bool) -> Result<Self, PrivateTorrent> {
        match PublicTorrent::check(private) {
            Ok(public) => Ok(PeerSharing::Public(public)),
            Err(e) => MemberTorrent::check(private, requires_membership)
                .map(PeerSharing::Members)
                .ok_or(e),
        }
    }
}

impl From<PublicTorrent> for PeerSharing {
    fn from(public: PublicTorrent) -> Self {
        PeerSharing::Public(public)
    }
}

impl From<MemberTorrent> for PeerSharing {
    fn from(member: MemberTorrent) -> Self {
        PeerSharing::Members(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_private_torrent_with_membership_gets_member_sharing() {
        assert!(MemberTorrent::check(true, true).is_some());
        assert!(MemberTorrent::check(true, false).is_none());
        assert!(MemberTorrent::check(false, true).is_none());
        assert_eq!(PeerSharing::check(true, false), Err(PrivateTorrent));
        assert!(PeerSharing::check(true, true).unwrap().members_only());
        assert!(!PeerSharing::check(false, true).unwrap().members_only());
        assert!(!PeerSharing::check(false, false).unwrap().members_only());
    }

    #[test]
    fn a_private_flag_gives_no_token() {
        assert_eq!(PublicTorrent::check(true), Err(PrivateTorrent));
        assert!(PublicTorrent::check(false).is_ok());
    }
}
