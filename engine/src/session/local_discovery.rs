//! Local service discovery (BEP 14) for a session: one [`Lsd`] driver per
//! interface and group, announcing every active public torrent (magnet
//! torrents still fetching their metadata included), and dialling what it
//! hears through the torrent's ordinary entry point, so the peer is
//! classified by its address like any other: an LSD packet never makes a
//! peer LAN.
//!
//! Runs only with [`SessionConfig::lsd`](super::SessionConfig::lsd) (off by
//! default, so a library user or test never multicasts unless it asks).
//! Interfaces: a shared Ethernet-like segment (`netif.rs`: up, multicast,
//! `ARPHRD_ETHER`, neither loopback nor point-to-point, so tun, WireGuard
//! and PPP never qualify) that the caller's [`InterfaceFilter`] lets through
//! (the agent refuses VPNs, e.g. an OpenVPN tap). The IPv4 group is joined
//! on the interface's first IPv4 address, the IPv6 group where it has an
//! IPv6 address, each only if the listener takes that family (`0.0.0.0`:
//! IPv4; `[::]`: both). A session listening on one specific address runs
//! LSD only on the interface that holds it (so one on 127.0.0.1 announces
//! nothing). [`Session::rescan_lsd`](super::Session::rescan_lsd) follows
//! interfaces that come and go: drivers on unchanged interfaces go on, new
//! ones start, and one that comes back within a minute waits out the
//! minute (`lsd::MIN_INTERVAL`) before it announces again.
//!
//! What is announced is recomputed from the session ([`LocalDiscovery::sync`])
//! whenever a torrent is added, removed, paused, resumed or gets its
//! metadata: an ordinary private torrent (BEP 27) never has a `PeerSharing`
//! (a private channel torrent whose peers prove membership does), so it is
//! never announced nor given LSD peers, and a magnet whose metadata turns
//! out private is withdrawn then.

use crate::class::PeerSource;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use capwise_proto::lsd::{Group, MIN_INTERVAL};
use capwise_proto::privacy::{PeerSharing, PublicTorrent};

use crate::lsd::{Lsd, LsdInterface};
use crate::metainfo::InfoHash;
use crate::netif::{self, NetInterface};

use super::SessionInner;

/// Which interfaces (by name) local service discovery may use, on top of
/// the engine's own test for a shared LAN segment. The default takes all.
#[derive(Clone)]
pub struct InterfaceFilter(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl InterfaceFilter {
    /// A filter that lets an interface through when `allow(name)` is true.
    pub fn new(allow: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(allow))
    }

    /// Whether LSD may use the interface called `name`.
    pub fn allows(&self, name: &str) -> bool {
        (self.0)(name)
    }
}

impl Default for InterfaceFilter {
    fn default() -> Self {
        Self::new(|_| true)
    }
}

impl fmt::Debug for InterfaceFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InterfaceFilter")
    }
}

/// The session's LSD drivers and the torrents they announce.
#[derive(Default)]
pub(crate) struct LocalDiscovery {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Off until started, and again after the session stops.
    running: bool,
    /// Each with its interface's name.
    drivers: BTreeMap<LsdInterface, (String, Lsd)>,
    /// What is announced, to give to drivers started later.
    torrents: HashMap<[u8; 20], PeerSharing>,
    /// When a driver on an interface (by name: an interface made again
    /// gets a new index) and group stopped, so that one started again
    /// there within [`MIN_INTERVAL`] does not announce sooner.
    left: HashMap<(String, Group), Instant>,
}

impl LocalDiscovery {
    /// Starts drivers on the interfaces there are now (the session has LSD on).
    pub(crate) fn start(&self, session: &Arc<SessionInner>) {
        self.lock().running = true;
        self.rescan(session);
    }

