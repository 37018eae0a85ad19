//! aria2c seeder/leecher: BitTorrent over TCP only; DHT, peer exchange and local peer discovery
//! (LPD, BEP 14) off unless [`Aria2Opts`] asks for them.

use crate::process::ChildGuard;
use anyhow::Result;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// aria2's DHT: on, joined through one node.
#[derive(Debug, Clone)]
pub struct Aria2Dht {
    /// Its UDP port, on every address.
    pub port: u16,
    /// The node to join through.
    pub entry: SocketAddr,
    /// Where aria2 keeps its routing table.
    pub file: PathBuf,
}

/// What an aria2 peer runs besides plain BitTorrent over TCP.
#[derive(Debug, Clone, Default)]
pub struct Aria2Opts {
    /// DHT on, as this says (none: off).
    pub dht: Option<Aria2Dht>,
    /// Peer exchange (ut_pex) on.
    pub pex: bool,
    /// Local peer discovery on this interface (none: off).
    pub lpd_interface: Option<String>,
    /// Bytes/s for the whole download; none: unlimited.
    pub download_limit: Option<u64>,
    /// The address aria2 reports to trackers; none: 127.0.0.1.
    pub external_ip: Option<IpAddr>,
    /// Encrypted connections only, RC4 (`--bt-require-crypto=true --bt-min-crypto-level=arc4`).
    pub require_crypto: bool,
}

fn command(name: &str, dir: &Path, port: u16, o: &Aria2Opts, log_dir: &Path) -> Command {
    let mut c = Command::new("aria2c");
    c.args([
        "--no-conf=true",
        "--enable-dht6=false",
        "--disable-ipv6=true",
        "--bt-save-metadata=false",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--file-allocation=none",
        "--console-log-level=notice",
        "--summary-interval=1",
        "--show-console-readout=false",
        "--bt-tracker-connect-timeout=5",
        "--bt-tracker-timeout=10",
        "--max-overall-upload-limit=0",
    ])
    .arg(format!("--listen-port={port}"))
    .arg(format!("--dir={}", dir.display()))
    .arg(format!(
        "--log={}",
        log_dir.join(format!("{name}.log")).display()
    ))
    .arg("--log-level=info")
    .arg(format!(
        "--bt-external-ip={}",
        o.external_ip.unwrap_or([127, 0, 0, 1].into())
    ))
    .arg(format!("--enable-peer-exchange={}", o.pex))
    .arg(format!(
        "--max-overall-download-limit={}",
        o.download_limit.unwrap_or(0)
    ));
    match &o.dht {
        None => {
            c.arg("--enable-dht=false");
        }
        Some(dht) => {
            c.arg("--enable-dht=true")
                .arg(format!("--dht-listen-port={}", dht.port))
                .arg(format!("--dht-entry-point={}", dht.entry))
                .arg(format!("--dht-file-path={}", dht.file.display()));
        }
    }
    if o.require_crypto {
        c.args(["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]);
    }
    match &o.lpd_interface {
        None => {
            c.arg("--bt-enable-lpd=false");
        }
        Some(ifname) => {
            c.arg("--bt-enable-lpd=true")
                .arg(format!("--bt-lpd-interface={ifname}"));
        }
    }
    c
}

/// The command line of an aria2 seeder of `torrent` whose data is in `dir` (verified first, -V),
/// for callers that wrap it (e.g. in `ip netns exec`).
pub fn seed_command(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    opts: &Aria2Opts,
    log_dir: &Path,
) -> Command {
    let mut c = command(name, dir, port, opts, log_dir);
    c.args(["-V", "--seed-ratio=0.0", "--bt-seed-unverified=false"])
        .arg("-T")
        .arg(torrent);
    c
}

/// Starts an aria2 seeder: verifies the data in `dir` (-V), then seeds until dropped.
pub fn seed(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    log_dir: &Path,
) -> Result<ChildGuard> {
    seed_with(name, torrent, dir, port, &Aria2Opts::default(), log_dir)
}

/// [`seed`] with `opts`.
pub fn seed_with(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    opts: &Aria2Opts,
    log_dir: &Path,
) -> Result<ChildGuard> {
    let mut c = seed_command(name, torrent, dir, port, opts, log_dir);
    ChildGuard::spawn(name, &mut c, log_dir)
}

/// Starts an aria2 leecher into `dir`; it exits 0 after the download completes (no seeding).
pub fn get(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    log_dir: &Path,
) -> Result<ChildGuard> {
    get_with(name, torrent, dir, port, &Aria2Opts::default(), log_dir)
}

/// [`get`] with `opts`.
pub fn get_with(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    opts: &Aria2Opts,
    log_dir: &Path,
) -> Result<ChildGuard> {
    let mut c = command(name, dir, port, opts, log_dir);
    c.args(["--seed-time=0"]).arg("-T").arg(torrent);
    ChildGuard::spawn(name, &mut c, log_dir)
}

/// Starts an aria2 leecher that knows only `magnet`: it fetches the
/// metadata from peers (BEP 9), downloads into `dir` and exits 0 when
/// done (no seeding). With `dht`, its DHT is on, as `dht` says.
pub fn get_magnet(
    name: &str,
    magnet: &str,
    dir: &Path,
    port: u16,
    dht: Option<&Aria2Dht>,
    log_dir: &Path,
) -> Result<ChildGuard> {
    let opts = Aria2Opts {
        dht: dht.cloned(),
        ..Aria2Opts::default()
    };
    let mut c = command(name, dir, port, &opts, log_dir);
    c.arg("--seed-time=0").arg(magnet);
    ChildGuard::spawn(name, &mut c, log_dir)
}

/// Verifies `dir` against `torrent` and exits (aria2 `--hash-check-only`): proves aria2 loads it.
pub fn hash_check(torrent: &Path, dir: &Path, log_dir: &Path) -> Result<String> {
    let mut c = Command::new("aria2c");
    c.args([
        "--no-conf=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--hash-check-only=true",
        "-V",
        "--show-console-readout=false",
    ])
    .arg(format!("--dir={}", dir.display()))
    .arg("-T")
    .arg(torrent);
    crate::process::run(
        "aria2-hash-check",
        &mut c,
        log_dir,
        Duration::from_secs(120),
    )
}
