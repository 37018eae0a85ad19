//! LAN or WAN follows the network. When the machine's subnets change (a
//! laptop moves from an office 10.x LAN to a carrier's CGNAT 10.x), the
//! same peer address may change class, and a connection classed on the old
//! network would be counted and gated wrongly: a carrier peer taken for a
//! free LAN peer is a bill.
//!
//! Decision: a connection whose peer changed class takes its new class at
//! once (`PeerLink::set_class`), so every byte gated or counted from then on
//! is of the new class (a peer that was LAN is debited as WAN from the
//! change on), and it is closed and dialled again, so that its new
//! connection starts with what the class sets up once (WAN's small write
//! batches and unsent-data bound) and is not made at all when it is now
//! WAN and the WAN is off. Peers that had dialled us are not dialled back
//! (the port we saw is not where they listen): they come again, or a
//! tracker lists them.

use std::net::SocketAddr;

use crate::class::PeerSource;

use super::Session;

impl Session {
    /// Looks at every connected peer's class again, with the classifier as
    /// it is now (after [`Classifier::refresh`](crate::hooks::Classifier::refresh)):
    /// a peer whose class changed is of its new class from now on, its
    /// connection is closed and the peer dialled again. Returns how many
    /// changed.
    pub fn reclassify(&self) -> usize {
        let classifier = &self.inner.hooks.classifier;
        let mut changed = 0;
        for torrent in self.inner.torrents_snapshot() {
            let mut again: Vec<(SocketAddr, PeerSource)> = Vec::new();
            for link in torrent.links.lock().expect("links lock").values() {
                let now = classifier.classify(link.addr.ip());
                let was = link.class();
                if now == was {
                    continue;
                }
                link.set_class(now);
                changed += 1;
                tracing::info!(addr = %link.addr, ?was, ?now, "the network changed the peer's class: reconnecting");
                if link.close() && link.source != PeerSource::Incoming {
                    again.push((link.addr, link.source));
                }
            }
            if !again.is_empty() {
                tokio::spawn(super::addresses::redial(torrent, again));
            }
        }
        changed
    }
}
