//! One UDP socket per listen address, shared by the protocols that speak
//! over it: the datagram demux point.
//!
//! Like libtorrent, capwise puts its UDP protocols on the port peers use.
//! The [`UdpEndpoint`] owns the socket and one receive task that reads every
//! datagram and hands it to the protocol its first byte names: a KRPC
//! message (the DHT) is a bencoded dictionary, so it starts with `d`; a uTP
//! packet starts with its type and version nibbles (0x01, 0x11, ... 0x41)
//! and goes to the uTP driver (`transport/utp_driver.rs`); anything else is
//! dropped. Each protocol's queue is bounded and a full queue drops the
//! datagram, so a flood costs at most the queue's memory. Senders share the
//! socket through [`UdpEndpoint::socket`]; each protocol debits and counts
//! what it sends.
//!
//! Reading is batched with `quinn-udp` (quinn's datapath): one `recvmmsg`
//! takes up to [`RECV_BATCH`] datagrams, and with UDP GRO on (Linux) the
//! kernel hands a run of same-sized datagrams from one sender (a uTP
//! sender's GSO burst) as one buffer cut at `stride`; each datagram is then
//! demuxed on its own as before. Without that support it reads one
//! datagram at a time.
//!
//! Counting: what is not uTP is counted here as it arrives (WAN overhead,
//! down: whatever arrives was billed). uTP datagrams are counted by the
//! driver, per connection in its transport's `WireBytes` (which the peer
//! code turns into payload and overhead of the peer's class) or as overhead
//! when they reach no connection, so no uTP byte is counted twice.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::egress::Device;
use crate::hooks::{Counters, Direction, PeerClass};

/// Datagrams queued for the DHT before new ones are dropped.
pub const DHT_QUEUE: usize = 256;
/// Datagrams queued for uTP before new ones are dropped: deep enough for a
/// full receive window of 1400-byte packets (a drop is a loss to LEDBAT),
/// at most ~6 MB.
pub const UTP_QUEUE: usize = 4096;

/// The kernel buffers asked for, each way.
const SOCKET_BUFFER: usize = 4 << 20;
/// Buffers one receive call fills at most (`recvmmsg`).
pub const RECV_BATCH: usize = 16;
/// Each receive buffer: the largest UDP payload, which is also the most a
/// GRO run can hold, so nothing is cut short unseen.
const RECV_BUFFER: usize = 65536;

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

/// Where the receive task puts each protocol's datagrams; a receiver not
/// taken (the protocol does not run) is dropped, and so are its datagrams.
pub struct Receivers {
    /// KRPC datagrams, for the DHT.
    pub dht: mpsc::Receiver<Datagram>,
    /// uTP datagrams, for the uTP driver.
    pub utp: mpsc::Receiver<Datagram>,
}

impl UdpEndpoint {
    /// Binds `addr` and starts the receive task. Datagrams for the DHT (at
    /// most `max_dht_len` bytes each, larger ones are dropped unread) and
    /// for uTP come out of the returned receivers. Must be called within a
    /// tokio runtime.
    pub async fn bind(
        addr: SocketAddr,
        counters: Arc<Counters>,
        max_dht_len: usize,
    ) -> io::Result<(UdpEndpoint, Receivers)> {
        Self::bind_on(addr, Device::Any, counters, max_dht_len)
    }

    /// As [`UdpEndpoint::bind`], the socket bound to `device` (`egress.rs`).
    pub(crate) fn bind_on(
        addr: SocketAddr,
        device: Device<'_>,
        counters: Arc<Counters>,
        max_dht_len: usize,
    ) -> io::Result<(UdpEndpoint, Receivers)> {
        let socket = UdpSocket::from_std(crate::egress::udp_socket(addr, device)?)?;
        // uTP at speed sends bursts of a window's worth: a deeper kernel
        // queue than the default (~200 KB) loses fewer of them. Best effort:
        // the kernel caps it at net.core.rmem_max / wmem_max.
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let socket = Arc::new(socket);
        let (dht_tx, dht) = mpsc::channel(DHT_QUEUE);
        let (utp_tx, utp) = mpsc::channel(UTP_QUEUE);
        let queues = Queues {
            dht: dht_tx,
            utp: utp_tx,
            max_dht_len,
        };
        let task = tokio::spawn(receive(socket.clone(), counters, queues));
        Ok((UdpEndpoint { socket, task }, Receivers { dht, utp }))
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

struct Queues {
    dht: mpsc::Sender<Datagram>,
    utp: mpsc::Sender<Datagram>,
    max_dht_len: usize,
}

async fn receive(socket: Arc<UdpSocket>, counters: Arc<Counters>, queues: Queues) {
    let state = match UdpSocketState::new((&*socket).into()) {
        Ok(state) => state,
        Err(e) => {
            tracing::debug!("UDP: no batched receive ({e}), one datagram at a time");
            return receive_one_by_one(socket, counters, queues).await;
        }
    };
    let mut storage = vec![0u8; RECV_BATCH * RECV_BUFFER];
    let mut bufs: Vec<IoSliceMut<'_>> = storage
        .chunks_mut(RECV_BUFFER)
        .map(IoSliceMut::new)
        .collect();
    let mut meta = [RecvMeta::default(); RECV_BATCH];
    loop {
        let got = socket
            .async_io(Interest::READABLE, || {
                state.recv((&*socket).into(), &mut bufs, &mut meta)
            })
            .await;
        let n = match got {
            Ok(n) => n,
            Err(e) => {
                // ICMP errors (a port unreachable from an earlier send) land
                // here on Linux; they say nothing about the socket itself.
                tracing::trace!("UDP receive: {e}");
                continue;
            }
        };
        for (m, buf) in meta.iter().zip(bufs.iter()).take(n) {
            let bytes = &buf[..m.len.min(buf.len())];
            // A GRO run: datagrams of `stride` bytes each (the last may be
            // shorter), all from one sender.
            let stride = if m.stride == 0 { bytes.len() } else { m.stride };
            for one in bytes.chunks(stride.max(1)) {
                dispatch(one, m.addr, &counters, &queues);
            }
        }
    }
}

/// The plain path: `recv_from`, one datagram per call.
async fn receive_one_by_one(socket: Arc<UdpSocket>, counters: Arc<Counters>, queues: Queues) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => dispatch(&buf[..n], from, &counters, &queues),
            Err(e) => tracing::trace!("UDP receive: {e}"),
        }
    }
}

/// Hands one datagram to the protocol its first byte names.
fn dispatch(bytes: &[u8], from: SocketAddr, counters: &Counters, queues: &Queues) {
    let n = bytes.len();
    let protocol = Protocol::of(bytes);
    if protocol != Protocol::Utp || queues.utp.is_closed() {
        counters.add_overhead(Direction::Down, PeerClass::Wan, n as u64);
    }
    let datagram = || Datagram {
        from,
        bytes: bytes.to_vec(),
    };
    match protocol {
        Protocol::Dht if n <= queues.max_dht_len => {
            // Full (a flood): dropped. Closed (no DHT): dropped.
            let _ = queues.dht.try_send(datagram());
        }
        Protocol::Utp if !queues.utp.is_closed() => {
            if let Err(mpsc::error::TrySendError::Full(d)) = queues.utp.try_send(datagram()) {
                // Never seen by the driver: counted here.
                counters.add_overhead(Direction::Down, PeerClass::Wan, d.bytes.len() as u64);
            }
        }
        Protocol::Dht | Protocol::Utp | Protocol::Unknown => {
            tracing::trace!(%from, n, "UDP datagram dropped");
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
