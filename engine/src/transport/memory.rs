//! An in-memory transport: two ends of a `tokio::io::duplex` pipe, counted
//! like a socket. It runs a session's peers without a network, which is
//! what proves the peer code depends on [`Transport`] alone.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::DuplexStream;

use super::{Counted, Transport, TransportKind, WireBytes};

/// Two connected transports, `a`'s end at `a` and `b`'s at `b` (the
/// addresses the session sees, e.g. to classify the peer), each direction
/// buffering up to `capacity` bytes.
pub fn pair(a: SocketAddr, b: SocketAddr, capacity: usize) -> (Transport, Transport) {
    let (x, y) = tokio::io::duplex(capacity);
    (end(x, a, b), end(y, b, a))
}

fn end(stream: DuplexStream, local: SocketAddr, remote: SocketAddr) -> Transport {
    let wire = Arc::new(WireBytes::default());
    let (reader, writer) = tokio::io::split(stream);
    Transport::new(
        TransportKind::Memory,
        local,
        remote,
        Box::new(Counted::new(reader, wire.clone())),
        Box::new(Counted::new(writer, wire.clone())),
        wire,
    )
}
