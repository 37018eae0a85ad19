//! Where BitTorrent traffic leaves from: the listen address when it is a
//! specific one, and the one network interface every socket is bound to
//! when the session has one ([`SessionConfig::interface`], `SO_BINDTODEVICE`).
//!
//! A socket bound to a device sends and receives through that device only:
//! when the device is down the kernel answers `ENETUNREACH`, when it is gone
//! `ENODEV`, and nothing takes another route. So every socket the engine
//! opens for BitTorrent traffic is bound here, before it binds an address or
//! connects: the TCP listener and the UDP socket uTP and the DHT share
//! (long-lived, see `session/interface.rs` for when the device comes back),
//! the QUIC endpoint's socket, each outgoing TCP connection, each UDP
//! tracker exchange, and the HTTP clients of trackers and web seeds
//! (reqwest's `interface`, which binds each connection it opens). A bind
//! that fails fails the socket: nothing is retried unbound.
//!
//! Names are still resolved by the system's resolver, whose own sockets
//! follow the routing table (with a VPN, its DNS settings decide): tracker
//! and web seed URLs and DHT routers given by name are looked up that way.
//!
//! [`SessionConfig::interface`]: crate::session::SessionConfig::interface

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// An interface index no device has (indexes are positive `int`s, handed
/// out from 1 up): a socket bound to it reaches nothing until it is bound
/// to the real device, which is how long-lived sockets wait for a device
/// that is missing when the session starts.
const NO_DEVICE: u32 = i32::MAX as u32;

/// Where a socket leaves from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Egress {
    /// The local address it binds, when a specific one (port 0).
    pub ip: Option<IpAddr>,
    /// The network interface it is bound to, by name (`SO_BINDTODEVICE`).
    pub device: Option<Arc<str>>,
}

impl Egress {
    /// Anywhere the routing table says.
    pub fn any() -> Egress {
        Egress::default()
    }

    /// From `ip` when given, on no particular device.
    pub fn from_ip(ip: Option<IpAddr>) -> Egress {
        Egress { ip, device: None }
    }

    /// Whether it binds nothing.
    pub fn is_any(&self) -> bool {
        self.ip.is_none() && self.device.is_none()
    }

    /// Binds `socket` to the device, if there is one.
    pub(crate) fn bind_device(&self, socket: SockRef<'_>) -> io::Result<()> {
        match &self.device {
            Some(name) => bind_device(socket, name),
            None => Ok(()),
        }
    }

    /// The local socket address for talking to `remote`: the bound address
    /// (refused when of the other family: nothing could leave from it, and
    /// leaving from another is what binding rules out), else the
    /// unspecified one of `remote`'s family; port 0.
    pub(crate) fn local_for(&self, remote: SocketAddr) -> io::Result<SocketAddr> {
        match self.ip {
            Some(ip) if ip.is_ipv4() != remote.is_ipv4() => Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("bound to {ip}, which cannot reach {remote}"),
            )),
            Some(ip) => Ok(SocketAddr::new(ip, 0)),
            None if remote.is_ipv4() => Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0)),
            None => Ok(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0)),
        }
    }
}

/// Binds `socket` to the device called `name`. A device that does not exist
/// is an error naming it (`ENODEV`, kind `NotFound`).
pub(crate) fn bind_device(socket: SockRef<'_>, name: &str) -> io::Result<()> {
    socket
        .bind_device(Some(name.as_bytes()))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENODEV) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("network interface {name} does not exist"),
            ),
            _ => io::Error::new(e.kind(), format!("cannot bind to interface {name}: {e}")),
        })
}

/// How a long-lived socket (listener, shared UDP socket) is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Device<'a> {
    /// To no device: the routing table decides.
    Any,
    /// To this device.
    Named(&'a str),
    /// To a device that does not exist yet: it reaches nothing until it is
    /// bound again (`session/interface.rs`).
    Missing,
}

