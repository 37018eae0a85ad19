//! LEDBAT congestion control (RFC 6817) as uTP applies it (BEP 29, libutp),
//! and the RTT estimator that sets the retransmission timeout.
//!
//! The one-way delay of our packets comes from the peer's
//! `timestamp_difference`: its clock at arrival minus ours at departure, so
//! it includes the (unknown, constant) offset between the clocks. The
//! smallest such sample over ten minutes (kept in per-minute buckets, so an
//! old minimum ages out) is the base delay; what a sample has above it is
//! queueing delay. The window grows while that is below the 100 ms target
//! (gain 1: at most [`MAX_GROWTH_PER_RTT`] bytes per RTT, libutp's figure)
//! and shrinks above it by a share of itself per RTT (LEDBAT++'s
//! multiplicative decrease: RFC 6817's linear one is too slow to make room
//! for a TCP flow starting beside a 100 ms queue), halves on a loss and
//! falls to the minimum on a time-out. Slow start ends on delay (3/4 of the
//! target) with half its window, so it does not overshoot into the queue. All arithmetic on timestamps
//! wraps, since the clocks are 32-bit microsecond counters with arbitrary
//! offsets.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Most window growth per RTT, in bytes (libutp's
/// `MAX_CWND_INCREASE_BYTES_PER_RTT`, libtorrent's gain factor).
pub const MAX_GROWTH_PER_RTT: f64 = 3000.0;

/// How long the base delay remembers a minimum (RFC 6817 BASE_HISTORY).
pub const BASE_HISTORY: Duration = Duration::from_secs(600);

const BUCKET: Duration = Duration::from_secs(60);

/// The samples the current delay is the minimum of (RFC 6817
/// CURRENT_FILTER; libutp keeps 3): one late ACK does not look like a queue.
const CURRENT_FILTER: usize = 4;

/// Slow start ends once the queueing delay passes this share of the target
/// (RFC 6817 lets slow start end on delay; LEDBAT++ uses 3/4).
const SLOW_START_EXIT: f64 = 0.75;

/// The window slow start leaves with, once the delay says stop: half of
/// what it had. Slow start doubles the window every round trip and the
/// delay it sees is at least a round trip old (the queue it measures was
/// built by the window before), so the window at the exit is about twice
/// the one that made that delay; keeping it would overshoot the queue to
/// twice the target (220 ms on a 10 Mbit/s, 40 ms path), which LEDBAT's
/// gain-1 decrease then takes 20 s to drain.
fn slow_start_exit_window(cwnd: f64) -> f64 {
    cwnd / 2.0
}

/// Above the target the window shrinks by this share of itself per round
/// trip for each target's worth of excess delay, at most
/// [`MAX_DECREASE_PER_RTT`] (LEDBAT++'s multiplicative decrease, constant 1).
const DECREASE: f64 = 1.0;

/// The most a window shrinks from delay in one round trip (LEDBAT++: half).
const MAX_DECREASE_PER_RTT: f64 = 0.5;

/// The change of the window for `acked` bytes acknowledged at `off_target`
/// ((target - queueing) / target). Below the target it grows by at most
/// [`MAX_GROWTH_PER_RTT`] bytes per round trip (gain 1). Above it, it shrinks
/// in proportion to itself: RFC 6817's linear decrease (the same 3000 bytes
/// per round trip and target of excess) sheds a 170 KB window, 100 ms of
/// queue at 10 Mbit/s, at about 15 KB/s, so a CUBIC flow that starts beside
/// it waits 10 s for the link; a multiplicative decrease makes room within
/// a few round trips, whatever the window.
fn window_delta(off_target: f64, acked: f64, cwnd: f64) -> f64 {
    if off_target >= 0.0 {
        MAX_GROWTH_PER_RTT * off_target.min(1.0) * acked / cwnd.max(1.0)
    } else {
        -(DECREASE * -off_target).min(MAX_DECREASE_PER_RTT) * acked
    }
}

