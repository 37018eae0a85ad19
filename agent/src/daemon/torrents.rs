//! The agent's torrents: the engine's handles plus what the user and the
//! policy decided for each (paused by the user; background work waiting on
//! a metered network), kept in step with the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use capwise_engine::metainfo::Metainfo;
use capwise_engine::session::{Session, TorrentHandle, TorrentOptions, TorrentState};
use capwise_policy::time::Timestamp;

use crate::api_types::TorrentView;
use crate::torrent_db::{hex, StoredTorrent, TorrentDb};

/// Why a request about torrents failed; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum TorrentError {
    /// No torrent has this id (or prefix).
    #[error("no torrent with id {0}")]
    NotFound(String),
    /// The prefix matches several torrents.
    #[error("id {0} matches several torrents; give more digits")]
    Ambiguous(String),
    /// Already added.
    #[error("torrent {0} is already added")]
    Duplicate(String),
    /// The request cannot be served as asked.
    #[error("{0}")]
    Invalid(String),
    /// Another process writes this torrent's data (its lock beside the data).
    #[error("{0}")]
    InUse(String),
    /// The engine or the database failed.
    #[error("{}", crate::commands::output::error_chain(.0))]
    Internal(anyhow::Error),
}

struct Entry {
    handle: TorrentHandle,
    download_dir: PathBuf,
    user_paused: bool,
    background: bool,
    /// Paused by the agent because background work waits now.
    waiting: bool,
    /// Held while the engine has the torrent: no other process writes its files.
    _data_lock: Option<crate::lock::Lock>,
}

/// Torrents by id.
pub struct Torrents {
    session: Session,
    db: Arc<TorrentDb>,
    entries: Mutex<HashMap<String, Entry>>,
    background_allowed: AtomicBool,
    /// The decision's sentence, shown as the reason a torrent waits.
    waiting_reason: Mutex<String>,
}

impl Torrents {
    /// Wraps a session; torrents come from [`Torrents::restore`] and [`Torrents::add`].
    pub fn new(session: Session, db: Arc<TorrentDb>, background_allowed: bool) -> Self {
        Torrents {
            session,
            db,
            entries: Mutex::new(HashMap::new()),
            background_allowed: AtomicBool::new(background_allowed),
            waiting_reason: Mutex::new(String::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// How many torrents are running or paused.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Opens a stored torrent in the engine (resume data trusted where files
    /// are unchanged). A torrent whose data cannot be opened is logged and
    /// skipped, not fatal: the others must still start.
    pub async fn restore(&self, stored: StoredTorrent) {
        let metainfo = match Metainfo::from_bytes(&stored.metainfo) {
            Ok(m) => m,
            Err(error) => {
                tracing::error!(id = %stored.id, %error, "stored torrent no longer parses; skipped");
                return;
            }
        };
        if let Err(error) = self
            .start(
                metainfo,
                stored.download_dir,
                stored.paused,
                stored.background,
            )
            .await
        {
            tracing::error!(id = %stored.id, name = %stored.name, error = %error, "cannot restore torrent");
        }
    }

    async fn start(
        &self,
        metainfo: Metainfo,
        download_dir: PathBuf,
        user_paused: bool,
        background: bool,
    ) -> Result<TorrentView, TorrentError> {
        let id = hex(&metainfo.info_hash.0);
        let waiting = background && !self.background_allowed.load(Ordering::Acquire);
        // The engine would create the directory anyway; the lock file goes in it.
        std::fs::create_dir_all(&download_dir).map_err(|e| {
            TorrentError::Invalid(format!("cannot create {}: {e}", download_dir.display()))
        })?;
        let data_lock = crate::lock::lock_data(&download_dir, &id, &metainfo.info.name, "run")
            .map_err(|e| TorrentError::InUse(crate::commands::output::error_chain(&e)))?;
        let handle = self
            .session
            .add_torrent(
                metainfo,
                download_dir.clone(),
                TorrentOptions {
                    paused: user_paused || waiting,
                },
            )
            .await
            .map_err(|e| TorrentError::Internal(anyhow::Error::new(e)))?;
        let entry = Entry {
            handle,
            download_dir,
            user_paused,
            background,
            waiting,
            _data_lock: data_lock,
        };
        let view = self.view(&id, &entry);
        self.entries().insert(id, entry);
        Ok(view)
    }

    /// Adds a torrent: stored first, so a crash right after still knows it.
    pub async fn add(
        &self,
        metainfo_bytes: Vec<u8>,
        download_dir: PathBuf,
        paused: bool,
        background: bool,
    ) -> Result<TorrentView, TorrentError> {
        let metainfo = Metainfo::from_bytes(&metainfo_bytes)
            .map_err(|e| TorrentError::Invalid(format!("not a usable torrent: {e}")))?;
        if !download_dir.is_absolute() {
            return Err(TorrentError::Invalid(format!(
                "download directory {} is not absolute",
                download_dir.display()
            )));
        }
        let id = hex(&metainfo.info_hash.0);
        if self.entries().contains_key(&id) {
            return Err(TorrentError::Duplicate(id));
        }
        std::fs::create_dir_all(&download_dir).map_err(|e| {
            TorrentError::Invalid(format!("cannot create {}: {e}", download_dir.display()))
        })?;
        let stored = StoredTorrent {
            id: id.clone(),
            name: metainfo.info.name.clone(),
            metainfo: metainfo_bytes,
            download_dir: download_dir.clone(),
            paused,
            background,
        };
        self.db
            .insert(&stored, Timestamp::now_from_system().0)
            .map_err(TorrentError::Internal)?;
        match self.start(metainfo, download_dir, paused, background).await {
            Ok(view) => {
                tracing::info!(%id, name = %view.name, "torrent added");
                Ok(view)
            }
            Err(e) => {
                let _ = self.db.remove(&id);
                Err(e)
            }
        }
    }

    /// Resolves a full id or a unique prefix of at least 4 hex digits;
    /// anything else is refused before it is looked up.
    fn resolve(&self, id_or_prefix: &str) -> Result<String, TorrentError> {
        let wanted = crate::api_types::torrent_id(id_or_prefix).map_err(TorrentError::Invalid)?;
        let entries = self.entries();
        if entries.contains_key(&wanted) {
            return Ok(wanted);
        }
        let mut matches = entries.keys().filter(|k| k.starts_with(&wanted));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one.clone()),
            (Some(_), Some(_)) => Err(TorrentError::Ambiguous(wanted)),
            _ => Err(TorrentError::NotFound(wanted)),
        }
    }

    /// Every torrent, by name.
    pub fn list(&self) -> Vec<TorrentView> {
        let entries = self.entries();
        let mut views: Vec<TorrentView> = entries.iter().map(|(id, e)| self.view(id, e)).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        views
    }

    /// One torrent.
    pub fn get(&self, id: &str) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        let entries = self.entries();
        let entry = entries
            .get(&id)
            .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
        Ok(self.view(&id, entry))
    }

