//! libtorrent seeder/leecher via `tests/interop/lt_client.py` (Debian's python3-libtorrent).

use crate::paths::{interop_script, PYTHON};
use crate::process::ChildGuard;
use anyhow::Result;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Options for a libtorrent peer.
#[derive(Debug, Clone, Default)]
pub struct LtOpts {
    /// Peers to dial directly (besides those the tracker lists).
    pub peers: Vec<SocketAddr>,
    /// Bytes/s; None = unlimited.
    pub upload_limit: Option<u64>,
    pub download_limit: Option<u64>,
    /// Seeder: trust the data and skip the initial hash check.
    pub seed_mode: bool,
    /// Address to listen on; None = 127.0.0.1 (the port is the `port` argument).
    pub listen_ip: Option<std::net::IpAddr>,
    /// No peer exchange for the torrent (libtorrent's `disable_pex` flag).
    pub no_pex: bool,
    /// Seconds between progress lines; None = the script's default (1 s).
    pub progress_interval: Option<f64>,
    /// DHT on, joined through this node (none: DHT off).
    pub dht_bootstrap: Option<SocketAddr>,
    /// uTP in and out with TCP off (`--utp-only`); default: TCP only.
    pub utp_only: bool,
    /// Encryption forced in both directions, RC4 only (MSE/PE); otherwise plaintext only (an
    /// encrypted handshake is refused).
    pub rc4_only: bool,
}

fn command(mode: &str, torrent: &Path, dir: &Path, port: u16, o: &LtOpts) -> Command {
    let mut c = Command::new(PYTHON);
    c.arg(interop_script("lt_client.py"))
        .arg(mode)
        .arg(torrent)
        .arg(dir)
        .arg("--listen")
        .arg(SocketAddr::new(o.listen_ip.unwrap_or([127, 0, 0, 1].into()), port).to_string())
        // The script's own bound; the harness bounds its waits separately.
        .args(["--timeout", "600"]);
    for p in &o.peers {
        c.arg("--peer").arg(p.to_string());
    }
    if let Some(l) = o.upload_limit {
        c.arg("--upload-limit").arg(l.to_string());
    }
    if let Some(l) = o.download_limit {
        c.arg("--download-limit").arg(l.to_string());
    }
    if o.seed_mode {
        c.arg("--seed-mode");
    }
    if o.no_pex {
        c.arg("--no-pex");
    }
    if let Some(i) = o.progress_interval {
        c.arg("--progress-interval").arg(i.to_string());
    }
    if let Some(b) = o.dht_bootstrap {
        c.arg("--dht-bootstrap").arg(b.to_string());
    }
    if o.utp_only {
        c.arg("--utp-only");
    }
    if o.rc4_only {
        c.args(["--encryption", "forced"]);
    }
    c
}

/// A libtorrent DHT node and nothing else on `listen` (a private bootstrap
/// node), joined through `bootstrap` if given; runs until dropped. Returns
/// once it answers a KRPC ping, so that a node bootstrapping through it is
/// not left waiting for its retry.
pub fn dht_node(
    name: &str,
    listen: SocketAddr,
    bootstrap: Option<SocketAddr>,
    log_dir: &Path,
) -> Result<ChildGuard> {
    let mut c = dht_nodes_command(listen, 1, bootstrap);
    let node = ChildGuard::spawn(name, &mut c, log_dir)?;
    wait_dht_answers(name, listen)?;
    Ok(node)
}

/// The command line of `count` libtorrent DHT nodes in one process, on
/// `listen` and the next `count - 1` ports of its address, each introduced
/// to all the others (see [`dht_node_addrs`]); the first joins through
/// `bootstrap` if given. For callers that wrap it (e.g. in `ip netns exec`).
pub fn dht_nodes_command(listen: SocketAddr, count: u16, bootstrap: Option<SocketAddr>) -> Command {
    let opts = LtOpts {
        listen_ip: Some(listen.ip()),
        dht_bootstrap: bootstrap,
        ..LtOpts::default()
    };
    let mut c = command("dht", Path::new("-"), Path::new("-"), listen.port(), &opts);
    c.arg("--dht-nodes").arg(count.to_string());
    c
}

