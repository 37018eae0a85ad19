//! Per-source rate limit for incoming queries (no amplification).
//!
//! Each source IP gets a token bucket: `burst` queries at once, refilled at
//! `per_second`. The table of sources is bounded (`max_sources`): when it is
//! full, sources whose bucket has refilled are forgotten; if none has, a
//! query from a new source is dropped. A flood from one address, or from
//! many spoofed ones, therefore costs bounded memory and bounded replies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limiter.
#[derive(Debug, Clone)]
pub struct RateLimit {
    sources: HashMap<IpAddr, Bucket>,
    per_second: f64,
    burst: f64,
    max_sources: usize,
}

impl RateLimit {
    /// A limiter allowing `burst` queries at once and `per_second` after,
    /// tracking at most `max_sources` addresses.
    pub fn new(per_second: u32, burst: u32, max_sources: usize) -> RateLimit {
        RateLimit {
            sources: HashMap::new(),
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            max_sources: max_sources.max(1),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let secs = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + secs * self.per_second).min(self.burst);
        b.at = now;
    }

    /// Whether a query from `ip` may be answered now (and counts it).
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.max_sources {
            let (per_second, burst) = (self.per_second, self.burst);
            self.sources.retain(|_, b| {
                let secs = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + secs * per_second < burst
            });
            if self.sources.len() >= self.max_sources {
                return false;
            }
        }
        let mut b = self.sources.get(&ip).copied().unwrap_or(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(&mut b, now);
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        self.sources.insert(ip, b);
        allowed
    }

    /// Sources tracked.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_and_stays_bounded() {
        let t0 = Instant::now();
        let mut l = RateLimit::new(2, 5, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!((0..20).filter(|_| l.allow(ip, t0)).count(), 5);
        assert!(l.allow(ip, t0 + Duration::from_millis(600)));
        assert!(!l.allow(ip, t0 + Duration::from_millis(600)));
        for i in 2..100u8 {
            l.allow(IpAddr::from([10, 0, 0, i]), t0);
        }
        assert!(l.sources() <= 3);
        // Once every bucket has refilled, new sources get room again.
        assert!(l.allow("10.9.9.9".parse().unwrap(), t0 + Duration::from_secs(10)));
    }
}
