//! Transfer rates as bytes moved over a real time window: the payload
//! counters sampled at each progress update, the rate being what moved
//! between the oldest sample of the last [`WINDOW`] and now. Nothing moved
//! means 0, at once, not a value decaying towards it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back a rate looks.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);
/// The shortest span a rate is taken over: a burst in the first
/// milliseconds (a token bucket's allowance) is bytes over a second, not
/// hundreds of MB/s.
pub(crate) const MIN_SPAN: Duration = Duration::from_secs(1);

/// Samples of (when, bytes up, bytes down), oldest first.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    samples: VecDeque<(Instant, u64, u64)>,
}

impl RateWindow {
    /// Takes a sample of the payload totals and answers the rates (up,
    /// down) in bytes per second over the window (at least [`MIN_SPAN`]).
    /// The first sample gives 0.
    pub(crate) fn sample(&mut self, now: Instant, up: u64, down: u64) -> (f64, f64) {
        // Keep one sample at or before the window's start, as the base.
        while self.samples.len() >= 2 && now.duration_since(self.samples[1].0) >= WINDOW {
            self.samples.pop_front();
        }
        if self.samples.back().is_some_and(|&(t, _, _)| t == now) {
            self.samples.pop_back();
        }
        self.samples.push_back((now, up, down));
        let (t0, up0, down0) = self.samples[0];
        if t0 == now {
            return (0.0, 0.0);
        }
        let elapsed = now.duration_since(t0).max(MIN_SPAN).as_secs_f64();
        let rate = |new: u64, old: u64| new.saturating_sub(old) as f64 / elapsed;
        (rate(up, up0), rate(down, down0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_bytes_over_the_window_and_zero_when_nothing_moves() {
        let t = Instant::now();
        let s = |secs: u64| t + Duration::from_secs(secs);
        let mut w = RateWindow::default();
        assert_eq!(w.sample(s(0), 0, 0), (0.0, 0.0), "no history yet");
        // 1 MB per second down for 3 s.
        assert_eq!(w.sample(s(1), 0, 1_000_000), (0.0, 1_000_000.0));
        assert_eq!(w.sample(s(3), 0, 3_000_000), (0.0, 1_000_000.0));
        // A burst of bytes verified at once (a piece) does not read as a
        // rate of that piece per instant.
        let (_, down) = w.sample(s(4), 500_000, 8_000_000);
        assert_eq!(down, 2_000_000.0);
        // Nothing moves: once the window passed the last movement, 0.
        let (up, down) = w.sample(s(10), 500_000, 8_000_000);
        assert_eq!((up, down), (0.0, 0.0));
        assert!(!down.is_sign_negative());
    }

    #[test]
    fn a_burst_in_the_first_milliseconds_is_bytes_over_a_second() {
        let t = Instant::now();
        let mut w = RateWindow::default();
        w.sample(t, 0, 0);
        let (_, down) = w.sample(t + Duration::from_millis(5), 0, 1_000_000);
        assert_eq!(down, 1_000_000.0, "not 200 MB/s");
    }

    #[test]
    fn samples_in_one_instant_do_not_divide_by_zero() {
        let t = Instant::now();
        let mut w = RateWindow::default();
        w.sample(t, 0, 0);
        assert_eq!(w.sample(t, 0, 100), (0.0, 0.0));
    }
}
