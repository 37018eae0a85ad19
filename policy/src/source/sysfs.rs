//! Linux without NetworkManager: the default route from the kernel
//! (`/proc/net/route`, `/proc/net/ipv6_route`), the link kind from sysfs
//! (`DEVTYPE=wwan`, `wireless/`, `phy80211/`, `ppp*`, USB tethering
//! drivers), the DHCP vendor option `ANDROID_METERED` from lease files, and
//! a stable id from the gateway's hardware address (`/proc/net/arp`).
//!
//! All paths are roots given to [`SysfsProbe`], so tests run on a fake tree.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::route_events::RouteEvents;
use super::{publish, NetworkWatch};
use crate::error::{PolicyError, Result};
use crate::network::{Metered, MeteredSource, Network, NetworkId, NetworkKind};

/// USB tethering drivers: a phone sharing its mobile data.
const TETHERING_DRIVERS: &[&str] = &["rndis_host", "cdc_ether", "cdc_ncm", "ipheth"];

/// Name prefixes of VPN and tunnel interfaces.
const VPN_PREFIXES: &[&str] = &["tun", "tap", "wg", "vpn", "tailscale"];

fn is_vpn(iface: &str, devtype: &str) -> bool {
    matches!(devtype, "wireguard" | "tun" | "tap")
        || VPN_PREFIXES.iter().any(|p| iface.starts_with(p))
}

/// `ANDROID_METERED` as text and as the hex dhclient/networkd write.
const ANDROID_METERED: &str = "android_metered";
const ANDROID_METERED_HEX: &str = "414e44524f49445f4d455445524544";

/// Reads the uplink from the kernel's files.
#[derive(Debug, Clone)]
pub struct SysfsProbe {
    /// Normally `/proc/net`.
    pub proc_net: PathBuf,
    /// Normally `/sys/class/net`.
    pub sys_class_net: PathBuf,
    /// Directories holding DHCP lease files.
    pub lease_dirs: Vec<PathBuf>,
}

impl Default for SysfsProbe {
    fn default() -> Self {
        SysfsProbe {
            proc_net: "/proc/net".into(),
            sys_class_net: "/sys/class/net".into(),
            lease_dirs: vec![
                "/var/lib/dhcp".into(),
                "/var/lib/dhclient".into(),
                "/run/systemd/netif/leases".into(),
                "/var/lib/NetworkManager".into(),
                "/var/lib/dhcpcd".into(),
            ],
        }
    }
}

/// A default route found in the routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Outgoing interface.
    pub interface: String,
    /// IPv4 gateway, if the route has one.
    pub gateway: Option<Ipv4Addr>,
    /// Route metric (lower wins).
    pub metric: u32,
}

impl SysfsProbe {
    /// The current uplink, or `None` when there is no default route.
    pub fn probe(&self) -> Result<Option<Network>> {
        let routes = self.default_routes()?;
        let Some(best) = routes.first() else {
            return Ok(None);
        };
        let mut network = self.describe(best);
        if network.kind == NetworkKind::Vpn {
            // The tunnel's traffic leaves through the best non-VPN route.
            let under = routes
                .iter()
                .map(|r| self.describe(r))
                .find(|n| n.kind != NetworkKind::Vpn);
            network.underlying = under.map(Box::new);
        }
        Ok(Some(network))
    }

