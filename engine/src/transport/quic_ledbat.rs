//! A LEDBAT-like congestion controller for quinn, for background torrents:
//! it yields to other traffic by watching the queue it builds, as uTP does
//! (`capwise_utp::ledbat`, whose window arithmetic it reuses).
//!
//! uTP measures one-way delay from the peer's timestamps; QUIC has none, so
//! the delay samples here are round trips: each acknowledgement's `now -
//! sent`. The smallest over ten minutes (per-minute buckets) is the base;
//! what the recent samples have above it is queueing delay, in either
//! direction (a queue on the return path slows us too, which for a
//! background transfer errs on the side of yielding). Below the target the
//! window grows (slow start first, ended by delay), above it it shrinks in
//! proportion to itself; a loss halves it once per recovery period (as
//! quinn's own controllers, packets sent before the last reduction do not
//! reduce again), persistent congestion takes it to the minimum.
//!
//! The controller never reads a clock: every instant comes from quinn (or a
//! test), so the unit tests drive it with instants of their own.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capwise_utp::ledbat::{Ledbat, LedbatConfig};
use quinn::congestion::{Controller, ControllerFactory};

/// QUIC's first window, RFC 9002's 10 datagrams of 1200 bytes: slow start
/// from uTP's 2 packets would take several round trips more.
const INITIAL_WINDOW_PACKETS: usize = 10;

/// Builds a [`QuicLedbat`] for each connection.
#[derive(Debug, Clone)]
pub struct LedbatFactory {
    config: LedbatConfig,
}

impl Default for LedbatFactory {
    fn default() -> Self {
        Self::new(LedbatConfig {
            initial_window_packets: INITIAL_WINDOW_PACKETS,
            ..LedbatConfig::default()
        })
    }
}

impl LedbatFactory {
    /// Controllers with `config` (its target: the queueing delay aimed at).
    pub fn new(config: LedbatConfig) -> Self {
        Self { config }
    }
}

impl ControllerFactory for LedbatFactory {
    fn build(self: Arc<Self>, _now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(QuicLedbat::new(self.config, current_mtu))
    }
}

/// One connection's LEDBAT window.
#[derive(Debug, Clone)]
pub struct QuicLedbat {
    ledbat: Ledbat,
    initial: u64,
    /// When the window was last cut: losses of packets sent before then
    /// belong to the same event.
    recovery_start: Option<Instant>,
}

impl QuicLedbat {
    /// A window for datagrams of `mtu` bytes.
    pub fn new(config: LedbatConfig, mtu: u16) -> Self {
        let ledbat = Ledbat::new(config, usize::from(mtu));
        Self {
            initial: ledbat.window() as u64,
            ledbat,
            recovery_start: None,
        }
    }

    /// `bytes` sent at `sent` were acknowledged at `now`; `app_limited`:
    /// the sender had less to send than the window allowed (then the window
    /// does not grow: it was not tested). What [`Controller::on_ack`] does,
    /// without quinn's RTT estimator, which only quinn can make.
    pub fn on_ack_at(&mut self, now: Instant, sent: Instant, bytes: u64, app_limited: bool) {
        let rtt = now.saturating_duration_since(sent);
        self.ledbat.on_delay_sample(micros(rtt), now);
        let window = self.ledbat.window();
        let flight = if app_limited { 0 } else { window };
        self.ledbat.on_ack(
            usize::try_from(bytes).unwrap_or(usize::MAX),
            flight,
            Some(rtt),
        );
    }

    /// The queueing delay the window is steered by, once a sample came.
    pub fn queuing_delay(&self) -> Option<Duration> {
        self.ledbat.history().queuing_delay()
    }
}

