//! The watch folder (`watch_dir` in the config): a `.torrent` dropped there
//! is added once, to the agent's download directory, and then renamed
//! `NAME.torrent.added`; one that cannot be added is renamed
//! `NAME.torrent.invalid` and the log says why. Files already there when
//! the agent starts are taken too.
//!
//! Inotify (the `notify` crate) says when to look. A file is taken once it
//! is whole: its writer closed it (`IN_CLOSE_WRITE`) or it was renamed into
//! place, and then nothing changed for [`QUIET`]. A file found at start, or
//! whose close was not seen, is taken when its size and mtime have not
//! changed for [`QUIET`]; one still open for writing waits for its close,
//! or for [`STALLED`] without a change (a writer on another machine over
//! NFS is invisible to inotify). Without inotify the folder is scanned
//! every [`FALLBACK_POLL`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{TorrentError, Torrents};

/// How long a whole file must stay unchanged before it is read.
pub const QUIET: Duration = Duration::from_millis(300);
/// How long a file being written may stay unchanged before it is read anyway.
pub const STALLED: Duration = Duration::from_secs(30);
/// The scan period when inotify cannot be set up.
pub const FALLBACK_POLL: Duration = Duration::from_secs(2);
/// How often pending files are looked at.
const TICK: Duration = Duration::from_millis(100);
/// A bigger file is not a .torrent anyone made (the CLI's link limit too).
const MAX_BYTES: u64 = crate::commands::torrent_url::MAX_TORRENT_BYTES as u64;

/// A file seen, not yet taken.
#[derive(Debug)]
struct Pending {
    stamp: Option<(u64, SystemTime)>,
    changed: Instant,
    /// Seen created or written and not yet closed.
    writing: bool,
}

/// Whether `path` is a torrent to take (`x.torrent`, any case; not
/// `x.torrent.added`, not a hidden `.x.torrent` a tool is still writing).
fn is_candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.to_ascii_lowercase().ends_with(".torrent") && name.len() > 8
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::symlink_metadata(path).ok()?;
    m.is_file()
        .then(|| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
}

/// Watches `dir` and adds what is dropped there into `download_dir`, until
/// the task is aborted. The folder is created if missing.
pub fn follow(
    torrents: Arc<Torrents>,
    dir: PathBuf,
    download_dir: PathBuf,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), %error, "cannot create the watch folder; not watching it");
            return;
        }
        let (tx, mut events) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
        let mut folder = Folder {
            torrents,
            dir,
            download_dir,
            pending: HashMap::new(),
        };
        // Watching before the scan: a file dropped in between is not missed.
        folder.scan();
        let _watcher = match watcher {
            Ok(w) => {
                tracing::info!(dir = %folder.dir.display(), "watching for .torrent files");
                Some(w)
            }
            Err(error) => {
                tracing::warn!(dir = %folder.dir.display(), %error,
                    "cannot watch the folder with inotify; scanning it every {FALLBACK_POLL:?}");
                None
            }
        };
        let mut tick = tokio::time::interval(TICK);
        let mut last_scan = Instant::now();
        loop {
            tokio::select! {
                event = events.recv(), if _watcher.is_some() => match event {
                    Some(Ok(event)) => folder.note(&event),
                    Some(Err(error)) => {
                        // An overflowed queue loses events: look at everything.
                        tracing::warn!(%error, "watch folder event lost; scanning it");
                        folder.scan();
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if _watcher.is_none() && last_scan.elapsed() >= FALLBACK_POLL {
                        last_scan = Instant::now();
                        folder.scan();
                    }
                    folder.take_ready().await;
                }
            }
        }
    })
}

struct Folder {
    torrents: Arc<Torrents>,
    dir: PathBuf,
    download_dir: PathBuf,
    pending: HashMap<PathBuf, Pending>,
}

impl Folder {
    /// Every candidate in the folder becomes pending (a file already
    /// pending keeps what was seen of it).
    fn scan(&mut self) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot list the watch folder");
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if is_candidate(&path) {
                self.pending.entry(path.clone()).or_insert_with(|| Pending {
                    stamp: stamp(&path),
                    changed: Instant::now(),
                    writing: false,
                });
            }
        }
    }

    fn note(&mut self, event: &notify::Event) {
        let writing = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            EventKind::Modify(ModifyKind::Name(_)) => false,
            EventKind::Create(CreateKind::Folder) | EventKind::Remove(_) => return,
            EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => return,
            EventKind::Create(_) | EventKind::Modify(_) => true,
            _ => return,
        };
        for path in event.paths.iter().filter(|p| is_candidate(p)) {
            let p = self.pending.entry(path.clone()).or_insert(Pending {
                stamp: None,
                changed: Instant::now(),
                writing,
            });
            p.stamp = stamp(path);
            p.changed = Instant::now();
            p.writing = writing;
        }
    }

    /// Adds every pending file that is whole now.
    async fn take_ready(&mut self) {
        let now = Instant::now();
        let mut ready = Vec::new();
        self.pending.retain(|path, p| {
            let now_stamp = stamp(path);
            if now_stamp.is_none() {
                // Gone (renamed away, deleted): nothing to take.
                return false;
            }
            if now_stamp != p.stamp {
                p.stamp = now_stamp;
                p.changed = now;
                return true;
            }
            let quiet = now.duration_since(p.changed);
            if quiet >= if p.writing { STALLED } else { QUIET } {
                ready.push(path.clone());
                return false;
            }
            true
        });
        for path in ready {
            self.take(&path).await;
        }
    }

    async fn take(&self, path: &Path) {
        let outcome = match read_bounded(path) {
            Ok(bytes) => self
                .torrents
                .add(bytes, self.download_dir.clone(), false, false)
                .await
                .map(|view| (view.id, view.name)),
            Err(reason) => Err(TorrentError::Invalid(reason)),
        };
        let (suffix, result) = match outcome {
            Ok((id, name)) => {
                tracing::info!(file = %path.display(), %id, %name, "added from the watch folder");
                ("added", Ok(()))
            }
            Err(TorrentError::Duplicate(id)) => {
                tracing::info!(file = %path.display(), %id, "already added; the watch folder's copy is marked added");
                ("added", Ok(()))
            }
            Err(error) => ("invalid", Err(error.to_string())),
        };
        let mut renamed = path.as_os_str().to_owned();
        renamed.push(".");
        renamed.push(suffix);
        let renamed = PathBuf::from(renamed);
        if let Err(error) = &result {
            tracing::error!(file = %path.display(), %error, "cannot add the watch folder's torrent; renamed .invalid");
        }
        if let Err(error) = std::fs::rename(path, &renamed) {
            // Left in place it would be taken again at the next start: a
            // duplicate then, which is harmless.
            tracing::error!(file = %path.display(), %error, "cannot rename the watch folder's torrent");
        }
    }
}

/// The file's bytes, unless it is larger than any real .torrent.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(format!(
            "it is larger than {} MiB, which no .torrent is",
            MAX_BYTES >> 20
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_torrent_files_are_taken() {
        assert!(is_candidate(Path::new("/w/a.torrent")));
        assert!(is_candidate(Path::new("/w/A.TORRENT")));
        assert!(!is_candidate(Path::new("/w/a.torrent.added")));
        assert!(!is_candidate(Path::new("/w/a.torrent.invalid")));
        assert!(!is_candidate(Path::new("/w/.a.torrent")));
        assert!(!is_candidate(Path::new("/w/.torrent")));
        assert!(!is_candidate(Path::new("/w/a.torrent.part")));
    }
}
