//! Tracker tiers (BEP 12 `announce-list`): which tracker URL to try next.
//!
//! Pure: the caller announces to [`TrackerTiers::urls`] in order until one
//! works, then reports it with [`TrackerTiers::mark_success`].

use rand::seq::SliceRandom;
use rand::Rng;

/// An ordered set of tracker tiers.
///
/// BEP 12: each tier is shuffled once when the torrent is loaded; tiers are
/// tried in order and URLs within a tier in their (shuffled) order; a URL that
/// answered moves to the front of its tier so it is tried first next time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackerTiers {
    tiers: Vec<Vec<String>>,
}

impl TrackerTiers {
    /// Builds the tiers from an `announce-list`, shuffling each tier with the
    /// thread-local random generator.
    pub fn new(tiers: Vec<Vec<String>>) -> Self {
        Self::with_rng(tiers, &mut rand::thread_rng())
    }

    /// Like [`TrackerTiers::new`] with a caller-supplied generator, so tests
    /// can be deterministic.
    ///
    /// Empty URLs and empty tiers are dropped, and a URL listed more than once
    /// is kept only at its first place, so one tracker is not asked twice per
    /// round.
    pub fn with_rng<R: Rng + ?Sized>(tiers: Vec<Vec<String>>, rng: &mut R) -> Self {
        let mut seen = std::collections::HashSet::new();
        let tiers = tiers
            .into_iter()
            .filter_map(|tier| {
                let mut tier: Vec<String> = tier
                    .into_iter()
                    .map(|url| url.trim().to_string())
                    .filter(|url| !url.is_empty() && seen.insert(url.clone()))
                    .collect();
                tier.shuffle(rng);
                (!tier.is_empty()).then_some(tier)
            })
            .collect();
        Self { tiers }
    }

    /// Builds the tiers of a torrent: per BEP 12, a non-empty `announce-list`
    /// replaces `announce`; otherwise `announce` alone is the only tier.
    pub fn from_metainfo(announce: Option<&str>, announce_list: Option<Vec<Vec<String>>>) -> Self {
        let from_list = Self::new(announce_list.unwrap_or_default());
        if !from_list.is_empty() {
            return from_list;
        }
        Self::new(
            announce
                .map(|a| vec![vec![a.to_string()]])
                .unwrap_or_default(),
        )
    }

    /// Every URL in the order to try them: tier by tier.
    pub fn urls(&self) -> Vec<&str> {
        self.tiers.iter().flatten().map(String::as_str).collect()
    }

    /// The tiers in their current order.
    pub fn tiers(&self) -> &[Vec<String>] {
        &self.tiers
    }

    /// Whether there is no tracker at all.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Records that `url` answered: it moves to the front of its tier, the
    /// others keeping their order. Returns false (and changes nothing) if
    /// `url` is not one of ours.
    pub fn mark_success(&mut self, url: &str) -> bool {
        for tier in &mut self.tiers {
            if let Some(i) = tier.iter().position(|u| u == url) {
                // Rotating the prefix moves tier[i] to 0 and shifts the ones
                // before it back by one.
                tier[..=i].rotate_right(1);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn list(tiers: &[&[&str]]) -> Vec<Vec<String>> {
        tiers
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn tiers_keep_order_and_shuffle_within() {
        let input = list(&[&["a", "b", "c", "d"], &["e"], &["f", "g"]]);
        let t = TrackerTiers::with_rng(input.clone(), &mut StdRng::seed_from_u64(1));
        let urls = t.urls();
        assert_eq!(urls.len(), 7);
        let mut first: Vec<&str> = urls[..4].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["a", "b", "c", "d"]);
        assert_eq!(urls[4], "e");
        let mut last: Vec<&str> = urls[5..].to_vec();
        last.sort_unstable();
        assert_eq!(last, ["f", "g"]);

        // Over many seeds, a shuffle actually happens.
        let moved = (0..32).any(|s| {
            TrackerTiers::with_rng(input.clone(), &mut StdRng::seed_from_u64(s)).urls()[0] != "a"
        });
        assert!(moved);
    }

    #[test]
    fn success_moves_to_front_of_its_tier_only() {
        let mut t = TrackerTiers {
            tiers: list(&[&["a", "b", "c"], &["d", "e"]]),
        };
        assert!(t.mark_success("c"));
        assert_eq!(t.urls(), ["c", "a", "b", "d", "e"]);
        assert!(t.mark_success("e"));
        assert_eq!(t.urls(), ["c", "a", "b", "e", "d"]);
        assert!(t.mark_success("c"));
        assert_eq!(t.urls(), ["c", "a", "b", "e", "d"]);
        assert!(!t.mark_success("zzz"));
        assert_eq!(t.urls(), ["c", "a", "b", "e", "d"]);
    }

    #[test]
    fn empties_and_duplicates_are_dropped() {
        let t = TrackerTiers::with_rng(
            list(&[&[], &["", " "], &["a"], &["a", "b"]]),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(t.tiers(), list(&[&["a"], &["b"]]));
        assert!(TrackerTiers::new(Vec::new()).is_empty());
        assert!(TrackerTiers::new(Vec::new()).urls().is_empty());
    }

    #[test]
    fn metainfo_prefers_announce_list() {
        let t = TrackerTiers::from_metainfo(Some("x"), Some(list(&[&["a"]])));
        assert_eq!(t.urls(), ["a"]);
        let t = TrackerTiers::from_metainfo(Some("x"), Some(list(&[&[]])));
        assert_eq!(t.urls(), ["x"]);
        let t = TrackerTiers::from_metainfo(Some("x"), None);
        assert_eq!(t.urls(), ["x"]);
        assert!(TrackerTiers::from_metainfo(None, None).is_empty());
    }
}
