//! A home network behind a router running miniupnpd, for the port mapping
//! tests: capwise at home asks the router (UPnP IGD, PCP/NAT-PMP) to
//! forward its ports, and a peer on the WAN side dials the router's
//! address.
//!
//! ```text
//!   ns home (cw-hh-SFX)         ns router (cw-hr-SFX)                  ns wan (cw-hw-SFX)
//!   192.168.77.2/24 --veth-- 192.168.77.1/24 | 20.77.0.1/24 --veth-- 20.77.0.2/24
//!   default via .1          nftables: masquerade out of WAN, miniupnpd's DNAT
//! ```
//!
//! The router's WAN address must look public: miniupnpd refuses to map on a
//! private one ("Port forwarding is impossible"). `20.77.0.0/24` is used
//! only inside these namespaces, which no link joins to the machine's own:
//! nothing leaves. The forward chain drops what comes in from the WAN unless
//! it answers a connection from home or a miniupnpd rule lets it in, as on a
//! home router, so a WAN peer reaches home only through a mapping.

use crate::process::{run, ChildGuard};
use crate::wan::{delete_netns, in_named_netns, netns_command};
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The home host, and the router's LAN side.
pub const HOME_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
pub const ROUTER_LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// The router's WAN address (the "public" one mappings are made on), and the WAN peer's.
pub const ROUTER_WAN_IP: Ipv4Addr = Ipv4Addr::new(20, 77, 0, 1);
pub const WAN_IP: Ipv4Addr = Ipv4Addr::new(20, 77, 0, 2);

const CMD_TIMEOUT: Duration = Duration::from_secs(15);
/// miniupnpd's nftables table (and its chains' names, in its config).
const TABLE: &str = "miniupnpd";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which namespace of the home topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    Router,
    Home,
    Wan,
}

/// Which protocols the router's miniupnpd speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterProtocols {
    /// UPnP IGD only (SSDP on the LAN, SOAP over HTTP).
    Upnp,
    /// PCP and NAT-PMP only (UDP 5351).
    PcpNatPmp,
}

/// One forwarding rule miniupnpd installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// "tcp" or "udp".
    pub protocol: String,
    /// The port on the router's WAN address.
    pub external: u16,
    /// Where it leads.
    pub to: SocketAddrV4,
}

/// The three namespaces, deleted on drop (with everything running in them).
pub struct HomeTopology {
    pub router: String,
    pub home: String,
    pub wan: String,
    /// veth ends: the router's LAN and WAN sides, home's and the WAN peer's.
    pub if_lan: String,
    pub if_wan: String,
    pub if_home: String,
    pub if_peer: String,
    created: Vec<String>,
    logs: tempfile::TempDir,
}

