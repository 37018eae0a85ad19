//! One web seed's state machine: how many requests it may have under way,
//! when the next may start, and when to give up on it. `now` comes from
//! the caller; nothing here sleeps.
//!
//! A request is *reserved* ([`WebSeed::try_reserve`]) before the caller
//! picks pieces and waits at its byte gate, and *begun* ([`WebSeed::begin`])
//! when it is sent: its time-out runs from then, so a long wait at a
//! throttled gate never times a request out (the peers' rule too).

use std::time::{Duration, Instant};

/// Tunables of one web seed.
#[derive(Debug, Clone)]
pub struct SeedConfig {
    /// Requests under way at once (HTTP/1.1 connections to the seed).
    pub connections: usize,
    /// The most bytes one request (a run of whole pieces) asks for: the
    /// request pipeline of one connection.
    pub max_request_bytes: u64,
    /// Time for a request to begin answering, on top of its length at `min_rate`.
    pub request_timeout: Duration,
    /// Slowest rate (bytes/s) a request may move at before it times out.
    pub min_rate: u64,
    /// First pause after a failure; doubled per failure in a row...
    pub backoff_initial: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this is cut to it.
    pub max_retry_after: Duration,
    /// Failed requests in a row (errors, time-outs) after which the seed is dropped.
    pub max_failures: u32,
    /// Busy answers (503, 429) in a row after which the seed is dropped.
    pub max_busy: u32,
    /// Pieces failing their hash check after which the seed is dropped.
    pub max_bad_pieces: u32,
}

impl Default for SeedConfig {
    fn default() -> Self {
        Self {
            connections: 2,
            max_request_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            min_rate: 4 * 1024,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(3600),
            max_failures: 6,
            max_busy: 30,
            max_bad_pieces: 3,
        }
    }
}

/// A request of this seed, from reservation to its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every byte asked for arrived.
    Done,
    /// The server said it is busy (503 or 429), maybe with `Retry-After`.
    Busy {
        /// `Retry-After` in seconds, if it gave one.
        retry_after: Option<Duration>,
    },
    /// An error: a status other than 200/206, a refused connection, a short
    /// or overlong body, a range the server did not honour.
    Failed(String),
    /// No whole answer before the deadline [`WebSeed::begin`] gave.
    TimedOut,
    /// Ended by us (a pause, the WAN switch, shutdown): not the seed's fault.
    Aborted,
}

/// Where a seed stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedState {
    /// May start a request when a connection is free.
    Ready,
    /// Backing off (or told to wait by `Retry-After`) until then.
    Waiting {
        /// When it may start again.
        until: Instant,
    },
    /// Given up, for good; the sentence says why.
    Dropped(String),
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    /// `None` while reserved (picking, waiting at the gate).
    deadline: Option<Instant>,
}

/// One web seed.
#[derive(Debug)]
pub struct WebSeed {
    url: String,
    config: SeedConfig,
    next_id: u64,
    in_flight: Vec<InFlight>,
    not_before: Option<Instant>,
    failures: u32,
    busy: u32,
    bad_pieces: u32,
    dropped: Option<String>,
    /// Bytes of requests that completed.
    bytes_done: u64,
}

impl WebSeed {
    /// A seed at `url` (an http or https URL from `url-list`).
    pub fn new(url: impl Into<String>, config: SeedConfig) -> Self {
        Self {
            url: url.into(),
            config,
            next_id: 0,
            in_flight: Vec::new(),
            not_before: None,
            failures: 0,
            busy: 0,
            bad_pieces: 0,
            dropped: None,
            bytes_done: 0,
        }
    }

    /// The seed's URL as the torrent gave it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its tunables.
    pub fn config(&self) -> &SeedConfig {
        &self.config
    }

