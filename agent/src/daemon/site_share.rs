//! `[site] wan_rate`: the site's WAN download cap, shared by its machines.
//! The engine says what this machine's share is now (an equal part among
//! itself and the site members fetching over the WAN, from their
//! `capwise_site` messages: `Session::site_wan_share`); this task applies
//! it, once a second, to the WAN download bucket of the user's limits
//! (`LimitGate::set_site_wan_share`), below whatever the policy allows.

use std::time::Duration;

use capwise_engine::session::{Session, SiteShare};

use crate::limits::LimitGate;

/// How often the share is looked at: a member that starts or stops
/// fetching moves the others' shares within about this.
const EVERY: Duration = Duration::from_secs(1);

/// Follows the share of a site cap of `cap` bytes per second until the
/// task is aborted.
pub fn follow(session: Session, limits: LimitGate, cap: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<SiteShare> = None;
        loop {
            let share = session.site_wan_share(cap);
            if last.is_none_or(|l| l.rate != share.rate) {
                tracing::info!(
                    cap,
                    share = share.rate,
                    others_fetching = share.others_wanting,
                    "site WAN share"
                );
                limits.set_site_wan_share(Some(share.rate));
            }
            last = Some(share);
            tokio::time::sleep(EVERY).await;
        }
    })
}