    /// Stops every driver (the session shuts down).
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.running = false;
        state.drivers.clear();
    }

    /// Starts drivers on interfaces that appeared, stops those on
    /// interfaces that are gone, keeps the rest.
    pub(crate) fn rescan(&self, session: &Arc<SessionInner>) {
        if !self.lock().running {
            return;
        }
        let wanted = match netif::list() {
            Ok(all) => suitable(
                &all,
                session.local_addr.ip(),
                &session.config.lsd_interfaces,
                session.config.interface.as_deref(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list network interfaces; LSD keeps its interfaces");
                return;
            }
        };
        let now = Instant::now();
        let mut state = self.lock();
        if !state.running {
            return;
        }
        let gone: Vec<LsdInterface> = state
            .drivers
            .keys()
            .filter(|i| !wanted.iter().any(|(_, w)| w == *i))
            .copied()
            .collect();
        for interface in gone {
            if let Some((name, _)) = state.drivers.remove(&interface) {
                tracing::debug!(name, ?interface, "LSD stopped on an interface that is gone");
                state.left.insert((name, interface.target().group), now);
            }
        }
        state
            .left
            .retain(|_, at| now.saturating_duration_since(*at) < MIN_INTERVAL);
        for (name, interface) in wanted {
            if state.drivers.contains_key(&interface) {
                continue;
            }
            let first = state
                .left
                .get(&(name.clone(), interface.target().group))
                .map_or(now, |at| *at + MIN_INTERVAL);
            let weak = Arc::downgrade(session);
            let on_peer = Box::new(move |addr, hashes| heard(&weak, addr, hashes));
            match Lsd::start_not_before(interface, session.local_addr.port(), on_peer, first) {
                Ok(lsd) => {
                    for (hash, public) in &state.torrents {
                        lsd.add_torrent(InfoHash(*hash), *public);
                    }
                    tracing::debug!(name, ?interface, "LSD started on an interface");
                    state.drivers.insert(interface, (name, lsd));
                }
                Err(e) => {
                    tracing::warn!(?interface, error = %e, "LSD cannot run on this interface")
                }
            }
        }
    }

    /// Announces exactly the session's active public torrents and active
    /// magnets (which have no private flag yet), and no others.
    pub(crate) fn sync(&self, session: &SessionInner) {
        let mut wanted: HashMap<[u8; 20], PeerSharing> = HashMap::new();
        // One lock order: magnets, then torrents (see SessionInner).
        {
            let magnets = session.magnets.lock().expect("magnets lock");
            for (hash, magnet) in magnets.iter() {
                if !magnet.is_paused() {
                    // No metadata, so no private flag yet (privacy.rs).
                    if let Ok(public) = PublicTorrent::check(false) {
                        wanted.insert(*hash, public.into());
                    }
                }
            }
            let torrents = session.torrents.lock().expect("torrents lock");
            for (hash, torrent) in torrents.iter() {
                if torrent.is_paused() {
                    continue;
                }
                // A private channel torrent too: LSD stays on the LAN and
                // its peers must prove membership (privacy.rs).
                if let Some(sharing) = torrent.peer_sharing() {
                    wanted.insert(*hash, sharing);
                }
            }
        }
        let mut state = self.lock();
        let removed: Vec<[u8; 20]> = state
            .torrents
            .keys()
            .filter(|h| !wanted.contains_key(*h))
            .copied()
            .collect();
        for hash in removed {
            state.torrents.remove(&hash);
            for (_, lsd) in state.drivers.values() {
                lsd.remove_torrent(InfoHash(hash));
            }
        }
        for (hash, public) in wanted {
            if state.torrents.insert(hash, public).is_none() {
                for (_, lsd) in state.drivers.values() {
                    lsd.add_torrent(InfoHash(hash), public);
                }
            }
        }
    }

    /// The interfaces (and groups) drivers run on now.
    pub(crate) fn interfaces(&self) -> Vec<LsdInterface> {
        self.lock().drivers.keys().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("LSD lock")
    }
}

/// A peer heard on one interface (the datagram's source IP, the announced
/// port; the driver's receiver already limited what one source may say):
/// dial it for every torrent it named that is still ours, through the same
/// entry point as a tracker's peers.
fn heard(session: &Weak<SessionInner>, addr: SocketAddr, hashes: Vec<InfoHash>) {
    let Some(session) = session.upgrade() else {
        return;
    };
    for hash in hashes {
        let magnet = session
            .magnets
            .lock()
            .expect("magnets lock")
            .get(&hash.0)
            .cloned();
        if let Some(magnet) = magnet {
            tracing::debug!(%addr, torrent = %magnet.display_name(), "peer heard over LSD");
            magnet.learn_from_lsd(&[addr]);
            continue;
        }
        let torrent = session
            .torrents
            .lock()
            .expect("torrents lock")
            .get(&hash.0)
            .cloned();
        if let Some(torrent) = torrent {
            // The same test as `sync`: a private channel torrent takes LSD
            // peers (they prove membership before they get anything), an
            // ordinary private torrent never does.
            if torrent.peer_sharing().is_none() || torrent.is_paused() {
                continue;
            }
            tracing::debug!(%addr, torrent = %torrent.metainfo.info.name, "peer heard over LSD");
            torrent.connect_peers(&[addr], PeerSource::Lsd);
        }
    }
}

