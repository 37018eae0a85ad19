//! Port mapping against a real miniupnpd: capwise in a home namespace
//! behind a router namespace running miniupnpd (nftables backend), a peer
//! in a WAN namespace (see `capwise_tests::home`). Both of miniupnpd's
//! protocol families, one at a time: UPnP IGD (SSDP on the LAN, SOAP) and
//! PCP/NAT-PMP (UDP 5351). Shown: the mapping appears in miniupnpd's DNAT
//! chain, the WAN peer reaches capwise through the router's address and
//! port (and cannot without the mapping: the router's forward policy drops
//! it), the mapping goes when the uplink turns metered and comes back when
//! it is unmetered again, it is removed when capwise stops, and a metered
//! uplink never gets one. A router that drops PCP requests (nftables
//! drops UDP 5351 packets whose first byte, the version, is 2) still gets
//! its mapping, by NAT-PMP. Not shown here: renewal (the lease asked is an
//! hour; `PortMapping::renew_at` is half of it).
//!
//! Run with `scripts/test` (feature `interop`, root, inside `unshare -n`).

use anyhow::{bail, ensure, Context, Result};
use capwise_tests::clients::agent::{Agent, Wrap};
use capwise_tests::home::{Forward, HomeTopology, Host, RouterProtocols, HOME_IP, ROUTER_WAN_IP};
use capwise_tests::netns::assert_private_netns;
use capwise_tests::process::{dump_logs, wait_until};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PORT: u16 = 6881;
const NET_ID: &str = "home-test";
/// How long a mapping may take to appear or go (a decision change, one
/// exchange with the router).
const MAP_WAIT: Duration = Duration::from_secs(20);
/// How long a metered uplink is watched for a mapping that must not come.
const METERED_WATCH: Duration = Duration::from_secs(5);

struct Home {
    topo: HomeTopology,
    _tmp: tempfile::TempDir,
    root: PathBuf,
    logs: PathBuf,
    net_file: PathBuf,
    config: PathBuf,
    state_dir: PathBuf,
}

impl Home {
    fn new() -> Result<Home> {
        let topo = HomeTopology::new()?;
        let tmp = tempfile::Builder::new()
            .prefix("capwise-portmap-")
            .tempdir()?;
        let root = tmp.path().to_path_buf();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs)?;
        let config = root.join("config.toml");
        // TCP and uTP: both the listener and the UDP socket are mapped.
        std::fs::write(
            &config,
            format!("listen = \"0.0.0.0:{PORT}\"\ntransports = [\"tcp\", \"utp\"]\n"),
        )?;
        Ok(Home {
            net_file: root.join("network.toml"),
            state_dir: root.join("state"),
            topo,
            _tmp: tmp,
            root,
            logs,
            config,
        })
    }

    fn write_network(&self, metered: &str) -> Result<()> {
        let body = format!(
            "id = \"{NET_ID}\"\nname = \"home broadband\"\nkind = \"ethernet\"\n\
             metered = \"{metered}\"\nroaming = false\ninterface = \"{}\"\n",
            self.topo.if_home
        );
        let tmp = self.net_file.with_extension("toml.tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &self.net_file)?;
        Ok(())
    }

    fn router(&self, protocols: RouterProtocols) -> Result<capwise_tests::process::ChildGuard> {
        self.topo
            .start_miniupnpd(protocols, &self.root.join("router"), &self.logs)
    }

    fn agent(&self) -> Result<Agent> {
        let home = self.topo.home.clone();
        let wrap: Wrap = Arc::new(move |c: &Command| capwise_tests::wan::netns_command(&home, c));
        Agent::start_wrapped(
            "capwise",
            &self.state_dir,
            &self.config,
            Some(&self.net_file),
            &self.logs,
            Some(wrap),
        )
    }

    /// The forwards to capwise's port at home.
    fn capwise_forwards(&self) -> Result<Vec<Forward>> {
        Ok(self
            .topo
            .forwards()?
            .into_iter()
            .filter(|f| f.to == std::net::SocketAddrV4::new(HOME_IP, PORT))
            .collect())
    }

    fn wait_mapped(&self, what: &str) -> Result<Vec<Forward>> {
        let mut last = Vec::new();
        wait_until(what, MAP_WAIT, Duration::from_millis(200), || {
            last = self.capwise_forwards()?;
            let has = |p: &str| last.iter().any(|f| f.protocol == p);
            Ok(has("tcp") && has("udp"))
        })?;
        Ok(last)
    }

    fn wait_unmapped(&self, what: &str) -> Result<()> {
        wait_until(what, MAP_WAIT, Duration::from_millis(200), || {
            Ok(self.topo.forwards()?.is_empty())
        })
    }

    /// `capwise net --json`'s port mapping.
    fn net_port_mapping(&self, agent: &mut Agent) -> Result<Value> {
        let f = self.net_file.display().to_string();
        let v = agent.cli_json(&["net", "--network-file", &f])?;
        Ok(v["port_mapping"].clone())
    }

    /// Whether the WAN peer can open a TCP connection to the router's
    /// address at `port`.
    fn wan_dials(&self, port: u16) -> Result<bool> {
        let addr = SocketAddr::from((ROUTER_WAN_IP, port));
        self.topo.in_host(Host::Wan, || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        })
    }
}

