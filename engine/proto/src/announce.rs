//! When a torrent announces to its trackers, and with which event:
//! `started` first, then as often as the tracker asks (clamped), back-off
//! after failures, `completed` once, `stopped` only to a tracker that was
//! told `started`.
//!
//! Sans-IO: the I/O layer asks what is due at `now`, sends the announce,
//! and reports the answer or the failure; it sleeps until
//! [`AnnounceSchedule::poll_timeout`].

use std::time::{Duration, Instant};

/// The `event` of an announce (BEP 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnnounceEvent {
    /// A regular periodic announce.
    #[default]
    None,
    /// The first announce of a download.
    Started,
    /// The download just completed (sent once, not when starting as a seed).
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

/// Never announce more often than this, whatever a tracker says.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Announce at least this often, whatever a tracker says.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The wait after a first failed announce; it doubles with each failure...
pub const RETRY_FIRST: Duration = Duration::from_secs(15);
/// ...up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// One torrent's announce schedule.
#[derive(Debug, Clone)]
pub struct AnnounceSchedule {
    /// In the swarm (started and not left).
    active: bool,
    /// An announce is out; its outcome sets the next one.
    in_flight: bool,
    /// Something asked for an announce now while one was out.
    again_now: bool,
    /// The event the next announce carries.
    event: AnnounceEvent,
    next_at: Option<Instant>,
    retry: Duration,
    completed_sent: bool,
    /// The tracker that last answered since `started`: it is told `stopped`.
    started_at_tracker: Option<String>,
}

impl AnnounceSchedule {
    /// Out of the swarm until [`AnnounceSchedule::start`]; `complete`: a
    /// seed from the start, which never sends `completed`.
    pub fn new(complete: bool) -> Self {
        Self {
            active: false,
            in_flight: false,
            again_now: false,
            event: AnnounceEvent::Started,
            next_at: None,
            retry: RETRY_FIRST,
            completed_sent: complete,
            started_at_tracker: None,
        }
    }

    /// A period in the swarm begins (the torrent starts or resumes): a
    /// `started` announce is due now.
    pub fn start(&mut self, now: Instant) {
        self.active = true;
        self.in_flight = false;
        self.again_now = false;
        self.event = AnnounceEvent::Started;
        self.retry = RETRY_FIRST;
        self.next_at = Some(now);
    }

    /// The period ends (a pause, a removal): nothing is due until the next
    /// start. The tracker to tell `stopped`, if one was told `started`.
    pub fn leave(&mut self) -> Option<String> {
        self.active = false;
        self.next_at = None;
        self.started_at_tracker.take()
    }