    /// Requests reserved or under way.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Payload bytes of requests that completed.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done
    }

    /// Where it stands at `now`.
    pub fn state(&self, now: Instant) -> SeedState {
        if let Some(reason) = &self.dropped {
            return SeedState::Dropped(reason.clone());
        }
        match self.not_before {
            Some(until) if until > now => SeedState::Waiting { until },
            _ => SeedState::Ready,
        }
    }

    /// Why it was dropped, once it was.
    pub fn dropped(&self) -> Option<&str> {
        self.dropped.as_deref()
    }

    /// A connection for a new request, if one is free and the seed is not
    /// dropped or waiting.
    pub fn try_reserve(&mut self, now: Instant) -> Option<RequestId> {
        if self.state(now) != SeedState::Ready || self.in_flight.len() >= self.config.connections {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push(InFlight { id, deadline: None });
        Some(RequestId(id))
    }

    /// The request goes out now for `bytes`: its deadline (`None` if the id
    /// is not reserved, e.g. the seed was dropped meanwhile).
    pub fn begin(&mut self, id: RequestId, bytes: u64, now: Instant) -> Option<Instant> {
        if self.dropped.is_some() {
            return None;
        }
        let rate = self.config.min_rate.max(1);
        let allowance = self.config.request_timeout + Duration::from_secs(bytes.div_ceil(rate));
        let req = self.in_flight.iter_mut().find(|r| r.id == id.0)?;
        let deadline = now + allowance;
        req.deadline = Some(deadline);
        Some(deadline)
    }

    /// A reserved request will not be made (nothing to pick): its
    /// connection is free again, nothing is counted.
    pub fn cancel(&mut self, id: RequestId) {
        self.in_flight.retain(|r| r.id != id.0);
    }

    /// A request ended with `outcome` after moving `bytes` of payload. An
    /// id already ended (timed out by [`WebSeed::handle_timeout`]) is ignored.
    pub fn finish(&mut self, id: RequestId, outcome: Outcome, bytes: u64, now: Instant) {
        let before = self.in_flight.len();
        self.in_flight.retain(|r| r.id != id.0);
        if self.in_flight.len() == before {
            return;
        }
        self.bytes_done += bytes;
        match outcome {
            Outcome::Done => {
                self.failures = 0;
                self.busy = 0;
            }
            Outcome::Aborted => {}
            Outcome::Busy { retry_after } => {
                self.busy += 1;
                if self.busy >= self.config.max_busy {
                    self.drop_with(format!(
                        "it answered busy (503/429) {} times in a row",
                        self.busy
                    ));
                    return;
                }
                let wait = match retry_after {
                    Some(w) => w.min(self.config.max_retry_after),
                    None => self.backoff(self.busy),
                };
                self.wait_until(now + wait);
            }
            Outcome::Failed(why) => self.failed(why, now),
            Outcome::TimedOut => self.failed("no answer in time".into(), now),
        }
    }

    /// A piece it sent failed its hash check.
    pub fn piece_failed(&mut self, now: Instant) {
        self.bad_pieces += 1;
        if self.bad_pieces >= self.config.max_bad_pieces {
            self.drop_with(format!(
                "it sent {} pieces failing their hash check",
                self.bad_pieces
            ));
            return;
        }
        self.wait_until(now + self.backoff(self.bad_pieces));
    }

    /// The earliest instant at which [`WebSeed::handle_timeout`] or
    /// [`WebSeed::try_reserve`] has something new to say.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dropped.is_some() {
            return None;
        }
        let deadlines = self.in_flight.iter().filter_map(|r| r.deadline);
        let wake = if self.in_flight.len() < self.config.connections {
            self.not_before
        } else {
            None
        };
        deadlines.chain(wake).min()
    }

    /// Requests past their deadline at `now`: each counts as a time-out,
    /// and the caller abandons it.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<RequestId> {
        let late: Vec<RequestId> = self
            .in_flight
            .iter()
            .filter(|r| r.deadline.is_some_and(|d| d <= now))
            .map(|r| RequestId(r.id))
            .collect();
        for id in &late {
            self.finish(*id, Outcome::TimedOut, 0, now);
        }
        late
    }

    fn failed(&mut self, why: String, now: Instant) {
        self.failures += 1;
        if self.failures >= self.config.max_failures {
            self.drop_with(format!(
                "{} requests in a row failed (the last: {why})",
                self.failures
            ));
            return;
        }
        self.wait_until(now + self.backoff(self.failures));
    }

    /// `backoff_initial` doubled per event in a row, at most `backoff_max`.
    fn backoff(&self, streak: u32) -> Duration {
        let doublings = streak.saturating_sub(1).min(20);
        self.config
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.config.backoff_max)
    }

    fn wait_until(&mut self, until: Instant) {
        // Two failures close together: the later pause wins, never a shorter one.
        self.not_before = Some(self.not_before.map_or(until, |t| t.max(until)));
    }

    fn drop_with(&mut self, reason: String) {
        if self.dropped.is_none() {
            self.dropped = Some(reason);
        }
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> (WebSeed, Instant) {
        (
            WebSeed::new("http://hq/pub/", SeedConfig::default()),
            Instant::now(),
        )
    }

    #[test]
    fn connections_limit_requests_under_way() {
        let (mut s, t) = seed();
        let a = s.try_reserve(t).unwrap();
        let b = s.try_reserve(t).unwrap();
        assert_eq!(s.try_reserve(t), None);
        s.cancel(a);
        let c = s.try_reserve(t).unwrap();
        assert_ne!(c, a);
        let d = s.begin(b, 1 << 20, t).unwrap();
        // 30 s plus 1 MiB at 4 KiB/s.
        assert_eq!(d, t + Duration::from_secs(30 + 256));
        assert_eq!(s.poll_timeout(), Some(d));
        s.finish(b, Outcome::Done, 1 << 20, t);
        assert_eq!(s.bytes_done(), 1 << 20);
        assert_eq!(s.in_flight(), 1);
    }

    #[test]
    fn failures_back_off_exponentially_bounded_then_drop() {
        let (mut s, mut t) = seed();
        let mut waits = Vec::new();
        for _ in 0..5 {
            let id = s.try_reserve(t).unwrap();
            s.begin(id, 100, t);
            s.finish(id, Outcome::Failed("HTTP 500".into()), 0, t);
            let SeedState::Waiting { until } = s.state(t) else {
                panic!("{:?}", s.state(t))
            };
            assert_eq!(s.try_reserve(t), None, "no request while backing off");
            assert_eq!(s.poll_timeout(), Some(until));
            waits.push((until - t).as_secs());
            t = until;
        }
        assert_eq!(waits, vec![2, 4, 8, 16, 32]);
        let id = s.try_reserve(t).unwrap();
        s.finish(id, Outcome::TimedOut, 0, t);
        let SeedState::Dropped(why) = s.state(t) else {
            panic!()
        };
        assert!(
            why.contains("6 requests in a row failed") && why.contains("no answer"),
            "{why}"
        );
        assert_eq!(s.try_reserve(t + Duration::from_secs(3600)), None);
        assert_eq!(s.poll_timeout(), None);

        let mut big = SeedConfig {
            max_failures: 100,
            ..SeedConfig::default()
        };
        big.backoff_max = Duration::from_secs(60);
        let s = WebSeed::new("http://x/", big);
        assert_eq!(s.backoff(30), Duration::from_secs(60));
    }

    #[test]
    fn a_success_resets_the_streak() {
        let (mut s, mut t) = seed();
        for _ in 0..3 {
            let id = s.try_reserve(t).unwrap();
            s.finish(id, Outcome::Failed("x".into()), 0, t);
            t += Duration::from_secs(600);
        }
        let id = s.try_reserve(t).unwrap();
        s.finish(id, Outcome::Done, 10, t);
        let id = s.try_reserve(t).unwrap();
        s.finish(id, Outcome::Failed("x".into()), 0, t);
        assert_eq!(
            s.state(t),
            SeedState::Waiting {
                until: t + Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        let (mut s, t) = seed();
        let id = s.try_reserve(t).unwrap();
        s.finish(
            id,
            Outcome::Busy {
                retry_after: Some(Duration::from_secs(7)),
            },
            0,
            t,
        );
        assert_eq!(s.try_reserve(t + Duration::from_secs(6)), None);
        assert!(s.try_reserve(t + Duration::from_secs(7)).is_some());
        let t2 = t + Duration::from_secs(7);
        let id = s.in_flight.last().map(|r| RequestId(r.id)).unwrap();
        s.finish(
            id,
            Outcome::Busy {
                retry_after: Some(Duration::from_secs(1 << 30)),
            },
            0,
            t2,
        );
        assert_eq!(
            s.state(t2),
            SeedState::Waiting {
                until: t2 + Duration::from_secs(3600)
            }
        );
        // Busy answers do not count as failures, but endless ones drop it.
        let mut t = t2 + Duration::from_secs(3600);
        for _ in 2..30 {
            let id = s.try_reserve(t).unwrap();
            s.finish(id, Outcome::Busy { retry_after: None }, 0, t);
            t += Duration::from_secs(3600);
        }
        assert!(matches!(s.state(t), SeedState::Dropped(w) if w.contains("busy")));
    }

    #[test]
    fn time_outs_come_from_the_deadline_and_count_once() {
        let (mut s, t) = seed();
        let a = s.try_reserve(t).unwrap();
        let b = s.try_reserve(t).unwrap();
        // Reserved but waiting at the gate: no deadline runs.
        assert_eq!(s.poll_timeout(), None);
        let d = s.begin(a, 0, t + Duration::from_secs(100)).unwrap();
        assert!(s.handle_timeout(d - Duration::from_millis(1)).is_empty());
        assert_eq!(s.handle_timeout(d), vec![a]);
        // The I/O layer's own report of the same time-out is ignored.
        s.finish(a, Outcome::TimedOut, 0, d);
        assert_eq!(s.failures, 1);
        s.finish(b, Outcome::Aborted, 0, d);
        assert_eq!(s.failures, 1);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn bad_pieces_back_off_then_drop() {
        let (mut s, t) = seed();
        s.piece_failed(t);
        assert_eq!(s.try_reserve(t + Duration::from_secs(1)), None);
        s.piece_failed(t + Duration::from_secs(2));
        s.piece_failed(t + Duration::from_secs(6));
        assert!(
            matches!(s.state(t), SeedState::Dropped(w) if w.contains("3 pieces failing their hash check"))
        );
    }
}
