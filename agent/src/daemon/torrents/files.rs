//! Which files of a torrent the user wants: globs given at add time
//! (`capwise add --only/--exclude`), priorities set later (`capwise files`)
//! and sequential mode. Kept in the agent's settings table under
//! `files:<info-hash>` (JSON), so a restart opens the torrent with the same
//! choice and skipped files stay off the disk.

use std::path::PathBuf;

use capwise_engine::priority::Priority;
use capwise_engine::session::{FileChoice, FileFilter};
use serde::{Deserialize, Serialize};

use super::{Source, TorrentError, Torrents};
use crate::api_types::{FileView, FilesChange, FilesView, TorrentView};
use crate::torrent_db::hex;

fn setting_key(id: &str) -> String {
    format!("files:{id}")
}

/// A torrent's file choice as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileSettings {
    /// Globs of files to download (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    /// Globs of files not to download.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// One word per file (`skip`, `normal`, `high`) once set; it wins over
    /// the globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<String>,
    /// Pieces in order, first and last of each file first.
    #[serde(default)]
    pub sequential: bool,
}

impl FileSettings {
    /// Whether this is the default (every file, rarest first): nothing to store.
    pub fn is_default(&self) -> bool {
        *self == FileSettings::default()
    }

    /// The engine's form; a bad glob or word is an `Invalid` error.
    pub fn choice(&self) -> Result<FileChoice, TorrentError> {
        let filter = if self.only.is_empty() && self.exclude.is_empty() {
            None
        } else {
            Some(
                FileFilter::new(&self.only, &self.exclude)
                    .map_err(|e| TorrentError::Invalid(e.to_string()))?,
            )
        };
        let priorities = self
            .priorities
            .iter()
            .map(|w| w.parse::<Priority>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TorrentError::Invalid(e.to_string()))?;
        Ok(FileChoice {
            priorities,
            filter,
            sequential: self.sequential,
        })
    }
}

