//! uTP (BEP 29) with LEDBAT congestion control (RFC 6817), sans-IO.
//!
//! Like `quinn-proto`: no tokio, no sockets, no clock of its own. Bytes and
//! `now: Instant` go in; datagrams, timer deadlines and events come out.
//! The caller owns the UDP socket (capwise shares one per listen address
//! with the DHT) and the timers.
//!
//! - [`packet`]: the codec, pure functions over `&[u8]`, never panicking.
//! - [`ledbat`]: the delay-based congestion window and the RTT estimator.
//! - [`connection`]: one uTP connection (handshake, data, ACKs, selective
//!   ACK, retransmission, reordering, FIN and RESET, wire-byte counters).
//! - [`endpoint`]: the connections of one socket, routed by address and
//!   connection id, bounded in number.
//!
//! Written by hand: no maintained crate pairs uTP with LEDBAT
//! (`librqbit-utp` has CUBIC only, `utp-rs` is an alpha, `libutp-rs` pins
//! old tokio), and none is sans-IO.

pub mod connection;
pub mod endpoint;
pub mod ledbat;
pub mod packet;

pub use connection::{CloseReason, Config, Connection, DatagramError, Event, Stats};
pub use endpoint::{ConnectionHandle, Endpoint, EndpointConfig, EndpointError, Routed};
pub use packet::{Packet, PacketError, PacketType};
