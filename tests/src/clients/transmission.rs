//! transmission-daemon (foreground, own config dir) driven with transmission-remote.
//!
//! Transmission 3.00 never dials peers at 127.x: as a leecher here it only gets data from seeders
//! that dial it. As a seeder it accepts incoming connections.

use crate::ports::free_port;
use crate::process::{run, wait_until, ChildGuard};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A running transmission-daemon, killed on drop.
pub struct Transmission {
    pub peer_port: u16,
    pub rpc_port: u16,
    pub download_dir: PathBuf,
    log_dir: PathBuf,
    name: String,
    guard: ChildGuard,
    /// The network namespace it runs in (`ip netns exec`), if not ours.
    netns: Option<String>,
}

/// Where a [`Transmission`] runs, for [`Transmission::start_on`].
#[derive(Debug, Clone)]
pub struct Placement {
    /// A named network namespace to run in (its RPC too), or ours.
    pub netns: Option<String>,
    /// The peer listener's IPv4 address.
    pub bind_ipv4: std::net::Ipv4Addr,
    /// Local peer discovery (BEP 14).
    pub lpd: bool,
    /// DHT nodes to join through (IPv4 only); none: DHT off. Its DHT (jech's dht.c) drops
    /// packets from 127/8, so these must be on other addresses (namespaces the test made), and
    /// it announces only once it knows 9 nodes of which 4 answered: give at least 9.
    pub dht: Vec<std::net::SocketAddr>,
    /// uTP on (Transmission's own default; off here unless asked, so that the suites that are
    /// not about uTP run over TCP).
    pub utp: bool,
    /// settings.json `encryption`: 0 prefers plaintext, 1 prefers encryption, 2 requires it
    /// (only MSE/PE connections, both directions).
    pub encryption: u8,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            netns: None,
            bind_ipv4: std::net::Ipv4Addr::LOCALHOST,
            lpd: false,
            dht: Vec::new(),
            utp: false,
            encryption: 0,
        }
    }
}

fn settings_json(peer_port: u16, rpc_port: u16, download_dir: &Path, at: &Placement) -> String {
    // Plain-text JSON; paths here are temp dirs without quotes or backslashes.
    format!(
        r#"{{
    "bind-address-ipv4": "{bind}",
    "bind-address-ipv6": "::1",
    "blocklist-enabled": false,
    "cache-size-mb": 4,
    "dht-enabled": {dht},
    "download-dir": "{dl}",
    "download-queue-enabled": false,
    "encryption": {encryption},
    "idle-seeding-limit-enabled": false,
    "incomplete-dir-enabled": false,
    "lpd-enabled": {lpd},
    "message-level": 2,
    "peer-limit-global": 200,
    "peer-limit-per-torrent": 50,
    "peer-port": {peer_port},
    "peer-port-random-on-start": false,
    "pex-enabled": false,
    "port-forwarding-enabled": false,
    "queue-stalled-enabled": false,
    "ratio-limit-enabled": false,
    "rename-partial-files": false,
    "rpc-authentication-required": false,
    "rpc-bind-address": "127.0.0.1",
    "rpc-enabled": true,
    "rpc-host-whitelist-enabled": false,
    "rpc-port": {rpc_port},
    "rpc-whitelist": "127.0.0.1",
    "rpc-whitelist-enabled": true,
    "scrape-paused-torrents-enabled": false,
    "seed-queue-enabled": false,
    "speed-limit-down-enabled": false,
    "speed-limit-up-enabled": false,
    "alt-speed-enabled": false,
    "start-added-torrents": true,
    "trash-original-torrent-files": false,
    "umask": 18,
    "utp-enabled": {utp},
    "watch-dir-enabled": false
}}
"#,
        dl = download_dir.display(),
        bind = at.bind_ipv4,
        lpd = at.lpd,
        dht = !at.dht.is_empty(),
        utp = at.utp,
        encryption = at.encryption,
    )
}

/// A `dht.dat` that makes Transmission bootstrap from `nodes` (it pings them one by one, about
/// every 2 s) instead of dht.transmissionbt.com: a bencoded dict of a random node id and the
/// nodes in compact form.
fn dht_dat(nodes: &[std::net::SocketAddr]) -> Result<Vec<u8>> {
    let mut compact = Vec::with_capacity(nodes.len() * 6);
    for n in nodes {
        let std::net::SocketAddr::V4(v4) = n else {
            bail!("Transmission's dht.dat takes IPv4 nodes here, not {n}");
        };
        compact.extend_from_slice(&v4.ip().octets());
        compact.extend_from_slice(&v4.port().to_be_bytes());
    }
    let mut out = b"d2:id20:".to_vec();
    out.extend_from_slice(&rand::random::<[u8; 20]>());
    out.extend_from_slice(format!("5:nodes{}:", compact.len()).as_bytes());
    out.extend_from_slice(&compact);
    out.push(b'e');
    Ok(out)
}