fn run_test(name: &str, body: impl FnOnce(&Home) -> Result<()>) {
    assert_private_netns();
    let t0 = Instant::now();
    let home = Home::new().expect("the home topology (namespaces, veth, nftables)");
    match body(&home) {
        Ok(()) => eprintln!("[portmap] {name}: ok in {:.1}s", t0.elapsed().as_secs_f64()),
        Err(e) => {
            dump_logs(&home.logs, None);
            panic!("[portmap] {name} failed: {e:#}");
        }
    }
}

/// Mapped on an unmetered uplink, reachable from the WAN, removed on
/// metered, made again on unmetered, removed on exit.
fn maps_follows_the_uplink_and_cleans_up(
    home: &Home,
    protocols: RouterProtocols,
    names: &[&str],
) -> Result<()> {
    let _router = home.router(protocols)?;
    home.write_network("no")?;
    ensure!(
        !home.wan_dials(PORT)?,
        "the WAN peer reaches home before any mapping: the router lets everything in"
    );
    let t = Instant::now();
    let mut agent = home.agent()?;
    let forwards = home.wait_mapped("capwise's TCP and UDP ports in miniupnpd")?;
    eprintln!(
        "[portmap] {protocols:?}: mapped {} s after start: {forwards:?}",
        t.elapsed().as_secs()
    );
    let tcp = forwards
        .iter()
        .find(|f| f.protocol == "tcp")
        .context("no TCP forward")?;

    let status = home.net_port_mapping(&mut agent)?;
    let protocol = status["protocol"].as_str().unwrap_or_default();
    ensure!(
        names.contains(&protocol),
        "capwise net says {protocol:?} mapped it, not one of {names:?}: {status}"
    );
    ensure!(
        status["external_ip"] == ROUTER_WAN_IP.to_string(),
        "capwise net's external address is not the router's WAN address: {status}"
    );
    let ports = status["ports"]
        .as_array()
        .context("no ports in capwise net")?;
    ensure!(
        ports
            .iter()
            .any(|p| p["protocol"] == "TCP" && p["external"] == tcp.external),
        "capwise net does not show the TCP port miniupnpd forwards ({}): {status}",
        tcp.external
    );
    if protocols == RouterProtocols::Upnp {
        let list = home
            .topo
            .output(&home.topo.home, Command::new("upnpc").arg("-l"))
            .context("upnpc -l from home")?;
        ensure!(
            list.contains(&format!("{}->{HOME_IP}:{PORT}", tcp.external))
                && list.contains("capwise"),
            "upnpc -l does not list capwise's mapping:\n{list}"
        );
    }
    ensure!(
        home.wan_dials(tcp.external)?,
        "the WAN peer cannot reach capwise through {ROUTER_WAN_IP}:{}",
        tcp.external
    );

    home.write_network("yes")?;
    home.wait_unmapped("the mapping to go when the uplink turns metered")?;
    ensure!(
        home.net_port_mapping(&mut agent)?.is_null(),
        "capwise net still shows a mapping on a metered uplink"
    );
    ensure!(
        !home.wan_dials(tcp.external)?,
        "the WAN peer still reaches capwise on a metered uplink"
    );

    home.write_network("no")?;
    home.wait_mapped("the mapping to come back on an unmetered uplink")?;

    let status = agent.guard.stop(Duration::from_secs(15))?;
    ensure!(status.success(), "capwise did not stop cleanly: {status}");
    // Removed before the agent exited, not left to the lease.
    let left = home.topo.forwards()?;
    ensure!(
        left.is_empty(),
        "capwise exited and left its mapping in miniupnpd: {left:?}"
    );
    ensure!(
        !home.state_dir.join("portmap.json").exists(),
        "portmap.json outlived the agent"
    );
    Ok(())
}

