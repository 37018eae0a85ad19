//! Steering one torrent: pause and resume, removal, and errors (a full disk
//! retried by itself, other errors held until the caller resumes).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use capwise_proto::torrent::{Fault, RunState};

use crate::storage;
use crate::{Error, Result};

use super::announce;
use super::torrent::TorrentShared;

impl TorrentShared {
    pub(crate) fn is_paused(&self) -> bool {
        self.lock_core().run_state() == RunState::Paused
    }

    /// Tell the torrent's tasks the core's run state.
    fn run_changed(&self) {
        let state = self.lock_core().run_state();
        self.run
            .send_if_modified(|s| std::mem::replace(s, state) != state);
    }

    /// Remember peers the caller named, to dial them again after a pause.
    pub(crate) fn remember_peers(&self, peers: &[SocketAddr]) {
        self.lock_core().remember_peers(peers);
    }

    fn redial(self: &Arc<Self>) {
        let peers = self.lock_core().manual_peers().to_vec();
        self.connect_peers(&peers, crate::class::PeerSource::Manual);
    }

    pub(crate) async fn pause(self: &Arc<Self>) {
        if !self.lock_core().pause() {
            return;
        }
        self.run_changed();
        tracing::info!(torrent = %self.metainfo.info.name, "paused");
        self.session.torrents_changed();
        // The announce task sees the change and tells the tracker `stopped`.
        self.close_links();
        self.resume_dirty.store(true, Ordering::Relaxed);
        self.save_resume_now().await;
        self.publish_now();
    }

    pub(crate) fn resume(self: &Arc<Self>) {
        let (resumed, had_fault) = self.lock_core().resume();
        if !had_fault && !resumed {
            return;
        }
        self.run_changed();
        tracing::info!(torrent = %self.metainfo.info.name, "resumed");
        self.session.torrents_changed();
        self.restart(resumed);
    }

    /// Back in the swarm after a pause (`announce` is sent by the announce
    /// task on its own) or an error (ask it for an announce now).
    fn restart(self: &Arc<Self>, after_pause: bool) {
        if !after_pause {
            self.announce_now();
        }
        self.redial();
        self.driver_wake.notify_one();
        self.publish_now();
    }

    /// Stop the torrent with an error a person can act on; other torrents go
    /// on. With `retry_at`, the driver clears it then by itself.
    pub(crate) fn fail(self: &Arc<Self>, message: String, retry_at: Option<Instant>) {
        tracing::error!(torrent = %self.metainfo.info.name, error = %message, "torrent stopped");
        self.lock_core().fail(Fault { message, retry_at });
        self.close_links();
        self.publish_now();
    }

    /// A verified piece could not be written. A full disk may clear up (the
    /// user deletes something): retry every `disk_full_retry`; anything else
    /// waits for the caller.
    pub(crate) fn write_failed(self: &Arc<Self>, index: u32, error: &Error) {
        self.count_fault(crate::hooks::Counters::add_disk_error);
        if storage::is_disk_full(error) {
            let every = self.session.config.disk_full_retry;
            self.fail(
                format!(
                    "disk full: cannot write to {} ({error}); retrying every {} s",
                    self.storage.root().display(),
                    every.as_secs()
                ),
                Some(Instant::now() + every),
            );
        } else {
            self.fail(format!("cannot write piece {index}: {error}"), None);
        }
    }

    /// Clear a fault whose retry time has come; the lost piece is simply
    /// downloaded again.
    pub(crate) fn retry_if_due(self: &Arc<Self>, now: Instant) {
        if self.lock_core().retry_if_due(now) {
            tracing::info!(torrent = %self.metainfo.info.name, "retrying after a full disk");
            self.restart(false);
        }
    }

    /// Take the torrent out of the session and keep its resume data: tasks
    /// end, trackers are told `stopped` (bounded), the files are synced and
    /// the resume data saved against their stamps, and nothing writes them
    /// afterwards.
    pub(crate) async fn release(self: &Arc<Self>) {
        self.lock_core().stop();
        self.run_changed();
        self.close_links();
        self.save_resume_now().await;
        announce::stopped(&**self).await;
        tracing::info!(torrent = %self.metainfo.info.name, "released");
    }

    /// Take the torrent out of the session: tasks end, trackers are told
    /// `stopped` (bounded), resume data is forgotten, and with `delete_data`
    /// the torrent's own files are deleted.
    pub(crate) async fn remove(self: &Arc<Self>, delete_data: bool) -> Result<()> {
        self.lock_core().stop();
        self.run_changed();
        self.close_links();
        let me = self.clone();
        let forgotten = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut removed = me.resume_removed.lock().unwrap_or_else(|e| e.into_inner());
            *removed = true;
            match &me.session.config.resume {
                Some(store) => store.remove(&me.info_hash),
                None => Ok(()),
            }
        })
        .await;
        match forgotten {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(torrent = %self.metainfo.info.name, error = %e, "cannot remove resume data")
            }
            Err(e) => tracing::warn!(error = %e, "resume removal task failed"),
        }
        announce::stopped(&**self).await;
        tracing::info!(torrent = %self.metainfo.info.name, delete_data, "removed");
        if !delete_data {
            return Ok(());
        }
        let storage = self.storage.clone();
        let deleted = tokio::task::spawn_blocking(move || storage.delete_files())
            .await
            .map_err(|e| Error::Net(std::io::Error::other(e.to_string())))??;
        for path in &deleted.skipped {
            tracing::warn!(path = %path.display(), "not a regular file; left in place");
        }
        tracing::info!(
            files = deleted.files.len(),
            dirs = deleted.dirs.len(),
            "deleted the torrent's data"
        );
        Ok(())
    }
}
