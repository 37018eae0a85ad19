//! Announcing to trackers: `started`, periodic, `completed`, `stopped`, with
//! BEP 12 tiers; peers from each answer are dialled. Only while the torrent
//! is active (a pause sends `stopped`, resuming `started` again) and the WAN
//! switch is on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::class::PeerSource;
use crate::tracker::{self, AnnounceEvent, AnnounceRequest, TrackerTiers};

use super::control::RunState;
use super::handle::AnnounceOutcome;
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
        peer_id: shared.session.peer_id(),
        port: shared.session.local_addr.port(),
        uploaded,
        downloaded,
        left: shared.bytes_left(),
        event,
        num_want: Some(200),
        key: shared.announce_key,
    }
}

/// Waits until the run state satisfies `pred`; a dropped sender reads as stopped.
pub(crate) async fn until(
    run: &mut watch::Receiver<RunState>,
    pred: impl FnMut(&RunState) -> bool,
) -> RunState {
    match run.wait_for(pred).await {
        Ok(state) => *state,
        Err(_) => RunState::Stopped,
    }
}

/// Announce while the torrent is active, until it is removed or the session
/// shuts down. A pause tells the tracker `stopped`; the next active period
/// starts with `started` again.
pub(crate) async fn run(shared: Arc<TorrentShared>) {
    let mut tiers = TrackerTiers::new(shared.metainfo.trackers.clone());
    if tiers.is_empty() {
        return;
    }
    let mut shutdown = shared.session.shutdown.subscribe();
    let mut run = shared.run.subscribe();
    loop {
        let state = tokio::select! {
            s = until(&mut run, |s| *s != RunState::Paused) => s,
            _ = shutdown.recv() => return,
        };
        if state == RunState::Stopped {
            return;
        }
        tokio::select! {
            () = active_period(&shared, &mut tiers) => {}
            _ = until(&mut run, |s| *s != RunState::Active) => {}
            _ = shutdown.recv() => return,
        }
        if *run.borrow() == RunState::Stopped {
            // Removal tells the tracker itself, within its own time bound.
            return;
        }
        stopped(&shared).await;
    }
}

/// `started`, then periodic announces (and `completed` once) until cancelled.
async fn active_period(shared: &Arc<TorrentShared>, tiers: &mut TrackerTiers) {
    let mut event = AnnounceEvent::Started;
    let mut retry = RETRY_FIRST;
    let mut completed_sent = shared.is_complete();
    loop {
        if !shared.session.hooks.wan.is_on() {
            // Trackers are reached over the WAN; the next announce goes out
            // as soon as it is back on (the interval has likely passed).
            tracing::debug!(torrent = %shared.metainfo.info.name, "WAN off: announces wait");
            shared.session.hooks.wan.until_on().await;
        }
        let req = request(shared, event);
        let mut wait = None;
        let mut last_error = None;
        let urls: Vec<String> = tiers.urls().into_iter().map(str::to_owned).collect();
        for url in urls {
            let timeout = shared.session.config.tracker_timeout;
            let from = shared.session.bind_ip();
            match tracker::announce_from(&url, &req, timeout, from).await {
                Ok(resp) => {
                    note_outcome(
                        shared,
                        AnnounceOutcome::Answered {
                            at: SystemTime::now(),
                            peers: resp.peers.len(),
                        },
                    );
                    tiers.mark_success(&url);
                    *shared.last_tracker.lock().expect("tracker lock") = Some(url.clone());
                    shared.tracker_started.store(true, Ordering::Release);
                    if let Some(w) = &resp.warning {
                        tracing::warn!(tracker = %url, warning = %w, "tracker warning");
                    }
                    tracing::debug!(tracker = %url, peers = resp.peers.len(), "announced");
                    shared.connect_peers(&resp.peers, PeerSource::Tracker);
                    let floor = resp.min_interval.unwrap_or(MIN_INTERVAL).max(MIN_INTERVAL);
                    wait = Some(resp.interval.clamp(floor, MAX_INTERVAL.max(floor)));
                    retry = RETRY_FIRST;
                    break;
                }
                Err(e) => {
                    tracing::warn!(tracker = %url, error = %e, "announce failed");
                    last_error = Some(e.to_string());
                }
            }
        }
        if let (None, Some(error)) = (wait, last_error) {
            let since = match &*shared
                .announce_outcome
                .lock()
                .expect("announce outcome lock")
            {
                Some(AnnounceOutcome::Failed { since, .. }) => *since,
                _ => SystemTime::now(),
            };
            note_outcome(shared, AnnounceOutcome::Failed { since, error });
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
            _ = shared.reannounce.notified() => {}
        }
    }
}

fn note_outcome(shared: &TorrentShared, outcome: AnnounceOutcome) {
    *shared
        .announce_outcome
        .lock()
        .expect("announce outcome lock") = Some(outcome);
}

/// Tell the last tracker that answered that we leave, once per `started`;
/// bounded in time.
pub(crate) async fn stopped(shared: &TorrentShared) {
    if !shared.tracker_started.swap(false, Ordering::AcqRel) {
        return;
    }
    if !shared.session.hooks.wan.is_on() {
        // The tracker times us out instead.
        return;
    }
    let url = shared.last_tracker.lock().expect("tracker lock").clone();
    if let Some(url) = url {
        let req = request(shared, AnnounceEvent::Stopped);
        let from = shared.session.bind_ip();
        if let Err(e) = tracker::announce_from(&url, &req, Duration::from_secs(2), from).await {
            tracing::debug!(tracker = %url, error = %e, "stopped announce failed");
        }
    }
}
