//! .torrent creation and inspection for tests via libtorrent (`tests/interop/make_torrent.py`),
//! so the harness does not depend on capwise's own `create`.

use crate::paths::{interop_script, PYTHON};
use crate::process::run;
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn parse_hash(out: &str) -> Result<String> {
    let h = out.lines().last().unwrap_or("").trim().to_string();
    if h.len() != 40 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("make_torrent.py printed no info-hash: {out:?}");
    }
    Ok(h)
}

/// Creates a v1 torrent of `path` (file or directory) at `out`; returns the info-hash (40-hex).
pub fn make_torrent(
    path: &Path,
    out: &Path,
    trackers: &[String],
    piece_size: u32,
    log_dir: &Path,
) -> Result<String> {
    make_torrent_with(path, out, trackers, piece_size, false, log_dir)
}

/// [`make_torrent`], with BEP 47 pad files aligning every file to a piece
/// when `pad_files` (libtorrent's `canonical_files`).
pub fn make_torrent_with(
    path: &Path,
    out: &Path,
    trackers: &[String],
    piece_size: u32,
    pad_files: bool,
    log_dir: &Path,
) -> Result<String> {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(interop_script("make_torrent.py"))
        .arg(path)
        .arg(out);
    if pad_files {
        cmd.arg("--pad-files");
    }
    for t in trackers {
        cmd.arg("--tracker").arg(t);
    }
    cmd.arg("--piece-size").arg(piece_size.to_string());
    parse_hash(&run(
        "make_torrent",
        &mut cmd,
        log_dir,
        Duration::from_secs(120),
    )?)
}

/// The v1 info-hash (40-hex) of a .torrent, as libtorrent reads it (errors if it cannot load it).
pub fn info_hash(torrent: &Path, log_dir: &Path) -> Result<String> {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(interop_script("make_torrent.py"))
        .arg("--info-hash")
        .arg(torrent);
    parse_hash(&run(
        "info_hash",
        &mut cmd,
        log_dir,
        Duration::from_secs(60),
    )?)
}
