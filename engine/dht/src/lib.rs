//! capwise-dht: a Mainline DHT node (BEP 5, read-only mode of BEP 43) with
//! no I/O in it, in the quinn-proto style.
//!
//! [`Dht`] is a deterministic state machine: datagrams, timers and `now` go
//! in, datagrams to send and events come out. It owns no socket, so the
//! agent's one UDP socket can carry it beside uTP; every datagram it wants
//! sent goes through [`Dht::poll_transmit`], where the caller debits and
//! counts it before it leaves, or holds the node [`Dht::set_silent`] while
//! the WAN switch is off. It has no clock and no thread: with no lookup
//! running, [`Dht::poll_timeout`] names only the next bucket refresh (15
//! minutes), so an idle agent is not woken.
//!
//! - [`id`]: node ids and the XOR metric.
//! - [`krpc`]: the KRPC message codec, bounded against hostile packets.
//! - [`routing`]: the k-bucket routing table.
//! - [`lookup`]: one iterative `find_node` / `get_peers` lookup.
//! - [`tokens`]: `announce_peer` write tokens.
//! - [`store`]: the bounded store of peers announced to us.
//! - [`limit`]: the per-source rate limit on incoming queries.
//! - [`node`]: the [`Dht`] machine tying them together.
//!
//! Architecture invariant: no tokio, sockets or files here; `scripts/test`
//! checks this crate's dependency tree like capwise-proto's.

pub mod id;
pub mod krpc;
pub mod limit;
pub mod lookup;
pub mod node;
pub mod routing;
pub mod store;
pub mod tokens;

pub use id::NodeId;
pub use lookup::LookupKind;
pub use node::{Config, Dht, Event, Limits, LookupId, Stats, Transmit};

/// Why a DHT call or a packet failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhtError {
    /// The bytes are not bencode.
    #[error("{0}")]
    Bencode(#[from] capwise_proto::bencode::BencodeError),
    /// A field is missing or has the wrong type or size.
    #[error("malformed KRPC message: {0}")]
    Malformed(&'static str),
    /// The datagram is larger than any KRPC message we accept.
    #[error("datagram of {0} bytes is too large")]
    TooLarge(usize),
    /// Too many lookups are running.
    #[error("{0} lookups are already running")]
    TooManyLookups(usize),
    /// No node to start from: the routing table and the bootstrap list are empty.
    #[error("no DHT node known: the routing table and the bootstrap list are empty")]
    NoNodes,
}
