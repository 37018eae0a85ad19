//! Telling LAN peers from WAN peers by the machine's own interfaces.

use std::net::IpAddr;

use crate::hooks::{Classifier, PeerClass};

/// Interface names of tunnels: traffic through them goes over someone's WAN.
const VPN_PREFIXES: &[&str] = &[
    "tun",
    "tap",
    "wg",
    "utun",
    "ipsec",
    "vpn",
    "ppp",
    "zt",
    "tailscale",
];

/// LAN = loopback, link-local, or inside the subnet of a local interface that
/// is not a tunnel. Interfaces are read once at creation.
#[derive(Debug, Clone, Default)]
pub struct SubnetClassifier {
    subnets: Vec<(IpAddr, IpAddr)>,
}

impl SubnetClassifier {
    /// Read the machine's interfaces now.
    pub fn from_system() -> Self {
        let mut subnets = Vec::new();
        if let Ok(ifaces) = if_addrs::get_if_addrs() {
            for iface in ifaces {
                if VPN_PREFIXES.iter().any(|p| iface.name.starts_with(p)) {
                    continue;
                }
                match iface.addr {
                    if_addrs::IfAddr::V4(v4) => {
                        subnets.push((IpAddr::V4(v4.ip), IpAddr::V4(v4.netmask)))
                    }
                    if_addrs::IfAddr::V6(v6) => {
                        subnets.push((IpAddr::V6(v6.ip), IpAddr::V6(v6.netmask)))
                    }
                }
            }
        }
        Self { subnets }
    }

    /// A classifier over given (address, netmask) pairs, for tests.
    pub fn with_subnets(subnets: Vec<(IpAddr, IpAddr)>) -> Self {
        Self { subnets }
    }
}

fn same_subnet(a: IpAddr, b: IpAddr, mask: IpAddr) -> bool {
    match (a, b, mask) {
        (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(m)) => {
            let m = u32::from(m);
            m != 0 && u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(m)) => {
            let m = u128::from(m);
            m != 0 && u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

impl Classifier for SubnetClassifier {
    fn classify(&self, addr: IpAddr) -> PeerClass {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        let local = match addr {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if local
            || self
                .subnets
                .iter()
                .any(|&(ip, mask)| same_subnet(addr, ip, mask))
        {
            PeerClass::Lan
        } else {
            PeerClass::Wan
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_link_local_and_subnet_are_lan() {
        let c = SubnetClassifier::with_subnets(vec![(
            "192.168.1.10".parse().unwrap(),
            "255.255.255.0".parse().unwrap(),
        )]);
        for lan in [
            "127.0.0.5",
            "169.254.3.4",
            "192.168.1.77",
            "::1",
            "fe80::1",
            "::ffff:192.168.1.2",
        ] {
            assert_eq!(c.classify(lan.parse().unwrap()), PeerClass::Lan, "{lan}");
        }
        for wan in ["192.168.2.1", "8.8.8.8", "2001:db8::1", "10.0.0.1"] {
            assert_eq!(c.classify(wan.parse().unwrap()), PeerClass::Wan, "{wan}");
        }
    }
}
