//! Token buckets that enforce the allowances live: one [`Throttle`] per
//! direction and peer class, backed by a governor rate limiter, swapped when
//! the decision changes. Suspended is zero, not a trickle: `acquire` waits
//! until the allowance changes.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::watch;

use crate::decision::{Allowance, Decision};

/// One cell of the limiter is 1 KiB.
pub const CELL_BYTES: u64 = 1024;
/// A burst always admits at least one 16 KiB block.
pub const MIN_BURST_BYTES: u64 = 16 * 1024;

/// A governor clock on tokio's time, so paused-time tests drive it and the
/// waits are tokio sleeps.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// The limiter's burst for a rate: about 250 ms of traffic, but never less
/// than one 16 KiB block.
pub fn burst_bytes(rate: u64) -> u64 {
    (rate / 4).max(MIN_BURST_BYTES)
}

#[derive(Debug)]
struct State {
    allowance: Allowance,
    limiter: Option<Limiter>,
    /// The limiter's clock, to ask how long to wait.
    clock: TokioClock,
    burst_cells: u32,
}

impl State {
    fn new(allowance: Allowance) -> State {
        match allowance {
            Allowance::Rate(rate) if rate > 0 => {
                let burst_cells =
                    u32::try_from(burst_bytes(rate).div_ceil(CELL_BYTES)).unwrap_or(u32::MAX);
                let per_cell = Duration::from_nanos(
                    u64::try_from(CELL_BYTES as u128 * 1_000_000_000 / rate as u128)
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
                let quota = Quota::with_period(per_cell).map(|q| {
                    q.allow_burst(NonZeroU32::new(burst_cells).unwrap_or(NonZeroU32::MIN))
                });
                let clock = TokioClock {
                    origin: tokio::time::Instant::now(),
                };
                match quota {
                    Some(quota) => State {
                        allowance,
                        limiter: Some(RateLimiter::direct_with_clock(quota, &clock)),
                        clock,
                        burst_cells,
                    },
                    None => State::new(Allowance::Unlimited),
                }
            }
            Allowance::Rate(_) => State::new(Allowance::Suspended),
            other => State {
                allowance: other,
                limiter: None,
                clock: TokioClock {
                    origin: tokio::time::Instant::now(),
                },
                burst_cells: 0,
            },
        }
    }
}

/// A live limiter for one direction and peer class.
#[derive(Debug, Clone)]
pub struct Throttle {
    state: Arc<watch::Sender<Arc<State>>>,
}

impl Throttle {
    /// A throttle starting at `allowance`.
    pub fn new(allowance: Allowance) -> Throttle {
        let (tx, _rx) = watch::channel(Arc::new(State::new(allowance)));
        Throttle {
            state: Arc::new(tx),
        }
    }

    /// Current allowance.
    pub fn allowance(&self) -> Allowance {
        self.state.borrow().allowance
    }

    /// Changes the allowance now; waiting `acquire`s re-check at once. An
    /// unchanged allowance keeps its limiter (and its accounting).
    pub fn set_allowance(&self, allowance: Allowance) {
        if self.allowance() != allowance {
            self.state.send_replace(Arc::new(State::new(allowance)));
        }
    }

    /// Waits until `bytes` may pass. Unlimited returns at once; Suspended
    /// waits for a change of allowance; a rate waits for tokens, taking
    /// large requests in burst-sized pieces.
    pub async fn acquire(&self, bytes: u64) {
        let mut rx = self.state.subscribe();
        let mut cells_left = bytes.div_ceil(CELL_BYTES);
        while cells_left > 0 {
            let state = rx.borrow_and_update().clone();
            match state.allowance {
                Allowance::Unlimited => return,
                Allowance::Suspended => {
                    if rx.changed().await.is_err() {
                        return; // throttle dropped: nothing left to enforce
                    }
                }
                Allowance::Rate(_) => {
                    let Some(limiter) = &state.limiter else {
                        return;
                    };
                    let piece = cells_left.min(state.burst_cells as u64) as u32;
                    let Some(n) = NonZeroU32::new(piece) else {
                        return;
                    };
                    match limiter.check_n(n) {
                        Ok(Ok(())) => cells_left -= piece as u64,
                        Ok(Err(not_until)) => {
                            let wait = not_until.wait_time_from(state.clock.now());
                            tokio::select! {
                                _ = tokio::time::sleep(wait) => {}
                                changed = rx.changed() => if changed.is_err() { return },
                            }
                        }
                        // Cannot happen: pieces never exceed the burst.
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

/// The four throttles the engine uses.
#[derive(Debug, Clone)]
pub struct Throttles {
    /// Downloads from WAN peers.
    pub down_wan: Throttle,
    /// Downloads from LAN peers.
    pub down_lan: Throttle,
    /// Uploads to WAN peers.
    pub up_wan: Throttle,
    /// Uploads to LAN peers.
    pub up_lan: Throttle,
}

impl Throttles {
    /// Throttles set to a decision's allowances.
    pub fn new(decision: &Decision) -> Throttles {
        Throttles {
            down_wan: Throttle::new(decision.down_wan),
            down_lan: Throttle::new(decision.down_lan),
            up_wan: Throttle::new(decision.up_wan),
            up_lan: Throttle::new(decision.up_lan),
        }
    }

    /// Applies a new decision live.
    pub fn apply(&self, decision: &Decision) {
        self.down_wan.set_allowance(decision.down_wan);
        self.down_lan.set_allowance(decision.down_lan);
        self.up_wan.set_allowance(decision.up_wan);
        self.up_lan.set_allowance(decision.up_lan);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, Instant};

    #[test]
    fn burst_is_bounded() {
        assert_eq!(burst_bytes(1_000), MIN_BURST_BYTES);
        assert_eq!(burst_bytes(4_000_000), 1_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_paces_large_requests_beyond_the_burst() {
        let t = Throttle::new(Allowance::Rate(64 * 1024));
        let start = Instant::now();
        t.acquire(128 * 1024).await; // 16 KiB burst, then 112 KiB at 64 KiB/s
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1700) && took <= Duration::from_millis(1800),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_does_not_wait() {
        let t = Throttle::new(Allowance::Unlimited);
        let start = Instant::now();
        t.acquire(1 << 40).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn suspended_is_zero_until_the_allowance_changes() {
        let t = Throttle::new(Allowance::Suspended);
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.acquire(1).await }
        });
        advance(Duration::from_secs(3600)).await;
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "not even one byte while suspended");
        t.set_allowance(Allowance::Unlimited);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn changing_rate_mid_request_suspends_the_rest() {
        let t = Throttle::new(Allowance::Rate(16 * 1024));
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.acquire(10 * 16 * 1024).await }
        });
        advance(Duration::from_secs(2)).await;
        t.set_allowance(Allowance::Suspended);
        advance(Duration::from_secs(60)).await;
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        t.set_allowance(Allowance::Rate(1 << 30));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn throttles_follow_decisions() {
        let mut d = crate::decision::decide(
            &crate::decision::DecisionInput {
                network: None,
                offline: crate::decision::Offline::Told,
                budget: None,
                schedule: None,
                power: crate::power::Power::Ac,
                settings: &crate::decision::Settings::default(),
            },
            crate::time::Timestamp(0),
        );
        let ts = Throttles::new(&d);
        assert_eq!(ts.up_wan.allowance(), Allowance::Suspended);
        d.up_wan = Allowance::Rate(1000);
        ts.apply(&d);
        assert_eq!(ts.up_wan.allowance(), Allowance::Rate(1000));
        assert_eq!(ts.down_wan.allowance(), Allowance::Suspended);
    }
}
