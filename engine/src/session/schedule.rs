//! When a torrent's driver must wake for its own work, beside the swarm's
//! timers (`Swarm::poll_timeout`): resume data, the vanished-file check and
//! progress sampling. Sans-IO: the driver tells what it sees and the time,
//! and is told what is due and when to wake next, so an idle seeding
//! torrent sleeps for minutes rather than ticking.

use std::time::{Duration, Instant};

/// Resume data is saved at most this often, and only when it changed.
pub(crate) const RESUME_EVERY: Duration = Duration::from_secs(30);
/// Files deleted under a torrent are looked for this often while it serves
/// a peer (someone interested or unchoked)...
pub(crate) const VANISHED_SERVING: Duration = Duration::from_secs(30);
/// ...and this rarely otherwise: a file nobody reads can wait, and the
/// first interested peer brings the check back at once when it is late.
pub(crate) const VANISHED_IDLE: Duration = Duration::from_secs(30 * 60);
/// Progress (and its rates) is sampled this often while payload moves.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What the driver sees at a wake.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seen {
    /// Resume data is out of date.
    pub(crate) resume_dirty: bool,
    /// Some peer is interested or unchoked (`Swarm::serving`).
    pub(crate) serving: bool,
    /// Payload totals (up, down).
    pub(crate) totals: (u64, u64),
    /// The rates just published are not 0.
    pub(crate) rates_moving: bool,
}

/// What is due at a wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Due {
    /// Look for files deleted under the torrent.
    pub(crate) vanished: bool,
    /// Save resume data.
    pub(crate) resume: bool,
}

/// The driver's own schedule.
#[derive(Debug)]
pub(crate) struct Duties {
    last_resume: Instant,
    last_vanished: Instant,
    last_sample: Instant,
    totals: (u64, u64),
    sampling: bool,
}

impl Duties {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            last_resume: now,
            last_vanished: now,
            last_sample: now,
            totals: (0, 0),
            sampling: false,
        }
    }

    fn vanished_at(&self, serving: bool) -> Instant {
        self.last_vanished
            + if serving {
                VANISHED_SERVING
            } else {
                VANISHED_IDLE
            }
    }

    /// A wake at `now`, after the progress was published: what is due
    /// (taken as done), and whether progress is to be sampled again soon.
    pub(crate) fn wake(&mut self, now: Instant, seen: &Seen) -> Due {
        self.sampling = seen.rates_moving || seen.totals != self.totals;
        self.totals = seen.totals;
        self.last_sample = now;
        let mut due = Due::default();
        if now >= self.vanished_at(seen.serving) {
            self.last_vanished = now;
            due.vanished = true;
        }
        if seen.resume_dirty && now >= self.last_resume + RESUME_EVERY {
            self.last_resume = now;
            due.resume = true;
        }
        due
    }

    /// When the driver's own work is next due (`None`: nothing of its own).
    pub(crate) fn next(&self, seen: &Seen) -> Option<Instant> {
        let mut at = self.vanished_at(seen.serving);
        if seen.resume_dirty {
            at = at.min(self.last_resume + RESUME_EVERY);
        }
        if self.sampling {
            at = at.min(self.last_sample + SAMPLE_EVERY);
        }
        Some(at)
    }
}

/// The earlier of two optional deadlines (`None` is never).
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(serving: bool) -> Seen {
        Seen {
            resume_dirty: false,
            serving,
            totals: (5, 5),
            rates_moving: false,
        }
    }

    #[test]
    fn an_idle_seed_wakes_for_nothing_of_its_own_for_half_an_hour() {
        let t0 = Instant::now();
        let mut d = Duties::new(t0);
        d.totals = (5, 5);
        let seen = idle(false);
        assert_eq!(d.wake(t0, &seen), Due::default());
        assert_eq!(d.next(&seen), Some(t0 + VANISHED_IDLE));
        // Woken early (a peer came and went): still nothing due.
        assert_eq!(d.wake(t0 + Duration::from_secs(40), &seen), Due::default());
        let due = d.wake(t0 + VANISHED_IDLE, &seen);
        assert!(due.vanished && !due.resume);
        assert_eq!(d.next(&seen), Some(t0 + 2 * VANISHED_IDLE));
    }

    #[test]
    fn files_are_checked_every_30_s_while_a_peer_is_served_and_at_once_when_late() {
        let t0 = Instant::now();
        let mut d = Duties::new(t0);
        d.totals = (5, 5);
        d.wake(t0, &idle(false));
        // A peer becomes interested 10 minutes in: the check is late, so due now.
        let t1 = t0 + Duration::from_secs(600);
        assert!(d.next(&idle(true)).unwrap() <= t1);
        assert!(d.wake(t1, &idle(true)).vanished);
        assert_eq!(d.next(&idle(true)), Some(t1 + VANISHED_SERVING));
        assert!(!d.wake(t1 + Duration::from_secs(29), &idle(true)).vanished);
        assert!(d.wake(t1 + VANISHED_SERVING, &idle(true)).vanished);
    }

    #[test]
    fn resume_data_is_saved_every_30_s_only_while_it_changed() {
        let t0 = Instant::now();
        let mut d = Duties::new(t0);
        d.totals = (5, 5);
        let dirty = Seen {
            resume_dirty: true,
            ..idle(false)
        };
        assert_eq!(d.next(&dirty), Some(t0 + RESUME_EVERY));
        assert!(!d.wake(t0 + Duration::from_secs(10), &dirty).resume);
        assert!(d.wake(t0 + RESUME_EVERY, &dirty).resume);
        // Saved, clean: the resume duty wakes nobody.
        assert_eq!(d.next(&idle(false)), Some(t0 + VANISHED_IDLE));
        // Dirty again long after: saved at the next wake.
        let t1 = t0 + Duration::from_secs(300);
        assert!(d.next(&dirty).unwrap() <= t1);
        assert!(d.wake(t1, &dirty).resume);
    }

    #[test]
    fn progress_is_sampled_every_second_only_while_bytes_move() {
        let t0 = Instant::now();
        let mut d = Duties::new(t0);
        let moving = Seen {
            totals: (100, 0),
            rates_moving: true,
            ..idle(true)
        };
        d.wake(t0, &moving);
        assert_eq!(d.next(&moving), Some(t0 + SAMPLE_EVERY));
        // Totals still, but the published rate has not reached 0 yet.
        let t1 = t0 + SAMPLE_EVERY;
        d.wake(t1, &moving);
        assert_eq!(d.next(&moving), Some(t1 + SAMPLE_EVERY));
        // Still and 0: no more sampling.
        let still = Seen {
            totals: (100, 0),
            ..idle(true)
        };
        let t2 = t1 + SAMPLE_EVERY;
        d.wake(t2, &still);
        assert_eq!(d.next(&still), Some(t0 + VANISHED_SERVING));
        // Bytes moved since (the totals changed): sampling again.
        let t3 = t2 + Duration::from_secs(7);
        let moved = Seen {
            totals: (200, 0),
            ..idle(true)
        };
        d.wake(t3, &moved);
        assert_eq!(d.next(&moved), Some(t3 + SAMPLE_EVERY));
    }

    #[test]
    fn earliest_of_two_deadlines() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        assert_eq!(earliest(Some(t), Some(later)), Some(t));
        assert_eq!(earliest(None, Some(later)), Some(later));
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(earliest(None, None), None);
    }
}
