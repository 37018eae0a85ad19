//! Announcing to trackers: `started`, periodic, `completed`, `stopped`, with
//! BEP 12 tiers; peers from each answer are dialled. Only while the torrent
//! is active (a pause sends `stopped`, resuming `started` again) and the WAN
//! switch is on. When is decided by the sans-IO
//! [`AnnounceSchedule`](capwise_proto::announce::AnnounceSchedule); this
//! task only sends and sleeps.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use capwise_proto::announce::AnnounceSchedule;
use capwise_proto::torrent::RunState;
use tokio::sync::{watch, Notify};

use crate::class::PeerSource;
use crate::tracker::{self, AnnounceEvent, AnnounceRequest, TrackerTiers};

use super::handle::AnnounceOutcome;
use super::torrent::TorrentShared;
use super::tracker_status::TrackerStatuses;
use super::SessionInner;

/// What the announce task needs from what it announces: a torrent, or a
/// magnet's metadata phase (which announces to the magnet's `tr=` trackers
/// until the torrent exists and takes over).
pub(crate) trait Announcer: Send + Sync + 'static {
    fn session(&self) -> &SessionInner;
    /// The trackers, tier by tier (BEP 12).
    fn tiers(&self) -> Vec<Vec<String>>;
    /// The announce to send for `event`.
    fn request(&self, event: AnnounceEvent) -> AnnounceRequest;
    /// Its schedule, under its owner's lock.
    fn schedule<R>(&self, f: impl FnOnce(&mut AnnounceSchedule) -> R) -> R;
    /// Its run state, watched.
    fn run_state(&self) -> watch::Receiver<RunState>;
    /// Told when the schedule may have changed (completed, reannounce, over).
    fn schedule_changed(&self) -> &Notify;
    /// Whether announcing is over for good (the metadata phase handed on).
    fn is_over(&self) -> bool;
    /// Peers a tracker returned.
    fn found(self: &Arc<Self>, peers: &[SocketAddr]);
    /// How the last announce went, for `status`.
    fn outcome(&self) -> &Mutex<Option<AnnounceOutcome>>;
    /// Each tracker's standing, for `capwise trackers`.
    fn statuses(&self) -> &TrackerStatuses;
}

impl Announcer for TorrentShared {
    fn session(&self) -> &SessionInner {
        &self.session
    }

    fn tiers(&self) -> Vec<Vec<String>> {
        self.metainfo.trackers.clone()
    }

    fn request(&self, event: AnnounceEvent) -> AnnounceRequest {
        let (uploaded, downloaded) = self.payload_totals();
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.session.peer_id(),
            port: self.session.local_addr.port(),
            uploaded,
            downloaded,
            left: self.bytes_left(),
            event,
            num_want: Some(200),
            key: self.announce_key,
        }
    }

    fn schedule<R>(&self, f: impl FnOnce(&mut AnnounceSchedule) -> R) -> R {
        f(&mut self.lock_core().announce)
    }

    fn run_state(&self) -> watch::Receiver<RunState> {
        self.run.subscribe()
    }

    fn schedule_changed(&self) -> &Notify {
        &self.reannounce
    }

    fn is_over(&self) -> bool {
        false
    }

    fn found(self: &Arc<Self>, peers: &[SocketAddr]) {
        self.connect_peers(peers, PeerSource::Tracker);
    }

    fn outcome(&self) -> &Mutex<Option<AnnounceOutcome>> {
        &self.announce_outcome
    }

    fn statuses(&self) -> &TrackerStatuses {
        &self.tracker_statuses
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

/// Announce while active, until removed, over, or the session shuts down.
/// A pause tells the tracker `stopped`; the next active period starts
/// with `started` again.
pub(crate) async fn run<A: Announcer>(target: Arc<A>) {
    let mut tiers = TrackerTiers::new(target.tiers());
    if tiers.is_empty() {
        return;
    }
    let mut shutdown = target.session().shutdown.subscribe();
    let mut run = target.run_state();
    loop {
        let state = tokio::select! {
            s = until(&mut run, |s| *s != RunState::Paused) => s,
            _ = shutdown.recv() => return,
        };
        if state == RunState::Stopped || target.is_over() {
            return;
        }
        target.schedule(|s| s.start(Instant::now()));
        tokio::select! {
            () = active_period(&target, &mut tiers) => {}
            _ = until(&mut run, |s| *s != RunState::Active) => {}
            _ = shutdown.recv() => return,
        }
        if *run.borrow() == RunState::Stopped || target.is_over() {
            // A removal tells the tracker itself, within its own time bound.
            return;
        }
        stopped(&*target).await;
    }
}

/// Announces as the schedule says, until cancelled or over.
async fn active_period<A: Announcer>(target: &Arc<A>, tiers: &mut TrackerTiers) {
    let session = target.session();
    loop {
        let event = loop {
            if target.is_over() {
                return;
            }
            let (event, next) = target.schedule(|s| (s.due(Instant::now()), s.poll_timeout()));
            if let Some(event) = event {
                break event;
            }
            tokio::select! {
                () = crate::deadline::sleep_until(next) => {}
                () = target.schedule_changed().notified() => {}
            }
        };
        if !session.hooks.wan.is_on() {
            // Trackers are reached over the WAN; the announce goes out as
            // soon as it is back on.
            tracing::debug!("WAN off: announces wait");
            session.hooks.wan.until_on().await;
        }
        let req = target.request(event);
        let mut answered = false;
        let mut last_error = None;
        let urls: Vec<String> = tiers.urls().into_iter().map(str::to_owned).collect();
        for url in urls {
            let timeout = session.config.tracker_timeout;
            match tracker::announce_from(&url, &req, timeout, session.egress()).await {
                Ok(resp) => {
                    *target.outcome().lock().expect("announce outcome lock") =
                        Some(AnnounceOutcome::Answered {
                            at: SystemTime::now(),
                            peers: resp.peers.len(),
                        });
                    tiers.mark_success(&url);
                    target.statuses().answered(&url, &resp);
                    if let Some(w) = &resp.warning {
                        tracing::warn!(tracker = %url, warning = %w, "tracker warning");
                    }
                    tracing::debug!(tracker = %url, peers = resp.peers.len(), ?event, "announced");
                    target.schedule(|s| {
                        s.answered(Instant::now(), &url, resp.interval, resp.min_interval)
                    });
                    target.found(&resp.peers);
                    answered = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(tracker = %url, error = %e, "announce failed");
                    target.statuses().failed(&url, &e.to_string());
                    last_error = Some(e.to_string());
                }
            }
        }
        if !answered {
            target.schedule(|s| s.failed(Instant::now(), event));
        }
        if let (false, Some(error)) = (answered, last_error) {
            let mut outcome = target.outcome().lock().expect("announce outcome lock");
            let since = match &*outcome {
                Some(AnnounceOutcome::Failed { since, .. }) => *since,
                _ => SystemTime::now(),
            };
            *outcome = Some(AnnounceOutcome::Failed { since, error });
        }
    }
}

/// Tell the last tracker that answered that we leave, once per `started`;
/// bounded in time.
pub(crate) async fn stopped<A: Announcer>(target: &A) {
    let Some(url) = target.schedule(|s| s.leave()) else {
        return;
    };
    let session = target.session();
    if !session.hooks.wan.is_on() {
        // The tracker times us out instead.
        return;
    }
    let req = target.request(AnnounceEvent::Stopped);
    let from = session.egress();
    if let Err(e) = tracker::announce_from(&url, &req, Duration::from_secs(2), from).await {
        tracing::debug!(tracker = %url, error = %e, "stopped announce failed");
    }
}