impl HomeTopology {
    /// Creates the namespaces, links, addresses, routes and the router's
    /// nftables ruleset. On any error what was created is deleted again.
    pub fn new() -> Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix("capwise-home-topo-")
            .tempdir()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let sfx = format!("{:05x}", (std::process::id() * 16 + n) & 0xf_ffff);
        let mut t = HomeTopology {
            router: format!("cw-hr-{sfx}"),
            home: format!("cw-hh-{sfx}"),
            wan: format!("cw-hw-{sfx}"),
            if_lan: format!("cwhl{sfx}"),
            if_wan: format!("cwhw{sfx}"),
            if_home: format!("cwhh{sfx}"),
            if_peer: format!("cwhp{sfx}"),
            created: Vec::new(),
            logs,
        };
        t.build().context("building the home topology")?;
        Ok(t)
    }

    fn build(&mut self) -> Result<()> {
        for ns in [self.router.clone(), self.home.clone(), self.wan.clone()] {
            if Path::new("/run/netns").join(&ns).exists() {
                bail!("namespace {ns} exists already (a crashed run?)");
            }
            self.ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            let _ = self.output(
                &ns,
                Command::new("sysctl").args(["-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]),
            );
            self.ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let (r, h, w) = (self.router.clone(), self.home.clone(), self.wan.clone());
        let (lan, wan, home, peer) = (
            self.if_lan.clone(),
            self.if_wan.clone(),
            self.if_home.clone(),
            self.if_peer.clone(),
        );
        self.ip(&[
            "link", "add", &lan, "netns", &r, "type", "veth", "peer", "name", &home, "netns", &h,
        ])?;
        self.ip(&[
            "link", "add", &wan, "netns", &r, "type", "veth", "peer", "name", &peer, "netns", &w,
        ])?;
        for (ns, dev, cidr) in [
            (&r, &lan, format!("{ROUTER_LAN_IP}/24")),
            (&h, &home, format!("{HOME_IP}/24")),
            (&r, &wan, format!("{ROUTER_WAN_IP}/24")),
            (&w, &peer, format!("{WAN_IP}/24")),
        ] {
            self.ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
            self.ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        self.ip(&[
            "-n",
            &h,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_LAN_IP.to_string(),
        ])?;
        self.ip(&[
            "-n",
            &w,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_WAN_IP.to_string(),
        ])?;
        self.output(
            &r,
            Command::new("sysctl").args(["-q", "-w", "net.ipv4.ip_forward=1"]),
        )?;
        let ruleset = self.logs.path().join("router.nft");
        std::fs::write(&ruleset, self.ruleset())?;
        self.output(&r, Command::new("nft").arg("-f").arg(&ruleset))
            .context("the router's nftables ruleset (NAT in a namespace)")?;
        Ok(())
    }

    /// The router's ruleset: what `nft_init.sh` of miniupnpd-nftables makes,
    /// with a home router's forward policy and masquerade.
    fn ruleset(&self) -> String {
        format!(
            "table inet {TABLE} {{
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname \"{lan}\" accept
    jump miniupnpd
  }}
  chain miniupnpd {{
  }}
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
    oifname \"{wan}\" masquerade
  }}
  chain prerouting_miniupnpd {{
  }}
  chain postrouting_miniupnpd {{
  }}
}}
",
            lan = self.if_lan,
            wan = self.if_wan
        )
    }

    /// miniupnpd's configuration: the router's LAN and WAN, secure mode
    /// (a host maps only to itself), mappings allowed for the LAN range only.
    pub fn miniupnpd_config(&self, protocols: RouterProtocols) -> String {
        let (upnp, pmp) = match protocols {
            RouterProtocols::Upnp => ("yes", "no"),
            RouterProtocols::PcpNatPmp => ("no", "yes"),
        };
        format!(
            "ext_ifname={wan}\nlistening_ip={lan}\nhttp_port=0\nenable_upnp={upnp}\n\
             enable_natpmp={pmp}\nsecure_mode=yes\nsystem_uptime=yes\nnotify_interval=60\n\
             clean_ruleset_interval=600\nuuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
             upnp_table_name={TABLE}\nupnp_nat_table_name={TABLE}\nupnp_forward_chain=miniupnpd\n\
             upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             allow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            wan = self.if_wan,
            lan = self.if_lan,
        )
    }

    /// Starts miniupnpd in the router (foreground, its log in `log_dir`)
    /// and waits until it listens.
    pub fn start_miniupnpd(
        &self,
        protocols: RouterProtocols,
        dir: &Path,
        log_dir: &Path,
    ) -> Result<ChildGuard> {
        let bin = PathBuf::from("/usr/sbin/miniupnpd");
        if !bin.exists() {
            bail!(
                "miniupnpd is not installed (Debian: miniupnpd-nftables; scripts/test installs it)"
            );
        }
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("miniupnpd.conf");
        std::fs::write(&conf, self.miniupnpd_config(protocols))?;
        let mut c = Command::new(&bin);
        c.arg("-f")
            .arg(&conf)
            .arg("-d")
            .arg("-P")
            .arg(dir.join("miniupnpd.pid"));
        let mut guard =
            ChildGuard::spawn("miniupnpd", &mut netns_command(&self.router, &c), log_dir)?;
        // Ready once its sockets are bound: HTTP (UPnP) or UDP 5351 (PCP/NAT-PMP).
        let (proto, port) = match protocols {
            RouterProtocols::Upnp => ("-ulnH", "1900"),
            RouterProtocols::PcpNatPmp => ("-ulnH", "5351"),
        };
        crate::process::wait_until(
            "miniupnpd to listen",
            Duration::from_secs(10),
            Duration::from_millis(100),
            || {
                if let Some(status) = guard.try_wait()? {
                    bail!("miniupnpd exited with {status}: {}", guard.log_tail(2000));
                }
                let out = self.output(&self.router, Command::new("ss").arg(proto))?;
                Ok(out.lines().any(|l| l.contains(&format!(":{port} "))))
            },
        )?;
        Ok(guard)
    }

    /// The forwards miniupnpd holds now, from its DNAT chain.
    pub fn forwards(&self) -> Result<Vec<Forward>> {
        let out = self.output(
            &self.router,
            Command::new("nft").args(["list", "chain", "inet", TABLE, "prerouting_miniupnpd"]),
        )?;
        Ok(parse_forwards(&out))
    }

    /// The namespace's name.
    pub fn name(&self, host: Host) -> &str {
        match host {
            Host::Router => &self.router,
            Host::Home => &self.home,
            Host::Wan => &self.wan,
        }
    }

    /// `inner` wrapped to run in `host` (`ip netns exec`).
    pub fn command(&self, host: Host, inner: &Command) -> Command {
        netns_command(self.name(host), inner)
    }

    /// Runs `f` on a thread inside `host`'s namespace.
    pub fn in_host<T: Send>(&self, host: Host, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_named_netns(self.name(host), f)
    }

    /// Runs `inner` in `ns` to completion (bounded); its stdout.
    pub fn output(&self, ns: &str, inner: &Command) -> Result<String> {
        run(
            "netns-exec",
            &mut netns_command(ns, inner),
            self.logs.path(),
            CMD_TIMEOUT,
        )
    }

    fn ip(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(args);
        run("ip", &mut c, self.logs.path(), CMD_TIMEOUT)
    }
}

