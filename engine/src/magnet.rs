//! Magnet URIs (BEP 9): `xt=urn:btih:` in hex or base32, `dn`, `tr`, `xl`.

use crate::metainfo::InfoHash;

/// Why a magnet URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// Placeholder until the parser lands.
    #[error("not a magnet URI")]
    NotMagnet,
}

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info-hash from `xt=urn:btih:`.
    pub info_hash: InfoHash,
    /// `dn`: display name.
    pub display_name: Option<String>,
    /// `tr`: trackers, in order.
    pub trackers: Vec<String>,
    /// `xl`: exact length in bytes.
    pub exact_length: Option<u64>,
}
