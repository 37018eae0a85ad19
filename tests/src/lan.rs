//! One LAN segment made of network namespaces, for local service discovery (BEP 14) tests:
//! hosts whose veth legs hang on one bridge, so a multicast from one reaches all the others.
//!
//! ```text
//!   ns cw-lh0-SFX 10.203.0.1/24 --veth--+
//!   ns cw-lh1-SFX 10.203.0.2/24 --veth--+-- br0 in ns cw-lbr-SFX (multicast snooping off)
//!   ...                                 |
//! ```
//!
//! No default route and no other link leads out (only 224.0.0.0/4 goes to the segment's
//! interface): nothing can leave the machine. IPv6 is off on every
//! leg (no router solicitations or DAD chatter). [`Drop`] kills what still runs in the
//! namespaces and deletes them (also while a test panics).

use crate::process::{run, ChildGuard};
use crate::wan::{delete_netns, enter_netns, in_named_netns, netns_command};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const CMD_TIMEOUT: Duration = Duration::from_secs(15);
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Hosts on one bridged segment; deleted on drop.
pub struct LanSegment {
    /// The bridge's namespace.
    pub bridge: String,
    /// The hosts' namespaces, in order.
    pub hosts: Vec<String>,
    /// Each host's interface name (the same in every host).
    pub ifname: &'static str,
    created: Vec<String>,
    logs: tempfile::TempDir,
}

impl LanSegment {
    /// `n` hosts at 10.203.0.1, .2, ... on one bridge.
    pub fn new(n: usize) -> Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix("capwise-lan-topo-")
            .tempdir()?;
        let n_id = COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("{:x}{n_id}", std::process::id() & 0xf_ffff);
        let mut seg = LanSegment {
            bridge: format!("cw-lbr-{suffix}"),
            hosts: (0..n).map(|i| format!("cw-lh{i}-{suffix}")).collect(),
            ifname: "lan0",
            created: Vec::new(),
            logs,
        };
        seg.build().context("building the LAN segment")?;
        Ok(seg)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 203, 0, i as u8 + 1)
    }

    fn build(&mut self) -> Result<()> {
        let mut all = vec![self.bridge.clone()];
        all.extend(self.hosts.clone());
        for ns in &all {
            self.sh(&["ip", "netns", "add", ns])?;
            self.created.push(ns.clone());
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
        let br = self.bridge.clone();
        self.sh(&[
            "ip",
            "-n",
            &br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        self.sh(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
        for (i, host) in self.hosts.clone().iter().enumerate() {
            let leg = format!("leg{i}");
            self.sh(&[
                "ip",
                "link",
                "add",
                &leg,
                "netns",
                &br,
                "type",
                "veth",
                "peer",
                "name",
                self.ifname,
                "netns",
                host,
            ])?;
            self.sh(&["ip", "-n", &br, "link", "set", &leg, "master", "br0"])?;
            self.sh(&["ip", "-n", &br, "link", "set", &leg, "up"])?;
            let addr = format!("{}/24", self.ip(i));
            self.sh(&["ip", "-n", host, "addr", "add", &addr, "dev", self.ifname])?;
            self.sh(&[
                "ip",
                "-n",
                host,
                "link",
                "set",
                self.ifname,
                "multicast",
                "on",
            ])?;
            self.sh(&["ip", "-n", host, "link", "set", self.ifname, "up"])?;
            // There is no default route: multicast goes out of the segment's interface
            // (Transmission joins the group on INADDR_ANY and fails with ENODEV without it).
            self.sh(&[
                "ip",
                "-n",
                host,
                "route",
                "add",
                "224.0.0.0/4",
                "dev",
                self.ifname,
            ])?;
        }
        Ok(())
    }

    fn sh(&self, argv: &[&str]) -> Result<String> {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        run(argv[0], &mut c, self.logs.path(), CMD_TIMEOUT)
    }

    /// Spawns `inner` in host `i`'s namespace (`ip netns exec`); logs in `log_dir`.
    pub fn exec(
        &self,
        name: &str,
        i: usize,
        inner: &Command,
        log_dir: &Path,
    ) -> Result<ChildGuard> {
        ChildGuard::spawn(name, &mut netns_command(&self.hosts[i], inner), log_dir)
    }

    /// Runs `f` on a thread inside host `i`'s namespace (sockets it opens live there).
    pub fn in_host<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_named_netns(&self.hosts[i], f)
    }
}

impl Drop for LanSegment {
    fn drop(&mut self) {
        delete_netns(&self.created, self.logs.path(), "lan");
    }
}

impl LanSegment {
    /// Runs `f` on a detached thread inside host `i`'s namespace, for work that goes on while
    /// the test drives processes (a hostile sender, a sniffer).
    pub fn spawn_in_host<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        let path = Path::new("/run/netns").join(&self.hosts[i]);
        std::thread::spawn(move || -> Result<T> {
            enter_netns(&path)?;
            Ok(f())
        })
    }

    /// Adds another address to host `i`'s interface (a second source on the segment).
    pub fn add_address(&self, i: usize, addr: Ipv4Addr) -> Result<()> {
        let a = format!("{addr}/24");
        self.sh(&[
            "ip",
            "-n",
            &self.hosts[i],
            "addr",
            "add",
            &a,
            "dev",
            self.ifname,
        ])?;
        Ok(())
    }
}