    /// Default routes, IPv4 then IPv6, each sorted by metric.
    pub fn default_routes(&self) -> Result<Vec<DefaultRoute>> {
        let mut routes = Vec::new();
        let v4 = self.proc_net.join("route");
        match std::fs::read_to_string(&v4) {
            Ok(text) => routes.extend(parse_ipv4_routes(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PolicyError::io(v4, e)),
        }
        if let Ok(text) = std::fs::read_to_string(self.proc_net.join("ipv6_route")) {
            let mut v6 = parse_ipv6_routes(&text);
            v6.retain(|r| !routes.iter().any(|x| x.interface == r.interface));
            routes.extend(v6);
        }
        routes.sort_by_key(|r| r.metric);
        Ok(routes)
    }

    fn describe(&self, route: &DefaultRoute) -> Network {
        let iface = route.interface.as_str();
        let dir = self.sys_class_net.join(iface);
        let uevent = std::fs::read_to_string(dir.join("uevent")).unwrap_or_default();
        let devtype = uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVTYPE="))
            .unwrap_or("")
            .trim()
            .to_owned();
        let driver = std::fs::read_link(dir.join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let tethered = driver
            .as_deref()
            .is_some_and(|d| TETHERING_DRIVERS.contains(&d));

        let kind = if devtype == "wwan" || iface.starts_with("ppp") || iface.starts_with("wwan") {
            NetworkKind::Cellular
        } else if devtype == "wlan"
            || dir.join("wireless").exists()
            || dir.join("phy80211").exists()
        {
            NetworkKind::Wifi
        } else if devtype == "bluetooth" || iface.starts_with("bnep") {
            NetworkKind::Bluetooth
        } else if is_vpn(iface, &devtype) {
            NetworkKind::Vpn
        } else if dir.join("device").exists() || tethered {
            NetworkKind::Ethernet
        } else {
            NetworkKind::Unknown
        };

        let (metered, metered_source) = if self.lease_says_metered(iface) {
            (Metered::Yes, MeteredSource::Dhcp)
        } else if tethered || kind.metered_guess() == Metered::GuessYes {
            (Metered::GuessYes, MeteredSource::DeviceType)
        } else if matches!(kind, NetworkKind::Ethernet | NetworkKind::Wifi) {
            (Metered::GuessNo, MeteredSource::DeviceType)
        } else {
            (Metered::Unknown, MeteredSource::Default)
        };

        let gateway_mac = route.gateway.and_then(|gw| self.gateway_mac(gw, iface));
        let id = match &gateway_mac {
            Some(mac) => format!("{iface}@{mac}"),
            None => iface.to_owned(),
        };
        Network {
            name: if tethered {
                format!("{iface} (USB tethering)")
            } else {
                iface.to_owned()
            },
            id: NetworkId(id),
            kind,
            metered,
            metered_source,
            roaming: false,
            interface: Some(iface.to_owned()),
            underlying: None,
        }
    }

    /// Whether `iface` is a VPN or tunnel, by its sysfs `DEVTYPE`
    /// (wireguard, tun, tap) or its name (`tun*`, `tap*`, `wg*`, `vpn*`,
    /// `tailscale*`): the uplink's kind uses it, and the agent keeps local
    /// service discovery off such interfaces.
    pub fn is_vpn(&self, iface: &str) -> bool {
        let uevent = std::fs::read_to_string(self.sys_class_net.join(iface).join("uevent"))
            .unwrap_or_default();
        let devtype = uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVTYPE="))
            .unwrap_or("")
            .trim();
        is_vpn(iface, devtype)
    }

    /// The hardware address of the gateway from `/proc/net/arp`.
    fn gateway_mac(&self, gateway: Ipv4Addr, iface: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.proc_net.join("arp")).ok()?;
        let gw = gateway.to_string();
        text.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 6 && f[0] == gw && f[5] == iface && f[3] != "00:00:00:00:00:00")
                .then(|| f[3].to_lowercase())
        })
    }

    /// True if a DHCP lease for `iface` carries `ANDROID_METERED`.
    fn lease_says_metered(&self, iface: &str) -> bool {
        let ifindex = std::fs::read_to_string(self.sys_class_net.join(iface).join("ifindex"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        self.lease_dirs.iter().any(|dir| {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return false;
            };
            entries.flatten().any(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                // dhclient/dhcpcd/NM name leases after the interface;
                // systemd-networkd after the ifindex.
                let ours = name.contains(iface) || (!ifindex.is_empty() && name == ifindex);
                ours && lease_has_android_metered(&entry.path())
            })
        })
    }

    /// Publishes the uplink and every change of it. Changes are noticed
    /// through the kernel's routing notifications ([`RouteEvents`]); where
    /// those cannot be had, the probe runs every `fallback_interval`.
    pub fn watch(self, fallback_interval: Duration) -> (NetworkWatch, JoinHandle<()>) {
        let first = self.probe_logged();
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(async move {
            let mut events = match RouteEvents::subscribe() {
                Ok(events) => Some(events),
                Err(error) => {
                    tracing::info!(%error, "no routing notifications; polling the routes");
                    None
                }
            };
            let mut ticker = tokio::time::interval(fallback_interval);
            ticker.tick().await;
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    changed = wait_for_change(&mut events, &mut ticker) => {
                        if let Err(error) = changed {
                            tracing::warn!(%error, "routing notifications failed; polling the routes");
                            events = None;
                        }
                    }
                }
                // An unreadable table keeps the last uplink known.
                match self.probe() {
                    Ok(network) => publish(&tx, network),
                    Err(error) => tracing::warn!(%error, "cannot read the default route"),
                }
            }
        });
        (rx, task)
    }

    fn probe_logged(&self) -> Option<Network> {
        self.probe().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the default route");
            None
        })
    }
}

