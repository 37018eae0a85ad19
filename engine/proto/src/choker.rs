//! Whom to upload to: tit-for-tat with an optimistic slot while downloading,
//! upload-rate rotation while seeding. A pure function over peer figures.

use crate::picker::PeerKey;

/// What the choker knows of one interested peer.
#[derive(Debug, Clone, Copy)]
pub struct ChokeCandidate {
    /// The peer.
    pub peer: PeerKey,
    /// Payload rate from them to us, bytes/s.
    pub download_rate: f64,
    /// Payload rate from us to them, bytes/s.
    pub upload_rate: f64,
    /// Whether they are unchoked now (kept on ties, to avoid flapping).
    pub unchoked: bool,
}

/// Pick the peers to unchoke: `slots - 1` by rate (download rate while we
/// download, upload rate while we seed), plus the `optimistic` peer if it is
/// still a candidate, else the next one in order.
pub fn choose_unchoked(
    candidates: &[ChokeCandidate],
    seeding: bool,
    slots: usize,
    optimistic: Option<PeerKey>,
) -> Vec<PeerKey> {
    if slots == 0 {
        return Vec::new();
    }
    let mut ranked: Vec<&ChokeCandidate> = candidates.iter().collect();
    let rate = |c: &ChokeCandidate| {
        if seeding {
            c.upload_rate
        } else {
            c.download_rate
        }
    };
    ranked.sort_by(|a, b| {
        rate(b)
            .total_cmp(&rate(a))
            .then(b.unchoked.cmp(&a.unchoked))
            .then(a.peer.cmp(&b.peer))
    });
    let regular = slots.saturating_sub(1).max(1).min(ranked.len());
    let mut chosen: Vec<PeerKey> = ranked[..regular].iter().map(|c| c.peer).collect();
    if chosen.len() < slots {
        let rest: Vec<PeerKey> = ranked[regular..].iter().map(|c| c.peer).collect();
        if let Some(opt) = optimistic
            .filter(|p| rest.contains(p))
            .or_else(|| rest.first().copied())
        {
            chosen.push(opt);
        }
    }
    chosen
}

/// The next optimistic peer after `current` among `candidates`, in key order,
/// so that every interested peer gets its turn.
pub fn next_optimistic(candidates: &[PeerKey], current: Option<PeerKey>) -> Option<PeerKey> {
    let mut keys = candidates.to_vec();
    keys.sort_unstable();
    match current {
        Some(c) => keys
            .iter()
            .copied()
            .find(|&k| k > c)
            .or_else(|| keys.first().copied()),
        None => keys.first().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(peer: PeerKey, down: f64, up: f64) -> ChokeCandidate {
        ChokeCandidate {
            peer,
            download_rate: down,
            upload_rate: up,
            unchoked: false,
        }
    }

    #[test]
    fn tit_for_tat_plus_optimistic() {
        let c = [
            cand(1, 10.0, 0.0),
            cand(2, 50.0, 0.0),
            cand(3, 30.0, 0.0),
            cand(4, 0.0, 0.0),
            cand(5, 1.0, 0.0),
        ];
        let chosen = choose_unchoked(&c, false, 3, Some(4));
        assert_eq!(chosen, vec![2, 3, 4]);
    }

    #[test]
    fn seeding_ranks_by_upload() {
        let c = [cand(1, 0.0, 5.0), cand(2, 0.0, 1.0), cand(3, 0.0, 9.0)];
        assert_eq!(choose_unchoked(&c, true, 2, None), vec![3, 1]);
    }

    #[test]
    fn optimistic_rotates() {
        assert_eq!(next_optimistic(&[3, 1, 2], Some(2)), Some(3));
        assert_eq!(next_optimistic(&[3, 1, 2], Some(3)), Some(1));
        assert_eq!(next_optimistic(&[], Some(3)), None);
    }
}
