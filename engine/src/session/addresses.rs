//! When the machine's addresses change: connections whose local address
//! is gone are dead (their packets have nowhere to come back to) but TCP
//! would keep them until a time-out, so they are closed at once and their
//! peers dialled again, from an address that works now.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::class::PeerSource;

use super::torrent::TorrentShared;
use super::Session;

/// How long a redial waits for the closed connections to be gone.
const GONE_WAIT: Duration = Duration::from_secs(5);

impl Session {
    /// The machine's local addresses are now `addrs`: close every peer
    /// connection whose local end is on another address, and dial those
    /// peers again. Returns how many connections were closed.
    pub fn local_addresses_changed(&self, addrs: &[IpAddr]) -> usize {
        self.close_where(|local| !addrs.contains(&local))
    }

    /// Close every peer connection whose local end is on `ip` (an address
    /// that went away), and dial those peers again. Returns how many
    /// connections were closed.
    pub fn close_connections_from(&self, ip: IpAddr) -> usize {
        self.close_where(|local| local == ip)
    }

    fn close_where(&self, gone: impl Fn(IpAddr) -> bool) -> usize {
        let mut closed = 0;
        for torrent in self.inner.torrents_snapshot() {
            let peers = close_links_where(&torrent, &gone);
            closed += peers.len();
            if !peers.is_empty() {
                tokio::spawn(redial(torrent, peers));
            }
        }
        closed
    }
}

/// Closes `torrent`'s links whose local address is gone; their peers, with
/// the source each was found by.
fn close_links_where(
    torrent: &TorrentShared,
    gone: &impl Fn(IpAddr) -> bool,
) -> Vec<(SocketAddr, PeerSource)> {
    let links = torrent.links.lock().expect("links lock");
    let mut peers = Vec::new();
    for link in links.values() {
        if gone(link.local.ip()) && link.close() {
            tracing::info!(addr = %link.addr, local = %link.local, "local address gone: closing the connection");
            peers.push((link.addr, link.source));
        }
    }
    peers
}

/// Dials `peers` again once their closed connections have left the
/// torrent (a peer still connected is not dialled), waiting at most
/// [`GONE_WAIT`]. Each keeps the source it was found by.
async fn redial(torrent: Arc<TorrentShared>, peers: Vec<(SocketAddr, PeerSource)>) {
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
