//! Which way bytes go and where a peer sits: the two axes every gate,
//! counter and credit is indexed by.

/// Direction of a transfer, seen from this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes we send.
    Up,
    /// Bytes we receive.
    Down,
}

/// Where a peer sits: on the local network (free) or beyond it (billed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerClass {
    /// Same subnet as a local interface, link-local or loopback, not through a VPN.
    Lan,
    /// Everything else.
    Wan,
}
