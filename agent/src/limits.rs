//! The engine's byte gate backed by the policy's token buckets, for the
//! foreground commands' `--upload-limit` and `--download-limit`.

use capwise_engine::hooks::{ByteGate, Direction, GateFuture, PeerClass};
use capwise_policy::bucket::Throttle;
use capwise_policy::decision::Allowance;

/// One bucket per direction, shared by both peer classes.
pub struct LimitGate {
    up: Throttle,
    down: Throttle,
}

impl LimitGate {
    /// Limits in bytes per second; `None` is unlimited.
    pub fn new(up: Option<u64>, down: Option<u64>) -> Self {
        let allowance =
            |rate: Option<u64>| rate.map(Allowance::rate).unwrap_or(Allowance::Unlimited);
        Self {
            up: Throttle::new(allowance(up)),
            down: Throttle::new(allowance(down)),
        }
    }
}

impl ByteGate for LimitGate {
    fn acquire(&self, direction: Direction, _class: PeerClass, bytes: u64) -> GateFuture<'_> {
        let throttle = match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        };
        Box::pin(throttle.acquire(bytes))
    }
}