#[test]
fn upnp_igd_mapping_follows_the_uplink() {
    run_test("upnp_igd_mapping_follows_the_uplink", |home| {
        maps_follows_the_uplink_and_cleans_up(home, RouterProtocols::Upnp, &["UPnP IGD"])
    });
}

#[test]
fn pcp_natpmp_mapping_follows_the_uplink() {
    run_test("pcp_natpmp_mapping_follows_the_uplink", |home| {
        maps_follows_the_uplink_and_cleans_up(home, RouterProtocols::PcpNatPmp, &["PCP", "NAT-PMP"])
    });
}

#[test]
fn natpmp_is_asked_when_pcp_goes_unanswered() {
    run_test("natpmp_is_asked_when_pcp_goes_unanswered", |home| {
        let _router = home.router(RouterProtocols::PcpNatPmp)?;
        // PCP's version byte is 2, NAT-PMP's 0: only PCP goes unanswered,
        // as from a NAT-PMP-only router (which would answer PCP with
        // "unsupported version" if it answered at all).
        let rules = "table inet pcpdrop { chain input { type filter hook input priority -10; \
                     udp dport 5351 @th,64,8 2 counter drop; }; }";
        home.topo
            .output(&home.topo.router, Command::new("nft").arg(rules))
            .context("the nftables rule that drops PCP in the router")?;
        home.write_network("no")?;
        let mut agent = home.agent()?;
        let forwards = home.wait_mapped("capwise's TCP and UDP ports mapped by NAT-PMP")?;
        let counters = home.topo.output(
            &home.topo.router,
            Command::new("nft").args(["list", "table", "inet", "pcpdrop"]),
        )?;
        ensure!(
            !counters.contains("packets 0 "),
            "capwise sent no PCP request for the router to drop: {counters}"
        );
        let status = home.net_port_mapping(&mut agent)?;
        ensure!(
            status["protocol"] == "NAT-PMP",
            "capwise net does not say NAT-PMP mapped it: {status}"
        );
        let tcp = forwards
            .iter()
            .find(|f| f.protocol == "tcp")
            .context("no TCP forward")?;
        ensure!(
            home.wan_dials(tcp.external)?,
            "the WAN peer cannot reach capwise through {ROUTER_WAN_IP}:{} (NAT-PMP)",
            tcp.external
        );
        let status = agent.guard.stop(Duration::from_secs(15))?;
        ensure!(status.success(), "capwise did not stop cleanly: {status}");
        let left = home.topo.forwards()?;
        ensure!(
            left.is_empty(),
            "capwise exited and left its NAT-PMP mapping in miniupnpd: {left:?}"
        );
        Ok(())
    });
}

#[test]
fn metered_uplink_gets_no_mapping() {
    run_test("metered_uplink_gets_no_mapping", |home| {
        // A router that would map (both protocols are tried against it in
        // the tests above); the uplink is metered from the start.
        let _router = home.router(RouterProtocols::PcpNatPmp)?;
        home.write_network("yes")?;
        let mut agent = home.agent()?;
        let until = Instant::now() + METERED_WATCH;
        while Instant::now() < until {
            let f = home.topo.forwards()?;
            if !f.is_empty() {
                bail!("a metered uplink got a mapping: {f:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        ensure!(
            home.net_port_mapping(&mut agent)?.is_null(),
            "capwise net shows a mapping on a metered uplink"
        );
        ensure!(
            !home.wan_dials(PORT)?,
            "the WAN peer reaches capwise on a metered uplink"
        );
        let log = std::fs::read_to_string(home.logs.join("miniupnpd.stderr")).unwrap_or_default();
        ensure!(
            !log.contains("AddPortMapping")
                && !log.contains("PCP request")
                && !log.contains("NAT-PMP request"),
            "capwise asked the router on a metered uplink:\n{log}"
        );
        Ok(())
    });
}
