//! One UDP socket per listen address, shared by the protocols that speak
//! over it: the datagram demux point.
//!
//! Like libtorrent, capwise puts its UDP protocols on the port peers use.
//! The [`UdpEndpoint`] owns the socket and one receive task that reads every
//! datagram, counts it (WAN overhead, down: whatever arrives was billed) and
//! hands it to the protocol its first byte names: a KRPC message (the DHT)
//! is a bencoded dictionary, so it starts with `d`; a uTP packet starts with
//! its type and version nibbles (0x01, 0x11, ... 0x41) and goes to uTP once
//! uTP exists (next issue); anything else is dropped. Each protocol's queue
//! is bounded and a full queue drops the datagram, so a flood costs at most
//! the queue's memory. Senders share the socket through
//! [`UdpEndpoint::socket`]; each protocol debits and counts what it sends.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::hooks::{Counters, Direction, PeerClass};

/// Datagrams queued for the DHT before new ones are dropped.
pub const DHT_QUEUE: usize = 256;

/// One datagram as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Its source.
    pub from: SocketAddr,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Which protocol a datagram belongs to, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// KRPC (BEP 5): a bencoded dictionary.
    Dht,
    /// uTP (BEP 29): type 0-4 in the high nibble, version 1 in the low one.
    Utp,
    /// Neither.
    Unknown,
}

impl Protocol {
    /// The protocol of a datagram starting with `bytes`.
    pub fn of(bytes: &[u8]) -> Protocol {
        match bytes.first() {
            Some(b'd') => Protocol::Dht,
            Some(&b) if b & 0x0f == 1 && b >> 4 <= 4 => Protocol::Utp,
            _ => Protocol::Unknown,
        }
    }
}

/// The shared socket and its receive task; dropping it stops the task.
pub struct UdpEndpoint {
    socket: Arc<UdpSocket>,
    task: JoinHandle<()>,
}

impl UdpEndpoint {
    /// Binds `addr` and starts the receive task. Datagrams for the DHT (at
    /// most `max_dht_len` bytes each, larger ones are dropped unread) come
    /// out of the returned receiver. Must be called within a tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        counters: Arc<Counters>,
        max_dht_len: usize,
    ) -> io::Result<(UdpEndpoint, mpsc::Receiver<Datagram>)> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let (dht_tx, dht_rx) = mpsc::channel(DHT_QUEUE);
        let task = tokio::spawn(receive(socket.clone(), counters, dht_tx, max_dht_len));
        Ok((UdpEndpoint { socket, task }, dht_rx))
    }

    /// The socket, for sending.
    pub fn socket(&self) -> Arc<UdpSocket> {
        self.socket.clone()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Drop for UdpEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    counters: Arc<Counters>,
    dht: mpsc::Sender<Datagram>,
    max_dht_len: usize,
) {
    // The largest UDP payload: nothing is cut short unseen.
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(pair) => pair,
            Err(e) => {
                // ICMP errors (a port unreachable from an earlier send) land
                // here on Linux; they say nothing about the socket itself.
                tracing::trace!("UDP receive: {e}");
                continue;
            }
        };
        counters.add_overhead(Direction::Down, PeerClass::Wan, n as u64);
        let bytes = &buf[..n];
        match Protocol::of(bytes) {
            Protocol::Dht if n <= max_dht_len => {
                let datagram = Datagram {
                    from,
                    bytes: bytes.to_vec(),
                };
                // Full (a flood): dropped. Closed (no DHT): dropped.
                let _ = dht.try_send(datagram);
            }
            Protocol::Dht | Protocol::Utp | Protocol::Unknown => {
                tracing::trace!(%from, n, "UDP datagram dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_names_the_protocol() {
        assert_eq!(Protocol::of(b"d1:ad2:id20:"), Protocol::Dht);
        for b in [0x01u8, 0x11, 0x21, 0x31, 0x41] {
            assert_eq!(Protocol::of(&[b, 0]), Protocol::Utp);
        }
        for b in [0x00u8, 0x02, 0x51, b'l', b'i'] {
            assert_eq!(Protocol::of(&[b]), Protocol::Unknown);
        }
        assert_eq!(Protocol::of(&[]), Protocol::Unknown);
    }
}
