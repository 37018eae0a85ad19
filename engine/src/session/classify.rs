//! Telling LAN peers from WAN peers by the machine's own interfaces.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use crate::hooks::{Classifier, PeerClass};

/// A site prefix: a CIDR such as `10.20.0.0/16` (re-exported so callers
/// parse them with the same type).
pub use ipnet::IpNet;

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
/// is not a tunnel. Interfaces are read at creation and again at each
/// [`Classifier::refresh`] (the agent calls it when it hears that addresses
/// or routes changed): a move from an office 10.x LAN to a carrier's 10.x
/// CGNAT must not keep the old subnet free. Clones share the subnets.
///
/// Site prefixes ([`SubnetClassifier::with_site_prefixes`], the agent's
/// `[site] prefixes`) are LAN too, whatever the interfaces say: a routed
/// branch network (several subnets behind one router) is one site, and its
/// peers count as LAN for budgets and for site coordination alike (a site
/// peer *is* a [`PeerClass::Lan`] peer; there is no third class). They are
/// the user's declaration, so a refresh keeps them.
#[derive(Debug, Clone, Default)]
pub struct SubnetClassifier {
    subnets: Arc<RwLock<Vec<(IpAddr, IpAddr)>>>,
    /// Re-read the machine's interfaces on refresh (not for fixed subnets).
    follows_system: bool,
    /// Declared site prefixes: LAN whatever the interfaces.
    site: Arc<Vec<IpNet>>,
}

impl SubnetClassifier {
    /// Read the machine's interfaces now, and again on each refresh.
    pub fn from_system() -> Self {
        Self {
            subnets: Arc::new(RwLock::new(system_subnets())),
            follows_system: true,
            site: Arc::default(),
        }
    }

    /// A classifier over given (address, netmask) pairs, for tests.
    pub fn with_subnets(subnets: Vec<(IpAddr, IpAddr)>) -> Self {
        Self {
            subnets: Arc::new(RwLock::new(subnets)),
            follows_system: false,
            site: Arc::default(),
        }
    }

    /// The same classifier, with `prefixes` counted as LAN too (a routed
    /// branch office's networks). IPv4-mapped IPv6 peers match IPv4 prefixes.
    pub fn with_site_prefixes(mut self, prefixes: Vec<IpNet>) -> Self {
        self.site = Arc::new(prefixes.into_iter().map(|p| p.trunc()).collect());
        self
    }

    /// The declared site prefixes.
    pub fn site_prefixes(&self) -> &[IpNet] {
        &self.site
    }

    /// Classify by these (address, netmask) pairs from now on.
    pub fn set_subnets(&self, subnets: Vec<(IpAddr, IpAddr)>) {
        *self.subnets.write().unwrap_or_else(|e| e.into_inner()) = subnets;
    }
}

/// The (address, netmask) pairs of the machine's interfaces that are not tunnels.
fn system_subnets() -> Vec<(IpAddr, IpAddr)> {
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
    subnets
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
            || self.site.iter().any(|p| p.contains(&addr))
            || self
                .subnets
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|&(ip, mask)| same_subnet(addr, ip, mask))
        {
            PeerClass::Lan
        } else {
            PeerClass::Wan
        }
    }

    fn refresh(&self) {
        if self.follows_system {
            self.set_subnets(system_subnets());
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

    #[test]
    fn a_move_to_another_10_network_makes_the_old_lan_wan() {
        let pair = |ip: &str, mask: &str| (ip.parse().unwrap(), mask.parse().unwrap());
        // The office: 10.20.0.0/16.
        let c = SubnetClassifier::with_subnets(vec![pair("10.20.3.4", "255.255.0.0")]);
        // What the session holds: a clone behind the trait.
        let held: Arc<dyn Classifier> = Arc::new(c.clone());
        let office_peer = "10.20.9.9".parse().unwrap();
        let carrier_peer = "10.64.1.2".parse().unwrap();
        assert_eq!(held.classify(office_peer), PeerClass::Lan);
        assert_eq!(held.classify(carrier_peer), PeerClass::Wan);
        // A carrier's CGNAT address replaces it.
        c.set_subnets(vec![pair("10.64.1.1", "255.255.255.0")]);
        assert_eq!(held.classify(office_peer), PeerClass::Wan, "no longer free");
        assert_eq!(held.classify(carrier_peer), PeerClass::Lan);
        // Fixed subnets stay as set on a refresh.
        held.refresh();
        assert_eq!(held.classify(carrier_peer), PeerClass::Lan);
    }

    #[test]
    fn site_prefixes_are_lan_and_survive_a_refresh() {
        let site: Vec<IpNet> = vec![
            "10.20.0.0/16".parse().unwrap(),
            "fd00:20::/32".parse().unwrap(),
        ];
        let c = SubnetClassifier::with_subnets(vec![(
            "10.20.3.4".parse().unwrap(),
            "255.255.255.0".parse().unwrap(),
        )])
        .with_site_prefixes(site.clone());
        assert_eq!(c.site_prefixes(), &site[..]);
        for lan in ["10.20.3.9", "10.20.200.1", "::ffff:10.20.9.9", "fd00:20::7"] {
            assert_eq!(c.classify(lan.parse().unwrap()), PeerClass::Lan, "{lan}");
        }
        for wan in ["10.21.0.1", "8.8.8.8", "fd00:21::1"] {
            assert_eq!(c.classify(wan.parse().unwrap()), PeerClass::Wan, "{wan}");
        }
        // Interfaces change; the declared site stays.
        c.set_subnets(Vec::new());
        c.refresh();
        assert_eq!(c.classify("10.20.200.1".parse().unwrap()), PeerClass::Lan);
        assert_eq!(c.classify("10.20.3.9".parse().unwrap()), PeerClass::Lan);
        // A prefix with host bits set means its network.
        let c = SubnetClassifier::with_subnets(Vec::new())
            .with_site_prefixes(vec!["10.30.4.5/16".parse().unwrap()]);
        assert_eq!(c.classify("10.30.0.1".parse().unwrap()), PeerClass::Lan);
    }

    #[test]
    fn a_system_classifier_reads_the_interfaces_again_on_refresh() {
        let c = SubnetClassifier::from_system();
        // Pretend the machine was somewhere else.
        c.set_subnets(vec![(
            "10.99.0.1".parse().unwrap(),
            "255.255.0.0".parse().unwrap(),
        )]);
        assert_eq!(c.classify("10.99.5.5".parse().unwrap()), PeerClass::Lan);
        c.refresh();
        let now = c.subnets.read().unwrap().clone();
        assert_eq!(now, system_subnets(), "the machine's own interfaces");
    }
}
