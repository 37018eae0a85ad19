//! One iterative lookup (BEP 5 `find_node` / `get_peers`): query the closest
//! nodes known to the target, at most `alpha` at a time, learn closer ones
//! from their answers, and stop when the `k` closest live nodes have all
//! answered (or nothing is left to ask).
//!
//! Bounded: at most [`MAX_CANDIDATES`] candidates (the farthest unasked ones
//! are dropped), at most [`MAX_PEERS_SEEN`] distinct peers remembered to
//! report each one once.

use std::collections::HashSet;
use std::net::SocketAddrV4;

use crate::id::NodeId;

/// Most candidates one lookup keeps.
pub const MAX_CANDIDATES: usize = 64;
/// Most distinct peers one lookup remembers (later ones may be reported twice).
pub const MAX_PEERS_SEEN: usize = 2000;
/// Most addresses one lookup remembers having considered.
const MAX_ADDRS_SEEN: usize = 1024;

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupKind {
    /// `find_node`: fill the routing table (bootstrap, bucket refresh).
    FindNode,
    /// `get_peers`: find peers of a torrent.
    GetPeers,
    /// `get_peers`, then `announce_peer` to the closest nodes that gave a
    /// token; `None` announces with `implied_port` (the source port).
    Announce {
        /// The port to announce, or None for `implied_port`.
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pending,
    InFlight,
    Responded { token: Option<Vec<u8>> },
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    addr: SocketAddrV4,
    id: Option<NodeId>,
    state: State,
}

/// The lookup's state.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The id or info-hash searched for.
    pub target: NodeId,
    /// What it is for.
    pub kind: LookupKind,
    candidates: Vec<Candidate>,
    addrs_seen: HashSet<SocketAddrV4>,
    peers_seen: HashSet<SocketAddrV4>,
    /// Distinct peers found so far.
    pub peers_found: usize,
    k: usize,
    alpha: usize,
}

impl Lookup {
    /// A lookup for `target` starting from `seeds` (nodes whose id may be
    /// unknown, such as bootstrap routers; those sort last).
    pub fn new(
        target: NodeId,
        kind: LookupKind,
        seeds: impl IntoIterator<Item = (Option<NodeId>, SocketAddrV4)>,
        k: usize,
        alpha: usize,
    ) -> Lookup {
        let mut l = Lookup {
            target,
            kind,
            candidates: Vec::new(),
            addrs_seen: HashSet::new(),
            peers_seen: HashSet::new(),
            peers_found: 0,
            k: k.max(1),
            alpha: alpha.max(1),
        };
        for (id, addr) in seeds {
            l.add(id, addr);
        }
        l
    }

    fn key(&self, c: &Candidate) -> [u8; 20] {
        c.id.map_or([0xff; 20], |id| id.distance(&self.target))
    }

    fn sort(&mut self) {
        let target = self.target;
        self.candidates
            .sort_by_key(|c| c.id.map_or([0xff; 20], |id| id.distance(&target)));
    }

    /// Adds a node learnt from an answer (or a seed); known addresses are skipped.
    pub fn add(&mut self, id: Option<NodeId>, addr: SocketAddrV4) {
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_broadcast() {
            return;
        }
        if self.addrs_seen.contains(&addr) {
            return;
        }
        if self.addrs_seen.len() < MAX_ADDRS_SEEN {
            self.addrs_seen.insert(addr);
        } else if self.candidates.iter().any(|c| c.addr == addr) {
            return;
        }
        let c = Candidate {
            addr,
            id,
            state: State::Pending,
        };
        if self.candidates.len() >= MAX_CANDIDATES {
            // Drop the farthest unasked candidate, if the new one is closer.
            let key = self.key(&c);
            let Some(far) = self
                .candidates
                .iter()
                .rposition(|c| c.state == State::Pending)
            else {
                return;
            };
            if self.key(&self.candidates[far]) <= key {
                return;
            }
            self.candidates.remove(far);
        }
        self.candidates.push(c);
        self.sort();
    }

