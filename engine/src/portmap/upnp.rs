//! UPnP IGD (WANIPConnection) through `igd-next`: SSDP discovery on the
//! LAN, then SOAP requests to the router's control URL.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::Tokio;
use igd_next::aio::Gateway;
use igd_next::{PortMappingProtocol, SearchOptions};

use super::{IpProtocol, PortMapError};

/// The mappings made on one router.
#[derive(Debug)]
pub(super) struct Mapped {
    gateway: Gateway<Tokio>,
    local: IpAddr,
    /// (protocol, internal, external), in request order.
    ports: Vec<(IpProtocol, u16, u16)>,
    lease: Duration,
    description: String,
}

fn protocol(p: IpProtocol) -> PortMappingProtocol {
    match p {
        IpProtocol::Tcp => PortMappingProtocol::TCP,
        IpProtocol::Udp => PortMappingProtocol::UDP,
    }
}

fn lease_secs(lease: Duration) -> u32 {
    // 0 would ask for a permanent mapping: never.
    lease.as_secs().clamp(1, u32::MAX as u64) as u32
}

/// Finds the router (SSDP, bounded by `timeout`) and maps each port to this
/// host. All or nothing: a port refused removes those mapped before.
pub(super) async fn map(
    ports: &[(IpProtocol, u16)],
    lease: Duration,
    timeout: Duration,
    description: &str,
) -> Result<(IpAddr, Mapped), PortMapError> {
    let mut options = SearchOptions::default();
    options.timeout = Some(timeout);
    options.single_search_timeout = Some(timeout);
    let gateway = igd_next::aio::tokio::search_gateway(options)
        .await
        .map_err(|e| PortMapError::Upnp(format!("no UPnP IGD answered: {e}")))?;
    let local = super::gateway::local_address_towards(gateway.addr.ip()).await?;
    let mut mapped = Mapped {
        gateway,
        local,
        ports: Vec::new(),
        lease,
        description: description.to_string(),
    };
    for &(p, port) in ports {
        if port == 0 {
            remove(mapped).await;
            return Err(PortMapError::PortZero);
        }
        let to = SocketAddr::new(local, port);
        let same = mapped
            .gateway
            .add_port(protocol(p), port, to, lease_secs(lease), description)
            .await;
        let external = match same {
            Ok(()) => Ok(port),
            // Another host holds that external port: let the router pick.
            Err(_) => mapped
                .gateway
                .add_any_port(protocol(p), to, lease_secs(lease), description)
                .await
                .map_err(|e| e.to_string()),
        };
        match external {
            Ok(external) => mapped.ports.push((p, port, external)),
            Err(e) => {
                remove(mapped).await;
                return Err(PortMapError::Upnp(format!(
                    "AddPortMapping {p} {port}: {e}"
                )));
            }
        }
    }
    Ok((mapped.gateway.addr.ip(), mapped))
}

/// The router's WAN address, if it tells.
pub(super) async fn external_ip(mapped: &Mapped) -> Option<IpAddr> {
    mapped.gateway.get_external_ip().await.ok()
}

/// The external port of each mapping, in request order.
pub(super) fn external_ports(mapped: &Mapped) -> Vec<u16> {
    mapped.ports.iter().map(|p| p.2).collect()
}

/// The local address the mappings point at.
pub(super) fn local(mapped: &Mapped) -> IpAddr {
    mapped.local
}

/// Adds each mapping again: IGD has no renewal; an AddPortMapping for the
/// same external port and client restarts its lease.
pub(super) async fn renew(mapped: &mut Mapped) -> Result<(), PortMapError> {
    for &(p, internal, external) in &mapped.ports {
        mapped
            .gateway
            .add_port(
                protocol(p),
                external,
                SocketAddr::new(mapped.local, internal),
                lease_secs(mapped.lease),
                &mapped.description,
            )
            .await
            .map_err(|e| PortMapError::Upnp(format!("renewing {p} {external}: {e}")))?;
    }
    Ok(())
}

/// Deletes every mapping; failures are logged (the lease ends them anyway).
pub(super) async fn remove(mapped: Mapped) {
    for &(p, _, external) in &mapped.ports {
        if let Err(error) = mapped.gateway.remove_port(protocol(p), external).await {
            tracing::debug!(%error, port = external, "cannot delete the UPnP mapping; its lease ends it");
        }
    }
}