/// The addresses of the nodes [`dht_nodes_command`] starts.
pub fn dht_node_addrs(listen: SocketAddr, count: u16) -> Vec<SocketAddr> {
    (0..count)
        .map(|i| SocketAddr::new(listen.ip(), listen.port() + i))
        .collect()
}

/// Waits (at most 10 s) until the DHT node on `listen` answers a KRPC ping
/// sent from this thread's network namespace.
pub fn wait_dht_answers(name: &str, listen: SocketAddr) -> Result<()> {
    let probe = std::net::UdpSocket::bind((listen.ip(), 0))?;
    probe.set_read_timeout(Some(Duration::from_millis(100)))?;
    // Read-only (BEP 43): a probe that enters routing tables would be handed
    // out to lookups as a node that never answers again, and dht.c (Transmission)
    // waits for three retries before it announces past it.
    let ping = b"d1:ad2:id20:capwise-tests-probe!e1:q4:ping2:roi1e1:t2:pp1:y1:qe";
    crate::process::wait_until(
        &format!("{name} to answer a DHT ping"),
        Duration::from_secs(10),
        Duration::from_millis(10),
        || {
            probe.send_to(ping, listen)?;
            let mut buf = [0u8; 1500];
            Ok(probe
                .recv_from(&mut buf)
                .is_ok_and(|(n, from)| from == listen && buf[..n].starts_with(b"d")))
        },
    )
}

/// The `lt_client.py` command line (for callers that wrap it, e.g. in `ip netns exec`).
pub fn command_line(mode: &str, torrent: &Path, dir: &Path, port: u16, o: &LtOpts) -> Command {
    command(mode, torrent, dir, port, o)
}

/// One progress line of `lt_client.py`: CLOCK_MONOTONIC seconds and the payload counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LtProgress {
    pub mono: f64,
    pub payload_down: u64,
    pub payload_up: u64,
}

/// Every progress line (with payload counters) in a `lt_client.py` stdout.
pub fn parse_progress(stdout: &str) -> Vec<LtProgress> {
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(key)? + key.len();
        line[at..].split_whitespace().next()?.parse().ok()
    };
    stdout
        .lines()
        .filter(|l| l.contains(" progress "))
        .filter_map(|l| {
            Some(LtProgress {
                mono: l.split_whitespace().next()?.parse().ok()?,
                payload_down: field(l, "payload_down=")?,
                payload_up: field(l, "payload_up=")?,
            })
        })
        .collect()
}

/// The most peers with an RC4-encrypted connection (libtorrent's `rc4_encrypted` peer flag) that
/// any progress line of a `lt_client.py` stdout counts.
pub fn max_rc4_peers(stdout: &str) -> u32 {
    stdout
        .lines()
        .filter(|l| l.contains(" progress "))
        .filter_map(|l| {
            let at = l.find(" rc4_peers=")? + " rc4_peers=".len();
            l[at..].split_whitespace().next()?.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Starts a libtorrent seeder of `torrent` whose data is in `dir`; seeds until dropped.
pub fn seed(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    opts: &LtOpts,
    log_dir: &Path,
) -> Result<ChildGuard> {
    ChildGuard::spawn(
        name,
        &mut command("seed", torrent, dir, port, opts),
        log_dir,
    )
}

/// Starts a libtorrent leecher into `dir`; it exits 0 once everything is verified and on disk.
pub fn get(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    opts: &LtOpts,
    log_dir: &Path,
) -> Result<ChildGuard> {
    ChildGuard::spawn(name, &mut command("get", torrent, dir, port, opts), log_dir)
}

/// Waits for a leecher started with [`get`] to finish successfully.
pub fn wait_done(g: &mut ChildGuard, timeout: Duration) -> Result<()> {
    g.expect_success(timeout)
}