    /// The window: the first `k` candidates that have not failed.
    fn window(&self) -> impl Iterator<Item = usize> + '_ {
        self.candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Failed)
            .take(self.k)
            .map(|(i, _)| i)
    }

    fn in_flight(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.state == State::InFlight)
            .count()
    }

    /// The next node to query (marked in flight), if fewer than `alpha` are.
    pub fn next_query(&mut self) -> Option<(Option<NodeId>, SocketAddrV4)> {
        if self.in_flight() >= self.alpha {
            return None;
        }
        let i = self
            .window()
            .find(|&i| self.candidates[i].state == State::Pending)?;
        let c = &mut self.candidates[i];
        c.state = State::InFlight;
        Some((c.id, c.addr))
    }

    /// Puts a node marked in flight back to unasked (its query was not sent).
    pub fn unsend(&mut self, addr: SocketAddrV4) {
        if let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.addr == addr && c.state == State::InFlight)
        {
            c.state = State::Pending;
        }
    }

    /// Puts every node in flight back to unasked (the DHT went silent).
    pub fn unsend_all(&mut self) {
        for c in &mut self.candidates {
            if c.state == State::InFlight {
                c.state = State::Pending;
            }
        }
    }

    /// `addr` answered as `id`, with these nodes and maybe a token.
    pub fn responded(
        &mut self,
        addr: SocketAddrV4,
        id: NodeId,
        nodes: &[(NodeId, SocketAddrV4)],
        token: Option<Vec<u8>>,
        own: &NodeId,
    ) {
        if let Some(c) = self.candidates.iter_mut().find(|c| c.addr == addr) {
            c.id = Some(id);
            c.state = State::Responded { token };
            self.sort();
        }
        for (nid, naddr) in nodes {
            if nid != own {
                self.add(Some(*nid), *naddr);
            }
        }
    }

    /// `addr` did not answer (time-out or error).
    pub fn failed(&mut self, addr: SocketAddrV4) {
        if let Some(c) = self
            .candidates
            .iter_mut()
            .find(|c| c.addr == addr && c.state == State::InFlight)
        {
            c.state = State::Failed;
        }
    }

    /// The peers among `values` not reported before.
    pub fn new_peers(&mut self, values: &[SocketAddrV4]) -> Vec<SocketAddrV4> {
        let mut out = Vec::new();
        for v in values {
            if v.port() == 0 || v.ip().is_unspecified() {
                continue;
            }
            if self.peers_seen.contains(v) || out.contains(v) {
                continue;
            }
            if self.peers_seen.len() < MAX_PEERS_SEEN {
                self.peers_seen.insert(*v);
            }
            out.push(*v);
        }
        self.peers_found += out.len();
        out
    }

    /// Whether the lookup is over: nothing in flight and nothing left to ask
    /// among the `k` closest live candidates.
    pub fn is_done(&self) -> bool {
        self.in_flight() == 0
            && !self
                .window()
                .any(|i| self.candidates[i].state == State::Pending)
    }

    /// Nodes that answered, closest first.
    pub fn responded_count(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| matches!(c.state, State::Responded { .. }))
            .count()
    }

    /// The `k` closest nodes that answered with a token, for `announce_peer`.
    pub fn announce_targets(&self) -> Vec<(NodeId, SocketAddrV4, Vec<u8>)> {
        self.candidates
            .iter()
            .filter_map(|c| match (&c.state, c.id) {
                (State::Responded { token: Some(t) }, Some(id)) => Some((id, c.addr, t.clone())),
                _ => None,
            })
            .take(self.k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, i].into(), 1000)
    }

    #[test]
    fn asks_alpha_at_a_time_and_moves_on_after_failures() {
        let own = NodeId([0xff; 20]);
        let seeds = (1..=6u8).map(|i| (Some(NodeId([i; 20])), addr(i)));
        let mut l = Lookup::new(NodeId([0; 20]), LookupKind::FindNode, seeds, 4, 2);
        let a = l.next_query().unwrap();
        let b = l.next_query().unwrap();
        assert!(l.next_query().is_none(), "alpha = 2");
        assert_eq!((a.1, b.1), (addr(1), addr(2)));
        l.failed(a.1);
        l.failed(b.1);
        // The window slides past the failed nodes to the next ones.
        let c = l.next_query().unwrap();
        let d = l.next_query().unwrap();
        assert_eq!((c.1, d.1), (addr(3), addr(4)));
        l.responded(c.1, NodeId([3; 20]), &[], None, &own);
        l.responded(d.1, NodeId([4; 20]), &[], None, &own);
        let e = l.next_query().unwrap();
        l.responded(e.1, NodeId([5; 20]), &[], None, &own);
        let f = l.next_query().unwrap();
        assert!(!l.is_done());
        l.responded(f.1, NodeId([6; 20]), &[], None, &own);
        assert!(l.is_done());
    }

    #[test]
    fn candidates_stay_bounded() {
        let own = NodeId([0xff; 20]);
        let mut l = Lookup::new(NodeId([0; 20]), LookupKind::FindNode, [], 8, 3);
        for i in 0..1000u32 {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let a = SocketAddrV4::new((i + 1).into(), 1);
            l.responded(a, NodeId(id), &[(NodeId(id), a)], None, &own);
        }
        assert!(l.candidates.len() <= MAX_CANDIDATES);
        assert!(l.addrs_seen.len() <= MAX_ADDRS_SEEN);
    }
}
