//! A site-wide WAN rate cap shared by the site's machines (`[site]
//! wan_rate` in the agent): each machine takes an equal share of the cap
//! among itself and the site members that want WAN bytes now, as their
//! `capwise_site` messages say (`ext/site.rs`: `w`; an older member that
//! sends none counts as wanting). The engine only offers the figure
//! ([`Session::site_wan_share`]); the embedder applies it to its own WAN
//! download bucket (the engine knows nothing of policies or buckets).
//!
//! A machine is a member address: the same machine is a member in every
//! torrent both share, under another member id in each, so members are
//! told apart by IP address across torrents.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{Session, TorrentShared};
use crate::ext::site::wan_share;

/// This machine's part of a site-wide WAN download cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteShare {
    /// Bytes per second this machine may take over the WAN.
    pub rate: u64,
    /// Other machines of the site that want WAN bytes now.
    pub others_wanting: usize,
    /// Whether this machine fetches over the WAN now (for any torrent
    /// with site coordination).
    pub wanting: bool,
}

impl TorrentShared {
    /// Adds the addresses of this torrent's site members that want WAN
    /// bytes to `others`; whether we do, for this torrent.
    fn site_wan_votes(&self, others: &mut BTreeSet<IpAddr>) -> bool {
        // Lock order: the core first, then the links.
        let core = self.lock_core();
        let keys = core.swarm.site_wan_wanting();
        let ours = core.swarm.site_wants_wan();
        if !keys.is_empty() {
            let links = self.links.lock().expect("links lock");
            others.extend(
                keys.iter()
                    .filter_map(|k| links.get(k))
                    .map(|l| l.addr.ip().to_canonical()),
            );
        }
        ours
    }
}

impl Session {
    /// This machine's share of a site-wide WAN download cap of `cap` bytes
    /// per second, from what the site's members said last: `cap` divided
    /// among us and every member (over all torrents) that wants WAN bytes.
    /// Cheap (a look at each torrent's core); the embedder asks again every
    /// second or so and applies it to its WAN download bucket, so a member
    /// that joins, leaves or stops wanting moves the share within that
    /// (plus its next message, at most `RENEW_INTERVAL` for one that stops).
    pub fn site_wan_share(&self, cap: u64) -> SiteShare {
        let mut others = BTreeSet::new();
        let mut wanting = false;
        for torrent in self.inner.torrents_snapshot() {
            wanting |= torrent.site_wan_votes(&mut others);
        }
        SiteShare {
            rate: wan_share(cap, others.len()),
            others_wanting: others.len(),
            wanting,
        }
    }
}
