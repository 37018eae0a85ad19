//! `capwise recheck ID`: every piece of a torrent hashed again, as after a
//! crash without resume data. The torrent leaves the session (trackers
//! told, its resume data dropped) and starts again from its stored row,
//! which hashes all its data; meanwhile it stays listed as `checking`, and
//! it keeps its data lock (no other process may take the files between the
//! two runs) and its lifetime totals.

use std::sync::Arc;

use super::{seeding::Seeding, Source, TorrentError, Torrents};
use crate::api_types::TorrentView;

/// What a torrent started again keeps from its last run.
pub(super) struct Carried {
    pub(super) data_lock: Option<crate::lock::Lock>,
    pub(super) seeding: Arc<Seeding>,
}

impl Torrents {
    /// Keeps what torrent `id` takes into its next [`Torrents::start`].
    pub(super) fn carry(&self, id: &str, carried: Carried) {
        self.carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), carried);
    }

    /// What torrent `id` carries into its next start, if it is started again.
    pub(super) fn take_carried(&self, id: &str) -> Option<Carried> {
        self.carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Starts hashing torrent `id`'s data again; answers at once with the
    /// torrent `checking`. A magnet link whose metadata is not in has
    /// nothing on disk to check.
    pub async fn recheck(self: &Arc<Self>, id: &str) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        let (_, source) = self.stored(&id)?;
        if matches!(source, Source::Magnet(_)) {
            return Err(TorrentError::Invalid(
                "its metadata is not in yet: there is no data to check".into(),
            ));
        }
        // The totals as they stand, before the engine's counters start
        // again (while it is checked they are not counted).
        self.check_seeding(true).await;
        let (info_hash, download_dir, user_paused, background) = {
            let mut entries = self.entries();
            let entry = entries
                .get_mut(&id)
                .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
            if entry.rechecking {
                return Err(TorrentError::Invalid("it is being checked already".into()));
            }
            if entry.moving {
                return Err(TorrentError::Invalid("its data is being moved".into()));
            }
            entry.rechecking = true;
            let carried = Carried {
                data_lock: entry.data_lock.take(),
                seeding: entry.seeding.clone(),
            };
            self.carry(&id, carried);
            (
                entry.handle.info_hash(),
                entry.download_dir.clone(),
                entry.user_paused,
                entry.background,
            )
        };
        let removed = self.session.remove_torrent(info_hash, false).await;
        if removed.is_ok() {
            if let Some(c) = self
                .carried
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
            {
                c.seeding.new_run();
            }
        }
        if let Err(e) = removed {
            // Still in the session: it goes on as it was.
            if let Some(c) = self.take_carried(&id) {
                if let Some(entry) = self.entries().get_mut(&id) {
                    entry.data_lock = c.data_lock;
                    entry.rechecking = false;
                }
            }
            return Err(TorrentError::Internal(anyhow::Error::new(e)));
        }
        tracing::info!(%id, "checking all the torrent's data again");
        let view = self.get(&id)?;
        let me = self.clone();
        tokio::spawn(async move {
            match me
                .start(source, download_dir, user_paused, background)
                .await
            {
                Ok(view) => tracing::info!(
                    %id,
                    pieces_good = view.pieces_have,
                    pieces = view.piece_count,
                    "recheck done"
                ),
                Err(error) => {
                    // Out of the session: listed again after a restart, which retries.
                    me.entries().remove(&id);
                    me.take_carried(&id);
                    tracing::error!(%id, %error, "recheck: the torrent cannot start again");
                }
            }
        });
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use capwise_engine::create::{create_torrent, CreateOptions};

    use super::super::tests::{loopback_session, torrents_in};
    use super::*;

    /// While a recheck has the torrent out of the session, pause, resume,
    /// remove, another recheck and a move are refused with the reason;
    /// once it is over they work again. On one thread, the recheck's
    /// restart cannot run before the requests: nothing here races.
    #[tokio::test]
    async fn requests_during_a_recheck_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let torrents = torrents_in(loopback_session().await, dir.path());
        let data = dir.path().join("seeded.bin");
        std::fs::write(&data, vec![5u8; 1 << 20]).unwrap();
        let bytes = create_torrent(&CreateOptions {
            path: data,
            ..CreateOptions::default()
        })
        .unwrap();
        let added = torrents
            .add(bytes, dir.path().to_path_buf(), false, false)
            .await
            .unwrap();
        let checking = torrents.recheck(&added.id).await.unwrap();
        assert_eq!(checking.state, "checking");
        let said = |e: TorrentError| e.to_string();
        for refused in [
            said(torrents.set_paused(&added.id, true).await.unwrap_err()),
            said(torrents.set_paused(&added.id, false).await.unwrap_err()),
            said(torrents.remove(&added.id, true).await.unwrap_err()),
        ] {
            assert!(refused.contains("capwise recheck"), "{refused}");
        }
        let again = said(torrents.recheck(&added.id).await.unwrap_err());
        assert!(again.contains("being checked already"), "{again}");
        let moved = said(
            torrents
                .relocate(&added.id, dir.path().join("elsewhere"))
                .await
                .unwrap_err(),
        );
        assert!(moved.contains("checked"), "{moved}");
        assert!(dir.path().join("seeded.bin").exists());

        let deadline = Instant::now() + Duration::from_secs(30);
        while torrents.get(&added.id).unwrap().state != "seeding" {
            assert!(Instant::now() < deadline, "the recheck never ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let paused = torrents.set_paused(&added.id, true).await.unwrap();
        assert_eq!(paused.state, "paused");
        torrents.remove(&added.id, false).await.unwrap();
        assert!(torrents.list().is_empty());
    }
}
