//! The capwise binary (release build, `$CAPWISE_BIN`) driven through its CLI:
//!
//! ```text
//! capwise get TORRENT_OR_MAGNET [-d DIR] [--seed] [--upload-limit RATE] [--download-limit RATE]
//!             [--listen ADDR:PORT] [--state-dir DIR] [--no-lsd] [--encryption allow|prefer|require]
//! capwise seed TORRENT [-d DIR] [--listen ADDR:PORT] [--state-dir DIR] [--no-lsd] [--encryption ...]
//! ```
//!
//! Local service discovery is off (`--no-lsd`) unless [`CapwiseOpts::lsd`]
//! asks for it, so capwise processes sharing a segment in one test do not
//! find each other behind the test's back.
//!
//! ```text
//! capwise create PATH -o FILE.torrent [--tracker URL]... [--piece-size SIZE]
//! ```

use crate::paths::capwise_bin;
use crate::process::{run, ChildGuard};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Options shared by `get` and `seed`.
#[derive(Debug, Clone, Default)]
pub struct CapwiseOpts {
    /// e.g. "10M" or a byte count; passed through verbatim.
    pub upload_limit: Option<String>,
    pub download_limit: Option<String>,
    /// `get --seed`: keep seeding after the download completes.
    pub seed_after: bool,
    /// Extra arguments appended verbatim.
    pub extra: Vec<String>,
    /// Run local service discovery (default: `--no-lsd`).
    pub lsd: bool,
    /// DHT nodes to join through (`--dht-bootstrap`); none: `--no-dht`, so
    /// that no test asks the public routers.
    pub dht_bootstrap: Vec<std::net::SocketAddr>,
    /// `--encryption allow|prefer|require`; none: capwise's default (prefer).
    pub encryption: Option<String>,
}

/// Errors with a clear message when the capwise binary has not been built.
pub fn require_bin() -> Result<()> {
    let b = capwise_bin();
    if !b.is_file() {
        bail!(
            "capwise binary not found at {} (build it with `cargo build --release -p capwise`, \
             or set CAPWISE_BIN)",
            b.display()
        );
    }
    Ok(())
}

fn base(sub: &str, torrent: &Path, dir: &Path, port: u16, state_dir: &Path) -> Command {
    base_on(sub, torrent, dir, ([127, 0, 0, 1], port).into(), state_dir)
}

fn base_on(
    sub: &str,
    torrent: &Path,
    dir: &Path,
    listen: std::net::SocketAddr,
    state_dir: &Path,
) -> Command {
    let mut c = Command::new(capwise_bin());
    c.arg(sub)
        .arg(torrent)
        .arg("-d")
        .arg(dir)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--state-dir")
        .arg(state_dir)
        .env("RUST_BACKTRACE", "1")
        .env(
            "CAPWISE_LOG",
            std::env::var("CAPWISE_LOG").unwrap_or_else(|_| "info".into()),
        );
    c
}

fn apply(c: &mut Command, o: &CapwiseOpts) {
    if let Some(l) = &o.upload_limit {
        c.arg("--upload-limit").arg(l);
    }
    if let Some(l) = &o.download_limit {
        c.arg("--download-limit").arg(l);
    }
    if !o.lsd {
        c.arg("--no-lsd");
    }
    if o.dht_bootstrap.is_empty() {
        c.arg("--no-dht");
    }
    for b in &o.dht_bootstrap {
        c.arg("--dht-bootstrap").arg(b.to_string());
    }
    if let Some(e) = &o.encryption {
        c.arg("--encryption").arg(e);
    }
    c.args(&o.extra);
}

/// The command line of `capwise get|seed TORRENT -d DIR --listen LISTEN --state-dir STATE` plus
/// `opts` (`get --seed` if `opts.seed_after`), for callers that wrap it (e.g. in `ip netns exec`).
pub fn command_line(
    sub: &str,
    torrent: &Path,
    dir: &Path,
    listen: std::net::SocketAddr,
    state_dir: &Path,
    opts: &CapwiseOpts,
) -> Result<Command> {
    require_bin()?;
    let mut c = base_on(sub, torrent, dir, listen, state_dir);
    if sub == "get" && opts.seed_after {
        c.arg("--seed");
    }
    apply(&mut c, opts);
    Ok(c)
}

/// `capwise get TORRENT -d DIR --listen 127.0.0.1:PORT --state-dir STATE`; exits 0 once every piece
/// is verified (unless `seed_after`).
pub fn get(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    state_dir: &Path,
    opts: &CapwiseOpts,
    log_dir: &Path,
) -> Result<ChildGuard> {
    require_bin()?;
    let mut c = base("get", torrent, dir, port, state_dir);
    if opts.seed_after {
        c.arg("--seed");
    }
    apply(&mut c, opts);
    ChildGuard::spawn(name, &mut c, log_dir)
}

/// `capwise seed TORRENT -d DIR ...`: verifies the data, then seeds until SIGTERM.
pub fn seed(
    name: &str,
    torrent: &Path,
    dir: &Path,
    port: u16,
    state_dir: &Path,
    opts: &CapwiseOpts,
    log_dir: &Path,
) -> Result<ChildGuard> {
    require_bin()?;
    let mut c = base("seed", torrent, dir, port, state_dir);
    apply(&mut c, opts);
    ChildGuard::spawn(name, &mut c, log_dir)
}

/// Stops a seeding capwise with SIGTERM and requires a clean exit (status 0) within 15 s.
pub fn stop_clean(g: &mut ChildGuard) -> Result<()> {
    let s = g.stop(Duration::from_secs(15))?;
    if !s.success() {
        bail!(
            "capwise did not stop cleanly on SIGTERM: {s}\n{}",
            g.log_tail(3000)
        );
    }
    Ok(())
}

/// `capwise create PATH -o OUT [--tracker URL]... [--piece-size SIZE]` (bounded to 120 s).
pub fn create(
    path: &Path,
    out: &Path,
    trackers: &[String],
    piece_size: Option<u32>,
    log_dir: &Path,
) -> Result<()> {
    require_bin()?;
    let mut c = Command::new(capwise_bin());
    c.arg("create").arg(path).arg("-o").arg(out);
    for t in trackers {
        c.arg("--tracker").arg(t);
    }
    if let Some(p) = piece_size {
        c.arg("--piece-size").arg(p.to_string());
    }
    run("capwise-create", &mut c, log_dir, Duration::from_secs(120))?;
    if !out.is_file() {
        bail!("capwise create wrote no {}", out.display());
    }
    Ok(())
}
