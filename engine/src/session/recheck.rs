//! Data that vanished under a torrent. A file truncated or unreadable shows
//! when a block cannot be read to serve: the block is never sent, its piece
//! is forgotten, and the rest of the file's pieces are hashed again so that
//! only good ones are served. A file deleted outright stays readable through
//! our descriptor, so the driver looks for those periodically: their pieces
//! are forgotten and an empty file takes their place.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::picker::PeerKey;
use crate::wire::BlockRef;
use crate::Error;

use super::torrent::TorrentShared;

impl TorrentShared {
    /// Reading `block` to send it to `peer` failed or came back short.
    pub(crate) fn block_unreadable(
        self: &Arc<Self>,
        peer: PeerKey,
        block: BlockRef,
        error: &Error,
    ) {
        self.count_fault(crate::hooks::Counters::add_disk_error);
        let was_had = {
            let mut core = self.lock_core();
            let was_had = core.swarm.piece_lost(block.index);
            core.swarm.block_withheld(peer, block);
            self.dispatch(core);
            was_had
        };
        if !was_had {
            // Another block of the same piece got here first.
            return;
        }
        let files: Vec<usize> = self
            .storage
            .layout()
            .block(block.index, block.begin, u64::from(block.length))
            .map(|spans| spans.map(|s| s.file).collect())
            .unwrap_or_default();
        for &file in &files {
            let path = self
                .storage
                .file_path(file)
                .map(|p| p.display().to_string());
            tracing::warn!(
                torrent = %self.metainfo.info.name,
                file = path.as_deref().unwrap_or("?"),
                piece = block.index,
                error = %error,
                "data to serve is unreadable; re-checking the file"
            );
        }
        self.resume_dirty.store(true, Ordering::Relaxed);
        self.publish_now();
        for file in files {
            if self.rechecking.lock().expect("recheck lock").insert(file) {
                tokio::spawn(self.clone().recheck_file(file));
            }
        }
    }

    /// Hash the pieces of `file` we claim to have; forget those that fail.
    async fn recheck_file(self: Arc<Self>, file: usize) {
        let pieces: Vec<u32> = {
            let core = self.lock_core();
            self.storage
                .layout()
                .file_pieces(file)
                .unwrap_or(0..0)
                .filter(|&p| core.swarm.have().has(p))
                .collect()
        };
        let checked = match self.session.hashing.clone().acquire_owned().await {
            Ok(_permit) => {
                let storage = self.storage.clone();
                let list = pieces.clone();
                tokio::task::spawn_blocking(move || storage.verify_pieces(&list, 1))
                    .await
                    .map_err(|e| Error::Net(std::io::Error::other(e.to_string())))
                    .and_then(|r| r)
            }
            Err(_) => Err(Error::Net(std::io::Error::other("session closed"))),
        };
        let lost: Vec<u32> = match &checked {
            Ok(good) => pieces.iter().copied().filter(|&p| !good.has(p)).collect(),
            // Unreadable for another reason: serve none of it rather than guess.
            Err(_) => pieces.clone(),
        };
        if let Err(e) = &checked {
            tracing::warn!(error = %e, "re-check failed; treating the file's pieces as missing");
        }
        if !lost.is_empty() {
            let path = self
                .storage
                .file_path(file)
                .map(|p| p.display().to_string());
            tracing::warn!(
                torrent = %self.metainfo.info.name,
                file = path.as_deref().unwrap_or("?"),
                lost = lost.len(),
                kept = pieces.len() - lost.len(),
                "pieces missing on disk; downloading them again"
            );
            let mut core = self.lock_core();
            for p in lost {
                core.swarm.piece_lost(p);
            }
            self.dispatch(core);
            self.resume_dirty.store(true, Ordering::Relaxed);
            self.publish_now();
        }
        self.rechecking.lock().expect("recheck lock").remove(&file);
    }

    /// Forget the pieces of files deleted under us and start them afresh.
    pub(crate) async fn check_vanished(self: &Arc<Self>) {
        let storage = self.storage.clone();
        let Ok(gone) = tokio::task::spawn_blocking(move || storage.unlinked_files()).await else {
            return;
        };
        for file in gone {
            let path = self
                .storage
                .file_path(file)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            tracing::warn!(
                torrent = %self.metainfo.info.name,
                file = %path,
                "file deleted under the torrent; downloading it again"
            );
            // Forgotten first, so nothing reads the new, empty file as data.
            {
                let mut core = self.lock_core();
                for p in self.storage.layout().file_pieces(file).unwrap_or(0..0) {
                    core.swarm.piece_lost(p);
                }
                self.dispatch(core);
            }
            self.resume_dirty.store(true, Ordering::Relaxed);
            let storage = self.storage.clone();
            let recreated = tokio::task::spawn_blocking(move || storage.recreate_file(file)).await;
            match recreated {
                Ok(Ok(())) => self.publish_now(),
                Ok(Err(e)) => self.fail(format!("cannot recreate {path}: {e}"), None),
                Err(e) => self.fail(format!("cannot recreate {path}: {e}"), None),
            }
        }
    }
}
