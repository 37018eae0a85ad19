//! The peers others announced to us (`announce_peer`), bounded: at most
//! `max_peers_per_hash` peers per info-hash (a new one replaces the oldest)
//! and `max_hashes` info-hashes (a new one is refused when full and nothing
//! has expired), each peer kept for `ttl` (BEP 5 suggests 30 minutes).
//! Expiry is lazy: entries are dropped when looked at or when room is needed.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// The store.
#[derive(Debug, Clone)]
pub struct PeerStore {
    peers: HashMap<[u8; 20], Vec<(SocketAddrV4, Instant)>>,
    max_peers_per_hash: usize,
    max_hashes: usize,
    ttl: Duration,
}

impl PeerStore {
    /// An empty store with these bounds.
    pub fn new(max_peers_per_hash: usize, max_hashes: usize, ttl: Duration) -> PeerStore {
        PeerStore {
            peers: HashMap::new(),
            max_peers_per_hash: max_peers_per_hash.max(1),
            max_hashes,
            ttl,
        }
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.peers.retain(|_, list| {
            list.retain(|(_, at)| now.saturating_duration_since(*at) < ttl);
            !list.is_empty()
        });
    }

    /// Records `peer` for `info_hash`; false when the store is full.
    pub fn add(&mut self, info_hash: [u8; 20], peer: SocketAddrV4, now: Instant) -> bool {
        if !self.peers.contains_key(&info_hash) && self.peers.len() >= self.max_hashes {
            self.expire(now);
            if self.peers.len() >= self.max_hashes {
                return false;
            }
        }
        let list = self.peers.entry(info_hash).or_default();
        if let Some(e) = list.iter_mut().find(|(a, _)| *a == peer) {
            e.1 = now;
            return true;
        }
        let ttl = self.ttl;
        list.retain(|(_, at)| now.saturating_duration_since(*at) < ttl);
        if list.len() >= self.max_peers_per_hash {
            if let Some(oldest) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(i, _)| i)
            {
                list.swap_remove(oldest);
            }
        }
        list.push((peer, now));
        true
    }

    /// Up to `max` live peers for `info_hash`, newest first.
    pub fn get(&mut self, info_hash: &[u8; 20], max: usize, now: Instant) -> Vec<SocketAddrV4> {
        let ttl = self.ttl;
        let Some(list) = self.peers.get_mut(info_hash) else {
            return Vec::new();
        };
        list.retain(|(_, at)| now.saturating_duration_since(*at) < ttl);
        if list.is_empty() {
            self.peers.remove(info_hash);
            return Vec::new();
        }
        let mut live: Vec<_> = list.clone();
        live.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        live.into_iter().take(max).map(|(a, _)| a).collect()
    }

    /// Info-hashes held.
    pub fn hashes(&self) -> usize {
        self.peers.len()
    }

    /// Peers held over all info-hashes.
    pub fn peers(&self) -> usize {
        self.peers.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(1800);
        let mut s = PeerStore::new(3, 2, ttl);
        let p = |i: u8| SocketAddrV4::new([10, 0, 0, i].into(), 1);
        for i in 0..10 {
            assert!(s.add([1; 20], p(i), t0 + Duration::from_secs(u64::from(i))));
        }
        assert_eq!(
            s.get(&[1; 20], 10, t0 + Duration::from_secs(10)),
            vec![p(9), p(8), p(7)]
        );
        assert!(s.add([2; 20], p(1), t0));
        assert!(!s.add([3; 20], p(1), t0), "info-hash table full");
        assert!(
            s.add([3; 20], p(1), t0 + ttl + Duration::from_secs(10)),
            "room after expiry"
        );
        assert!(s.get(&[1; 20], 10, t0 + ttl * 2).is_empty());
        assert!(s.hashes() <= 2);
    }
}
