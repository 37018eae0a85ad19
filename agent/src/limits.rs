//! The user's own rate limits, below whatever the policy allows: global per
//! direction, and per peer class. Changed live (`capwise limits set`).

use capwise_engine::hooks::{ByteGate, Direction, GateFuture, PeerClass};
use capwise_policy::bucket::Throttle;
use capwise_policy::decision::Allowance;

use crate::config::RateLimits;

fn allowance(rate: Option<u64>) -> Allowance {
    rate.map(Allowance::rate).unwrap_or(Allowance::Unlimited)
}

/// A bucket per direction for all peers, and one per direction and class.
/// Clones share the buckets, so the daemon keeps one to change them live.
#[derive(Clone)]
pub struct LimitGate(std::sync::Arc<Buckets>);

struct Buckets {
    up: Throttle,
    down: Throttle,
    wan_up: Throttle,
    wan_down: Throttle,
    lan_up: Throttle,
    lan_down: Throttle,
}

impl LimitGate {
    /// Global limits in bytes per second; `None` is unlimited.
    pub fn new(up: Option<u64>, down: Option<u64>) -> Self {
        Self::with_limits(&RateLimits {
            up,
            down,
            ..RateLimits::default()
        })
    }

    /// Global and per-class limits.
    pub fn with_limits(limits: &RateLimits) -> Self {
        Self(std::sync::Arc::new(Buckets {
            up: Throttle::new(allowance(limits.up)),
            down: Throttle::new(allowance(limits.down)),
            wan_up: Throttle::new(allowance(limits.wan_up)),
            wan_down: Throttle::new(allowance(limits.wan_down)),
            lan_up: Throttle::new(allowance(limits.lan_up)),
            lan_down: Throttle::new(allowance(limits.lan_down)),
        }))
    }

    /// Applies new limits to the buckets in place: waiting transfers see them at once.
    pub fn set(&self, limits: &RateLimits) {
        let b = &self.0;
        b.up.set_allowance(allowance(limits.up));
        b.down.set_allowance(allowance(limits.down));
        b.wan_up.set_allowance(allowance(limits.wan_up));
        b.wan_down.set_allowance(allowance(limits.wan_down));
        b.lan_up.set_allowance(allowance(limits.lan_up));
        b.lan_down.set_allowance(allowance(limits.lan_down));
    }

    fn buckets(&self, direction: Direction, class: PeerClass) -> (&Throttle, &Throttle) {
        let b = &self.0;
        match (direction, class) {
            (Direction::Up, PeerClass::Wan) => (&b.wan_up, &b.up),
            (Direction::Up, PeerClass::Lan) => (&b.lan_up, &b.up),
            (Direction::Down, PeerClass::Wan) => (&b.wan_down, &b.down),
            (Direction::Down, PeerClass::Lan) => (&b.lan_down, &b.down),
        }
    }
}

impl ByteGate for LimitGate {
    fn acquire(&self, direction: Direction, class: PeerClass, bytes: u64) -> GateFuture<'_> {
        let (per_class, global) = self.buckets(direction, class);
        Box::pin(async move {
            per_class.acquire(bytes).await;
            global.acquire(bytes).await;
        })
    }
}