impl Drop for HomeTopology {
    fn drop(&mut self) {
        delete_netns(&self.created, self.logs.path(), "home");
    }
}

/// The DNAT rules in an `nft list chain` text, e.g.
/// `iif "x" @nh,72,8 0x6 th dport 6881 dnat ip to 192.168.77.2:6881`
/// (0x6 TCP, 0x11 UDP: miniupnpd matches the IP header's protocol byte).
pub fn parse_forwards(text: &str) -> Vec<Forward> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |w: &str| {
                words
                    .iter()
                    .position(|x| *x == w)
                    .and_then(|i| words.get(i + 1))
            };
            let protocol = match *after("@nh,72,8")? {
                "0x6" | "6" => "tcp",
                "0x11" | "17" => "udp",
                _ => return None,
            };
            let external = after("dport")?.parse().ok()?;
            let to = after("to")?.parse().ok()?;
            Some(Forward {
                protocol: protocol.into(),
                external,
                to,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_miniupnpds_dnat_rules() {
        let text = "table inet miniupnpd {\n\tchain prerouting_miniupnpd {\n\
\t\tiif \"cwhw1\" @nh,72,8 0x6 th dport 6881 dnat ip to 192.168.77.2:6881\n\
\t\tiif \"cwhw1\" @nh,72,8 0x11 th dport 6882 dnat ip to 192.168.77.2:6881\n\t}\n}\n";
        let f = parse_forwards(text);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].protocol, "tcp");
        assert_eq!(f[0].external, 6881);
        assert_eq!(f[1].protocol, "udp");
        assert_eq!(f[1].external, 6882);
        assert_eq!(f[1].to, "192.168.77.2:6881".parse().unwrap());
        assert!(parse_forwards("table inet miniupnpd {\n}\n").is_empty());
    }
}
