//! The routing table: 160 k-buckets indexed by the length of the prefix a
//! node's id shares with ours (BEP 5), each holding at most `k` nodes.
//!
//! Older nodes are preferred (Kademlia): a full bucket takes a new node only
//! in place of one that failed to answer [`BAD_AFTER_FAILS`] queries in a
//! row. Nodes that query us but have not answered one of our queries are
//! added only where there is room, so a flood of (possibly spoofed) queries
//! can fill empty slots but never push out a node we know answers. The
//! table holds at most `160 × k` entries.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::id::NodeId;

/// A node that failed this many queries in a row is replaced or dropped.
pub const BAD_AFTER_FAILS: u8 = 2;
/// A bucket untouched this long is refreshed (BEP 5: 15 minutes).
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);

/// One node of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: SocketAddrV4,
    /// When it last answered one of our queries (None: never, or restored).
    pub last_response: Option<Instant>,
    /// Queries in a row it did not answer.
    pub fails: u8,
}

#[derive(Debug, Clone)]
struct Bucket {
    entries: Vec<Entry>,
    last_changed: Instant,
}

/// The table.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: NodeId,
    k: usize,
    buckets: Vec<Bucket>,
}

/// How a node was heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// It answered a query of ours from the address we sent it to.
    Responded,
    /// It queried us (its source address may be spoofed).
    Queried,
    /// From a saved table (not yet confirmed).
    Restored,
}

impl RoutingTable {
    /// An empty table around `own`.
    pub fn new(own: NodeId, k: usize, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            k: k.max(1),
            buckets: vec![
                Bucket {
                    entries: Vec::new(),
                    last_changed: now,
                };
                160
            ],
        }
    }

    /// Our own id.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        let p = self.own.common_prefix(id);
        (p < 160).then_some(p)
    }

    /// Notes that `id` at `addr` was heard from; adds it when there is room
    /// (see the module text). Returns whether the table holds it afterwards.
    pub fn heard(&mut self, id: NodeId, addr: SocketAddrV4, how: Heard, now: Instant) -> bool {
        let Some(index) = self.index(&id) else {
            return false;
        };
        let k = self.k;
        let bucket = &mut self.buckets[index];
        if let Some(e) = bucket.entries.iter_mut().find(|e| e.id == id) {
            if how == Heard::Responded {
                // A node keeps its slot under its id; the address follows the
                // node only when it answers from there.
                e.addr = addr;
                e.last_response = Some(now);
                e.fails = 0;
                bucket.last_changed = now;
            }
            return true;
        }
        // One slot per address: a second id from the same address and port is
        // another node only once the first is gone.
        if bucket.entries.iter().any(|e| e.addr == addr) {
            return false;
        }
        let entry = Entry {
            id,
            addr,
            last_response: (how == Heard::Responded).then_some(now),
            fails: 0,
        };
        if bucket.entries.len() < k {
            bucket.entries.push(entry);
            bucket.last_changed = now;
            return true;
        }
        if how != Heard::Responded {
            return false;
        }
        match bucket
            .entries
            .iter()
            .position(|e| e.fails >= BAD_AFTER_FAILS)
        {
            Some(bad) => {
                bucket.entries[bad] = entry;
                bucket.last_changed = now;
                true
            }
            None => false,
        }
    }

    /// Notes that `id` did not answer; a node never heard from that fails
    /// [`BAD_AFTER_FAILS`] times is removed at once.
    pub fn failed(&mut self, id: &NodeId) {
        let Some(index) = self.index(id) else { return };
        let bucket = &mut self.buckets[index];
        if let Some(pos) = bucket.entries.iter().position(|e| e.id == *id) {
            let e = &mut bucket.entries[pos];
            e.fails = e.fails.saturating_add(1);
            if e.fails >= BAD_AFTER_FAILS && e.last_response.is_none() {
                bucket.entries.remove(pos);
            }
        }
    }

    /// Removes `id` (it turned out read-only, or answered with another id).
    pub fn remove(&mut self, id: &NodeId) {
        if let Some(index) = self.index(id) {
            self.buckets[index].entries.retain(|e| e.id != *id);
        }
    }

    /// Whether the table holds `id`.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.index(id)
            .is_some_and(|i| self.buckets[i].entries.iter().any(|e| e.id == *id))
    }

    /// The `n` nodes closest to `target`, closest first, skipping bad ones.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Entry> {
        let mut all: Vec<&Entry> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| e.fails < BAD_AFTER_FAILS)
            .collect();
        all.sort_by_key(|e| e.id.distance(target));
        all.into_iter().take(n).cloned().collect()
    }

    /// Every node, for saving.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Number of nodes held.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index of the bucket most in need of a refresh: the one unchanged
    /// the longest among those up to the deepest non-empty one, if it has been
    /// unchanged for [`REFRESH_AFTER`].
    pub fn stale_bucket(&self, now: Instant) -> Option<usize> {
        let deepest = self.buckets.iter().rposition(|b| !b.entries.is_empty())?;
        let (index, bucket) = self.buckets[..=deepest]
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.last_changed)?;
        (now.saturating_duration_since(bucket.last_changed) >= REFRESH_AFTER).then_some(index)
    }

    /// When the stalest bucket (see [`Self::stale_bucket`]) is due.
    pub fn next_refresh(&self) -> Option<Instant> {
        let deepest = self.buckets.iter().rposition(|b| !b.entries.is_empty())?;
        self.buckets[..=deepest]
            .iter()
            .map(|b| b.last_changed + REFRESH_AFTER)
            .min()
    }

    /// Marks bucket `index` refreshed (a lookup for it was started).
    pub fn touch(&mut self, index: usize, now: Instant) {
        if let Some(b) = self.buckets.get_mut(index) {
            b.last_changed = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_with_prefix(own: &NodeId, p: usize, salt: u8) -> NodeId {
        let mut id = own.random_with_prefix(p);
        id.0[19] = salt;
        if own.common_prefix(&id) != p {
            id = own.random_with_prefix(p);
        }
        id
    }

    #[test]
    fn full_bucket_keeps_old_nodes_unless_they_fail() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, 2, now);
        let addr = |i: u8| SocketAddrV4::new([10, 0, 0, i].into(), 1);
        let (a, b, c) = (
            id_with_prefix(&own, 0, 1),
            id_with_prefix(&own, 0, 2),
            id_with_prefix(&own, 0, 3),
        );
        assert!(t.heard(a, addr(1), Heard::Responded, now));
        assert!(t.heard(b, addr(2), Heard::Responded, now));
        assert!(!t.heard(c, addr(3), Heard::Responded, now));
        t.failed(&a);
        t.failed(&a);
        assert!(
            !t.heard(c, addr(3), Heard::Queried, now),
            "queries never evict"
        );
        assert!(t.heard(c, addr(3), Heard::Responded, now));
        assert!(!t.contains(&a));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn closest_sorts_by_xor() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = RoutingTable::new(own, 8, now);
        for i in 1..=20u8 {
            let mut id = [0u8; 20];
            id[0] = i;
            t.heard(
                NodeId(id),
                SocketAddrV4::new([10, 0, 0, i].into(), 1),
                Heard::Responded,
                now,
            );
        }
        let mut target = [0u8; 20];
        target[0] = 5;
        let got: Vec<u8> = t
            .closest(&NodeId(target), 3)
            .iter()
            .map(|e| e.id.0[0])
            .collect();
        assert_eq!(got[0], 5);
        assert_eq!(got.len(), 3);
    }
}
