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
    /// This machine's share of the site's WAN download cap (`[site]
    /// wan_rate`, `daemon/site_share.rs`); unlimited without one.
    site_wan_down: Throttle,
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
            site_wan_down: Throttle::new(Allowance::Unlimited),
        }))
    }

    /// This machine's share of the site's WAN download cap, bytes per
    /// second (`None`: no site cap).
    pub fn set_site_wan_share(&self, rate: Option<u64>) {
        self.0.site_wan_down.set_allowance(allowance(rate));
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
        let site = (direction == Direction::Down && class == PeerClass::Wan)
            .then_some(&self.0.site_wan_down);
        Box::pin(async move {
            per_class.acquire(bytes).await;
            global.acquire(bytes).await;
            if let Some(site) = site {
                site.acquire(bytes).await;
            }
        })
    }
}

/// The user's own limits in words, for `why`: "downloads at most 5 MB/s,
/// uploads to LAN peers at most 1 MB/s"; `None` without any.
pub fn describe(limits: &RateLimits) -> Option<String> {
    use capwise_policy::units::HumanRate;
    let named = [
        ("downloads", limits.down),
        ("uploads", limits.up),
        ("downloads from internet peers", limits.wan_down),
        ("uploads to internet peers", limits.wan_up),
        ("downloads from LAN peers", limits.lan_down),
        ("uploads to LAN peers", limits.lan_up),
    ];
    let parts: Vec<String> = named
        .iter()
        .filter_map(|(what, rate)| rate.map(|r| format!("{what} at most {}", HumanRate(r))))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The decision's sentence with the user's own limits added: they hold
/// traffic back too, so "No limits" would not be true with them.
pub fn explain_with(explanation: &str, limits: &RateLimits) -> String {
    let Some(own) = describe(limits) else {
        return explanation.to_string();
    };
    let body = explanation.strip_suffix('.').unwrap_or(explanation);
    let body = match body.strip_prefix("No limits: ") {
        Some(rest) => format!("No policy limits: {rest}"),
        None => match body.strip_prefix("Nothing held back: ") {
            Some(rest) => format!("Nothing held back by the policy: {rest}"),
            None => body.to_string(),
        },
    };
    format!("{body}; your own limits: {own}.")
}

#[cfg(test)]
mod site_share_tests {
    use super::*;
    use std::time::Duration;

    /// The site's share holds WAN downloads only: 1 MB at 1 kB/s cannot
    /// pass in half a second (the burst is 16 KiB), a LAN download and a
    /// WAN upload pass at once, and without a share WAN downloads do too.
    #[tokio::test]
    async fn the_site_share_holds_wan_downloads_only() {
        let gate = LimitGate::with_limits(&RateLimits::default());
        let quick = Duration::from_millis(500);
        let pass = |d, c| tokio::time::timeout(quick, gate.acquire(d, c, 1_000_000));
        assert!(pass(Direction::Down, PeerClass::Wan).await.is_ok());
        gate.set_site_wan_share(Some(1000));
        assert!(pass(Direction::Down, PeerClass::Wan).await.is_err());
        assert!(pass(Direction::Down, PeerClass::Lan).await.is_ok());
        assert!(pass(Direction::Up, PeerClass::Wan).await.is_ok());
        gate.set_site_wan_share(None);
        assert!(pass(Direction::Down, PeerClass::Wan).await.is_ok());
    }
}

#[cfg(test)]
mod words_tests {
    use super::*;

    #[test]
    fn the_users_limits_are_named_and_no_limits_is_not_claimed() {
        let limits = RateLimits {
            down: Some(5_000_000),
            lan_up: Some(1_000_000),
            ..RateLimits::default()
        };
        assert_eq!(
            explain_with("No limits: 'home' is not metered.", &limits),
            "No policy limits: 'home' is not metered; your own limits: downloads at most \
             5 MB/s, uploads to LAN peers at most 1 MB/s."
        );
        assert_eq!(
            explain_with("No limits: 'home' is not metered.", &RateLimits::default()),
            "No limits: 'home' is not metered."
        );
    }
}