/// `a` is an earlier (smaller) delay than `b`, in wrapping u32 space.
fn wrapping_lt(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// One-way delay samples: the base (a 10-minute minimum in minute buckets)
/// and the recent ones.
#[derive(Debug, Clone)]
pub struct DelayHistory {
    /// (start of the minute, smallest sample in it), oldest first.
    buckets: VecDeque<(Instant, u32)>,
    recent: VecDeque<u32>,
}

impl Default for DelayHistory {
    fn default() -> Self {
        Self {
            buckets: VecDeque::with_capacity(11),
            recent: VecDeque::with_capacity(CURRENT_FILTER),
        }
    }
}

impl DelayHistory {
    /// Takes one sample (the peer's `timestamp_difference`).
    pub fn add(&mut self, sample: u32, now: Instant) {
        match self.buckets.back_mut() {
            Some((start, min)) if now.saturating_duration_since(*start) < BUCKET => {
                if wrapping_lt(sample, *min) {
                    *min = sample;
                }
            }
            _ => self.buckets.push_back((now, sample)),
        }
        while self
            .buckets
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) >= BASE_HISTORY)
        {
            self.buckets.pop_front();
        }
        if self.recent.len() == CURRENT_FILTER {
            self.recent.pop_front();
        }
        self.recent.push_back(sample);
    }

    /// The base delay (clock offset included), if any sample came.
    pub fn base(&self) -> Option<u32> {
        let mut it = self.buckets.iter().map(|&(_, m)| m);
        let first = it.next()?;
        Some(it.fold(first, |a, b| if wrapping_lt(b, a) { b } else { a }))
    }

    /// Queueing delay now: the smallest recent sample above the base.
    pub fn queuing_delay(&self) -> Option<Duration> {
        let base = self.base()?;
        let current = self
            .recent
            .iter()
            .copied()
            .reduce(|a, b| if wrapping_lt(b, a) { b } else { a })?;
        let above = current.wrapping_sub(base);
        // Below the base (cannot happen once the base took the sample):
        // no queue.
        let above = if above >= 0x8000_0000 { 0 } else { above };
        Some(Duration::from_micros(u64::from(above)))
    }
}

/// LEDBAT's tunables (RFC 6817 names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedbatConfig {
    /// TARGET: the queueing delay LEDBAT aims for.
    pub target: Duration,
    /// The smallest window, in packets (RFC 6817: 2).
    pub min_window_packets: usize,
    /// The largest window in bytes, whatever the delay says.
    pub max_window: usize,
    /// Packets in the first window.
    pub initial_window_packets: usize,
}

impl Default for LedbatConfig {
    fn default() -> Self {
        Self {
            target: Duration::from_millis(100),
            min_window_packets: 2,
            max_window: 16 << 20,
            initial_window_packets: 2,
        }
    }
}

/// The congestion window of one connection.
#[derive(Debug, Clone)]
pub struct Ledbat {
    config: LedbatConfig,
    mss: usize,
    cwnd: f64,
    slow_start: bool,
    history: DelayHistory,
}

impl Ledbat {
    /// A window for packets of `mss` payload bytes.
    pub fn new(config: LedbatConfig, mss: usize) -> Self {
        let mss = mss.max(1);
        let cwnd = (config.initial_window_packets.max(config.min_window_packets) * mss) as f64;
        Self {
            config,
            mss,
            cwnd,
            slow_start: true,
            history: DelayHistory::default(),
        }
    }

    /// The window in bytes.
    pub fn window(&self) -> usize {
        self.cwnd as usize
    }

    /// The smallest window, in bytes.
    pub fn min_window(&self) -> usize {
        self.config.min_window_packets.max(1) * self.mss
    }

    /// Still in slow start (no loss seen and the delay below 90% of target).
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// The one-way delay history.
    pub fn history(&self) -> &DelayHistory {
        &self.history
    }

    /// A delay sample from a packet the peer sent.
    pub fn on_delay_sample(&mut self, sample: u32, now: Instant) {
        self.history.add(sample, now);
    }