impl Torrents {
    /// The stored choice of torrent `id` (the default when none, or when
    /// it no longer parses: then every file is downloaded, and the log says so).
    pub(super) fn file_settings(&self, id: &str) -> FileSettings {
        match self.db.setting(&setting_key(id)) {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|error| {
                tracing::error!(%id, %error, "stored file choice does not parse; downloading every file");
                FileSettings::default()
            }),
            Ok(None) => FileSettings::default(),
            Err(error) => {
                tracing::error!(%id, %error, "cannot read the torrent's file choice");
                FileSettings::default()
            }
        }
    }

    /// The engine's choice for torrent `id` as it starts.
    pub(super) fn file_choice(&self, id: &str) -> FileChoice {
        self.file_settings(id).choice().unwrap_or_else(|error| {
            tracing::error!(%id, %error, "stored file choice is invalid; downloading every file");
            FileChoice::default()
        })
    }

    fn store_file_settings(&self, id: &str, settings: &FileSettings) -> Result<(), TorrentError> {
        let text = (!settings.is_default())
            .then(|| serde_json::to_string(settings))
            .transpose()
            .map_err(|e| TorrentError::Internal(e.into()))?;
        self.db
            .set_setting(&setting_key(id), text.as_deref())
            .map_err(TorrentError::Internal)
    }

    /// Forgets a removed torrent's choice.
    pub(super) fn forget_file_settings(&self, id: &str) {
        if let Err(error) = self.db.set_setting(&setting_key(id), None) {
            tracing::warn!(%id, %error, "cannot forget the torrent's file choice");
        }
    }

    /// [`Torrents::add`] with a file choice (`capwise add --only`) and
    /// perhaps a membership token; the globs are checked before anything
    /// is stored.
    pub async fn add_choosing(
        self: &std::sync::Arc<Self>,
        metainfo_bytes: Vec<u8>,
        download_dir: PathBuf,
        (paused, background): (bool, bool),
        settings: FileSettings,
        token: Option<&capwise_engine::ext::member::MembershipKey>,
    ) -> Result<TorrentView, TorrentError> {
        settings.choice()?;
        let source = Source::parse(&metainfo_bytes).map_err(TorrentError::Invalid)?;
        let id = hex(&source.info_hash());
        if self.entries().contains_key(&id) {
            return Err(TorrentError::Duplicate(id));
        }
        self.store_file_settings(&id, &settings)?;
        let added = match token {
            Some(token) => {
                self.add_with_token(metainfo_bytes, download_dir, paused, background, token)
                    .await
            }
            None => {
                self.add(metainfo_bytes, download_dir, paused, background)
                    .await
            }
        };
        if added.is_err() {
            self.forget_file_settings(&id);
        }
        added
    }

    /// Torrent `id`'s files with their progress and priority.
    pub fn files(&self, id: &str) -> Result<FilesView, TorrentError> {
        let id = self.resolve(id)?;
        let handle = self.handle(&id)?;
        Ok(files_view(&id, &handle))
    }

    /// Applies `change` to torrent `id`'s files at once, and keeps it.
    pub async fn change_files(
        &self,
        id: &str,
        change: &FilesChange,
    ) -> Result<FilesView, TorrentError> {
        let id = self.resolve(id)?;
        let handle = self.handle(&id)?;
        let files = handle.files();
        if files.is_empty() {
            return Err(TorrentError::Invalid(
                "the torrent's file list is not known yet (its metadata is being fetched)".into(),
            ));
        }
        let mut priorities: Vec<Priority> = files.iter().map(|f| f.priority).collect();
        let mut set = |index: usize, p: Priority| -> Result<(), TorrentError> {
            let slot = priorities.get_mut(index).ok_or_else(|| {
                TorrentError::Invalid(format!(
                    "no file {index}: the torrent has files 0 to {}",
                    files.len() - 1
                ))
            })?;
            *slot = p;
            Ok(())
        };
        for &i in &change.skip {
            set(i, Priority::Skip)?;
        }
        for &i in &change.want {
            set(i, Priority::Normal)?;
        }
        for (i, word) in &change.priority {
            let p = word
                .parse::<Priority>()
                .map_err(|e| TorrentError::Invalid(e.to_string()))?;
            set(*i, p)?;
        }
        let sequential = change.sequential.unwrap_or_else(|| handle.is_sequential());
        handle
            .set_files(priorities.clone(), sequential)
            .await
            .map_err(|e| TorrentError::Invalid(e.to_string()))?;
        let mut settings = self.file_settings(&id);
        settings.priorities = priorities.iter().map(|p| p.as_str().to_string()).collect();
        settings.sequential = sequential;
        self.store_file_settings(&id, &settings)?;
        tracing::info!(%id, skipped = priorities.iter().filter(|p| !p.is_wanted()).count(), sequential, "file choice changed");
        Ok(files_view(&id, &handle))
    }

    fn handle(&self, id: &str) -> Result<capwise_engine::session::TorrentHandle, TorrentError> {
        self.entries()
            .get(id)
            .map(|e| e.handle.clone())
            .ok_or_else(|| TorrentError::NotFound(id.to_string()))
    }
}

fn files_view(id: &str, handle: &capwise_engine::session::TorrentHandle) -> FilesView {
    FilesView {
        id: id.to_string(),
        sequential: handle.is_sequential(),
        files: handle
            .files()
            .into_iter()
            .enumerate()
            .filter(|(_, f)| !f.pad)
            .map(|(index, f)| FileView {
                index,
                path: f.path,
                length: f.length,
                bytes_have: f.bytes_have,
                priority: f.priority.as_str().to_string(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_refuse_bad_globs() {
        let s = FileSettings {
            only: vec!["*.mkv".into()],
            sequential: true,
            ..FileSettings::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<FileSettings>(&text).unwrap(), s);
        assert!(s.choice().unwrap().filter.is_some());
        let bad = FileSettings {
            exclude: vec!["[unclosed".into()],
            ..FileSettings::default()
        };
        assert!(matches!(bad.choice(), Err(TorrentError::Invalid(_))));
        let bad = FileSettings {
            priorities: vec!["urgent".into()],
            ..FileSettings::default()
        };
        assert!(matches!(bad.choice(), Err(TorrentError::Invalid(_))));
        assert!(FileSettings::default().is_default());
    }
}
