//! Bytes per network. The engine counts bytes per direction, peer class and
//! kind since the session started and knows nothing of networks; the agent
//! files each growth of those counters under the network in force when it
//! looks (at every scrape and every change of the policy's decision, which
//! a network change brings). Pure: the caller passes the counters' values.

use std::collections::BTreeMap;

/// Direction, peer class and kind, as label values.
pub type Path = (&'static str, &'static str, &'static str);

/// The engine's counters at one moment: bytes so far per path.
pub type Reading = BTreeMap<Path, u64>;

/// Bytes per (network, path), growing only.
#[derive(Debug, Default)]
pub struct Attribution {
    last: Reading,
    totals: BTreeMap<(String, Path), u64>,
}

impl Attribution {
    /// Files what grew since the last reading under `network`.
    pub fn observe(&mut self, network: &str, reading: &Reading) {
        for (&path, &now) in reading {
            let before = self.last.get(&path).copied().unwrap_or(0);
            // The engine's counters never go back; a smaller value would be
            // a new session, whose bytes all count.
            let grown = now.checked_sub(before).unwrap_or(now);
            let total = self.totals.entry((network.to_owned(), path)).or_insert(0);
            *total += grown;
        }
        self.last = reading.clone();
    }

    /// Every (network, path) seen, with its bytes.
    pub fn totals(&self) -> impl Iterator<Item = (&str, Path, u64)> {
        self.totals
            .iter()
            .map(|((network, path), &bytes)| (network.as_str(), *path, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN: Path = ("down", "wan", "payload");

    fn reading(bytes: u64) -> Reading {
        [(DOWN, bytes)].into_iter().collect()
    }

    fn total(a: &Attribution, network: &str) -> u64 {
        a.totals()
            .filter(|&(n, p, _)| n == network && p == DOWN)
            .map(|(_, _, b)| b)
            .sum()
    }

    #[test]
    fn growth_goes_to_the_network_in_force_when_looked_at() {
        let mut a = Attribution::default();
        a.observe("home", &reading(100));
        a.observe("home", &reading(250));
        a.observe("hotspot", &reading(300));
        a.observe("hotspot", &reading(300));
        assert_eq!(total(&a, "home"), 250);
        assert_eq!(total(&a, "hotspot"), 50);
        a.observe("home", &reading(310));
        assert_eq!(total(&a, "home"), 260, "totals only grow");
    }
}