    /// When the next announce is due (`None`: out of the swarm, or one is out).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.active && !self.in_flight {
            self.next_at
        } else {
            None
        }
    }

    /// The event of an announce due at `now`, if one is; the caller
    /// announces and reports [`AnnounceSchedule::answered`] or
    /// [`AnnounceSchedule::failed`].
    pub fn due(&mut self, now: Instant) -> Option<AnnounceEvent> {
        if now < self.poll_timeout()? {
            return None;
        }
        self.in_flight = true;
        Some(std::mem::take(&mut self.event))
    }

    /// After an outcome: due at `at`, or now if asked for meanwhile.
    fn next(&mut self, now: Instant, at: Instant) {
        self.in_flight = false;
        let urgent = std::mem::take(&mut self.again_now) || self.event == AnnounceEvent::Completed;
        self.next_at = Some(if urgent { now } else { at });
    }

    /// `tracker` answered the announce: the next is due after its
    /// interval, clamped to [`MIN_INTERVAL`] (or its own higher minimum)
    /// and [`MAX_INTERVAL`].
    pub fn answered(
        &mut self,
        now: Instant,
        tracker: &str,
        interval: Duration,
        min_interval: Option<Duration>,
    ) {
        let floor = min_interval.unwrap_or(MIN_INTERVAL).max(MIN_INTERVAL);
        self.retry = RETRY_FIRST;
        if self.active {
            self.started_at_tracker = Some(tracker.to_owned());
        }
        self.next(now, now + interval.clamp(floor, MAX_INTERVAL.max(floor)));
    }

    /// No tracker answered the announce of `event`: try again after the
    /// back-off, which doubles up to [`RETRY_MAX`]. A lost `started` is
    /// sent again as `started`.
    pub fn failed(&mut self, now: Instant, event: AnnounceEvent) {
        if self.event == AnnounceEvent::None {
            self.event = event;
        }
        let at = now + self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
        self.next(now, at);
    }

    /// The download completed: `completed` is due now, once.
    pub fn completed(&mut self, now: Instant) {
        if std::mem::replace(&mut self.completed_sent, true) {
            return;
        }
        if self.event == AnnounceEvent::None {
            self.event = AnnounceEvent::Completed;
        }
        self.reannounce(now);
    }

    /// Announce now (an error cleared, the address changed), if in the swarm.
    pub fn reannounce(&mut self, now: Instant) {
        if self.in_flight {
            self.again_now = true;
        } else if self.active {
            self.next_at = Some(now);
        }
    }

    /// Whether some tracker was told `started` and not yet `stopped`.
    pub fn told_started(&self) -> bool {
        self.started_at_tracker.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn started_then_the_trackers_interval_clamped() {
        let t0 = Instant::now();
        let mut s = AnnounceSchedule::new(false);
        assert_eq!(s.poll_timeout(), None, "out of the swarm until started");
        assert_eq!(s.due(t0), None);
        s.start(t0);
        assert_eq!(s.due(t0), Some(AnnounceEvent::Started));
        assert_eq!(s.due(t0), None, "not again before the outcome");
        s.answered(t0, "http://t/a", S(5), None);
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + MIN_INTERVAL),
            "5 s is too often"
        );
        assert_eq!(s.due(t0 + S(29)), None);
        assert_eq!(s.due(t0 + S(30)), Some(AnnounceEvent::None));
        s.answered(t0 + S(30), "http://t/a", S(7200), None);
        assert_eq!(s.poll_timeout(), Some(t0 + S(30) + MAX_INTERVAL));
        s.reannounce(t0 + S(40));
        s.due(t0 + S(40));
        s.answered(t0 + S(40), "http://t/a", S(60), Some(S(120)));
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + S(160)),
            "the tracker's own minimum wins"
        );
    }

    #[test]
    fn failures_back_off_and_keep_a_lost_started() {
        let t0 = Instant::now();
        let mut s = AnnounceSchedule::new(false);
        s.start(t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let event = s.due(now).expect("due");
            assert_eq!(
                event,
                AnnounceEvent::Started,
                "a lost started is sent again"
            );
            s.failed(now, event);
            let next = s.poll_timeout().expect("retry");
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [15, 30, 60, 120, 240, 300, 300]);
        let event = s.due(now).expect("due");
        s.answered(now, "udp://t:1", S(1800), None);
        assert!(s.told_started());
        s.due(now + S(1800));
        s.failed(now + S(1800), AnnounceEvent::None);
        assert_eq!(
            s.poll_timeout(),
            Some(now + S(1800) + RETRY_FIRST),
            "an answer reset the back-off"
        );
        assert_eq!(event, AnnounceEvent::Started);
    }

    #[test]
    fn completed_once_at_once_and_not_for_a_seed() {
        let t0 = Instant::now();
        let mut s = AnnounceSchedule::new(false);
        s.start(t0);
        s.due(t0);
        s.answered(t0, "http://t/a", S(1800), None);
        s.completed(t0 + S(10));
        assert_eq!(s.due(t0 + S(10)), Some(AnnounceEvent::Completed));
        s.answered(t0 + S(10), "http://t/a", S(1800), None);
        s.completed(t0 + S(20));
        assert_eq!(s.due(t0 + S(20)), None, "completed is sent once");

        let mut seed = AnnounceSchedule::new(true);
        seed.start(t0);
        assert_eq!(seed.due(t0), Some(AnnounceEvent::Started));
        seed.answered(t0, "http://t/a", S(1800), None);
        seed.completed(t0 + S(1));
        assert_eq!(seed.due(t0 + S(1)), None, "a seed never completes");
    }

    #[test]
    fn what_is_asked_for_while_an_announce_is_out_follows_its_outcome() {
        let t0 = Instant::now();
        let mut s = AnnounceSchedule::new(false);
        s.start(t0);
        assert_eq!(s.due(t0), Some(AnnounceEvent::Started));
        s.completed(t0 + S(1));
        assert_eq!(s.poll_timeout(), None, "one announce at a time");
        s.answered(t0 + S(2), "http://t/a", S(1800), None);
        assert_eq!(s.due(t0 + S(2)), Some(AnnounceEvent::Completed));
        s.reannounce(t0 + S(3));
        s.failed(t0 + S(4), AnnounceEvent::Completed);
        assert_eq!(
            s.due(t0 + S(4)),
            Some(AnnounceEvent::Completed),
            "asked for meanwhile: now, not after the back-off"
        );
    }

    #[test]
    fn stopped_goes_only_to_a_tracker_told_started_and_a_pause_restarts() {
        let t0 = Instant::now();
        let mut s = AnnounceSchedule::new(false);
        s.start(t0);
        s.due(t0);
        s.failed(t0, AnnounceEvent::Started);
        assert_eq!(s.leave(), None, "nobody was told started");
        assert_eq!(s.poll_timeout(), None, "a pause announces nothing");
        s.reannounce(t0 + S(1));
        assert_eq!(s.poll_timeout(), None, "not even when asked to");
        s.completed(t0 + S(1));
        assert_eq!(s.poll_timeout(), None, "nor when it completes");
        s.start(t0 + S(2));
        assert_eq!(s.due(t0 + S(2)), Some(AnnounceEvent::Started));
        s.answered(t0 + S(2), "http://t/b", S(1800), None);
        assert_eq!(s.leave().as_deref(), Some("http://t/b"));
        assert_eq!(s.leave(), None, "stopped once per started");
    }
}
