//! The peer wire protocol (BEP 3) with the fast extension (BEP 6) and the
//! extension protocol (BEP 10): messages, a bounded codec, the handshake.

/// A peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Placeholder until the codec lands.
    #[error("message too long: {0} bytes")]
    TooLong(u32),
}