/// A round trip as the microsecond sample uTP's history keeps (an hour and
/// more saturates: no queue is that long).
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Controller for QuicLedbat {
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        _rtt: &quinn_proto::RttEstimator,
    ) {
        self.on_ack_at(now, sent, bytes, app_limited);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        _lost_bytes: u64,
    ) {
        if is_persistent_congestion {
            self.recovery_start = Some(now);
            self.ledbat.on_timeout();
            return;
        }
        if self.recovery_start.is_some_and(|start| sent <= start) {
            return;
        }
        self.recovery_start = Some(now);
        self.ledbat.on_loss();
    }

    fn on_mtu_update(&mut self, _new_mtu: u16) {
        // The window is in bytes; the packet size only sets the smallest
        // window and the growth of slow start, where 1200 is close enough.
    }

    fn window(&self) -> u64 {
        self.ledbat.window() as u64
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.initial
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: u16 = 1200;
    const BASE_RTT: Duration = Duration::from_millis(20);

    /// A fake clock: instants are a fixed origin plus offsets the test picks.
    struct Clock {
        origin: Instant,
        now: Duration,
    }

    impl Clock {
        fn new() -> Self {
            Self {
                origin: Instant::now(),
                now: Duration::ZERO,
            }
        }

        fn at(&self, offset: Duration) -> Instant {
            self.origin + offset
        }

        fn now(&self) -> Instant {
            self.at(self.now)
        }

        /// One round trip of `rtt`: a window's worth of packets sent now is
        /// acknowledged `rtt` later, packet by packet.
        fn round_trip(&mut self, cc: &mut QuicLedbat, rtt: Duration) {
            let sent = self.now();
            self.now += rtt;
            let packets = (cc.window() / u64::from(MTU)).max(1);
            for _ in 0..packets {
                cc.on_ack_at(self.now(), sent, u64::from(MTU), false);
            }
        }
    }

    fn controller() -> QuicLedbat {
        match Arc::new(LedbatFactory::default())
            .build(Instant::now(), MTU)
            .into_any()
            .downcast::<QuicLedbat>()
        {
            Ok(cc) => *cc,
            Err(_) => panic!("the factory builds a QuicLedbat"),
        }
    }

    #[test]
    fn without_a_queue_the_window_grows_from_ten_packets() {
        let (mut clock, mut cc) = (Clock::new(), controller());
        assert_eq!(cc.initial_window(), 10 * u64::from(MTU));
        assert_eq!(cc.window(), cc.initial_window());
        assert_eq!(cc.queuing_delay(), None);
        for _ in 0..20 {
            clock.round_trip(&mut cc, BASE_RTT);
        }
        assert_eq!(cc.queuing_delay(), Some(Duration::ZERO));
        assert!(
            cc.window() > 100 * u64::from(MTU),
            "slow start with no queue: {}",
            cc.window()
        );
        assert_eq!(cc.clone_box().window(), cc.window());
    }

    #[test]
    fn queueing_delay_above_the_target_shrinks_the_window_to_the_minimum() {
        let (mut clock, mut cc) = (Clock::new(), controller());
        for _ in 0..20 {
            clock.round_trip(&mut cc, BASE_RTT);
        }
        let grown = cc.window();
        // Another flow fills the bottleneck's queue: 150 ms above the base,
        // beyond the 100 ms target.
        let queued = BASE_RTT + Duration::from_millis(150);
        for _ in 0..4 {
            clock.round_trip(&mut cc, queued);
        }
        assert_eq!(cc.queuing_delay(), Some(Duration::from_millis(150)));
        assert!(cc.window() < grown / 2, "{} from {grown}", cc.window());
        for _ in 0..40 {
            clock.round_trip(&mut cc, queued);
        }
        assert_eq!(cc.window(), 2 * u64::from(MTU), "LEDBAT's smallest window");
        // The queue drains: the window grows again.
        for _ in 0..20 {
            clock.round_trip(&mut cc, BASE_RTT);
        }
        assert!(cc.window() > 4 * u64::from(MTU), "{}", cc.window());
    }

    #[test]
    fn a_delay_below_the_target_still_lets_it_grow() {
        let (mut clock, mut cc) = (Clock::new(), controller());
        for _ in 0..3 {
            clock.round_trip(&mut cc, BASE_RTT);
        }
        // 50 ms of queue (half the target) ends slow start (3/4 of the
        // target) only once it passes 75 ms: growth goes on.
        let before = cc.window();
        for _ in 0..5 {
            clock.round_trip(&mut cc, BASE_RTT + Duration::from_millis(50));
        }
        assert!(cc.window() > before, "{} from {before}", cc.window());
    }

    #[test]
    fn an_application_limited_sender_does_not_grow() {
        let (clock, mut cc) = (Clock::new(), controller());
        for i in 0..100u32 {
            let sent = clock.at(Duration::from_millis(i.into()));
            cc.on_ack_at(sent + BASE_RTT, sent, 1200, true);
        }
        assert_eq!(cc.window(), cc.initial_window());
        // The same acknowledgements from a sender that filled its window do.
        for i in 100..200u32 {
            let sent = clock.at(Duration::from_millis(i.into()));
            cc.on_ack_at(sent + BASE_RTT, sent, 1200, false);
        }
        assert!(cc.window() > cc.initial_window());
    }

    #[test]
    fn a_loss_halves_once_per_recovery_and_persistent_congestion_resets() {
        let (mut clock, mut cc) = (Clock::new(), controller());
        for _ in 0..10 {
            clock.round_trip(&mut cc, BASE_RTT);
        }
        let before = cc.window();
        let sent_before = clock.at(clock.now - Duration::from_millis(5));
        cc.on_congestion_event(clock.now(), sent_before, false, 1200);
        let halved = cc.window();
        assert!(halved <= before / 2 + 1, "{halved} from {before}");
        // More losses of packets sent before the cut: the same event.
        clock.now += Duration::from_millis(1);
        cc.on_congestion_event(clock.now(), sent_before, false, 1200);
        assert_eq!(cc.window(), halved);
        // A loss of a packet sent after it: a new event.
        let sent_after = clock.now();
        clock.now += Duration::from_millis(30);
        cc.on_congestion_event(clock.now(), sent_after, false, 1200);
        assert!(cc.window() < halved);
        cc.on_congestion_event(clock.now(), sent_after, true, 12_000);
        assert_eq!(cc.window(), 2 * u64::from(MTU));
    }

    #[test]
    fn a_round_trip_of_hours_saturates_the_sample() {
        assert_eq!(micros(Duration::from_secs(10_000)), u32::MAX);
        assert_eq!(micros(Duration::from_micros(1500)), 1500);
        // A sent instant after `now` (never from quinn) is no panic.
        let (clock, mut cc) = (Clock::new(), controller());
        cc.on_ack_at(clock.now(), clock.at(Duration::from_secs(1)), 1200, false);
    }
}
