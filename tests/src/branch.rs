//! Headquarters and two branch offices made of network namespaces (issue 14's scenario):
//!
//! ```text
//!   ns hq (cw-hq-SFX)  eth0 10.200.0.2/24: lighttpd, opentracker, the capwise publisher
//!        |  veth
//!   ns core (cw-core-SFX)  hq0 10.200.0.1/24 | b1 10.210.1.1/30 | b2 10.210.2.1/30
//!        |  veth, tbf in both directions (core's b1 egress = branch 1's download)
//!   ns branch router (cw-b1r-SFX)  wan0 10.210.1.2/30, br0 10.20.1.1/24, ip_forward,
//!        |                          NAT (nftables masquerade out of wan0) when available
//!   bridge br0: leg0..leg3 -- ns machine (cw-b1m0-SFX .. cw-b1m3-SFX) eth0 10.20.1.11..14/24
//! ```
//!
//! Branch 2 is the same with 10.210.2.x and 10.20.2.x. The WAN counters are each branch
//! router's `wan0` statistics: rx is what the branch pulled over its WAN link, tx what it sent.
//! Nothing but veth pairs between these namespaces exists and no link leads out of them, so
//! nothing can leave the machine. The namespaces carry a per-topology suffix; [`Drop`] kills
//! what still runs in them and deletes them, also while a test panics. Named namespaces work
//! from inside `unshare -n` (they are bind mounts under `/run/netns`).
//!
//! NAT: real branch routers masquerade their LAN. When `nft` is installed and the kernel takes a
//! `masquerade` rule inside the router namespace, the branches are NATed ([`Routing::Nat`]):
//! the core has no route to the branch LANs, so nothing at HQ or in the other branch can dial a
//! branch machine. Otherwise (or when asked) the core routes to them ([`Routing::Routed`]).

pub mod scenario;

use crate::process::{run, ChildGuard};
use crate::wan::{delete_netns, in_named_netns, netns_command};
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// HQ's address (web server, tracker, publisher).
pub const HQ_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// Machines per branch.
pub const MACHINES: usize = 4;
/// Branches.
pub const BRANCHES: usize = 2;
/// The WAN interface in each branch router.
pub const WAN_IF: &str = "wan0";

const CMD_TIMEOUT: Duration = Duration::from_secs(15);
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How the branch routers reach the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Masquerade the branch LAN out of the WAN interface (nftables).
    Nat,
    /// Plain routing; the core knows a route to each branch LAN.
    Routed,
}

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct BranchOpts {
    /// WAN rate of each branch, both directions, bit/s.
    pub rate_bits: u64,
    /// NAT if the kernel allows it (else routed), or routed.
    pub prefer_nat: bool,
}

impl Default for BranchOpts {
    fn default() -> Self {
        Self {
            rate_bits: 20_000_000,
            prefer_nat: true,
        }
    }
}

/// The namespaces of HQ, the core and both branches; deleted on drop.
pub struct BranchTopology {
    pub suffix: String,
    pub hq: String,
    pub core: String,
    /// Branch routers, index 0 = branch 1.
    pub routers: Vec<String>,
    /// `machines[b][m]`.
    pub machines: Vec<Vec<String>>,
    /// What the routers do.
    pub routing: Routing,
    /// Why routing is what it is, in words (for the report).
    pub routing_note: String,
    pub opts: BranchOpts,
    created: Vec<String>,
    logs: tempfile::TempDir,
}

