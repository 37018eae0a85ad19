//! The peer wire protocol (BEP 3) with the fast extension (BEP 6) and the
//! extension protocol (BEP 10): messages, a bounded codec, the handshake.

pub mod extension;
mod handshake;
mod message;

pub use handshake::{Handshake, HANDSHAKE_LEN, PROTOCOL_HEADER};
pub use message::{decode, encode, encode_piece_header, BlockRef, Message, BLOCK_SIZE};

/// A peer broke the protocol; the connection is dropped, others go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A length prefix larger than this connection accepts; refused before allocating.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Announced length.
        len: u32,
        /// Limit for this connection.
        max: u32,
    },
    /// A message id we do not know.
    #[error("unknown message id {0}")]
    UnknownId(u8),
    /// A known message with the wrong payload length.
    #[error("message id {id} with a payload of {len} bytes")]
    BadLength {
        /// Message id.
        id: u8,
        /// Payload length received.
        len: u32,
    },
    /// The handshake was not a BitTorrent handshake.
    #[error("not a BitTorrent handshake")]
    BadHandshake,
}