/// The next routing change, or the next poll when there are no notifications.
async fn wait_for_change(
    events: &mut Option<RouteEvents>,
    ticker: &mut tokio::time::Interval,
) -> std::io::Result<()> {
    match events {
        Some(events) => events.changed().await,
        None => {
            ticker.tick().await;
            Ok(())
        }
    }
}

fn lease_has_android_metered(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes).to_lowercase();
    let compact: String = text.chars().filter(|c| *c != ':').collect();
    text.contains(ANDROID_METERED) || compact.contains(ANDROID_METERED_HEX)
}

/// Default routes in `/proc/net/route` (destination and mask 0, route up).
pub fn parse_ipv4_routes(text: &str) -> Vec<DefaultRoute> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            if flags & RTF_UP == 0 {
                return None;
            }
            // The kernel writes the address in host (little-endian) order.
            let gateway = u32::from_str_radix(f[2], 16)
                .ok()
                .map(|g| Ipv4Addr::from(g.swap_bytes()));
            Some(DefaultRoute {
                interface: f[0].to_owned(),
                gateway: gateway.filter(|_| flags & RTF_GATEWAY != 0),
                metric: f[6].parse().ok()?,
            })
        })
        .collect()
}

/// Default routes in `/proc/net/ipv6_route` (`::/0`, not loopback, not reject).
pub fn parse_ipv6_routes(text: &str) -> Vec<DefaultRoute> {
    const RTF_REJECT: u32 = 0x200;
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[0].chars().any(|c| c != '0') || f[1] != "00" || f[9] == "lo" {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            if flags & RTF_REJECT != 0 {
                return None;
            }
            Some(DefaultRoute {
                interface: f[9].to_owned(),
                gateway: None,
                metric: u32::from_str_radix(f[5], 16).ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
usb0\t00000000\t012AA8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
usb0\t002AA8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
";

    const ARP: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
192.168.42.1     0x1         0x2         AA:BB:CC:DD:EE:FF     *        usb0
192.168.1.1      0x1         0x2         11:22:33:44:55:66     *        wlan0
";

    struct Tree {
        _dir: tempfile::TempDir,
        probe: SysfsProbe,
    }

    fn tree(route: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let proc_net = root.join("proc/net");
        let sys = root.join("sys/class/net");
        let leases = root.join("leases");
        for d in [&proc_net, &sys, &leases] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(proc_net.join("route"), route).unwrap();
        std::fs::write(proc_net.join("arp"), ARP).unwrap();
        // wlan0: a Wi-Fi card.
        std::fs::create_dir_all(sys.join("wlan0/wireless")).unwrap();
        std::fs::create_dir_all(sys.join("wlan0/device")).unwrap();
        std::fs::write(sys.join("wlan0/uevent"), "DEVTYPE=wlan\nINTERFACE=wlan0\n").unwrap();
        // usb0: a phone over USB (rndis_host).
        let drivers = root.join("sys/bus/usb/drivers/rndis_host");
        std::fs::create_dir_all(&drivers).unwrap();
        std::fs::create_dir_all(sys.join("usb0/device")).unwrap();
        std::os::unix::fs::symlink(&drivers, sys.join("usb0/device/driver")).unwrap();
        std::fs::write(sys.join("usb0/uevent"), "INTERFACE=usb0\n").unwrap();
        std::fs::write(sys.join("usb0/ifindex"), "7\n").unwrap();
        // wwan0: a modem.
        std::fs::create_dir_all(sys.join("wwan0")).unwrap();
        std::fs::write(sys.join("wwan0/uevent"), "DEVTYPE=wwan\n").unwrap();
        // wg0: a tunnel.
        std::fs::create_dir_all(sys.join("wg0")).unwrap();
        std::fs::write(sys.join("wg0/uevent"), "DEVTYPE=wireguard\n").unwrap();
        Tree {
            probe: SysfsProbe {
                proc_net,
                sys_class_net: sys,
                lease_dirs: vec![leases],
            },
            _dir: dir,
        }
    }

    #[test]
    fn vpns_are_told_by_devtype_or_name() {
        let t = tree(ROUTE);
        let sys = &t.probe.sys_class_net;
        // An OpenVPN tap device with an unremarkable name, told by DEVTYPE.
        std::fs::create_dir_all(sys.join("office")).unwrap();
        std::fs::write(sys.join("office/uevent"), "DEVTYPE=tap\nINTERFACE=office\n").unwrap();
        assert!(t.probe.is_vpn("office"));
        for name in ["wg0", "tun0", "tap1", "tailscale0", "vpn-work"] {
            assert!(t.probe.is_vpn(name), "{name}");
        }
        for name in ["wlan0", "usb0", "eth0", "br0"] {
            assert!(!t.probe.is_vpn(name), "{name}");
        }
    }

    #[test]
    fn parses_routes_lowest_metric_first() {
        let routes = parse_ipv4_routes(ROUTE);
        assert_eq!(routes.len(), 2);
        assert!(routes.iter().any(|r| r.interface == "wlan0"
            && r.gateway == Some(Ipv4Addr::new(192, 168, 1, 1))
            && r.metric == 600));
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo
20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 wlan0";
        let v6 = parse_ipv6_routes(v6);
        assert_eq!(
            v6,
            vec![DefaultRoute {
                interface: "wlan0".into(),
                gateway: None,
                metric: 1024
            }]
        );
    }

    #[test]
    fn usb_tethering_is_guessed_metered_with_gateway_mac_id() {
        let t = tree(ROUTE);
        let n = t.probe.probe().unwrap().unwrap();
        assert_eq!(n.interface.as_deref(), Some("usb0"));
        assert_eq!(n.kind, NetworkKind::Ethernet);
        assert_eq!(
            (n.metered, n.metered_source),
            (Metered::GuessYes, MeteredSource::DeviceType)
        );
        assert_eq!(n.id.as_str(), "usb0@aa:bb:cc:dd:ee:ff");
    }

    #[test]
    fn wifi_is_guessed_unmetered_unless_the_lease_says_android_metered() {
        let only_wifi: String = ROUTE
            .lines()
            .filter(|l| !l.starts_with("usb0"))
            .collect::<Vec<_>>()
            .join("\n");
        let t = tree(&only_wifi);
        let n = t.probe.probe().unwrap().unwrap();
        assert_eq!((n.kind, n.metered), (NetworkKind::Wifi, Metered::GuessNo));
        assert_eq!(n.id.as_str(), "wlan0@11:22:33:44:55:66");
        std::fs::write(
            t.probe.lease_dirs[0].join("dhclient.wlan0.leases"),
            "lease {\n  option vendor-encapsulated-options 41:4e:44:52:4f:49:44:5f:4d:45:54:45:52:45:44;\n}\n",
        )
        .unwrap();
        let n = t.probe.probe().unwrap().unwrap();
        assert_eq!(
            (n.metered, n.metered_source),
            (Metered::Yes, MeteredSource::Dhcp)
        );
    }

    #[test]
    fn wwan_is_cellular_and_vpn_inherits_the_link_below() {
        let t = tree(
            "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask
wg0\t00000000\t00000000\t0001\t0\t0\t50\t00000000
wwan0\t00000000\t0100000A\t0003\t0\t0\t700\t00000000
",
        );
        let n = t.probe.probe().unwrap().unwrap();
        assert_eq!(n.kind, NetworkKind::Vpn);
        let under = n.underlying.as_deref().unwrap();
        assert_eq!(
            (under.kind, under.metered),
            (NetworkKind::Cellular, Metered::GuessYes)
        );
        assert!(n.is_metered(), "a VPN over a metered link is metered");
    }

    #[test]
    fn no_default_route_is_offline() {
        let t = tree("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n");
        assert!(t.probe.probe().unwrap().is_none());
    }
}
