//! PCP (RFC 6887) with NAT-PMP (RFC 6886) as the fallback, through
//! `crab_nat`: one UDP exchange with the default gateway per port.
//!
//! `crab_nat` falls back to NAT-PMP only when the gateway answers PCP
//! with "unsupported version". A gateway that drops PCP requests (an
//! old NAT-PMP-only router, or a firewall that filters by version byte)
//! gives a time-out instead, so on a PCP time-out NAT-PMP is asked here,
//! and the remaining ports go straight to NAT-PMP: the gateway has shown
//! it does not answer PCP, and each time-out costs almost two seconds.

use std::net::IpAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use crab_nat::{
    pcp, InternetProtocol, MappingFailure, PortMappingOptions, PortMappingType, TimeoutConfig,
};

use super::{IpProtocol, Method, PortMapError};

/// The mappings made on one gateway.
#[derive(Debug)]
pub(super) struct Mapped {
    pub(super) mappings: Vec<crab_nat::PortMapping>,
}

fn timeouts(total: Duration) -> TimeoutConfig {
    // 250 ms, 500 ms, 1 s: a router that speaks neither answers nothing, or
    // an ICMP unreachable, and UPnP is still to be tried.
    TimeoutConfig {
        initial_timeout: Duration::from_millis(250).min(total),
        max_retries: 2,
        max_retry_timeout: Some(total),
    }
}

fn protocol(p: IpProtocol) -> InternetProtocol {
    match p {
        IpProtocol::Tcp => InternetProtocol::Tcp,
        IpProtocol::Udp => InternetProtocol::Udp,
    }
}

/// Maps each port (external = internal asked; the gateway may pick
/// another). All or nothing: a port refused removes those mapped before.
pub(super) async fn map(
    gateway: IpAddr,
    local: IpAddr,
    ports: &[(IpProtocol, u16)],
    lease: Duration,
    timeout: Duration,
) -> Result<(Method, Option<IpAddr>, Mapped), PortMapError> {
    let mut mapped = Mapped {
        mappings: Vec::new(),
    };
    let mut pcp_silent = false;
    for &(p, port) in ports {
        let internal = NonZeroU16::new(port).ok_or(PortMapError::PortZero)?;
        let options = PortMappingOptions {
            external_port: Some(internal),
            lifetime_seconds: Some(lease.as_secs().clamp(1, u32::MAX as u64) as u32),
            timeout_config: Some(timeouts(timeout)),
        };
        match map_one(
            gateway,
            local,
            protocol(p),
            internal,
            options,
            &mut pcp_silent,
        )
        .await
        {
            Ok(m) => mapped.mappings.push(m),
            Err(e) => {
                remove(mapped).await;
                return Err(PortMapError::Pmp(e));
            }
        }
    }
    let (method, external) = match mapped.mappings.first().map(|m| m.mapping_type()) {
        Some(PortMappingType::Pcp { external_ip, .. }) => (Method::Pcp, Some(external_ip)),
        _ => {
            let ip = crab_nat::natpmp::external_address(gateway.into(), Some(timeouts(timeout)))
                .await
                .ok()
                .map(IpAddr::V4);
            (Method::NatPmp, ip)
        }
    };
    Ok((method, external, mapped))
}

/// One port: PCP first (with `crab_nat`'s own fallback on "unsupported
/// version"), NAT-PMP when PCP timed out. `pcp_silent` remembers that
/// the gateway did not answer PCP, for the next ports.
async fn map_one(
    gateway: IpAddr,
    local: IpAddr,
    protocol: InternetProtocol,
    internal: NonZeroU16,
    options: PortMappingOptions,
    pcp_silent: &mut bool,
) -> Result<crab_nat::PortMapping, MappingFailure> {
    // NAT-PMP is IPv4 only (RFC 6886 section 1).
    let pmp_possible = gateway.is_ipv4();
    if !*pcp_silent {
        match crab_nat::PortMapping::new(gateway.into(), local, protocol, internal, options).await {
            Err(MappingFailure::Pcp(pcp::Failure::Timeout)) if pmp_possible => {
                tracing::debug!(%gateway, "no PCP answer; asking NAT-PMP");
                *pcp_silent = true;
            }
            other => return other,
        }
    }
    crab_nat::natpmp::port_mapping(gateway.into(), protocol, internal, options)
        .await
        .map_err(MappingFailure::from)
}

/// The external port the gateway gave each mapping, in request order.
pub(super) fn external_ports(mapped: &Mapped) -> Vec<u16> {
    mapped
        .mappings
        .iter()
        .map(|m| m.external_port().get())
        .collect()
}

/// The shortest lifetime the gateway granted.
pub(super) fn granted(mapped: &Mapped) -> Option<Duration> {
    mapped
        .mappings
        .iter()
        .map(|m| Duration::from_secs(m.lifetime().into()))
        .min()
}

/// Renews every mapping (the gateway may shorten the lifetime again).
pub(super) async fn renew(mapped: &mut Mapped) -> Result<(), PortMapError> {
    for m in &mut mapped.mappings {
        m.renew().await.map_err(PortMapError::Pmp)?;
    }
    Ok(())
}

/// Deletes every mapping; failures are logged (the lease ends them anyway).
pub(super) async fn remove(mapped: Mapped) {
    for m in mapped.mappings {
        let port = m.internal_port();
        if let Err((error, _)) = m.try_drop().await {
            tracing::debug!(%error, port, "cannot delete the PCP/NAT-PMP mapping; its lease ends it");
        }
    }
}
