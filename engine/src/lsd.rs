//! The local service discovery driver (BEP 14): one UDP socket on one
//! interface, joined to 239.192.152.143:6771 or [ff15::efc0:988f]:6771,
//! that sends what
//! [`capwise_proto::lsd::Announcer`] schedules and hands what
//! [`capwise_proto::lsd::Receiver`] hears to a callback.
//!
//! The packet and schedule logic is sans-IO in `capwise-proto`; this is only
//! the socket and a timer. The callback gets the datagram's source IP with
//! the announced port and the info-hashes of ours it named: the caller dials
//! that address and classifies it like any other (an LSD packet does not make
//! a peer LAN). Torrents are added with a [`PeerSharing`], so an ordinary private
//! torrent is never announced nor given LSD peers. The session runs one per
//! interface and group (`session/local_discovery.rs`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Instant;

use capwise_proto::lsd::{self, Announcer, Cookie, Group, Heard, Receiver, Target};
use capwise_proto::metainfo::InfoHash;
use capwise_proto::privacy::PeerSharing;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The interface and group LSD runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LsdInterface {
    /// 239.192.152.143 on the interface with index `ifindex`
    /// (`if_nametoindex`), joined and sent from its IPv4 address `addr`.
    V4 {
        /// The interface index: the socket is bound to this device.
        ifindex: u32,
        /// Its IPv4 address.
        addr: Ipv4Addr,
    },
    /// ff15::efc0:988f on the interface with index `ifindex`.
    V6 {
        /// The interface index: the socket is bound to this device.
        ifindex: u32,
    },
}

impl LsdInterface {
    /// The announcer's name for it: the interface index and the group.
    pub fn target(self) -> Target {
        match self {
            LsdInterface::V4 { ifindex, .. } => Target {
                ifindex,
                group: Group::V4,
            },
            LsdInterface::V6 { ifindex } => Target {
                ifindex,
                group: Group::V6,
            },
        }
    }
}

/// What the driver is told after it starts.
enum Command {
    Add(InfoHash, PeerSharing),
    Remove(InfoHash),
}

/// A peer heard over LSD: the datagram's source IP with its announced port,
/// and the announced info-hashes that are ours.
pub type OnPeer = Box<dyn FnMut(SocketAddr, Vec<InfoHash>) + Send>;

/// A running LSD driver; dropping it stops the task.
pub struct Lsd {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Lsd {
    /// Opens the socket on `interface` (bound to port 6771 with
    /// `SO_REUSEADDR`/`SO_REUSEPORT`, so other clients on the host can
    /// share it, hearing only the groups it joined itself) and starts the
    /// driver, which announces our peers as listening on `listen_port`.
    /// Must be called within a tokio runtime; socket errors come back here.
    pub fn start(interface: LsdInterface, listen_port: u16, on_peer: OnPeer) -> io::Result<Lsd> {
        Self::start_not_before(interface, listen_port, on_peer, Instant::now())
    }

    /// [`start`](Self::start), with the first announce no sooner than
    /// `first` (plus [`lsd::FIRST_DELAY`]): a driver started again on an
    /// interface that went away and came back keeps to the one-a-minute
    /// bound of the one before it.
    pub fn start_not_before(
        interface: LsdInterface,
        listen_port: u16,
        on_peer: OnPeer,
        first: Instant,
    ) -> io::Result<Lsd> {
        let socket = open_socket(interface)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(socket, interface, listen_port, first, rx, on_peer));
        Ok(Lsd { commands, task })
    }

    /// Announces a torrent from now on (soon, then every 5 minutes).
    pub fn add_torrent(&self, info_hash: InfoHash, sharing: impl Into<PeerSharing>) {
        let _ = self.commands.send(Command::Add(info_hash, sharing.into()));
    }

    /// Stops announcing a torrent and hearing peers for it.
    pub fn remove_torrent(&self, info_hash: InfoHash) {
        let _ = self.commands.send(Command::Remove(info_hash));
    }
}

impl Drop for Lsd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn open_socket(interface: LsdInterface) -> io::Result<UdpSocket> {
    let socket = match interface {
        LsdInterface::V4 { ifindex, addr } => {
            let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind_device_by_index_v4(NonZeroU32::new(ifindex))?;
            socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, lsd::PORT)).into())?;
            socket.join_multicast_v4(&lsd::GROUP_V4, &addr)?;
            // Only the groups this socket joined, not every group the host joined.
            socket.set_multicast_all_v4(false)?;
            socket.set_multicast_if_v4(&addr)?;
            // The local segment only.
            socket.set_multicast_ttl_v4(1)?;
            // Other clients on this host hear us; our own echo is dropped by cookie.
            socket.set_multicast_loop_v4(true)?;
            socket
        }
        LsdInterface::V6 { ifindex } => {
            let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            socket.set_only_v6(true)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind_device_by_index_v6(NonZeroU32::new(ifindex))?;
            socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, lsd::PORT)).into())?;
            socket.join_multicast_v6(&lsd::GROUP_V6, ifindex)?;
            socket.set_multicast_all_v6(false)?;
            socket.set_multicast_if_v6(ifindex)?;
            socket.set_multicast_hops_v6(1)?;
            socket.set_multicast_loop_v6(true)?;
            socket
        }
    };
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

async fn run(
    socket: UdpSocket,
    interface: LsdInterface,
    listen_port: u16,
    first: Instant,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut on_peer: OnPeer,
) {
    let cookie = Cookie::random();
    let mut announcer = Announcer::new(cookie.clone(), listen_port);
    let mut receiver = Receiver::new(cookie);
    let target = interface.target();
    // Until `first`, torrents are taken (and peers heard for them) but not
    // announced: the target joins the announcer then.
    let mut held = Some(first);
    // One byte more than parse takes, so an oversized datagram is seen as such.
    let mut buf = vec![0u8; lsd::MAX_PARSE + 1];
    loop {
        if held.is_some_and(|at| at <= Instant::now()) {
            held = None;
            announcer.add_target(target, Instant::now());
        }
        let deadline = held.or(announcer.poll_timeout());
        let sleep = crate::deadline::sleep_until(deadline);
        tokio::select! {
            command = commands.recv() => {
                let now = std::time::Instant::now();
                match command {
                    None => return,
                    Some(Command::Add(hash, public)) => announcer.add_torrent(hash, public, now),
                    Some(Command::Remove(hash)) => announcer.remove_torrent(&hash, now),
                }
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, source)) => {
                    let now = std::time::Instant::now();
                    match receiver.handle(now, source, &buf[..n], &announcer) {
                        Ok(Heard::Peer { addr, info_hashes }) => on_peer(addr, info_hashes),
                        Ok(_) => {}
                        Err(e) => tracing::debug!(%source, "LSD packet refused: {e}"),
                    }
                }
                Err(e) => tracing::debug!("LSD receive failed: {e}"),
            },
            () = sleep => {
                let now = std::time::Instant::now();
                while let Some(tx) = announcer.poll_transmit(now) {
                    if let Err(e) = socket.send_to(&tx.packet, tx.target.group.addr()).await {
                        tracing::debug!("LSD announce failed: {e}");
                    }
                }
            }
        }
    }
}