/// The interfaces (with their names) and groups LSD runs on for a listener
/// on `listen`; `only` the session's interface when it is bound to one.
fn suitable(
    all: &[NetInterface],
    listen: IpAddr,
    filter: &InterfaceFilter,
    only: Option<&str>,
) -> Vec<(String, LsdInterface)> {
    let any = listen.is_unspecified();
    let mut out = Vec::new();
    for iface in all {
        if !iface.is_lan_segment() || !filter.allows(&iface.name) {
            continue;
        }
        if only.is_some_and(|only| only != iface.name) {
            continue;
        }
        let holds_listen = match listen {
            IpAddr::V4(v4) => iface.v4.contains(&v4),
            IpAddr::V6(v6) => iface.v6.contains(&v6),
        };
        if !(any || holds_listen) {
            continue;
        }
        // A group only where peers can reach the listener: 0.0.0.0 takes
        // IPv4 only, [::] both (dual-stack), a specific address its family.
        let v4_ok = listen.is_ipv4() || listen == IpAddr::from(Ipv6Addr::UNSPECIFIED);
        if let (true, Some(addr)) = (v4_ok, iface.v4.first()) {
            let v4 = LsdInterface::V4 {
                ifindex: iface.index,
                addr: *addr,
            };
            out.push((iface.name.clone(), v4));
        }
        if listen.is_ipv6() && !iface.v6.is_empty() {
            let v6 = LsdInterface::V6 {
                ifindex: iface.index,
            };
            out.push((iface.name.clone(), v6));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn iface(name: &str, index: u32, link_type: u16) -> NetInterface {
        NetInterface {
            name: name.into(),
            index,
            flags: 0x1043,
            link_type: Some(link_type),
            v4: vec![Ipv4Addr::new(192, 168, 1, index as u8)],
            v6: vec!["fd00::1".parse().unwrap()],
        }
    }

    #[test]
    fn lsd_runs_on_shared_segments_the_filter_allows() {
        let all = vec![
            iface("eth0", 2, netif::ARPHRD_ETHER),
            iface("tap0", 3, netif::ARPHRD_ETHER),
            iface("wg0", 4, 65534),
        ];
        let no_tap = InterfaceFilter::new(|name| !name.starts_with("tap"));
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(
            suitable(&all, any4, &no_tap, None),
            vec![(
                "eth0".to_string(),
                LsdInterface::V4 {
                    ifindex: 2,
                    addr: Ipv4Addr::new(192, 168, 1, 2)
                }
            )]
        );
        // Dual-stack: both groups, on each interface the filter allows.
        let any6: IpAddr = "::".parse().unwrap();
        assert_eq!(
            suitable(&all, any6, &InterfaceFilter::default(), None).len(),
            4
        );
        // A specific address: its interface and family only.
        let one: IpAddr = "192.168.1.3".parse().unwrap();
        assert_eq!(
            suitable(&all, one, &InterfaceFilter::default(), None),
            vec![(
                "tap0".to_string(),
                LsdInterface::V4 {
                    ifindex: 3,
                    addr: Ipv4Addr::new(192, 168, 1, 3)
                }
            )]
        );
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(suitable(&all, loopback, &InterfaceFilter::default(), None).is_empty());
        // Bound to one interface: LSD runs there alone (and nowhere when it
        // is no LAN segment).
        let only_tap = suitable(&all, any4, &InterfaceFilter::default(), Some("tap0"));
        assert_eq!(
            only_tap.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["tap0"]
        );
        assert!(suitable(&all, any4, &InterfaceFilter::default(), Some("wg0")).is_empty());
    }
}
