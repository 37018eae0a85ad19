//! Peer-wire extensions negotiated in the BEP 10 handshake, each a pure codec
//! plus the per-peer or per-torrent state it needs, sans-IO like the rest of
//! this crate (the way libtorrent runs them as torrent plugins):
//!
//! - [`metadata`]: ut_metadata (BEP 9), fetching and serving the info dictionary.
//! - [`pex`]: ut_pex (BEP 11), peer exchange, bounded both ways; never for
//!   a private torrent.

//! - [`site`]: capwise_site, claims of pieces a site member fetches over
//!   the WAN (capwise peers of one LAN only).

//! - [`member`]: capwise_member, proof of channel membership for torrents
//!   that require it.

//! - [`quic`]: capwise_quic, a capwise agent's offer to move the
//!   connection onto QUIC (port and certificate fingerprint).

pub mod member;
pub mod metadata;
pub mod pex;
pub mod quic;
pub mod site;
