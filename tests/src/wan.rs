//! A small WAN made of network namespaces, for tests of what capwise does with peers that are
//! *not* on its LAN (loopback and same-subnet peers are LAN, and LAN is exempt from WAN budgets).
//!
//! ```text
//!   ns a (cw-a-SFX)            ns r (cw-r-SFX, ip_forward=1)            ns b (cw-b-SFX)
//!   10.201.1.2/24  --veth--  10.201.1.1/24 | 10.201.2.1/24  --veth--  10.201.2.2/24
//!   default via 10.201.1.1                                            default via 10.201.2.1
//! ```
//!
//! The namespaces are named (`ip netns add`) with a per-topology suffix, so several topologies
//! (other test processes, other worktrees) never collide. Nothing but the two veth pairs joins
//! them, and no link leads out of them: nothing can leave the machine. [`Drop`] kills every
//! process still running in them and deletes them (also while a test panics). Named namespaces
//! work from inside `unshare -n` too (they are bind mounts under `/run/netns`, independent of the
//! caller's own network namespace), so the suite runs there like the interop suite.

use crate::process::{run, ChildGuard};
use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Router side of the a link, and a's address.
pub const ROUTER_A_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 1);
pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 1, 2);
/// Router side of the b link, and b's address.
pub const ROUTER_B_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 2, 2);
/// A second link between a and the router ([`WanTopology::add_tunnel`]): the router's side and
/// a's address on it.
pub const ROUTER_TUNNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 4, 1);
pub const A_TUNNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 4, 2);

/// Bound for each `ip`/`sysctl`/`cat` invocation.
const CMD_TIMEOUT: Duration = Duration::from_secs(15);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which namespace of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    Router,
    A,
    B,
}

/// Three named namespaces joined through a router; deleted on drop.
pub struct WanTopology {
    pub suffix: String,
    /// `cw-r-SFX`, `cw-a-SFX`, `cw-b-SFX`.
    pub router: String,
    pub a: String,
    pub b: String,
    /// veth ends: in the router towards a and b, and in a and b.
    pub if_ra: String,
    pub if_rb: String,
    pub if_a: String,
    pub if_b: String,
    /// Namespaces created so far (all three once `new` returns).
    created: Vec<String>,
    /// Logs of the setup commands.
    logs: tempfile::TempDir,
}

