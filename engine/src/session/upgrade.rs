//! Moving a connection to a capwise agent onto QUIC.
//!
//! Both agents offer QUIC in their extension handshakes (`ext/quic.rs`:
//! port and agent id). The one with the lower agent id dials the other's
//! endpoint with that id pinned (`transport/quic.rs`) and runs the peer
//! protocol there like a dialled peer; the other only accepts. When the
//! QUIC connection's handshakes are done, it takes the place of the TCP or
//! uTP one on both ends ([`retire`]): same address in the admission table,
//! same source, and the old connection is closed, so it carries no payload
//! afterwards. A dial that fails (no route, a wrong key, a time-out) leaves
//! the old connection as it was. With an allow-list, an agent not on it
//! is not dialled, and its own dial is refused by our endpoint (mutual
//! TLS); it stays on TCP or uTP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use capwise_proto::ext::quic;
use capwise_proto::torrent::TorrentCore;

use crate::class::PeerSource;
use crate::hooks::PeerClass;
use crate::transport::identity::AgentId;
use crate::transport::TransportKind;

use super::torrent::{PeerLink, TorrentShared};

/// How long the QUIC dial may take; the old connection goes on meanwhile.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A peer's extension handshake came over `link`: when it offers QUIC and
/// we are the side that dials, dial it in a task of its own.
pub(crate) fn consider(shared: &Arc<TorrentShared>, link: &PeerLink, payload: &[u8]) {
    let Some(endpoint) = shared.session.quic.as_ref() else {
        return;
    };
    if link.kind == TransportKind::Quic {
        return;
    }
    // Its own carriers leave QUIC out (a background torrent stays on uTP).
    if shared
        .transports
        .as_ref()
        .is_some_and(|t| !t.uses(crate::transport::Carrier::Quic))
    {
        return;
    }
    let Some(offer) = quic::peer_offer(payload) else {
        return;
    };
    let remote = SocketAddr::new(link.addr.ip(), offer.port);
    let theirs = AgentId(offer.fingerprint);
    if !quic::dials(&endpoint.id().0, &offer.fingerprint) {
        tracing::debug!(addr = %link.addr, agent = %theirs, "peer offers QUIC; the lower agent id dials");
        return;
    }
    if !endpoint.allows(&theirs) {
        tracing::info!(
            addr = %link.addr,
            agent = %theirs,
            "peer offers QUIC, but its agent id is not on the allow-list ([quic] allow): staying on {:?}",
            link.kind
        );
        return;
    }
    if link.class() == PeerClass::Wan && !shared.session.hooks.wan.is_on() {
        return;
    }
    let Ok(permit) = shared.session.connections.clone().try_acquire_owned() else {
        tracing::debug!(addr = %link.addr, "no slot for the QUIC connection; staying on {:?}", link.kind);
        return;
    };
    let (shared, endpoint, source, old) =
        (shared.clone(), endpoint.clone(), link.source, link.kind);
    let known = link.addr;
    tokio::spawn(async move {
        match endpoint.connect(remote, theirs, DIAL_TIMEOUT).await {
            Ok(transport) => {
                let transport = transport.with_known_addr(known);
                tracing::debug!(%remote, agent = %theirs, "QUIC connected; moving the peer onto it");
                if let Err(e) = super::peer::handshake_out(shared, transport, permit, source).await
                {
                    // Our key refused by the peer's allow-list shows here:
                    // the listener checks it after our handshake is done.
                    tracing::info!(%remote, agent = %theirs, error = %e, "QUIC peer connection failed; staying on {old:?}");
                }
            }
            Err(e) => {
                tracing::info!(%remote, agent = %theirs, error = %e, "QUIC dial failed; staying on {old:?}");
            }
        }
    });
}

/// A QUIC connection from `peer_id` at `ip` is about to join: close the
/// same peer's TCP or uTP connection and take its place. Returns the
/// address and source it was known by, which the QUIC connection keeps
/// (the address others can dial it at, the way it was found); none when
/// there is no such connection.
pub(crate) fn retire(
    shared: &TorrentShared,
    core: &mut TorrentCore,
    peer_id: &[u8; 20],
    ip: IpAddr,
) -> Option<(SocketAddr, PeerSource)> {
    let links = shared.links.lock().expect("links lock");
    let (key, addr, source) = core
        .admission()
        .members()
        .find(|(key, m)| {
            m.peer_id == *peer_id
                && m.addr.ip() == ip
                && links
                    .get(key)
                    .is_some_and(|l| l.kind != TransportKind::Quic)
        })
        .map(|(key, m)| (key, m.addr, m.source))?;
    if let Some(old) = links.get(&key) {
        tracing::debug!(%addr, kind = ?old.kind, "peer moved onto QUIC; closing its old connection");
        old.close();
    }
    drop(links);
    // Its requests go back to the pool now, for the QUIC connection to take.
    core.leave(key);
    Some((addr, source))
}

/// Whether the peer `peer_id` at `ip` is connected over QUIC already: a
/// TCP or uTP connection from it is then refused (it would else replace the
/// QUIC one under the crossed-dials rule).
pub(crate) fn on_quic(
    shared: &TorrentShared,
    core: &TorrentCore,
    peer_id: &[u8; 20],
    ip: IpAddr,
) -> bool {
    let links = shared.links.lock().expect("links lock");
    core.admission().members().any(|(key, m)| {
        m.peer_id == *peer_id
            && m.addr.ip() == ip
            && links
                .get(&key)
                .is_some_and(|l| l.kind == TransportKind::Quic)
    })
}
