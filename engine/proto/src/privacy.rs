//! BEP 27: a private torrent finds its peers through its trackers only.
//!
//! Peer exchange ([`crate::ext::pex`]), local service discovery
//! ([`crate::lsd`]) and the DHT take a [`PublicTorrent`] to run for a
//! torrent, and the only way to get one is from a private flag that is off,
//! so "no PEX, LSD or DHT for a private torrent" is a type error rather than
//! a check each caller must remember.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_flag_gives_no_token() {
        assert_eq!(PublicTorrent::check(true), Err(PrivateTorrent));
        assert!(PublicTorrent::check(false).is_ok());
    }
}