impl Device<'_> {
    fn apply(self, socket: &Socket) -> io::Result<()> {
        match self {
            Device::Any => Ok(()),
            Device::Named(name) => bind_device(SockRef::from(socket), name),
            Device::Missing => {
                let none = NonZeroU32::new(NO_DEVICE);
                if socket.domain()? == Domain::IPV6 {
                    socket.bind_device_by_index_v6(none)
                } else {
                    socket.bind_device_by_index_v4(none)
                }
            }
        }
    }
}

fn domain_of(addr: SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

/// A UDP socket bound to `addr` on `device`, non-blocking (for tokio or
/// quinn to take over).
pub(crate) fn udp_socket(addr: SocketAddr, device: Device<'_>) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(domain_of(addr), Type::DGRAM, Some(Protocol::UDP))?;
    device.apply(&socket)?;
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A tokio UDP socket bound for talking to `remote` from `egress`.
pub(crate) fn udp_socket_towards(
    remote: SocketAddr,
    egress: &Egress,
) -> io::Result<tokio::net::UdpSocket> {
    let local = egress.local_for(remote)?;
    let device = match &egress.device {
        Some(name) => Device::Named(name),
        None => Device::Any,
    };
    tokio::net::UdpSocket::from_std(udp_socket(local, device)?)
}

/// A TCP listener on `addr` on `device`, as tokio's `TcpListener::bind`
/// makes one (`SO_REUSEADDR`, a backlog of 1024).
pub(crate) fn tcp_listener(
    addr: SocketAddr,
    device: Device<'_>,
) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    device.apply(&SockRef::from(&socket))?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A TCP socket for dialling `remote` from `egress`, bound (device first,
/// then address) but not connected.
pub(crate) fn tcp_socket_towards(
    remote: SocketAddr,
    egress: &Egress,
) -> io::Result<tokio::net::TcpSocket> {
    let socket = if remote.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if egress.ip.is_some() {
        let local = egress.local_for(remote)?;
        egress.bind_device(SockRef::from(&socket))?;
        socket.bind(local)?;
    } else {
        egress.bind_device(SockRef::from(&socket))?;
    }
    Ok(socket)
}

/// Binds an open socket to `name` again: after the device was made anew
/// (a new index), a socket bound to the old one reaches nothing. Linux
/// lets a process move a bound socket only with `CAP_NET_RAW`.
pub(crate) fn rebind(socket: SockRef<'_>, name: &str) -> io::Result<()> {
    bind_device(socket, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_fails_the_socket_and_names_it() {
        let egress = Egress {
            ip: None,
            device: Some("cw-no-such0".into()),
        };
        let err = tcp_socket_towards("127.0.0.1:9".parse().unwrap(), &egress).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("cw-no-such0"), "{err}");
        let err = udp_socket_towards("127.0.0.1:9".parse().unwrap(), &egress).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_socket_waiting_for_its_device_reaches_nothing() {
        let socket = udp_socket("127.0.0.1:0".parse().unwrap(), Device::Missing).unwrap();
        let err = socket.send_to(b"x", "127.0.0.1:9").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap(), Device::Missing).unwrap();
        let at = listener.local_addr().unwrap();
        // Nothing reaches a listener on no device: the connection is refused.
        assert!(tokio::net::TcpStream::connect(at).await.is_err());
    }

    #[tokio::test]
    async fn bound_to_loopback_it_talks_over_loopback() {
        let lo = Egress {
            ip: None,
            device: Some("lo".into()),
        };
        let listener = tcp_listener("127.0.0.1:0".parse().unwrap(), Device::Named("lo")).unwrap();
        let at = listener.local_addr().unwrap();
        let socket = tcp_socket_towards(at, &lo).unwrap();
        let (dialled, accepted) = tokio::join!(socket.connect(at), listener.accept());
        assert!(dialled.is_ok() && accepted.is_ok());
    }

    #[test]
    fn a_bound_address_of_the_other_family_is_refused() {
        let e = Egress::from_ip(Some("::1".parse().unwrap()));
        let err = e.local_for("127.0.0.1:9".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        assert!(Egress::any().is_any());
        assert_eq!(
            Egress::any()
                .local_for("[::1]:9".parse().unwrap())
                .unwrap()
                .ip(),
            IpAddr::from(Ipv6Addr::UNSPECIFIED)
        );
    }
}