impl WanTopology {
    /// Creates the namespaces, links, addresses and routes, and checks that a reaches b through
    /// the router. On any error what was created is deleted again.
    pub fn new() -> Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix("capwise-wan-topo-")
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
            if ["r", "a", "b"]
                .iter()
                .all(|r| !Path::new(&format!("/run/netns/cw-{r}-{s}")).exists())
            {
                suffix = s;
                break;
            }
        }
        if suffix.is_empty() {
            bail!("no free namespace suffix after 20 tries");
        }
        let mut t = WanTopology {
            router: format!("cw-r-{suffix}"),
            a: format!("cw-a-{suffix}"),
            b: format!("cw-b-{suffix}"),
            // Interface names: at most 15 bytes.
            if_ra: format!("cwra{suffix}"),
            if_rb: format!("cwrb{suffix}"),
            if_a: format!("cwa{suffix}"),
            if_b: format!("cwb{suffix}"),
            suffix,
            created: Vec::new(),
            logs,
        };
        t.build().context("building the WAN topology")?;
        Ok(t)
    }

    fn build(&mut self) -> Result<()> {
        for ns in [self.router.clone(), self.a.clone(), self.b.clone()] {
            self.ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            // No IPv6 chatter (router solicitations, DAD) on the links: only the test's bytes.
            // Best effort: a kernel without IPv6 has no such sysctl.
            let _ = self.exec_output(
                &ns,
                Command::new("sysctl").args([
                    "-q",
                    "-w",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ]),
            );
        }
        let (r, a, b) = (self.router.clone(), self.a.clone(), self.b.clone());
        let (ra, rb, ia, ib) = (
            self.if_ra.clone(),
            self.if_rb.clone(),
            self.if_a.clone(),
            self.if_b.clone(),
        );
        // Each veth pair is created directly between two of our namespaces: no end ever exists
        // in the caller's namespace.
        self.ip(&[
            "link", "add", &ra, "netns", &r, "type", "veth", "peer", "name", &ia, "netns", &a,
        ])?;
        self.ip(&[
            "link", "add", &rb, "netns", &r, "type", "veth", "peer", "name", &ib, "netns", &b,
        ])?;
        let addrs = [
            (&r, &ra, format!("{ROUTER_A_IP}/24")),
            (&a, &ia, format!("{A_IP}/24")),
            (&r, &rb, format!("{ROUTER_B_IP}/24")),
            (&b, &ib, format!("{B_IP}/24")),
        ];
        for (ns, dev, cidr) in &addrs {
            self.ip(&["-n", ns, "addr", "add", cidr, "dev", dev])?;
            self.ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        for ns in [&r, &a, &b] {
            self.ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        self.ip(&[
            "-n",
            &a,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_A_IP.to_string(),
        ])?;
        self.ip(&[
            "-n",
            &b,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_B_IP.to_string(),
        ])?;
        self.exec_output(
            &r,
            Command::new("sysctl").args(["-q", "-w", "net.ipv4.ip_forward=1"]),
        )?;
        self.check_links()?;
        self.check_forwarding()
    }

    /// Each namespace holds `lo` and its veth ends, nothing else.
    fn check_links(&self) -> Result<()> {
        let want = [
            (&self.router, vec![&self.if_ra, &self.if_rb]),
            (&self.a, vec![&self.if_a]),
            (&self.b, vec![&self.if_b]),
        ];
        for (ns, ifs) in want {
            let out = self.ip(&["-n", ns, "-d", "-o", "link", "show"])?;
            for line in out.lines() {
                // "2: cwa1b2c3d@if2: <...> ... \    veth addrgenmode ..."
                let name = line
                    .split(':')
                    .nth(1)
                    .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
                    .unwrap_or_default();
                let is_veth = line.split_whitespace().any(|w| w == "veth");
                let ok = name == "lo" || (ifs.iter().any(|i| **i == name) && is_veth);
                if !ok {
                    bail!("unexpected link in {ns}: {line}");
                }
            }
        }
        Ok(())
    }

    /// A TCP connection from a to b crosses the router.
    fn check_forwarding(&self) -> Result<()> {
        let port = 6999;
        let listener = self.in_ns(Ns::B, || TcpListener::bind((B_IP, port)))??;
        listener.set_nonblocking(true)?;
        let connected = self.in_ns(Ns::A, || {
            TcpStream::connect_timeout(&SocketAddr::from((B_IP, port)), Duration::from_secs(5))
        })?;
        connected.context("a cannot reach b through the router")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match listener.accept() {
                Ok((_, peer)) if peer.ip() == std::net::IpAddr::V4(A_IP) => return Ok(()),
                Ok((_, peer)) => bail!("b saw the connection from {peer}, not from {A_IP}"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            if Instant::now() >= deadline {
                bail!("b never accepted a's connection");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The namespace's name.
    pub fn name(&self, ns: Ns) -> &str {
        match ns {
            Ns::Router => &self.router,
            Ns::A => &self.a,
            Ns::B => &self.b,
        }
    }

    /// Runs `ip ARGS` (bounded); returns its stdout.
    fn ip(&self, args: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(args);
        run("ip", &mut c, self.logs.path(), CMD_TIMEOUT)
    }

    /// `ip netns exec NS PROGRAM ARGS...` with `inner`'s environment and working directory.
    pub fn command(&self, ns: &str, inner: &Command) -> Command {
        netns_command(ns, inner)
    }

    /// Spawns `inner` inside namespace `ns` (see [`WanTopology::command`]); logs in `log_dir`.
    /// `ip netns exec` execs the program, so the guard's pid is the program's.
    pub fn exec(&self, name: &str, ns: Ns, inner: &Command, log_dir: &Path) -> Result<ChildGuard> {
        ChildGuard::spawn(name, &mut self.command(self.name(ns), inner), log_dir)
    }

    /// Runs `inner` inside `ns` to completion (bounded); returns its stdout.
    pub fn exec_output(&self, ns: &str, inner: &Command) -> Result<String> {
        run(
            "netns-exec",
            &mut self.command(ns, inner),
            self.logs.path(),
            CMD_TIMEOUT,
        )
    }

    /// Runs `inner` inside `ns` (bounded by `timeout`), logs in `log_dir`; returns its stdout.
    pub fn run_in(
        &self,
        name: &str,
        ns: Ns,
        inner: &Command,
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<String> {
        run(
            name,
            &mut self.command(self.name(ns), inner),
            log_dir,
            timeout,
        )
    }

    /// Shapes the egress of `ifname` in `ns` to `rate_bits` bit/s (tc tbf, 32 kB burst, 50 ms
    /// queue): a slow uplink, so that data waits in the sender's socket buffers as on a real one.
    pub fn shape(&self, ns: Ns, ifname: &str, rate_bits: u64) -> Result<()> {
        let rate = format!("{rate_bits}bit");
        let mut c = Command::new("tc");
        c.args([
            "-n",
            self.name(ns),
            "qdisc",
            "replace",
            "dev",
            ifname,
            "root",
            "tbf",
        ])
        .args(["rate", &rate, "burst", "32kb", "latency", "50ms"]);
        run("tc", &mut c, self.logs.path(), CMD_TIMEOUT).map(|_| ())
    }

    /// `(rx_bytes, tx_bytes)` of interface `ifname` in namespace `ns`, from its sysfs.
    pub fn iface_counters(&self, ns: Ns, ifname: &str) -> Result<(u64, u64)> {
        let base = PathBuf::from("/sys/class/net")
            .join(ifname)
            .join("statistics");
        let out = self.exec_output(
            self.name(ns),
            Command::new("cat")
                .arg(base.join("rx_bytes"))
                .arg(base.join("tx_bytes")),
        )?;
        let v: Vec<u64> = out
            .split_whitespace()
            .map(|s| s.parse::<u64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("counters of {ifname} in {}: {out:?}", self.name(ns)))?;
        match v[..] {
            [rx, tx] => Ok((rx, tx)),
            _ => bail!("counters of {ifname}: {out:?}"),
        }
    }

    /// The names of a's second link to the router ([`WanTopology::add_tunnel`]): a's end
    /// (named like a VPN's interface) and the router's.
    pub fn tunnel_names(&self) -> (String, String) {
        (
            format!("cwwg{}", self.suffix),
            format!("cwrw{}", self.suffix),
        )
    }

    /// A second link from a to the router, as a VPN would give: a veth pair (a's end named
    /// like `wg0`, see [`WanTopology::tunnel_names`]) on 10.201.4.0/24, and a second default
    /// route in a through it with a worse metric than the first, so that an unbound socket
    /// leaves by the first link and a socket bound to this one leaves here. Reverse-path
    /// filtering is off in a and the router: b's packets come back on the link they were sent
    /// to. Also the way to make the link again after [`WanTopology::remove_tunnel`]: a new
    /// device under the same name (a new index), as a VPN that reconnects makes.
    pub fn add_tunnel(&self) -> Result<()> {
        let (ours, theirs) = self.tunnel_names();
        for ns in [&self.a, &self.router] {
            self.exec_output(
                ns,
                Command::new("sysctl").args([
                    "-q",
                    "-w",
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0",
                ]),
            )?;
        }
        self.ip(&[
            "link",
            "add",
            &ours,
            "netns",
            &self.a,
            "type",
            "veth",
            "peer",
            "name",
            &theirs,
            "netns",
            &self.router,
        ])?;
        for (ns, dev, cidr) in [
            (&self.a, &ours, format!("{A_TUNNEL_IP}/24")),
            (&self.router, &theirs, format!("{ROUTER_TUNNEL_IP}/24")),
        ] {
            self.ip(&["-n", ns, "addr", "add", &cidr, "dev", dev])?;
            self.ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        self.ip(&[
            "-n",
            &self.a,
            "route",
            "add",
            "default",
            "via",
            &ROUTER_TUNNEL_IP.to_string(),
            "dev",
            &ours,
            "metric",
            "100",
        ])?;
        Ok(())
    }

    /// Deletes a's second link (both ends): its device, addresses and routes are gone.
    pub fn remove_tunnel(&self) -> Result<()> {
        let (ours, _) = self.tunnel_names();
        self.ip(&["-n", &self.a, "link", "del", &ours]).map(|_| ())
    }

    /// Runs `f` on a fresh thread that has entered namespace `ns` (setns), so sockets `f` opens
    /// live there; children it spawns start there too. A panic in `f` is resumed here.
    pub fn in_ns<T: Send>(&self, ns: Ns, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_named_netns(self.name(ns), f)
    }

    /// Starts sampling `ifname`'s tx bytes in namespace `ns` every `period`, from a thread
    /// inside it reading `/proc/thread-self/net/dev`: no process per reading, so the figure
    /// at a given instant is known to within `period` (a reading through `ip netns exec` takes
    /// 10-40 ms). Bounded: stops after `limit` or when the sampler is finished.
    pub fn sample_tx(&self, ns: Ns, ifname: &str, period: Duration, limit: Duration) -> TxSampler {
        let path = Path::new("/run/netns").join(self.name(ns));
        let ifname = ifname.to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread = std::thread::spawn(move || -> Result<Vec<(f64, u64)>> {
            enter_netns(&path)?;
            let mut samples = Vec::new();
            let end = Instant::now() + limit;
            while !stop_thread.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                let dev = std::fs::read_to_string("/proc/thread-self/net/dev")?;
                samples.push((monotonic_secs(), tx_bytes(&dev, &ifname)?));
                std::thread::sleep(period);
            }
            Ok(samples)
        });
        TxSampler { stop, thread }
    }
}

/// A running [`WanTopology::sample_tx`].
pub struct TxSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<Vec<(f64, u64)>>>,
}

impl TxSampler {
    /// Stops sampling; `(monotonic seconds, tx bytes)` in time order.
    pub fn finish(self) -> Result<Vec<(f64, u64)>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.thread.join() {
            Ok(samples) => samples,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The tx bytes of `ifname` in a `/proc/net/dev` text (the ninth number after `ifname:`).
pub fn tx_bytes(dev: &str, ifname: &str) -> Result<u64> {
    let line = dev
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(ifname)?.strip_prefix(':'))
        .with_context(|| format!("no {ifname} in /proc/net/dev"))?;
    let field = line
        .split_whitespace()
        .nth(8)
        .with_context(|| format!("short /proc/net/dev line for {ifname}: {line:?}"))?;
    Ok(field.parse()?)
}

/// The last sample at or before `t` (the first one if none is).
pub fn tx_at(samples: &[(f64, u64)], t: f64) -> Option<u64> {
    samples
        .iter()
        .rev()
        .find(|s| s.0 <= t)
        .or_else(|| samples.first())
        .map(|s| s.1)
}

/// Moves the calling thread into the network namespace bound at `path`.
/// Moves the calling thread into the network namespace at `path` (`/run/netns/NAME`).
pub fn enter_netns(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: setns(2) on an open namespace fd; affects only the calling thread's network ns.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!(
            "setns({}): {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

impl Drop for WanTopology {
    fn drop(&mut self) {
        delete_netns(&self.created, self.logs.path(), "wan");
    }
}

/// CLOCK_MONOTONIC in seconds: the clock of `lt_client.py`'s progress lines (Python's
/// `time.monotonic()`).
pub fn monotonic_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Runs `f` on a fresh thread that has entered the named namespace `ns` (setns), so sockets
/// `f` opens live there; children it spawns start there too. A panic in `f` is resumed here.
pub fn in_named_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|s| {
        let h = s.spawn(move || -> Result<T> {
            enter_netns(&path)?;
            Ok(f())
        });
        match h.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Tears down the namespaces a topology `who` made, last first: kills what still runs in each
/// (only what the topology's users started; bounded), then deletes it. Errors are printed, not
/// returned: this runs in `Drop`.
pub fn delete_netns(created: &[String], logs: &Path, who: &str) {
    let ip = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(args);
        run("ip", &mut c, logs, CMD_TIMEOUT)
    };
    for ns in created.iter().rev() {
        for _ in 0..5 {
            let pids: Vec<i32> = ip(&["netns", "pids", ns])
                .map(|o| {
                    o.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill(2) by pid on a process inside a namespace the topology made.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = ip(&["netns", "del", ns]) {
            eprintln!("[{who}] cannot delete namespace {ns}: {e:#}");
        }
    }
}

/// `ip netns exec NS` + `inner`'s program, arguments, environment and directory.
pub fn netns_command(ns: &str, inner: &Command) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = inner.get_current_dir() {
        c.current_dir(d);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_bytes_reads_the_named_interface_only() {
        let dev = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0\n\
cw-a-x1: 5000      10    0    0    0     0          0         0   987654      20    0    0    0     0       0          0\n\
cw-a-x12:1 2 3 4 5 6 7 8 42 0 0 0 0 0 0 0\n";
        assert_eq!(tx_bytes(dev, "lo").unwrap(), 200);
        assert_eq!(tx_bytes(dev, "cw-a-x1").unwrap(), 987_654);
        assert_eq!(tx_bytes(dev, "cw-a-x12").unwrap(), 42);
        assert!(tx_bytes(dev, "eth0").is_err());
        let samples = [(1.0, 10), (2.0, 20), (3.0, 30)];
        assert_eq!(tx_at(&samples, 2.5), Some(20));
        assert_eq!(tx_at(&samples, 0.5), Some(10));
        assert_eq!(tx_at(&[], 1.0), None);
    }
}
