//! When the machine's addresses change: connections whose local address
//! is gone are dead (their packets have nowhere to come back to) but TCP
//! would keep them until a time-out, so they are closed at once and their
//! peers dialled again, from an address that works now, under a new peer
//! id (the peers still hold the dead connections, and a peer refuses a
//! second connection with an id it already has); and trackers are told
//! where we are now. [`Session::network_changed`] is the one entry
//! the agent calls on the kernel's address and route notifications.
//!
//! QUIC connections we dialled are the exception: they migrate (the kernel
//! sends their datagrams from whatever address the route gives now,
//! `transport/quic.rs`), so they stay open; the endpoint rebinds, which
//! makes each probe its path at once, and a connection that has heard
//! nothing from its peer after [`MIGRATE_WAIT`] (the new network cannot
//! reach it) is closed and dialled again like the others.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::class::PeerSource;

use super::torrent::{PeerLink, TorrentShared};
use super::Session;

/// How long a redial waits for the closed connections to be gone.
const GONE_WAIT: Duration = Duration::from_secs(5);

/// How long a migrating QUIC connection may go without a datagram from
/// its peer before it is given up and redialled: the probe after a rebind
/// is answered within a round trip, a few hundred ms on the worst WAN.
const MIGRATE_WAIT: Duration = Duration::from_secs(2);

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
        let mut moving = Vec::new();
        for torrent in self.inner.torrents_snapshot() {
            let (n, peers, migrating) = close_links_where(&torrent, &gone);
            closed += n;
            if !peers.is_empty() {
                again.push((torrent.clone(), peers));
            }
            if !migrating.is_empty() {
                moving.push((torrent, migrating));
            }
        }
        if !moving.is_empty() {
            if let Some(quic) = &self.inner.quic {
                if let Err(error) = quic.rebind() {
                    tracing::warn!(%error, "cannot rebind the QUIC endpoint");
                }
            }
            for (torrent, links) in moving {
                tokio::spawn(confirm_migration(self.inner.clone(), torrent, links));
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

/// A QUIC link that is migrating, with the bytes its connection had
/// received when the address changed.
type Migrating = (Arc<PeerLink>, u64);

/// Closes `torrent`'s links whose local address is gone: how many, the
/// peers to dial again with the source each was found by (not those that
/// dialled us: the port we saw is not where they listen), and the QUIC
/// links we dialled, left open to migrate.
fn close_links_where(
    torrent: &TorrentShared,
    gone: &impl Fn(IpAddr) -> bool,
) -> (usize, Vec<(SocketAddr, PeerSource)>, Vec<Migrating>) {
    let links = torrent.links.lock().expect("links lock");
    let mut closed = 0;
    let mut peers = Vec::new();
    let mut migrating = Vec::new();
    for link in links.values() {
        if !gone(link.local.ip().to_canonical()) {
            continue;
        }
        if let Some(path) = &link.quic_path {
            if !link.closed.load(std::sync::atomic::Ordering::Acquire) {
                migrating.push((link.clone(), path.received()));
            }
            continue;
        }
        if link.close() {
            tracing::info!(addr = %link.addr, local = %link.local, "local address gone: closing the connection");
            closed += 1;
            if link.source != PeerSource::Incoming {
                peers.push((link.addr, link.source));
            }
        }
    }
    (closed, peers, migrating)
}

/// After [`MIGRATE_WAIT`], the migrating links whose peer has sent nothing
/// since the change (the new network does not reach it) are closed and
/// their peers dialled again, under a new peer id as in
/// [`Session::network_changed`].
async fn confirm_migration(
    inner: Arc<super::SessionInner>,
    torrent: Arc<TorrentShared>,
    links: Vec<Migrating>,
) {
    tokio::time::sleep(MIGRATE_WAIT).await;
    let mut peers = Vec::new();
    for (link, before) in links {
        let heard = link.quic_path.as_ref().map_or(0, |p| p.received());
        if heard > before {
            tracing::info!(addr = %link.addr, "QUIC connection migrated");
            continue;
        }
        if link.close() {
            tracing::info!(addr = %link.addr, "QUIC connection did not migrate: redialling");
            if link.source != PeerSource::Incoming {
                peers.push((link.addr, link.source));
            }
        }
    }
    if !peers.is_empty() {
        inner.new_identity();
        redial(torrent, peers).await;
    }
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
