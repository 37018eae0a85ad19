//! Incoming connections that have not yet finished their handshakes, by
//! the peer's address: a few per address at a time. Each holds a
//! connection slot for up to the handshake's time limit, so without this
//! bound one host opening connections and sending nothing (or an MSE
//! public key and nothing more) would hold every slot, and genuine peers
//! would be refused until it stopped (`tests/bench/mse_flood`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Handshakes at most under way at once from one address. A genuine peer
/// opens one connection per torrent it shares with us.
pub(crate) const PER_ADDRESS: usize = 4;

/// The addresses with handshakes under way, and how many each.
#[derive(Debug, Default)]
pub(crate) struct HalfOpen {
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One handshake's place, given back when it ends either way.
pub(crate) struct HalfOpenPlace {
    table: Arc<HalfOpen>,
    from: IpAddr,
}

impl HalfOpen {
    /// A place for a handshake from `from`, unless [`PER_ADDRESS`] are
    /// under way from it already.
    pub(crate) fn enter(self: &Arc<Self>, from: IpAddr) -> Option<HalfOpenPlace> {
        let mut by_address = self.by_address.lock().expect("half-open lock");
        let under_way = by_address.entry(from).or_insert(0);
        if *under_way >= PER_ADDRESS {
            return None;
        }
        *under_way += 1;
        Some(HalfOpenPlace {
            table: self.clone(),
            from,
        })
    }
}

impl Drop for HalfOpenPlace {
    fn drop(&mut self) {
        let mut by_address = self.table.by_address.lock().expect("half-open lock");
        if let Some(n) = by_address.get_mut(&self.from) {
            *n -= 1;
            if *n == 0 {
                by_address.remove(&self.from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_address_and_places_come_back() {
        let table = Arc::new(HalfOpen::default());
        let flooder: IpAddr = "192.0.2.66".parse().unwrap();
        let held: Vec<_> = (0..PER_ADDRESS)
            .map(|_| table.enter(flooder).expect("a place"))
            .collect();
        assert!(
            table.enter(flooder).is_none(),
            "one more from it is refused"
        );
        assert!(table.enter("198.51.100.7".parse().unwrap()).is_some());
        drop(held);
        assert!(table.by_address.lock().unwrap().is_empty());
        assert!(table.enter(flooder).is_some());
    }
}
