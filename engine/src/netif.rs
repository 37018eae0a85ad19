//! The machine's network interfaces as local service discovery sees them:
//! name, index, flags, link type and addresses, read with `getifaddrs(3)`
//! in the caller's network namespace (sysfs would show the namespace that
//! mounted it, which is not ours after `unshare -n` or `setns`).

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// `IFF_*` from `<net/if.h>`.
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_POINTOPOINT: u32 = 0x10;
const IFF_MULTICAST: u32 = 0x1000;
/// `ARPHRD_ETHER` from `<linux/if_arp.h>`: Ethernet, Wi-Fi, bridges, veth,
/// tap. Loopback, tun, WireGuard, PPP and IP-in-IP tunnels have other types.
pub(crate) const ARPHRD_ETHER: u16 = 1;

/// One interface and what it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetInterface {
    pub(crate) name: String,
    pub(crate) index: u32,
    /// `IFF_*` flags.
    pub(crate) flags: u32,
    /// The link's hardware type (`ARPHRD_*`), if the kernel said.
    pub(crate) link_type: Option<u16>,
    pub(crate) v4: Vec<Ipv4Addr>,
    pub(crate) v6: Vec<Ipv6Addr>,
}

impl NetInterface {
    /// Up, multicast-capable, Ethernet-like, neither loopback nor
    /// point-to-point: a segment other hosts share. Tunnels (tun,
    /// WireGuard, PPP, IP-in-IP) fail this on their link type alone.
    pub(crate) fn is_lan_segment(&self) -> bool {
        self.flags & IFF_UP != 0
            && self.flags & IFF_MULTICAST != 0
            && self.flags & (IFF_LOOPBACK | IFF_POINTOPOINT) == 0
            && self.link_type == Some(ARPHRD_ETHER)
    }
}

/// Every interface, by name.
pub(crate) fn list() -> std::io::Result<Vec<NetInterface>> {
    let mut found: BTreeMap<String, NetInterface> = BTreeMap::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let iface = found.entry(name.clone()).or_insert_with(|| NetInterface {
            index: index_of(&name),
            name,
            flags: entry.ifa_flags,
            link_type: None,
            v4: Vec::new(),
            v6: Vec::new(),
        });
        if entry.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says its type.
        let family = i32::from(unsafe { (*entry.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in) };
                iface
                    .v4
                    .push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a sockaddr_in6.
                let sin6 = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_in6) };
                iface.v6.push(Ipv6Addr::from(sin6.sin6_addr.s6_addr));
            }
            libc::AF_PACKET => {
                // SAFETY: an AF_PACKET address is a sockaddr_ll.
                let sll = unsafe { &*(entry.ifa_addr as *const libc::sockaddr_ll) };
                iface.link_type = Some(sll.sll_hatype);
            }
            _ => {}
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found.into_values().filter(|i| i.index != 0).collect())
}

/// The index of the interface called `name`; 0 when there is none.
pub(crate) fn index_of(name: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(name) else {
        return 0;
    };
    // SAFETY: a NUL-terminated name.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(flags: u32, link_type: u16) -> NetInterface {
        NetInterface {
            name: "x".into(),
            index: 2,
            flags,
            link_type: Some(link_type),
            v4: vec![],
            v6: vec![],
        }
    }

    #[test]
    fn only_shared_ethernet_like_segments_qualify() {
        // eth0, wlan0, veth, a bridge: UP|BROADCAST|RUNNING|MULTICAST.
        assert!(iface(0x1043, ARPHRD_ETHER).is_lan_segment());
        // Down, or without multicast.
        assert!(!iface(0x1042, ARPHRD_ETHER).is_lan_segment());
        assert!(!iface(0x0043, ARPHRD_ETHER).is_lan_segment());
        // Loopback (ARPHRD_LOOPBACK 772).
        assert!(!iface(0x49, 772).is_lan_segment());
        // tun and WireGuard (ARPHRD_NONE 65534), point-to-point.
        assert!(!iface(0x1091, 65534).is_lan_segment());
        // PPP (ARPHRD_PPP 512).
        assert!(!iface(0x1091, 512).is_lan_segment());
        // An Ethernet-typed point-to-point link.
        assert!(!iface(0x1051, ARPHRD_ETHER).is_lan_segment());
    }

    #[test]
    fn the_loopback_interface_is_listed_and_refused() {
        let all = list().unwrap();
        if let Some(lo) = all.iter().find(|i| i.name == "lo") {
            assert!(lo.index > 0);
            assert!(!lo.is_lan_segment());
        }
    }
}
