//! `capwise move ID NEW_DIR`: a torrent's files go to another directory,
//! on the same file system (a rename each) or another (copy, fsync, then
//! remove), and the torrent goes on from there with its resume data (mtimes
//! are kept, so nothing is hashed again).
//!
//! Crash safety: before a file is touched, a journal (`move:<id>` in the
//! settings table: from, to) is stored. Each file's move is idempotent: a
//! copy is written under a hidden temporary name, synced, and only then
//! renamed to its own name, so a file under its name in the destination is
//! whole; the source goes after that. A killed agent finds the journal at
//! its next start ([`recover`], before the torrents are restored) and runs
//! the same moves again, which skip what is done: each file then exists
//! once, in the new place, and the stored directory says so. If the moves
//! cannot be finished (the destination is full or gone), they are run back
//! the other way and the torrent stays where it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Source, TorrentError, Torrents};
use crate::api_types::TorrentView;
use crate::torrent_db::TorrentDb;

const PREFIX: &str = "move:";

/// A move under way, as stored before any file is touched.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    from: PathBuf,
    to: PathBuf,
}

/// The paths, relative to the download directory, the torrent may have
/// there: each file (pad files are never created) and its parts file.
fn relative_paths(source: &Source, id: &str) -> Vec<PathBuf> {
    let Source::Torrent(m) = source else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = m
        .info
        .files
        .iter()
        .filter(|f| !f.pad && !f.path.is_empty())
        .map(|f| f.path.iter().collect())
        .collect();
    // The storage names it by the info-hash (`storage/parts.rs`).
    paths.push(PathBuf::from(format!(".{id}.parts")));
    paths
}

/// The hidden name a copy is written under until it is whole.
fn temporary(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    dst.with_file_name(format!(".{name}.capwise-move"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn crosses_devices(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error())
}

/// Moves one file; does nothing when it is already moved (or was never
/// created), and finishes a copy an interrupted run left whole.
fn move_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(src) else {
        return Ok(());
    };
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            src.display()
        )));
    }
    let parent = dst.parent().unwrap_or(Path::new("/"));
    if let Ok(d) = std::fs::symlink_metadata(dst) {
        if d.is_file() && d.len() == meta.len() && d.modified()? == meta.modified()? {
            // A copy appears under its own name only once synced: whole.
            return std::fs::remove_file(src);
        }
    }
    std::fs::create_dir_all(parent)?;
    match std::fs::rename(src, dst) {
        Ok(()) => return sync_dir(parent),
        Err(e) if crosses_devices(&e) => {}
        Err(e) => return Err(e),
    }
    let tmp = temporary(dst);
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(src, &tmp)?;
    let copy = std::fs::OpenOptions::new().write(true).open(&tmp)?;
    // The resume data's stamps are size and mtime: kept, nothing is re-hashed.
    copy.set_modified(meta.modified()?)?;
    copy.sync_all()?;
    drop(copy);
    std::fs::rename(&tmp, dst)?;
    sync_dir(parent)?;
    std::fs::remove_file(src)
}

