//! When the machine's addresses change: connections whose local address
//! is gone are dead (their packets have nowhere to come back to) but TCP
//! would keep them until a time-out, so they are closed at once and their
//! peers dialled again, from an address that works now, under a new peer
//! id (the peers still hold the dead connections, and a peer refuses a
//! second connection with an id it already has); and trackers are told
//! where we are now. [`Session::network_changed`] is the one entry
//! the agent calls on the kernel's address and route notifications.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::class::PeerSource;

use super::torrent::TorrentShared;
use super::Session;

/// How long a redial waits for the closed connections to be gone.
const GONE_WAIT: Duration = Duration::from_secs(5);

/// What [`Session::network_changed`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkChange {
    /// Connected peers whose class (LAN, WAN) changed.
    pub reclassified: usize,
    /// Connections closed because their local address is gone.
    pub closed: usize,
    /// The machine's addresses changed, so every torrent announced again.
    pub reannounced: bool,
}

/// The machine's addresses now; `None` when they cannot be read.
pub(crate) fn local_ips() -> Option<Vec<IpAddr>> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .collect();
    ips.sort();
    ips.dedup();
    Some(ips)
}

impl Session {
    /// The machine's addresses or routes changed: the classifier looks at
    /// the interfaces again and connected peers take their new class
    /// ([`Self::reclassify`]); connections from an address that is gone
    /// close at once and their peers are dialled again; and when the set
    /// of addresses changed, every torrent announces at once, so trackers
    /// learn the address we have now.
    pub fn network_changed(&self) -> NetworkChange {
        // The interface all traffic is bound to, first: a device made anew
        // takes the listening sockets before anyone dials again.
        let interface_back = self
            .inner
            .interface
            .as_ref()
            .is_some_and(|b| b.refresh() && b.status().state == super::InterfaceState::Up);
        self.inner.hooks.classifier.refresh();
        let reclassified = self.reclassify();
        let Some(ips) = local_ips() else {
            tracing::warn!("cannot read the local addresses");
            return NetworkChange {
                reclassified,
                ..NetworkChange::default()
            };
        };
        let closed = self.local_addresses_changed(&ips);
        let reannounced = {
            let mut known = self.inner.addresses.lock().expect("addresses lock");
            let moved = *known != ips;
            *known = ips;
            moved
        };
        if interface_back {
            self.redial_parked();
        }
        if reannounced || interface_back {
            // Trackers learn the address we have now; after the interface
            // was down, announces are not left to their back-off.
            for torrent in self.inner.torrents_snapshot() {
                torrent.announce_now();
            }
        }
        let change = NetworkChange {
            reclassified,
            closed,
            reannounced,
        };
        tracing::info!(?change, "network changed");
        change
    }

    /// The machine's local addresses are now `addrs`: close every peer
    /// connection whose local end is on another address, and dial those
    /// peers again. Returns how many connections were closed.
    pub fn local_addresses_changed(&self, addrs: &[IpAddr]) -> usize {
        let addrs: Vec<IpAddr> = addrs.iter().map(IpAddr::to_canonical).collect();
        self.close_where(|local| !addrs.contains(&local))
    }

    /// Close every peer connection whose local end is on `ip` (an address
    /// that went away), and dial those peers again. Returns how many
    /// connections were closed.
    pub fn close_connections_from(&self, ip: IpAddr) -> usize {
        let ip = ip.to_canonical();
        self.close_where(|local| local == ip)
    }

    fn close_where(&self, gone: impl Fn(IpAddr) -> bool) -> usize {
        let mut closed = 0;
        let mut again = Vec::new();
        for torrent in self.inner.torrents_snapshot() {
            let (n, peers) = close_links_where(&torrent, &gone);
            closed += n;
            if !peers.is_empty() {
                again.push((torrent, peers));
            }
        }
        if closed > 0 {
            // The peers at the other end still hold these connections
            // (their end hears no close from an address that is gone) and
            // refuse a second connection with the same peer id: we come
            // back as a new peer (`SessionInner::new_identity`).
            self.inner.new_identity();
        }
        // While the session's interface is missing or down every dial
        // fails: the peers wait for it to come back (`redial_parked`).
        let parked = self
            .inner
            .interface
            .as_ref()
            .is_some_and(|b| b.status().state != super::InterfaceState::Up);
        for (torrent, peers) in again {
            if parked {
                let mut waiting = self.inner.parked.lock().expect("parked peers lock");
                waiting.push((Arc::downgrade(&torrent), peers));
            } else {
                tokio::spawn(redial(torrent, peers));
            }
        }
        closed
    }

    /// The session's interface is back: the peers whose connections died
    /// with it are dialled again.
    fn redial_parked(&self) {
        let waiting = std::mem::take(&mut *self.inner.parked.lock().expect("parked peers lock"));
        for (torrent, peers) in waiting {
            if let Some(torrent) = torrent.upgrade() {
                tokio::spawn(redial(torrent, peers));
            }
        }
    }
}

/// Closes `torrent`'s links whose local address is gone: how many, and the
/// peers to dial again with the source each was found by (not those that
/// dialled us: the port we saw is not where they listen).
fn close_links_where(
    torrent: &TorrentShared,
    gone: &impl Fn(IpAddr) -> bool,
) -> (usize, Vec<(SocketAddr, PeerSource)>) {
    let links = torrent.links.lock().expect("links lock");
    let mut closed = 0;
    let mut peers = Vec::new();
    for link in links.values() {
        if gone(link.local.ip().to_canonical()) && link.close() {
            tracing::info!(addr = %link.addr, local = %link.local, "local address gone: closing the connection");
            closed += 1;
            if link.source != PeerSource::Incoming {
                peers.push((link.addr, link.source));
            }
        }
    }
    (closed, peers)
}

/// Dials `peers` again once their closed connections have left the
/// torrent (a peer still connected is not dialled), waiting at most
/// [`GONE_WAIT`]. Each keeps the source it was found by.
pub(crate) async fn redial(torrent: Arc<TorrentShared>, peers: Vec<(SocketAddr, PeerSource)>) {
    let until = tokio::time::Instant::now() + GONE_WAIT;
    while tokio::time::Instant::now() < until {
        let lingering = torrent
            .links
            .lock()
            .expect("links lock")
            .values()
            .any(|l| peers.iter().any(|&(addr, _)| addr == l.addr));
        if !lingering {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    torrent.connect_found(&peers);
}
