//! The home router as the routing table names it: the IPv4 default
//! gateway, and this host's address towards it.
//!
//! PCP and NAT-PMP talk to the default gateway (RFC 6886 §3.1 and RFC 6887
//! §8.1 have no discovery), so it is read from the kernel's table of the
//! caller's network namespace, `/proc/net/route`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::PortMapError;

/// Flag bit of a route through a gateway (`RTF_GATEWAY`).
const RTF_GATEWAY: u32 = 0x2;
/// Flag bit of a route that is up (`RTF_UP`).
const RTF_UP: u32 = 0x1;

/// The gateway of the first IPv4 default route in a `/proc/net/route`
/// text, with its interface; `None` when there is none.
pub fn default_gateway(route_table: &str) -> Option<(String, Ipv4Addr)> {
    route_table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (iface, dest, gateway, flags, mask) =
            (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?, f.get(7)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        let is_default = *dest == "00000000" && *mask == "00000000";
        if !is_default || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY {
            return None;
        }
        // The kernel prints the address as a host-order (little-endian on
        // the machines we run on) hex word.
        let word = u32::from_str_radix(gateway, 16).ok()?;
        Some((iface.to_string(), Ipv4Addr::from(word.to_le_bytes())))
    })
}

/// The default gateway of this network namespace.
pub fn find() -> Result<Ipv4Addr, PortMapError> {
    let table = std::fs::read_to_string("/proc/net/route").map_err(PortMapError::RouteTable)?;
    default_gateway(&table)
        .map(|(_, gw)| gw)
        .ok_or(PortMapError::NoGateway)
}

/// The local address the kernel would send from to reach `gateway`: the
/// address a mapping must point at (connecting a UDP socket sends nothing).
pub async fn local_address_towards(gateway: IpAddr) -> Result<IpAddr, PortMapError> {
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0))
        .await
        .map_err(PortMapError::Socket)?;
    socket
        .connect(SocketAddr::new(gateway, crab_nat::GATEWAY_PORT))
        .await
        .map_err(PortMapError::Socket)?;
    Ok(socket.local_addr().map_err(PortMapError::Socket)?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n\
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n";

    #[test]
    fn reads_the_default_route() {
        assert_eq!(
            default_gateway(TABLE),
            Some(("wlan0".into(), Ipv4Addr::new(192, 168, 1, 1)))
        );
    }

    #[test]
    fn no_default_route_no_gateway() {
        let lan_only: String = TABLE.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(default_gateway(&lan_only), None);
        // A default route that is down, or not through a gateway (a point to
        // point link), names no router.
        let down = TABLE.replace("\t0003\t", "\t0002\t");
        assert_eq!(default_gateway(&down), None);
        assert_eq!(default_gateway(""), None);
        assert_eq!(default_gateway("garbage\nx y\n\u{0}"), None);
    }
}
