//! Port mapping through the home router, so that WAN peers can dial in:
//! PCP (with NAT-PMP as its fallback) and UPnP IGD.
//!
//! An I/O client with no policy knowledge: the agent decides when to map
//! (never on a metered or VPN uplink) and calls [`PortMapping::map`],
//! [`PortMapping::renew`] before [`PortMapping::renew_at`] and
//! [`PortMapping::remove`] on the way out. PCP/NAT-PMP is asked first: one
//! datagram to the default gateway, answered (or refused by an ICMP
//! unreachable) within milliseconds; UPnP's SSDP search waits out its time-out
//! when no router answers.

mod gateway;
mod pmp;
mod upnp;

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use gateway::default_gateway;

/// Why no mapping was made, renewed or removed.
#[derive(Debug, thiserror::Error)]
pub enum PortMapError {
    /// The routing table could not be read.
    #[error("cannot read the routing table: {0}")]
    RouteTable(#[source] std::io::Error),
    /// No IPv4 default route: no router to ask.
    #[error("no IPv4 default gateway")]
    NoGateway,
    /// A local UDP socket could not be opened.
    #[error("socket: {0}")]
    Socket(#[source] std::io::Error),
    /// Port 0 cannot be mapped.
    #[error("port 0 cannot be mapped")]
    PortZero,
    /// The gateway refused PCP and NAT-PMP, or did not answer.
    #[error("{0}")]
    Pmp(#[source] crab_nat::MappingFailure),
    /// No UPnP IGD answered, or it refused a request.
    #[error("{0}")]
    Upnp(String),
    /// Neither protocol made a mapping.
    #[error("PCP/NAT-PMP: {pmp}; UPnP: {upnp}")]
    Unavailable {
        /// Why PCP/NAT-PMP failed.
        pmp: Box<PortMapError>,
        /// Why UPnP failed.
        upnp: Box<PortMapError>,
    },
}

/// Which protocol made the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Port Control Protocol (RFC 6887).
    Pcp,
    /// NAT Port Mapping Protocol (RFC 6886).
    NatPmp,
    /// UPnP Internet Gateway Device, WANIPConnection.
    Upnp,
}

impl Method {
    /// Its usual name: "PCP", "NAT-PMP", "UPnP IGD".
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pcp => "PCP",
            Method::NatPmp => "NAT-PMP",
            Method::Upnp => "UPnP IGD",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport protocol a port is mapped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpProtocol {
    /// TCP: the peer listener.
    Tcp,
    /// UDP: the socket uTP and the DHT share.
    Udp,
}

impl IpProtocol {
    /// "TCP" or "UDP".
    pub fn as_str(self) -> &'static str {
        match self {
            IpProtocol::Tcp => "TCP",
            IpProtocol::Udp => "UDP",
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port as mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedPort {
    /// TCP or UDP.
    pub protocol: IpProtocol,
    /// The port on this host.
    pub internal: u16,
    /// The port on the router's WAN address.
    pub external: u16,
}

/// How to map.
#[derive(Debug, Clone)]
pub struct MapOptions {
    /// The lease asked for; routers may grant less.
    pub lease: Duration,
    /// Each protocol's time to answer.
    pub timeout: Duration,
    /// The mapping's name in the router's list (UPnP only).
    pub description: String,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            lease: Duration::from_secs(3600),
            timeout: Duration::from_secs(3),
            description: "capwise".into(),
        }
    }
}

#[derive(Debug)]
enum Held {
    Pmp(pmp::Mapped),
    // Boxed: the gateway's description (URLs, its action schema) is large.
    Upnp(Box<upnp::Mapped>),
}

/// Mappings held on the router; [`PortMapping::remove`] deletes them
/// (dropping one leaves them to their lease).
#[derive(Debug)]
pub struct PortMapping {
    method: Method,
    gateway: IpAddr,
    local: IpAddr,
    external_ip: Option<IpAddr>,
    ports: Vec<MappedPort>,
    lease: Duration,
    renewed: Instant,
    held: Held,
}

impl PortMapping {
    /// Maps `ports` (protocol, port on this host) on the router: PCP or
    /// NAT-PMP with the default gateway first, then UPnP IGD. All ports or
    /// none.
    pub async fn map(
        ports: &[(IpProtocol, u16)],
        options: &MapOptions,
    ) -> Result<PortMapping, PortMapError> {
        let pmp = match Self::map_pmp(ports, options).await {
            Ok(m) => return Ok(m),
            Err(e) => e,
        };
        tracing::debug!(error = %pmp, "no PCP/NAT-PMP mapping; trying UPnP");
        match upnp::map(ports, options.lease, options.timeout, &options.description).await {
            Ok((gateway, held)) => {
                let external_ip = upnp::external_ip(&held).await;
                Ok(PortMapping {
                    method: Method::Upnp,
                    gateway,
                    local: upnp::local(&held),
                    external_ip,
                    ports: mapped_ports(ports, &upnp::external_ports(&held)),
                    lease: options.lease,
                    renewed: Instant::now(),
                    held: Held::Upnp(Box::new(held)),
                })
            }
            Err(upnp) => Err(PortMapError::Unavailable {
                pmp: Box::new(pmp),
                upnp: Box::new(upnp),
            }),
        }
    }

    async fn map_pmp(
        ports: &[(IpProtocol, u16)],
        options: &MapOptions,
    ) -> Result<PortMapping, PortMapError> {
        let gateway = IpAddr::V4(gateway::find()?);
        let local = gateway::local_address_towards(gateway).await?;
        let (method, external_ip, held) =
            pmp::map(gateway, local, ports, options.lease, options.timeout).await?;
        Ok(PortMapping {
            method,
            gateway,
            local,
            external_ip,
            ports: mapped_ports(ports, &pmp::external_ports(&held)),
            lease: pmp::granted(&held).unwrap_or(options.lease),
            renewed: Instant::now(),
            held: Held::Pmp(held),
        })
    }

    /// The protocol that made it.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The router's WAN address, when the router told it.
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external_ip
    }

    /// The router asked.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// This host's address the mappings point at.
    pub fn local_ip(&self) -> IpAddr {
        self.local
    }

    /// The ports, in the order asked.
    pub fn ports(&self) -> &[MappedPort] {
        &self.ports
    }

    /// The lease granted (the shortest, when the ports' differ).
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// When to renew: half-way through the lease (RFC 6886 §3.3 asks for
    /// renewal before half the lifetime), so one lost renewal still leaves
    /// time for another.
    pub fn renew_at(&self) -> Instant {
        self.renewed + (self.lease / 2).max(Duration::from_secs(1))
    }

    /// Restarts the lease of every port.
    pub async fn renew(&mut self) -> Result<(), PortMapError> {
        match &mut self.held {
            Held::Pmp(held) => {
                pmp::renew(held).await?;
                self.lease = pmp::granted(held).unwrap_or(self.lease);
            }
            Held::Upnp(held) => upnp::renew(held).await?,
        }
        self.renewed = Instant::now();
        Ok(())
    }

    /// Deletes the mappings on the router (best effort: one it cannot
    /// delete ends with its lease).
    pub async fn remove(self) {
        match self.held {
            Held::Pmp(held) => pmp::remove(held).await,
            Held::Upnp(held) => upnp::remove(*held).await,
        }
    }
}

fn mapped_ports(asked: &[(IpProtocol, u16)], external: &[u16]) -> Vec<MappedPort> {
    asked
        .iter()
        .zip(external)
        .map(|(&(protocol, internal), &external)| MappedPort {
            protocol,
            internal,
            external,
        })
        .collect()
}