    /// `acked` payload bytes were newly acknowledged; `flight` bytes were in
    /// flight before; `ack_rtt`, the round trip of the packets acknowledged,
    /// bounds the queueing delay (a one-way delay above the whole round
    /// trip is clock drift, as libutp reasons).
    pub fn on_ack(&mut self, acked: usize, flight: usize, ack_rtt: Option<Duration>) {
        if acked == 0 {
            return;
        }
        let Some(mut queuing) = self.history.queuing_delay() else {
            return;
        };
        if let Some(rtt) = ack_rtt {
            queuing = queuing.min(rtt);
        }
        // An application-limited sender has not tested the window: it must
        // not grow from ACKs alone (RFC 6817 §2.4.1's flightsize check).
        let cwnd_limited = flight + self.mss >= self.cwnd as usize;
        let target = self.config.target.as_secs_f64();
        let off_target = (target - queuing.as_secs_f64()) / target;
        let acked = acked as f64;
        let ledbat_delta = window_delta(off_target, acked, self.cwnd);
        let mut cwnd = self.cwnd;
        if self.slow_start {
            if queuing.as_secs_f64() > SLOW_START_EXIT * target {
                self.slow_start = false;
                cwnd = slow_start_exit_window(cwnd);
            } else if cwnd_limited {
                cwnd += acked.max(ledbat_delta);
            }
        } else if ledbat_delta < 0.0 || cwnd_limited {
            cwnd += ledbat_delta;
        }
        self.cwnd = self.clamp(cwnd);
    }

    /// A packet was lost (duplicate ACKs, selective ACK): halve, once per
    /// window (the caller decides what counts as one event).
    pub fn on_loss(&mut self) {
        self.slow_start = false;
        self.cwnd = self.clamp(self.cwnd / 2.0);
    }

    /// The retransmission timer fired: back to the smallest window.
    pub fn on_timeout(&mut self) {
        self.slow_start = false;
        self.cwnd = self.min_window() as f64;
    }

    fn clamp(&self, cwnd: f64) -> f64 {
        let lo = self.min_window() as f64;
        let hi = (self.config.max_window as f64).max(lo);
        cwnd.clamp(lo, hi)
    }
}

/// Smoothed RTT, its variation and the retransmission timeout (BEP 29:
/// TCP's estimator; the timeout is at least `min_rto`, 500 ms in BEP 29,
/// 1 s in libutp).
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    min_rto: Duration,
    initial_rto: Duration,
}

/// The longest retransmission timeout, backoff included.
pub const MAX_RTO: Duration = Duration::from_secs(60);

