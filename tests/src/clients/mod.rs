//! Reference BitTorrent clients (libtorrent, Transmission, aria2) and capwise itself, each run as a
//! child process on 127.0.0.1 with plain TCP and no LSD/PEX/UPnP, and no DHT
//! unless a test asks for a private one on loopback.

pub mod agent;
pub mod aria2;
pub mod capwise;
pub mod libtorrent;
pub mod lighttpd;
pub mod transmission;

use std::net::SocketAddr;

/// `127.0.0.1:port`
pub fn local(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}