impl BranchTopology {
    /// Builds everything and checks that a machine of each branch reaches HQ.
    pub fn new(opts: BranchOpts) -> Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix("capwise-branch-topo-")
            .tempdir()?;
        let mut suffix = String::new();
        for _ in 0..20 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let s = format!(
                "{:06x}",
                (std::process::id().wrapping_mul(2654435761) ^ nanos ^ n.wrapping_mul(40503))
                    & 0xff_ffff
            );
            if !Path::new(&format!("/run/netns/cw-hq-{s}")).exists() {
                suffix = s;
                break;
            }
        }
        if suffix.is_empty() {
            bail!("no free namespace suffix after 20 tries");
        }
        let mut t = BranchTopology {
            hq: format!("cw-hq-{suffix}"),
            core: format!("cw-core-{suffix}"),
            routers: (1..=BRANCHES)
                .map(|b| format!("cw-b{b}r-{suffix}"))
                .collect(),
            machines: (1..=BRANCHES)
                .map(|b| {
                    (0..MACHINES)
                        .map(|m| format!("cw-b{b}m{m}-{suffix}"))
                        .collect()
                })
                .collect(),
            suffix,
            routing: Routing::Routed,
            routing_note: String::new(),
            opts,
            created: Vec::new(),
            logs,
        };
        t.build().context("building the branch-office topology")?;
        Ok(t)
    }

    /// Branch `b`'s (0-based) LAN address of machine `m`.
    pub fn machine_ip(b: usize, m: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 20, b as u8 + 1, 11 + m as u8)
    }

    /// Branch `b`'s router address on its LAN.
    pub fn router_lan_ip(b: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 20, b as u8 + 1, 1)
    }

    /// Branch `b`'s router address on its WAN link.
    pub fn router_wan_ip(b: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 210, b as u8 + 1, 2)
    }

    fn core_wan_ip(b: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 210, b as u8 + 1, 1)
    }

    fn build(&mut self) -> Result<()> {
        let mut all = vec![self.hq.clone(), self.core.clone()];
        all.extend(self.routers.clone());
        all.extend(self.machines.iter().flatten().cloned());
        for ns in &all {
            self.sh(&["ip", "netns", "add", ns])?;
            self.created.push(ns.clone());
            // No IPv6 chatter (router solicitations, DAD, MLD) on the links: only the test's
            // bytes count. Best effort: a kernel without IPv6 has no such sysctl.
            let _ = self.sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ]);
            self.sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        let (hq, core) = (self.hq.clone(), self.core.clone());
        // HQ <-> core.
        self.veth(&hq, "eth0", &core, "hq0")?;
        self.addr(&hq, "eth0", "10.200.0.2/24")?;
        self.addr(&core, "hq0", "10.200.0.1/24")?;
        self.sh(&[
            "ip",
            "-n",
            &hq,
            "route",
            "add",
            "default",
            "via",
            "10.200.0.1",
        ])?;
        self.sysctl(&core, "net.ipv4.ip_forward=1")?;
        let nat_ok = self.opts.prefer_nat && self.nat_works();
        for b in 0..BRANCHES {
            let r = self.routers[b].clone();
            let core_if = format!("b{}", b + 1);
            self.veth(&r, WAN_IF, &core, &core_if)?;
            self.addr(&r, WAN_IF, &format!("{}/30", Self::router_wan_ip(b)))?;
            self.addr(&core, &core_if, &format!("{}/30", Self::core_wan_ip(b)))?;
            self.sh(&[
                "ip",
                "-n",
                &r,
                "route",
                "add",
                "default",
                "via",
                &Self::core_wan_ip(b).to_string(),
            ])?;
            self.sysctl(&r, "net.ipv4.ip_forward=1")?;
            // The shaped WAN link, both directions: the router's egress is the branch's upload,
            // the core's egress toward it the branch's download.
            self.shape(&r, WAN_IF)?;
            self.shape(&core, &core_if)?;
            // The LAN: a bridge in the router namespace, the router's own address on it.
            self.sh(&[
                "ip",
                "-n",
                &r,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])?;
            self.addr(&r, "br0", &format!("{}/24", Self::router_lan_ip(b)))?;
            for m in 0..MACHINES {
                let host = self.machines[b][m].clone();
                let leg = format!("leg{m}");
                self.veth(&host, "eth0", &r, &leg)?;
                self.sh(&["ip", "-n", &r, "link", "set", &leg, "master", "br0"])?;
                self.addr(&host, "eth0", &format!("{}/24", Self::machine_ip(b, m)))?;
                self.sh(&["ip", "-n", &host, "link", "set", "eth0", "multicast", "on"])?;
                self.sh(&[
                    "ip",
                    "-n",
                    &host,
                    "route",
                    "add",
                    "default",
                    "via",
                    &Self::router_lan_ip(b).to_string(),
                ])?;
            }
            if nat_ok {
                self.nat(&r)?;
            } else {
                let lan = format!("10.20.{}.0/24", b + 1);
                self.sh(&[
                    "ip",
                    "-n",
                    &core,
                    "route",
                    "add",
                    &lan,
                    "via",
                    &Self::router_wan_ip(b).to_string(),
                ])?;
            }
        }
        self.routing = if nat_ok {
            Routing::Nat
        } else {
            Routing::Routed
        };
        if self.routing_note.is_empty() {
            self.routing_note = match self.routing {
                Routing::Nat => "NAT (nftables masquerade on each branch router's WAN)".into(),
                Routing::Routed => "routed (asked for)".into(),
            };
        }
        self.check_reach()
    }

    /// Whether `nft` can install a masquerade rule in a namespace (a throw-away one).
    fn nat_works(&mut self) -> bool {
        let probe = format!("cw-natprobe-{}", self.suffix);
        if self.sh(&["ip", "netns", "add", &probe]).is_err() {
            self.routing_note = "routed: cannot create a probe namespace".into();
            return false;
        }
        let r = self.sh(&[
            "ip",
            "netns",
            "exec",
            &probe,
            "nft",
            "add table ip capwise_nat; add chain ip capwise_nat post { type nat hook postrouting priority 100 ; }; add rule ip capwise_nat post oifname \"lo\" masquerade",
        ]);
        let _ = self.sh(&["ip", "netns", "del", &probe]);
        match r {
            Ok(_) => true,
            Err(e) => {
                self.routing_note = format!(
                    "routed: nft masquerade refused ({})",
                    format!("{e:#}").lines().next().unwrap_or("")
                );
                false
            }
        }
    }

    fn nat(&self, router: &str) -> Result<()> {
        let rule = format!(
            "add table ip capwise_nat; add chain ip capwise_nat post {{ type nat hook postrouting priority 100 ; }}; add rule ip capwise_nat post oifname \"{WAN_IF}\" masquerade"
        );
        self.sh(&["ip", "netns", "exec", router, "nft", &rule])?;
        Ok(())
    }

    fn veth(&self, ns_a: &str, if_a: &str, ns_b: &str, if_b: &str) -> Result<()> {
        // Both ends are created directly in our namespaces: none ever exists in the caller's.
        self.sh(&[
            "ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b,
            "netns", ns_b,
        ])?;
        self.sh(&["ip", "-n", ns_a, "link", "set", if_a, "up"])?;
        self.sh(&["ip", "-n", ns_b, "link", "set", if_b, "up"])?;
        Ok(())
    }

    fn addr(&self, ns: &str, dev: &str, cidr: &str) -> Result<()> {
        self.sh(&["ip", "-n", ns, "addr", "add", cidr, "dev", dev])?;
        self.sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        Ok(())
    }

    fn sysctl(&self, ns: &str, kv: &str) -> Result<()> {
        self.sh(&["ip", "netns", "exec", ns, "sysctl", "-q", "-w", kv])?;
        Ok(())
    }

    /// tbf at the configured rate on `dev`'s egress: 64 kB burst, 50 ms queue.
    fn shape(&self, ns: &str, dev: &str) -> Result<()> {
        let rate = format!("{}bit", self.opts.rate_bits);
        self.sh(&[
            "tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst",
            "64kb", "latency", "50ms",
        ])?;
        Ok(())
    }

    /// A TCP connection from machine 0 of each branch reaches HQ (through its router and the
    /// core); with NAT, HQ sees the router's WAN address, else the machine's own.
    fn check_reach(&self) -> Result<()> {
        let listener = self.in_ns(&self.hq, || TcpListener::bind((HQ_IP, 6998)))??;
        listener.set_nonblocking(true)?;
        for b in 0..BRANCHES {
            let connected = self.in_ns(&self.machines[b][0], || {
                TcpStream::connect_timeout(&SocketAddr::from((HQ_IP, 6998)), Duration::from_secs(5))
            })?;
            let _keep = connected.with_context(|| format!("branch {} cannot reach HQ", b + 1))?;
            let want = match self.routing {
                Routing::Nat => Self::router_wan_ip(b),
                Routing::Routed => Self::machine_ip(b, 0),
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match listener.accept() {
                    Ok((_, peer)) if peer.ip() == std::net::IpAddr::V4(want) => break,
                    Ok((_, peer)) => bail!("HQ saw branch {} as {peer}, not {want}", b + 1),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
                if Instant::now() >= deadline {
                    bail!("HQ never accepted branch {}'s connection", b + 1);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Runs `argv` (bounded); returns its stdout.
    fn sh(&self, argv: &[&str]) -> Result<String> {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        run(argv[0], &mut c, self.logs.path(), CMD_TIMEOUT)
    }

    /// `ip netns exec NS` + `inner`.
    pub fn command(&self, ns: &str, inner: &Command) -> Command {
        netns_command(ns, inner)
    }

    /// Spawns `inner` inside `ns`; logs in `log_dir`.
    pub fn spawn(
        &self,
        name: &str,
        ns: &str,
        inner: &Command,
        log_dir: &Path,
    ) -> Result<ChildGuard> {
        ChildGuard::spawn(name, &mut netns_command(ns, inner), log_dir)
    }

    /// Runs `inner` inside `ns` to completion within `timeout`; returns its stdout.
    pub fn run_in(
        &self,
        name: &str,
        ns: &str,
        inner: &Command,
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<String> {
        run(name, &mut netns_command(ns, inner), log_dir, timeout)
    }

    /// `(rx_bytes, tx_bytes)` of branch `b`'s router WAN interface.
    pub fn wan_counters(&self, b: usize) -> Result<(u64, u64)> {
        let base = PathBuf::from("/sys/class/net")
            .join(WAN_IF)
            .join("statistics");
        let out = self.run_in(
            "wan-counters",
            &self.routers[b],
            Command::new("cat")
                .arg(base.join("rx_bytes"))
                .arg(base.join("tx_bytes")),
            self.logs.path(),
            CMD_TIMEOUT,
        )?;
        parse_counters(&out).with_context(|| format!("counters of {WAN_IF} in {}", self.routers[b]))
    }

    /// Runs `f` on a fresh thread inside namespace `ns`; sockets it opens live there.
    pub fn in_ns<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_named_netns(ns, f)
    }
}

/// Two numbers, rx then tx.
fn parse_counters(out: &str) -> Result<(u64, u64)> {
    let v: Vec<u64> = out
        .split_whitespace()
        .map(|s| s.parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("not numbers: {out:?}"))?;
    match v[..] {
        [rx, tx] => Ok((rx, tx)),
        _ => bail!("want two counters: {out:?}"),
    }
}

impl Drop for BranchTopology {
    fn drop(&mut self) {
        delete_netns(&self.created, self.logs.path(), "branch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_rx_then_tx() {
        assert_eq!(parse_counters("12\n34\n").unwrap(), (12, 34));
        assert!(parse_counters("12\n").is_err());
        assert!(parse_counters("x 1").is_err());
        assert_eq!(
            BranchTopology::machine_ip(1, 3),
            Ipv4Addr::new(10, 20, 2, 14)
        );
    }
}
