//! The session's DHT: the driver ([`crate::dht`]) on the listen address and
//! port, and the task that looks up and announces the session's torrents.
//!
//! Every active public torrent, magnets still fetching their metadata
//! included, is looked up (`get_peers`, then `announce_peer` with our
//! listen port) when it starts and then every 15 minutes, every 5 while it
//! downloads with fewer than [`FEW_PEERS`] peers; found peers are dialled
//! like a tracker's. A private torrent (BEP 27) is never looked up or given
//! DHT peers: a lookup needs a [`PublicTorrent`], which only a torrent
//! without the private flag yields. The task sleeps until the next torrent
//! is due, a torrent starts, or the node reports something.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use capwise_dht::Event;
use capwise_proto::metainfo::InfoHash;
use capwise_proto::privacy::PublicTorrent;
use capwise_proto::torrent::RunState;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};

use crate::class::PeerSource;
use crate::dht::{self, DhtHandle, DhtHooks, DhtOptions};
use crate::udp::Datagram;

use super::SessionInner;
/// Lookups repeat this often for a torrent with enough peers...
pub const LOOKUP_EVERY: Duration = Duration::from_secs(15 * 60);
/// ...and this often for one downloading with fewer than [`FEW_PEERS`].
pub const LOOKUP_EVERY_WHEN_FEW: Duration = Duration::from_secs(5 * 60);
/// Below this many peers a downloading torrent looks up more often.
pub const FEW_PEERS: usize = 5;

/// The session's DHT, while it runs.
pub(crate) struct SessionDht {
    pub(crate) handle: DhtHandle,
    /// Wakes the lookup task: a torrent started or resumed.
    wake: Arc<Notify>,
}

impl SessionDht {
    /// Starts the driver on the session's UDP socket (`session/carriers.rs`
    /// binds it on the listen address and port, another free port if that
    /// one is taken) and the lookup task.
    pub(crate) fn start(
        inner: &Arc<SessionInner>,
        options: DhtOptions,
        socket: Arc<UdpSocket>,
        incoming: mpsc::Receiver<Datagram>,
    ) -> Self {
        let hooks = &inner.hooks;
        if let Ok(addr) = socket.local_addr() {
            tracing::info!(%addr, "DHT listening");
        }
        let dht_hooks = DhtHooks {
            gate: hooks.gate.clone(),
            counters: hooks.counters.clone(),
            wan: hooks.wan.clone(),
            read_only: hooks.dht_read_only.clone(),
        };
        let (handle, events) = dht::spawn(socket, incoming, options, dht_hooks);
        let wake = Arc::new(Notify::new());
        tokio::spawn(lookups(
            Arc::downgrade(inner),
            handle.clone(),
            events,
            wake.clone(),
        ));
        SessionDht { handle, wake }
    }

    /// A torrent started or resumed: look it up now.
    pub(crate) fn torrents_changed(&self) {
        self.wake.notify_one();
    }
}

/// A torrent the DHT may look up now.
struct Candidate {
    info_hash: [u8; 20],
    public: PublicTorrent,
    /// Looks up more often: downloading with few peers.
    hungry: bool,
}

impl SessionInner {
    /// Active public torrents and magnets, for the DHT.
    fn dht_candidates(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        for m in self.magnets.lock().expect("magnets lock").values() {
            if *m.run.borrow() == RunState::Active {
                // No private flag to read before the metadata: public until
                // it says otherwise (privacy.rs).
                if let Ok(public) = PublicTorrent::check(false) {
                    out.push(Candidate {
                        info_hash: m.info_hash,
                        public,
                        hungry: m.peer_count() < FEW_PEERS,
                    });
                }
            }
        }
        for t in self.torrents_snapshot() {
            let Ok(public) = PublicTorrent::from_info(&t.metainfo.info) else {
                continue;
            };
            if t.takes_peers() {
                out.push(Candidate {
                    info_hash: t.info_hash,
                    public,
                    hungry: !t.is_complete() && t.lock_core().swarm.peer_count() < FEW_PEERS,
                });
            }
        }
        out
    }

    /// Peers the DHT found for `info_hash`: to its torrent, if it is public,
    /// or to its magnet's metadata phase.
    fn dht_found(&self, info_hash: &[u8; 20], peers: &[SocketAddr]) {
        let torrent = self
            .torrents
            .lock()
            .expect("torrents lock")
            .get(info_hash)
            .cloned();
        if let Some(t) = torrent {
            if PublicTorrent::from_info(&t.metainfo.info).is_ok() && t.takes_peers() {
                t.connect_peers(peers, PeerSource::Dht);
            }
            return;
        }
        let magnet = self
            .magnets
            .lock()
            .expect("magnets lock")
            .get(info_hash)
            .cloned();
        if let Some(m) = magnet {
            m.learn(peers, PeerSource::Dht);
        }
    }
}

/// Spreads lookups of torrents added together: ±10 %.
fn jittered(every: Duration) -> Duration {
    let tenth = every.as_millis() as u64 / 10;
    every - Duration::from_millis(tenth)
        + Duration::from_millis(rand::random::<u64>() % (2 * tenth + 1))
}

async fn lookups(
    inner: Weak<SessionInner>,
    handle: DhtHandle,
    mut events: mpsc::Receiver<Event>,
    wake: Arc<Notify>,
) {
    let mut due: HashMap<[u8; 20], Instant> = HashMap::new();
    let mut bootstrapped = false;
    loop {
        let Some(session) = inner.upgrade() else {
            return;
        };
        let now = Instant::now();
        let port = session.local_addr.port();
        let candidates = session.dht_candidates();
        drop(session);
        due.retain(|h, _| candidates.iter().any(|c| c.info_hash == *h));
        for c in candidates {
            let at = due.entry(c.info_hash).or_insert(now);
            if *at <= now {
                handle
                    .announce(InfoHash(c.info_hash), c.public, Some(port))
                    .await;
                let every = if c.hungry {
                    LOOKUP_EVERY_WHEN_FEW
                } else {
                    LOOKUP_EVERY
                };
                *at = now + jittered(every);
            }
        }
        let next = due.values().min().copied();
        tokio::select! {
            () = crate::deadline::sleep_until(next) => {}
            () = wake.notified() => {}
            event = events.recv() => match event {
                None => return,
                Some(Event::Peers { info_hash, peers, .. }) => {
                    let Some(session) = inner.upgrade() else { return };
                    tracing::debug!(info_hash = %info_hash.to_hex(), peers = peers.len(), "DHT peers");
                    session.dht_found(&info_hash.0, &peers);
                }
                Some(Event::Bootstrapped { nodes }) => {
                    tracing::debug!(nodes, "DHT bootstrapped");
                    if nodes > 0 && !bootstrapped {
                        // Lookups tried before the node knew anyone went to
                        // the bootstrap nodes alone (or nowhere): again now.
                        bootstrapped = true;
                        due.clear();
                    }
                }
                Some(Event::LookupDone { info_hash, peers, announced, .. }) => {
                    tracing::debug!(info_hash = %info_hash.to_hex(), peers, announced, "DHT lookup done");
                }
            },
        }
    }
}