impl RttEstimator {
    /// Before any sample the timeout is `initial_rto` (BEP 29: 1 s).
    pub fn new(min_rto: Duration, initial_rto: Duration) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            min_rto,
            initial_rto,
        }
    }

    /// One round trip of a packet sent once (Karn: never of a retransmit).
    pub fn sample(&mut self, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The smoothed RTT.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The smallest RTT seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The retransmission timeout after `backoff` consecutive time-outs.
    pub fn rto(&self, backoff: u32) -> Duration {
        let base = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => (srtt + self.rttvar * 4).max(self.min_rto),
        };
        base.saturating_mul(1u32 << backoff.min(16)).min(MAX_RTO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_delay_forgets_a_minimum_after_ten_minutes() {
        let t0 = Instant::now();
        let mut h = DelayHistory::default();
        h.add(1_000, t0);
        for m in 1..=9 {
            h.add(5_000, t0 + BUCKET * m);
        }
        assert_eq!(h.base(), Some(1_000));
        h.add(5_000, t0 + BUCKET * 10);
        assert_eq!(h.base(), Some(5_000), "the first minute aged out");
    }

    #[test]
    fn delays_wrap_around_u32() {
        let t0 = Instant::now();
        let mut h = DelayHistory::default();
        h.add(u32::MAX - 10, t0);
        for _ in 0..CURRENT_FILTER {
            h.add(20_000u32.wrapping_add(u32::MAX - 10), t0);
        }
        assert_eq!(h.base(), Some(u32::MAX - 10));
        assert_eq!(h.queuing_delay(), Some(Duration::from_micros(20_000)));
    }

    #[test]
    fn window_grows_below_target_and_shrinks_above() {
        let t0 = Instant::now();
        let mut l = Ledbat::new(LedbatConfig::default(), 1000);
        l.slow_start = false;
        l.cwnd = 20_000.0;
        l.on_delay_sample(10_000, t0);
        // A full window acknowledged with no queue: +3000 bytes (gain 1).
        l.on_ack(20_000, 20_000, None);
        assert_eq!(l.window(), 23_000);
        // 150 ms of queue (half a target too much): a window acknowledged
        // takes half a window off.
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(160_000, t0);
        }
        l.on_ack(23_000, 23_000, None);
        assert_eq!(l.window(), 11_500);
        l.on_loss();
        assert_eq!(l.window(), 5_750);
        l.on_timeout();
        assert_eq!(l.window(), 2_000, "two packets");
    }

    #[test]
    fn the_decrease_is_proportional_to_the_window_and_at_most_half() {
        let t0 = Instant::now();
        for (window, queue_us, after) in [
            // 120 ms: 20% off target, 20% off the window per window acked.
            (200_000.0, 120_000, 160_000),
            (20_000.0, 120_000, 16_000),
            // 400 ms: at most half per round trip.
            (200_000.0, 400_000, 100_000),
        ] {
            let mut l = Ledbat::new(LedbatConfig::default(), 1000);
            l.slow_start = false;
            l.cwnd = window;
            l.on_delay_sample(10_000, t0);
            for _ in 0..CURRENT_FILTER {
                l.on_delay_sample(10_000 + queue_us, t0);
            }
            // One window acknowledged in packets: the decrease compounds a
            // little within it, so allow a few percent.
            let mut acked = 0.0;
            while acked < window {
                l.on_ack(1000, l.window(), None);
                acked += 1000.0;
            }
            let got = l.window() as f64;
            let want = after as f64;
            assert!(
                (got - want).abs() <= 0.1 * want && got >= want * 0.9,
                "window {window} at {queue_us} us: {got}, want about {want}"
            );
        }
    }

    #[test]
    fn slow_start_ends_on_delay_with_half_its_window() {
        let t0 = Instant::now();
        let mut l = Ledbat::new(LedbatConfig::default(), 1000);
        l.on_delay_sample(50_000, t0);
        // Doubling while the queue stays short (the first step is gain 1's
        // 3000 bytes, more than the 2000 acknowledged).
        for _ in 0..5 {
            let w = l.window();
            l.on_ack(w, w, None);
        }
        assert!(l.in_slow_start());
        assert_eq!(l.window(), 80_000);
        // 70 ms of queue: below 3/4 of the target, still slow start.
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(120_000, t0 + Duration::from_millis(100));
        }
        l.on_ack(1000, 80_000, None);
        assert!(l.in_slow_start());
        assert_eq!(l.window(), 81_000);
        // 80 ms: out, with half the window (the one that built the queue).
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(130_000, t0 + Duration::from_millis(200));
        }
        l.on_ack(1000, 81_000, None);
        assert!(!l.in_slow_start());
        assert_eq!(l.window(), 40_500);
        // And from there LEDBAT's growth, not slow start's.
        for _ in 0..CURRENT_FILTER {
            l.on_delay_sample(60_000, t0 + Duration::from_millis(300));
        }
        l.on_ack(40_500, 40_500, None);
        assert!(l.window() > 40_500);
        assert!(l.window() <= 40_500 + MAX_GROWTH_PER_RTT as usize);
    }

    #[test]
    fn rto_has_a_floor_and_backs_off() {
        let mut r = RttEstimator::new(Duration::from_millis(500), Duration::from_secs(1));
        assert_eq!(r.rto(0), Duration::from_secs(1));
        r.sample(Duration::from_millis(10));
        assert_eq!(r.rto(0), Duration::from_millis(500));
        assert_eq!(r.rto(2), Duration::from_millis(2000));
        r.sample(Duration::from_millis(1000));
        assert!(r.rto(0) > Duration::from_millis(500));
        assert_eq!(r.rto(30), MAX_RTO);
    }
}
