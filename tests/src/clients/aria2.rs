//! aria2c seeder/leecher: BitTorrent over TCP only, no LPD/PEX, no DHT but
//! in [`get_magnet`] when asked.

use crate::process::ChildGuard;
use anyhow::Result;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn command(name: &str, dir: &Path, port: u16, log_dir: &Path) -> Command {
    let mut c = base(name, dir, port, log_dir);
    c.arg("--enable-dht=false");
    c
}

fn base(name: &str, dir: &Path, port: u16, log_dir: &Path) -> Command {
    let mut c = Command::new("aria2c");
    c.args([
        "--no-conf=true",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
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
        "--max-overall-download-limit=0",
        "--bt-external-ip=127.0.0.1",
    ])
    .arg(format!("--listen-port={port}"))
    .arg(format!("--dir={}", dir.display()))
    .arg(format!(
        "--log={}",
        log_dir.join(format!("{name}.log")).display()
    ))
    .arg("--log-level=info");
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
    let mut c = command(name, dir, port, log_dir);
    c.args(["-V", "--seed-ratio=0.0", "--bt-seed-unverified=false"])
        .arg("-T")
        .arg(torrent);
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
    let mut c = command(name, dir, port, log_dir);
    c.args(["--seed-time=0"]).arg("-T").arg(torrent);
    ChildGuard::spawn(name, &mut c, log_dir)
}

/// aria2's DHT for [`get_magnet`].
#[derive(Debug, Clone)]
pub struct Aria2Dht {
    /// Its UDP port, on every address.
    pub port: u16,
    /// The node to join through.
    pub entry: SocketAddr,
    /// Where aria2 keeps its routing table.
    pub file: std::path::PathBuf,
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
    let mut c = match dht {
        None => command(name, dir, port, log_dir),
        Some(dht) => {
            let mut c = base(name, dir, port, log_dir);
            c.arg("--enable-dht=true")
                .arg(format!("--dht-listen-port={}", dht.port))
                .arg(format!("--dht-entry-point={}", dht.entry))
                .arg(format!("--dht-file-path={}", dht.file.display()));
            c
        }
    };
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
