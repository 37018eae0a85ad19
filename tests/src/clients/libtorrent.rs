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
}

fn command(mode: &str, torrent: &Path, dir: &Path, port: u16, o: &LtOpts) -> Command {
    let mut c = Command::new(PYTHON);
    c.arg(interop_script("lt_client.py"))
        .arg(mode)
        .arg(torrent)
        .arg(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
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
    c
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