impl Transmission {
    /// Starts `transmission-daemon -f` with a generated settings.json in `work/config`,
    /// peers on 127.0.0.1:`peer_port`, RPC on a free 127.0.0.1 port; waits for RPC.
    pub fn start(
        name: &str,
        work: &Path,
        download_dir: &Path,
        peer_port: u16,
        log_dir: &Path,
    ) -> Result<Self> {
        Self::start_on(
            name,
            work,
            download_dir,
            peer_port,
            log_dir,
            &Placement::default(),
        )
    }

    /// [`start`](Self::start) placed `at` a namespace and address, with LPD if asked.
    pub fn start_on(
        name: &str,
        work: &Path,
        download_dir: &Path,
        peer_port: u16,
        log_dir: &Path,
        at: &Placement,
    ) -> Result<Self> {
        let config = work.join("config");
        std::fs::create_dir_all(&config)?;
        std::fs::create_dir_all(download_dir)?;
        let rpc_port = free_port();
        std::fs::write(
            config.join("settings.json"),
            settings_json(peer_port, rpc_port, download_dir, at),
        )?;
        if !at.dht.is_empty() {
            std::fs::write(config.join("dht.dat"), dht_dat(&at.dht)?)?;
        }
        let mut cmd = Command::new("transmission-daemon");
        cmd.arg("-f")
            .arg("-g")
            .arg(&config)
            .arg("--log-info")
            .env("HOME", work)
            .env("TR_CURL_VERBOSE", "0");
        let mut cmd = match &at.netns {
            Some(ns) => crate::wan::netns_command(ns, &cmd),
            None => cmd,
        };
        let guard = ChildGuard::spawn(name, &mut cmd, log_dir)?;
        let mut t = Self {
            peer_port,
            rpc_port,
            download_dir: download_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            name: name.to_string(),
            guard,
            netns: at.netns.clone(),
        };
        wait_until(
            "transmission RPC",
            Duration::from_secs(20),
            Duration::from_millis(200),
            || {
                if let Some(s) = t.guard.try_wait()? {
                    bail!(
                        "transmission-daemon exited: {s}\n{}",
                        t.guard.log_tail(3000)
                    );
                }
                Ok(t.remote("probe", &["-l"]).is_ok())
            },
        )?;
        Ok(t)
    }

    /// Runs `transmission-remote 127.0.0.1:RPC ARGS...` (bounded), returns stdout.
    pub fn remote(&mut self, tag: &str, args: &[&str]) -> Result<String> {
        let mut c = Command::new("transmission-remote");
        c.arg(format!("127.0.0.1:{}", self.rpc_port)).args(args);
        if let Some(ns) = &self.netns {
            c = crate::wan::netns_command(ns, &c);
        }
        run(
            &format!("{}-remote-{tag}", self.name),
            &mut c,
            &self.log_dir,
            Duration::from_secs(20),
        )
    }

    /// Adds a .torrent (data expected in / downloaded to the download dir).
    pub fn add(&mut self, torrent: &Path) -> Result<()> {
        let t = torrent.to_str().context("torrent path not UTF-8")?;
        let out = self.remote("add", &["-a", t])?;
        if !out.contains("success") {
            bail!("transmission-remote -a: {out}");
        }
        Ok(())
    }

    /// Forces a re-verify of the (only) torrent.
    pub fn verify(&mut self) -> Result<()> {
        self.remote("verify", &["-t", "all", "-v"]).map(|_| ())
    }

    /// `transmission-remote -t all -i` output.
    pub fn info(&mut self) -> Result<String> {
        self.remote("info", &["-t", "all", "-i"])
    }

    /// (percent done, state) of the only torrent.
    pub fn status(&mut self) -> Result<(f64, String)> {
        let info = self.info()?;
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
        };
        let pct = field("Percent Done:")
            .context("no Percent Done in transmission info")?
            .trim_end_matches('%')
            .parse::<f64>()
            .context("bad Percent Done")?;
        let state = field("State:").unwrap_or_default();
        Ok((pct, state))
    }

    /// Waits until the torrent is 100% done and no longer verifying / downloading.
    pub fn wait_complete(&mut self, timeout: Duration) -> Result<()> {
        let mut last = (0.0, String::new());
        let r = wait_until(
            "transmission to complete",
            timeout,
            Duration::from_millis(500),
            || {
                if let Some(s) = self.guard.try_wait()? {
                    bail!("transmission-daemon exited: {s}");
                }
                last = self.status()?;
                Ok(last.0 >= 100.0
                    && !last.1.contains("Verif")
                    && !last.1.contains("Download")
                    && !last.1.contains("Will"))
            },
        );
        r.with_context(|| format!("last status {last:?}\n{}", self.guard.log_tail(3000)))
    }

    /// Starts a seeder: adds `torrent` whose data is already in the download dir, verifies it,
    /// and waits until it is 100% done.
    pub fn seed(&mut self, torrent: &Path, timeout: Duration) -> Result<()> {
        self.add(torrent)?;
        self.verify()?;
        self.wait_complete(timeout)
    }

    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }
}
