//! What happens when a torrent completes: with `incomplete_dir`, its data
//! was downloaded there and now moves to its download directory (the move
//! of `capwise move`, journal included); with `on_complete`, a program runs
//! once, as argv (never through a shell) with the data's path and the
//! torrent's id appended, and `CAPWISE_TORRENT_ID`, `_NAME`, `_DIR` and
//! `_PATH` in its environment. Its output goes to the log; it is killed
//! after [`COMMAND_TIMEOUT`].
//!
//! A completion is a torrent seeding with more bytes downloaded (in this
//! run) than when it last seeded: a complete torrent restored at start is
//! not one, so a restart runs nothing again; wanting more files and
//! finishing them is another. One still in the incomplete directory when
//! it seeds (the agent stopped before it was moved) is moved then.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capwise_engine::session::{TorrentHandle, TorrentState};

use super::{Source, Torrents};

/// How long the on-completion program may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of its output kept for the log.
const OUTPUT_KEPT: usize = 4096;

/// The completion settings and which watcher is the current one per torrent.
#[derive(Debug, Default)]
pub struct Completion {
    /// `on_complete`: the program and its first arguments (empty: none).
    pub on_complete: Vec<String>,
    /// `incomplete_dir`: where data goes while downloading.
    pub incomplete_dir: Option<PathBuf>,
    generations: Mutex<HashMap<String, u64>>,
}

impl Completion {
    /// The settings.
    pub fn new(on_complete: Vec<String>, incomplete_dir: Option<PathBuf>) -> Self {
        Completion {
            on_complete,
            incomplete_dir,
            generations: Mutex::default(),
        }
    }

    fn enabled(&self) -> bool {
        !self.on_complete.is_empty() || self.incomplete_dir.is_some()
    }

    fn next_generation(&self, id: &str) -> u64 {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let n = g.entry(id.to_string()).or_default();
        *n += 1;
        *n
    }

    fn is_current(&self, id: &str, generation: u64) -> bool {
        let g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g.get(id) == Some(&generation)
    }
}

fn final_key(id: &str) -> String {
    format!("final_dir:{id}")
}

impl Torrents {
    /// The completion settings (`incomplete_dir`, `on_complete`).
    pub fn with_completion(mut self, completion: Completion) -> Self {
        self.completion = Arc::new(completion);
        self
    }

    /// Where a torrent being added starts: the incomplete directory (and
    /// `requested` is remembered as where it goes once complete), unless
    /// there is none or some of its files are in `requested` already (data
    /// to check and seed from where it is).
    pub(super) fn start_dir(&self, id: &str, source: &Source, requested: PathBuf) -> PathBuf {
        let _ = self.db.set_setting(&final_key(id), None);
        let Some(incomplete) = &self.completion.incomplete_dir else {
            return requested;
        };
        if let Source::Torrent(m) = source {
            let present = m.info.files.iter().filter(|f| !f.pad).any(|f| {
                let path = f.path.iter().fold(requested.clone(), |p, c| p.join(c));
                path.exists()
            });
            if present {
                return requested;
            }
        }
        match requested.to_str() {
            Some(dir) if self.db.set_setting(&final_key(id), Some(dir)).is_ok() => {
                incomplete.clone()
            }
            _ => requested,
        }
    }

    /// Watches a started torrent for its completion.
    pub(super) fn follow_completion(self: &Arc<Self>, id: String, mut handle: TorrentHandle) {
        if !self.completion.enabled() {
            return;
        }
        let generation = self.completion.next_generation(&id);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            // Bytes downloaded when it last seeded: a completion is seeding
            // with more (sampled states would miss a download that is over
            // between two looks). None until it first seeds.
            let mut done_at: Option<u64> = None;
            let started_at = handle.progress().downloaded;
            loop {
                let Some(torrents) = me.upgrade() else { return };
                if !torrents.completion.is_current(&id, generation)
                    || !torrents.entries().contains_key(&id)
                {
                    return;
                }
                let p = handle.progress();
                if p.state == TorrentState::Seeding && done_at.is_none_or(|d| p.downloaded > d) {
                    let downloaded = p.downloaded > done_at.unwrap_or(started_at);
                    if torrents.completed(&id, downloaded).await {
                        return;
                    }
                    done_at = Some(p.downloaded);
                }
                drop(torrents);
                tokio::select! {
                    _ = handle.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                // Progress changes many times a second while downloading;
                // a state change is seen within this.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// The torrent seeds: moved out of the incomplete directory if it is
    /// there, and the program run if it downloaded here. True when the
    /// torrent was moved (restarted: a new watcher follows it).
    async fn completed(self: &Arc<Self>, id: &str, downloaded: bool) -> bool {
        let goal = self
            .db
            .setting(&final_key(id))
            .ok()
            .flatten()
            .map(PathBuf::from);
        let mut moved = false;
        if let Some(goal) = goal {
            match self.relocate(id, goal.clone()).await {
                Ok(_) => {
                    let _ = self.db.set_setting(&final_key(id), None);
                    moved = true;
                }
                Err(error) => {
                    tracing::error!(%id, %error, to = %goal.display(), "cannot move the completed torrent out of the incomplete directory");
                    let _ = self.db.set_setting(&final_key(id), None);
                }
            }
        }
        if downloaded && !self.completion.on_complete.is_empty() {
            if let Some((name, dir)) = self
                .entries()
                .get(id)
                .map(|e| (e.handle.name(), e.download_dir.clone()))
            {
                tokio::spawn(run_command(
                    self.completion.on_complete.clone(),
                    id.to_string(),
                    name,
                    dir,
                ));
            }
        }
        moved
    }
}

/// Runs the on-completion program, bounded in time, its output logged.
async fn run_command(argv: Vec<String>, id: String, name: String, dir: PathBuf) {
    let path = dir.join(&name);
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .arg(&path)
        .arg(&id)
        .env("CAPWISE_TORRENT_ID", &id)
        .env("CAPWISE_TORRENT_NAME", &name)
        .env("CAPWISE_TORRENT_DIR", &dir)
        .env("CAPWISE_TORRENT_PATH", &path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%id, program = %argv[0], %error, "cannot run the on-completion command");
            return;
        }
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Err(_) => {
            tracing::error!(%id, program = %argv[0], "the on-completion command ran longer than {COMMAND_TIMEOUT:?}; killed")
        }
        Ok(Err(error)) => {
            tracing::error!(%id, program = %argv[0], %error, "the on-completion command failed")
        }
        Ok(Ok(out)) => {
            let text = |b: &[u8]| {
                let s = String::from_utf8_lossy(&b[b.len().saturating_sub(OUTPUT_KEPT)..]);
                s.trim_end().to_string()
            };
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            if out.status.success() {
                tracing::info!(%id, program = %argv[0], %stdout, %stderr, "on-completion command done");
            } else {
                tracing::warn!(%id, program = %argv[0], status = %out.status, %stdout, %stderr, "on-completion command failed");
            }
        }
    }
}