/// Every file from `from` to `to`; then the directories left empty in
/// `from` go, and stale temporaries on both sides.
fn move_all(paths: &[PathBuf], from: &Path, to: &Path) -> std::io::Result<()> {
    for p in paths {
        let _ = std::fs::remove_file(temporary(&from.join(p)));
        move_file(&from.join(p), &to.join(p))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    }
    for p in paths {
        let _ = std::fs::remove_file(temporary(&to.join(p)));
        let mut dir = from.join(p);
        while dir.pop() && dir.starts_with(from) && dir != from {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// Whether the move can start: not there already, nothing of the torrent's
/// in the way at `to`, and room when it crosses file systems.
fn check(paths: &[PathBuf], from: &Path, to: &Path) -> Result<(), TorrentError> {
    use std::os::unix::fs::MetadataExt;
    let same_dir = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => from == to,
    };
    if same_dir {
        return Err(TorrentError::Invalid(format!(
            "the torrent's data is in {} already",
            to.display()
        )));
    }
    if let Some(p) = paths
        .iter()
        .find(|p| std::fs::symlink_metadata(to.join(p)).is_ok())
    {
        return Err(TorrentError::Invalid(format!(
            "{} already exists: move or remove it, or choose another directory",
            to.join(p).display()
        )));
    }
    let device = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    if device(from).is_some() && device(from) != device(to) {
        let needed: u64 = paths
            .iter()
            .filter_map(|p| std::fs::symlink_metadata(from.join(p)).ok())
            .map(|m| m.len())
            .sum();
        super::space::check_fits(needed, to)?;
    }
    Ok(())
}

fn key(id: &str) -> String {
    format!("{PREFIX}{id}")
}

fn save(db: &TorrentDb, id: &str, journal: Option<&Journal>) -> Result<(), TorrentError> {
    let text = journal
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| TorrentError::Internal(e.into()))?;
    db.set_setting(&key(id), text.as_deref())
        .map_err(TorrentError::Internal)
}

/// Runs the journal's moves; if they fail, runs them back. Returns where
/// the data is once done (and stores it), or an error when it is split.
fn settle(db: &TorrentDb, id: &str, paths: &[PathBuf], j: &Journal) -> Result<PathBuf, String> {
    let (dir, failed) = match move_all(paths, &j.from, &j.to) {
        Ok(()) => (j.to.clone(), None),
        Err(forward) => {
            tracing::error!(%id, error = %forward, to = %j.to.display(), "cannot move the torrent's data; moving it back");
            let back = Journal {
                from: j.to.clone(),
                to: j.from.clone(),
            };
            save(db, id, Some(&back)).map_err(|e| e.to_string())?;
            move_all(paths, &back.from, &back.to).map_err(|e| {
                format!(
                    "cannot move the data to {} ({forward}) nor back ({e}); \
                     the move is tried again at the next start",
                    j.to.display()
                )
            })?;
            (j.from.clone(), Some(forward))
        }
    };
    db.set_download_dir(id, &dir).map_err(|e| e.to_string())?;
    save(db, id, None).map_err(|e| e.to_string())?;
    match failed {
        None => Ok(dir),
        Some(e) => Err(format!(
            "cannot move the data to {}: {e}; it stays in {}",
            j.to.display(),
            j.from.display()
        )),
    }
}

/// Finishes (or undoes) every move a killed agent left: before the
/// torrents are restored, so each opens where its data is.
pub async fn recover(db: Arc<TorrentDb>) {
    let _ = tokio::task::spawn_blocking(move || {
        let journals = match db.settings_with_prefix(PREFIX) {
            Ok(j) => j,
            Err(error) => {
                tracing::error!(%error, "cannot read the move journals");
                return;
            }
        };
        let stored = db.torrents().unwrap_or_default();
        for (k, text) in journals {
            let id = &k[PREFIX.len()..];
            let (Ok(journal), Some(t)) = (
                serde_json::from_str::<Journal>(&text),
                stored.iter().find(|t| t.id == id),
            ) else {
                tracing::warn!(%id, "a move journal for no torrent (or unreadable); dropped");
                let _ = db.set_setting(&k, None);
                continue;
            };
            let Ok(source) = Source::parse(&t.metainfo) else {
                continue;
            };
            tracing::info!(%id, from = %journal.from.display(), to = %journal.to.display(), "finishing an interrupted move");
            match settle(&db, id, &relative_paths(&source, id), &journal) {
                Ok(dir) => {
                    tracing::info!(%id, dir = %dir.display(), "interrupted move finished");
                    // The killed agent's data lock in the old place: taken
                    // (so nobody holds it) and let go, which removes it.
                    let old = if dir == journal.to { &journal.from } else { &journal.to };
                    drop(crate::lock::lock_data(old, id, &t.name, "move"));
                }
                Err(error) => tracing::error!(%id, %error, "interrupted move"),
            }
        }
    })
    .await;
}

impl Torrents {
    /// Moves a torrent's data to `to` and goes on from there; answers once
    /// it is done. On failure the data is moved back and the torrent goes
    /// on where it was.
    pub async fn relocate(
        self: &Arc<Self>,
        id: &str,
        to: PathBuf,
    ) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        if !to.is_absolute() {
            return Err(TorrentError::Invalid(format!(
                "directory {} is not absolute",
                to.display()
            )));
        }
        let (stored, source) = self.stored(&id)?;
        let paths = relative_paths(&source, &id);
        // The totals as they stand, before the engine's counters start again.
        self.check_seeding(true).await;
        let (info_hash, from) = {
            let mut entries = self.entries();
            let entry = entries
                .get_mut(&id)
                .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
            if entry.moving {
                return Err(TorrentError::Invalid(format!(
                    "torrent {id} is being moved already"
                )));
            }
            if entry.rechecking {
                return Err(TorrentError::Invalid(format!(
                    "torrent {id} is being checked; move it once that is over"
                )));
            }
            entry.moving = true;
            (entry.handle.info_hash(), entry.download_dir.clone())
        };
        let unmark = |me: &Self| {
            if let Some(e) = me.entries().get_mut(&id) {
                e.moving = false;
            }
        };
        let journal = Journal {
            from: from.clone(),
            to: to.clone(),
        };
        let checked = {
            let (paths, from, to) = (paths.clone(), from.clone(), to.clone());
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&to).map_err(|e| {
                    TorrentError::Invalid(format!("cannot create {}: {e}", to.display()))
                })?;
                check(&paths, &from, &to)
            })
            .await
            .map_err(|e| TorrentError::Internal(e.into()))
            .and_then(|r| r)
        };
        if let Err(e) = checked.and_then(|()| save(&self.db, &id, Some(&journal))) {
            unmark(self);
            return Err(e);
        }
        tracing::info!(%id, from = %from.display(), to = %to.display(), "moving the torrent's data");
        if let Err(e) = self.session.release_torrent(info_hash).await {
            let _ = save(&self.db, &id, None);
            unmark(self);
            return Err(TorrentError::Internal(e.into()));
        }
        let db = self.db.clone();
        let settled = {
            let id = id.clone();
            tokio::task::spawn_blocking(move || settle(&db, &id, &paths, &journal))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        };
        let dir = match &settled {
            Ok(dir) => dir.clone(),
            Err(_) if self.db_dir(&id).as_deref() == Some(from.as_path()) => from.clone(),
            Err(e) => {
                // Split between both places: the journal stays for the next start.
                self.entries().remove(&id);
                return Err(TorrentError::Internal(anyhow::anyhow!("{e}")));
            }
        };
        // Its lifetime totals go along; the old entry (and its data lock,
        // on the old place) goes when the new one is inserted.
        let seeding = self.entries().get(&id).map(|e| e.seeding.clone());
        if let Some(seeding) = seeding {
            seeding.new_run();
            self.carry(
                &id,
                super::recheck::Carried {
                    data_lock: None,
                    seeding,
                },
            );
        }
        let started = self
            .start(source, dir, stored.paused, stored.background)
            .await;
        self.take_carried(&id);
        let view = started?;
        match settled {
            Ok(_) => {
                tracing::info!(%id, dir = %view.download_dir, "torrent moved");
                Ok(view)
            }
            Err(e) => Err(TorrentError::Invalid(e)),
        }
    }

    fn db_dir(&self, id: &str) -> Option<PathBuf> {
        self.db
            .torrents()
            .ok()?
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.download_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> Vec<PathBuf> {
        let paths: Vec<PathBuf> = ["t/a.bin", "t/sub/b.bin", "t/never.bin"]
            .iter()
            .map(PathBuf::from)
            .collect();
        std::fs::create_dir_all(dir.join("t/sub")).unwrap();
        std::fs::write(dir.join("t/a.bin"), vec![1u8; 3000]).unwrap();
        std::fs::write(dir.join("t/sub/b.bin"), vec![2u8; 5000]).unwrap();
        paths
    }

    #[test]
    fn a_move_is_idempotent_and_leaves_one_copy() {
        let root = tempfile::tempdir().unwrap();
        let (from, to) = (root.path().join("from"), root.path().join("to"));
        let paths = tree(&from);
        std::fs::write(from.join("t/mine.txt"), "not the torrent's").unwrap();
        let before = std::fs::metadata(from.join("t/a.bin"))
            .unwrap()
            .modified()
            .unwrap();
        // Half done: one file moved already, a stale temporary beside another.
        std::fs::create_dir_all(to.join("t")).unwrap();
        std::fs::rename(from.join("t/a.bin"), to.join("t/a.bin")).unwrap();
        std::fs::create_dir_all(to.join("t/sub")).unwrap();
        std::fs::write(temporary(&to.join("t/sub/b.bin")), b"half").unwrap();
        move_all(&paths, &from, &to).unwrap();
        move_all(&paths, &from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("t/a.bin")).unwrap(), vec![1u8; 3000]);
        assert_eq!(
            std::fs::read(to.join("t/sub/b.bin")).unwrap(),
            vec![2u8; 5000]
        );
        assert_eq!(
            std::fs::metadata(to.join("t/a.bin"))
                .unwrap()
                .modified()
                .unwrap(),
            before
        );
        assert!(!from.join("t/a.bin").exists() && !from.join("t/sub").exists());
        assert!(!temporary(&to.join("t/sub/b.bin")).exists());
        assert!(!to.join("t/never.bin").exists());
        // Not the torrent's: stays, and so does its directory.
        assert!(from.join("t/mine.txt").exists());
    }

    #[test]
    fn a_whole_copy_left_by_a_crash_is_kept_and_the_source_removed() {
        let root = tempfile::tempdir().unwrap();
        let (from, to) = (root.path().join("from"), root.path().join("to"));
        let paths = tree(&from);
        std::fs::create_dir_all(to.join("t")).unwrap();
        std::fs::copy(from.join("t/a.bin"), to.join("t/a.bin")).unwrap();
        let mtime = std::fs::metadata(from.join("t/a.bin"))
            .unwrap()
            .modified()
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(to.join("t/a.bin"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        move_file(&from.join("t/a.bin"), &to.join("t/a.bin")).unwrap();
        assert!(!from.join("t/a.bin").exists());
        assert_eq!(std::fs::read(to.join("t/a.bin")).unwrap(), vec![1u8; 3000]);
        let _ = paths;
    }

    #[test]
    fn a_move_onto_existing_files_or_into_place_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (from, to) = (root.path().join("from"), root.path().join("to"));
        let paths = tree(&from);
        let e = check(&paths, &from, &from).unwrap_err().to_string();
        assert!(e.contains("already"), "{e}");
        std::fs::create_dir_all(to.join("t")).unwrap();
        std::fs::write(to.join("t/a.bin"), b"someone else's").unwrap();
        let e = check(&paths, &from, &to).unwrap_err().to_string();
        assert!(e.contains("t/a.bin already exists"), "{e}");
    }
}
