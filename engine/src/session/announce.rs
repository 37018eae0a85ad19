//! Announcing to trackers: `started`, periodic, `completed`, `stopped`, with
//! BEP 12 tiers; peers from each answer are dialled.

use std::sync::Arc;
use std::time::Duration;

use crate::tracker::{self, AnnounceEvent, AnnounceRequest, TrackerTiers};

use super::torrent::TorrentShared;

/// Never announce more often than this, whatever a tracker says.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const RETRY_FIRST: Duration = Duration::from_secs(15);
const RETRY_MAX: Duration = Duration::from_secs(300);

pub(crate) fn request(shared: &TorrentShared, event: AnnounceEvent) -> AnnounceRequest {
    let (uploaded, downloaded) = shared.payload_totals();
    AnnounceRequest {
        info_hash: shared.info_hash,
        peer_id: shared.session.peer_id,
        port: shared.session.local_addr.port(),
        uploaded,
        downloaded,
        left: shared.bytes_left(),
        event,
        num_want: Some(200),
        key: shared.announce_key,
    }
}

/// Announce until shutdown; the last working tracker is returned so that
/// `stopped` goes to it.
pub(crate) async fn run(shared: Arc<TorrentShared>) {
    let mut tiers = TrackerTiers::new(shared.metainfo.trackers.clone());
    if tiers.is_empty() {
        return;
    }
    let mut shutdown = shared.session.shutdown.subscribe();
    let mut event = AnnounceEvent::Started;
    let mut retry = RETRY_FIRST;
    let mut completed_sent = shared.is_complete();
    loop {
        let req = request(&shared, event);
        let mut wait = None;
        let urls: Vec<String> = tiers.urls().into_iter().map(str::to_owned).collect();
        for url in urls {
            match tracker::announce(&url, &req, shared.session.config.tracker_timeout).await {
                Ok(resp) => {
                    tiers.mark_success(&url);
                    *shared.last_tracker.lock().expect("tracker lock") = Some(url.clone());
                    if let Some(w) = &resp.warning {
                        tracing::warn!(tracker = %url, warning = %w, "tracker warning");
                    }
                    tracing::debug!(tracker = %url, peers = resp.peers.len(), "announced");
                    shared.connect_peers(&resp.peers);
                    let floor = resp.min_interval.unwrap_or(MIN_INTERVAL).max(MIN_INTERVAL);
                    wait = Some(resp.interval.clamp(floor, MAX_INTERVAL.max(floor)));
                    retry = RETRY_FIRST;
                    break;
                }
                Err(e) => tracing::warn!(tracker = %url, error = %e, "announce failed"),
            }
        }
        let wait = wait.unwrap_or_else(|| {
            let w = retry;
            retry = (retry * 2).min(RETRY_MAX);
            w
        });
        event = AnnounceEvent::None;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.completed.notified(), if !completed_sent => {
                completed_sent = true;
                event = AnnounceEvent::Completed;
            }
            _ = shutdown.recv() => return,
        }
    }
}

/// Tell the last tracker that answered that we leave; bounded in time.
pub(crate) async fn stopped(shared: &TorrentShared) {
    let url = shared.last_tracker.lock().expect("tracker lock").clone();
    if let Some(url) = url {
        let req = request(shared, AnnounceEvent::Stopped);
        if let Err(e) = tracker::announce(&url, &req, Duration::from_secs(2)).await {
            tracing::debug!(tracker = %url, error = %e, "stopped announce failed");
        }
    }
}
