//! Peers learnt through PEX (BEP 11) become dials.
//!
//! The swarm bounds what a peer may tell us (`ext::pex`, `swarm/pex.rs`);
//! here the session's classifier, as it is now, applies the one rule the
//! swarm cannot: LAN addresses learnt from a WAN peer are never dialled
//! ([`Learnt::to_dial`]). What is left goes to
//! [`TorrentShared::connect_peers`], which skips ourselves, known, banned
//! and (with the WAN switch off) WAN peers, and dials within the
//! connection limits.

use crate::class::PeerSource;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::ext::pex::Learnt;
use crate::picker::PeerKey;

use super::torrent::TorrentShared;

impl TorrentShared {
    /// Peer `from` told us of `learnt` (already bounded by the swarm).
    pub(crate) fn pex_learnt(self: &Arc<Self>, from: PeerKey, learnt: Learnt) {
        let classifier = &self.session.hooks.classifier;
        let peers: Vec<SocketAddr> = learnt
            .to_dial(|ip| classifier.classify(ip))
            .into_iter()
            .map(|e| e.addr)
            .collect();
        tracing::debug!(
            peer = from,
            learnt = peers.len(),
            left_out = learnt.ignored(),
            "peers learnt through PEX"
        );
        if peers.is_empty() {
            return;
        }
        self.connect_peers(&peers, PeerSource::Pex);
    }
}