    /// Pauses (or resumes) a torrent for the user; remembered across restarts.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        self.db
            .set_paused(&id, paused)
            .map_err(TorrentError::Internal)?;
        let handle = {
            let mut entries = self.entries();
            let entry = entries
                .get_mut(&id)
                .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
            entry.user_paused = paused;
            let run = !paused && !entry.waiting;
            (entry.handle.clone(), run)
        };
        match handle {
            (h, true) => h.resume().await,
            (h, false) => h.pause().await,
        }
        self.get(&id)
    }

    /// Removes a torrent, and its files if asked.
    pub async fn remove(&self, id: &str, delete_data: bool) -> Result<(), TorrentError> {
        let id = self.resolve(id)?;
        let info_hash = {
            let entries = self.entries();
            let entry = entries
                .get(&id)
                .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
            entry.handle.info_hash()
        };
        self.session
            .remove_torrent(info_hash, delete_data)
            .await
            .map_err(|e| TorrentError::Internal(anyhow::Error::new(e)))?;
        self.entries().remove(&id);
        self.db.remove(&id).map_err(TorrentError::Internal)?;
        tracing::info!(%id, delete_data, "torrent removed");
        Ok(())
    }

    /// Lets every torrent go after the session stopped: their data locks
    /// (and the lock files beside the data) are released.
    pub fn release_all(&self) {
        self.entries().clear();
    }

    /// Follows the policy: background torrents wait while background work
    /// is not allowed, and go on when it is again.
    pub async fn apply_background(&self, allowed: bool, reason: &str) {
        self.background_allowed.store(allowed, Ordering::Release);
        *self
            .waiting_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = reason.to_string();
        let changes: Vec<(TorrentHandle, bool)> = {
            let mut entries = self.entries();
            entries
                .values_mut()
                .filter(|e| e.background && e.waiting == allowed)
                .map(|e| {
                    e.waiting = !allowed;
                    (e.handle.clone(), allowed && !e.user_paused)
                })
                .collect()
        };
        for (handle, run) in changes {
            if run {
                handle.resume().await;
            } else {
                handle.pause().await;
            }
        }
    }

    fn view(&self, id: &str, entry: &Entry) -> TorrentView {
        let p = entry.handle.progress();
        let (state, reason) = if entry.user_paused {
            ("paused", None)
        } else if entry.waiting {
            let why = self
                .waiting_reason
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            ("waiting", Some(format!("background work waits: {why}")))
        } else {
            match &p.state {
                TorrentState::Checking => ("checking", None),
                TorrentState::Downloading => ("downloading", None),
                TorrentState::Seeding => ("seeding", None),
                TorrentState::Paused => ("paused", None),
                TorrentState::Error(e) => ("error", Some(e.clone())),
            }
        };
        TorrentView {
            id: id.to_string(),
            name: entry.handle.name().to_string(),
            state: state.into(),
            reason,
            bytes_have: p.bytes_have,
            total_length: p.total_length,
            pieces_have: p.pieces_have,
            piece_count: p.piece_count,
            peers: p.peers,
            download_rate: p.download_rate,
            upload_rate: p.upload_rate,
            downloaded: p.downloaded,
            uploaded: p.uploaded,
            download_dir: entry.download_dir.display().to_string(),
            background: entry.background,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_error_shows_its_os_message_once() {
        let engine = capwise_engine::Error::Io {
            path: PathBuf::from("/srv/ro/payload"),
            source: std::io::Error::from_raw_os_error(30),
        };
        let text = TorrentError::Internal(anyhow::Error::new(engine)).to_string();
        assert_eq!(text.matches("Read-only file system").count(), 1, "{text}");
        assert!(text.contains("/srv/ro/payload"), "{text}");
    }
}
