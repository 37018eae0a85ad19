//! Peer-wire extensions negotiated in the BEP 10 handshake, each a pure codec
//! plus the per-peer state it needs, sans-IO like the rest of this crate:
//!
//! - [`pex`]: ut_pex (BEP 11), peer exchange, bounded both ways; never for
//!   a private torrent.

pub mod pex;
