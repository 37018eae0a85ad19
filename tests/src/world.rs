//! One test's world: a temp dir with logs, a payload under `seed/payload`, its .torrent, a tracker.
//!
//! The interop, uTP and encryption suites each set one up per test through [`World::run`]; what
//! differs between them is a [`WorldSpec`]. `CAPWISE_KEEP_TMP=1` keeps a failing test's temp dir
//! (and logs), `CAPWISE_KEEP_TMP=always` every test's.

use crate::netns::assert_private_netns;
use crate::payload::{assert_same_tree, make_tree};
use crate::process::{dump_logs, wait_until};
use crate::torrent::make_torrent_with;
use crate::tracker::{announce_url, reserve_port, Tracker};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The payload's name: its directory under `seed/` and under every participant's dir.
pub const NAME: &str = "payload";
/// The torrent's piece size.
pub const PIECE: u32 = 256 * 1024;
/// How long the downloaded bytes may take to match after a client says it is done (disk flushes).
const FLUSH: Duration = Duration::from_secs(20);

/// What one suite's worlds are made of.
#[derive(Debug, Clone, Copy)]
pub struct WorldSpec<'a> {
    /// Names the temp dir (`capwise-{suite}-…`) and tags the log lines (`[suite]`).
    pub suite: &'a str,
    /// The payload's files: path under the payload dir and size in bytes.
    pub files: &'a [(&'a str, u64)],
    /// Seed of the pseudo-random file contents.
    pub tree_seed: u64,
    /// Make the torrent with BEP 47 pad files.
    pub pad_files: bool,
    /// Bound for waiting on the tracker's swarm counts.
    pub wait: Duration,
}

/// One test's world (see the module docs). Removed with its temp dir on drop unless kept.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub logs: PathBuf,
    /// The seeders' download dir: holds the payload as [`NAME`].
    pub seed_dir: PathBuf,
    pub torrent: PathBuf,
    /// The torrent's v1 info-hash, 40 hex digits.
    pub hash: String,
    /// The tracker's announce URL, as in the torrent.
    pub announce: String,
    pub tracker: Tracker,
    wait: Duration,
}

impl World {
    /// Builds the payload, the torrent and a tracker that whitelists it.
    pub fn new(spec: &WorldSpec) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("capwise-{}-", spec.suite))
            .tempdir()?;
        let logs = tmp.path().join("logs");
        let seed_dir = tmp.path().join("seed");
        make_tree(&seed_dir.join(NAME), spec.files, spec.tree_seed)?;
        let port = reserve_port();
        let announce = announce_url(port);
        let torrent = tmp.path().join("payload.torrent");
        let hash = make_torrent_with(
            &seed_dir.join(NAME),
            &torrent,
            std::slice::from_ref(&announce),
            PIECE,
            spec.pad_files,
            &logs,
        )?;
        let tracker = Tracker::start(
            port,
            std::slice::from_ref(&hash),
            &tmp.path().join("tracker"),
            &logs,
        )?;
        Ok(Self {
            tmp,
            logs,
            seed_dir,
            torrent,
            hash,
            announce,
            tracker,
            wait: spec.wait,
        })
    }

    /// Runs one test body with a fresh world inside a private netns; on error dumps every log
    /// (but the remote-client chatter) and panics.
    pub fn run(spec: &WorldSpec, test: &str, body: impl FnOnce(&World) -> Result<()>) {
        assert_private_netns();
        let tag = spec.suite;
        let t0 = Instant::now();
        let world = World::new(spec).expect("test setup (payload, torrent, tracker)");
        let setup = t0.elapsed();
        let r = body(&world);
        let total = t0.elapsed();
        let keep = std::env::var_os("CAPWISE_KEEP_TMP");
        match r {
            Ok(()) => {
                eprintln!(
                    "[{tag}] {test}: ok in {:.1}s (setup {:.1}s)",
                    total.as_secs_f64(),
                    setup.as_secs_f64()
                );
                if keep.is_some_and(|v| v == "always") {
                    eprintln!("[{tag}] kept {}", world.tmp.keep().display());
                }
            }
            Err(e) => {
                world.dump_logs();
                if keep.is_some() {
                    eprintln!("[{tag}] kept {}", world.tmp.keep().display());
                }
                panic!(
                    "[{tag}] {test} failed after {:.1}s: {e:#}",
                    total.as_secs_f64()
                );
            }
        }
    }

    /// The torrent's magnet link: its info-hash, name and tracker only.
    pub fn magnet(&self) -> String {
        let mut m = capwise_engine::magnet::Magnet::new(
            capwise_engine::metainfo::InfoHash::from_hex(&self.hash).expect("hex info-hash"),
        );
        m.display_name = Some(NAME.into());
        m.trackers = vec![self.announce.clone()];
        m.to_uri()
    }

    /// A fresh directory for one participant.
    pub fn dir(&self, who: &str) -> PathBuf {
        let d = self.tmp.path().join(who);
        std::fs::create_dir_all(&d).expect("create participant dir");
        d
    }

    /// The original payload.
    pub fn source(&self) -> PathBuf {
        self.seed_dir.join(NAME)
    }

    /// The payload in `dir` equals the original byte for byte (allowing 20 s for disk flushes).
    pub fn verify(&self, dir: &Path) -> Result<()> {
        let (src, got) = (self.source(), dir.join(NAME));
        let mut last = None;
        wait_until(
            "downloaded bytes to match",
            FLUSH,
            Duration::from_millis(500),
            || match assert_same_tree(&src, &got) {
                Ok(()) => Ok(true),
                Err(e) => {
                    last = Some(format!("{e:#}"));
                    Ok(false)
                }
            },
        )
        .with_context(|| last.unwrap_or_default())
    }

    /// Waits until the tracker lists at least this many seeders and leechers.
    pub fn wait_tracker(&self, seeders: u64, leechers: u64) -> Result<()> {
        self.tracker
            .wait_swarm(&self.hash, seeders, leechers, self.wait)
    }

    /// Prints every log of this world but the remote-client chatter (`-remote-`).
    pub fn dump_logs(&self) {
        dump_logs(&self.logs, Some("-remote-"));
    }
}
