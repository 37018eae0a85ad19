//! Channel membership seen from the session: which connected peers proved
//! it (`capwise_proto::swarm` keeps the truth per peer key; this maps the
//! I/O layer's addresses onto it).

use std::net::SocketAddr;

use super::torrent::TorrentShared;

impl TorrentShared {
    /// Whether this torrent's peers must prove membership.
    pub(crate) fn requires_membership(&self) -> bool {
        self.lock_core().swarm.requires_membership()
    }

    /// Whether PEX and LSD may run for this torrent, and how: public, or a
    /// private channel torrent whose peers prove membership (privacy.rs).
    /// The one test LSD's announcements and the peers it hears both take.
    pub(crate) fn peer_sharing(&self) -> Option<capwise_proto::privacy::PeerSharing> {
        let private = self.metainfo.info.private;
        capwise_proto::privacy::PeerSharing::check(private, self.requires_membership()).ok()
    }

    /// Connected peers that proved membership.
    pub(crate) fn proven_members(&self) -> usize {
        self.lock_core().swarm.proven_members()
    }

    /// Each connected peer: address, source, carrier, encryption, class
    /// and whether it proved membership (the dashboard's peer list).
    pub(crate) fn peer_list(&self) -> Vec<super::handle::PeerInfo> {
        // Lock order: the core first, then the links.
        let core = self.lock_core();
        let links = self.links.lock().expect("links lock");
        links
            .iter()
            .map(|(&key, link)| super::handle::PeerInfo {
                addr: link.addr,
                source: link.source,
                transport: link.kind,
                encrypted: link.encrypted,
                lan: link.class() == crate::hooks::PeerClass::Lan,
                proven_member: core.swarm.is_proven_member(key),
                snapshot: core.swarm.peer_snapshot(key),
            })
            .collect()
    }

    /// Whether the peer connected from `addr` proved membership.
    pub(crate) fn is_proven_member(&self, addr: SocketAddr) -> bool {
        // Lock order: the core first, then the links.
        let core = self.lock_core();
        let links = self.links.lock().expect("links lock");
        links
            .iter()
            .any(|(&key, link)| link.addr == addr && core.swarm.is_proven_member(key))
    }
}
