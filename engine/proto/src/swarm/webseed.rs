//! Web seeds (BEP 19) in the swarm: a seed gets a [`PeerKey`] of its own
//! (never a peer's) and takes its pieces from the same picker as the peers.
//!
//! It picks as a peer on parole does: only whole pieces of its own, which
//! no peer is fetching, and which no peer joins (the picker's `exclusive`
//! owner). So a piece from a web seed comes from that seed alone, and the
//! I/O layer can hash it before handing it in: a bad piece is blamed on
//! the seed with certainty and never reaches the disk. Handed in, the
//! piece takes the peers' path ([`Event::PieceComplete`](super::Event::PieceComplete), hashed again and
//! written by the torrent's verifier, then [`Swarm::piece_verified`]).

use crate::bitfield::Bitfield;
use crate::class::PeerClass;
use crate::picker::{Asker, BlockOutcome, PeerKey};
use crate::wire::{BlockRef, BLOCK_SIZE};

use super::Swarm;

impl Swarm {
    /// A key for a new web seed.
    pub fn add_web_seed(&mut self) -> PeerKey {
        let key = self.next_key;
        self.next_key += 1;
        key
    }

    /// The web seed is gone (dropped, or the torrent stops). Pieces it
    /// still holds must be released first.
    pub fn remove_web_seed(&mut self, key: PeerKey) {
        self.site_seed_dropped(None, key);
        self.picker.peer_gone(key);
        self.refill = true;
    }

    /// Up to `max_bytes` (at least one piece) of whole pieces for web seed
    /// `key`, as piece indices, in the picker's order (rarest first; with
    /// no peer around, consecutive). Empty when nothing is left or too much
    /// awaits verification.
    pub fn web_seed_pick(&mut self, key: PeerKey, max_bytes: u64) -> Vec<u32> {
        self.web_seed_pick_from(key, max_bytes, PeerClass::Wan)
    }

    /// [`Swarm::web_seed_pick`] for a seed of `class`: a WAN seed, with
    /// site members around, gets only pieces no member holds or fetches
    /// (our share first), and its pieces are claimed for the site
    /// (`swarm/site.rs`).
    pub fn web_seed_pick_from(
        &mut self,
        key: PeerKey,
        max_bytes: u64,
        class: PeerClass,
    ) -> Vec<u32> {
        if class == PeerClass::Wan && (self.wan_held() || self.site_meeting(self.last_tick)) {
            return Vec::new();
        }
        // A coordinating torrent asks a WAN seed for one piece at a time: a
        // span of pieces is claimed for as long as it takes, and the split
        // among members is by piece.
        let max_bytes = if class == PeerClass::Wan && self.site_enabled() {
            0
        } else {
            max_bytes
        };
        let coordinated = class == PeerClass::Wan && self.site.active();
        let mut pieces = Vec::new();
        for reach in super::site::Reach::ALL {
            let filtered = coordinated.then_some(reach);
            if coordinated && self.site.wan_filter(self.last_tick, reach).is_none() {
                break;
            }
            pieces = self.web_seed_pick_filtered(key, max_bytes, filtered);
            if !pieces.is_empty() || !coordinated {
                break;
            }
        }
        let wan = class == PeerClass::Wan;
        if wan {
            self.site_seed_took(key, &pieces);
        }
        pieces
    }

    fn web_seed_pick_filtered(
        &mut self,
        key: PeerKey,
        max_bytes: u64,
        reach: Option<super::site::Reach>,
    ) -> Vec<u32> {
        let now = self.last_tick;
        let site = reach.and_then(|r| self.site.wan_filter(now, r));
        let site_fn = |i: u32| site.as_ref().is_none_or(|f| f.allows(i));
        let piece_blocks = self.picker.piece_size(0).div_ceil(BLOCK_SIZE).max(1) as u64;
        let want = (max_bytes / u64::from(BLOCK_SIZE)).max(piece_blocks) as usize;
        let empty = Bitfield::new(0);
        let asker = Asker {
            peer: key,
            on_parole: true,
            has: &empty,
            is_seed: true,
            // Endgame duplicates go to peers only: with every block
            // counted as "already asked", the picker gives a seed none.
            already: &|_| true,
            allowed: site.is_some().then_some(&site_fn as &dyn Fn(u32) -> bool),
        };
        let mut blocks = Vec::new();
        self.picker.pick(&asker, want, &mut blocks);
        // Whole pieces only: the blocks of a piece cut short by `want` go
        // back (still the seed's own, so no one else takes half of it).
        let mut pieces: Vec<u32> = Vec::new();
        let mut i = 0;
        while i < blocks.len() {
            let index = blocks[i].index;
            let mut j = i;
            while j < blocks.len() && blocks[j].index == index {
                j += 1;
            }
            let covered: u64 = blocks[i..j].iter().map(|b| u64::from(b.length)).sum();
            if covered == u64::from(self.picker.piece_size(index)) {
                pieces.push(index);
            } else {
                for b in &blocks[i..j] {
                    self.picker.release(b);
                }
                self.picker.abandon(index);
            }
            i = j;
        }
        pieces
    }

    /// Web seed `key` will not deliver piece `index` (an error, a bad
    /// hash, a pause): it is missing again, for anyone to pick.
    pub fn web_seed_release(&mut self, key: PeerKey, index: u32) {
        self.site_seed_dropped(Some(index), key);
        let size = self.picker.piece_size(index);
        let mut begin = 0;
        while begin < size {
            let length = (size - begin).min(BLOCK_SIZE);
            self.picker.release(&BlockRef {
                index,
                begin,
                length,
            });
            begin += length;
        }
        self.picker.abandon(index);
        self.refill = true;
    }

    /// Web seed `key` delivers piece `index`, whose hash the caller checked:
    /// it goes the way of a piece from peers ([`Event::PieceComplete`](super::Event::PieceComplete)).
    /// Returns false if the piece was not the seed's to deliver (its data
    /// is dropped).
    pub fn web_seed_piece(&mut self, key: PeerKey, index: u32, data: &[u8]) -> bool {
        let size = self.picker.piece_size(index);
        if data.len() != size as usize || index >= self.picker.piece_count() {
            return false;
        }
        let mut begin = 0u32;
        while begin < size {
            let end = (begin + BLOCK_SIZE).min(size);
            match self
                .picker
                .on_block(key, index, begin, &data[begin as usize..end as usize])
            {
                BlockOutcome::PieceComplete {
                    index,
                    data,
                    contributors,
                } => {
                    self.piece_assembled(index, data, contributors);
                    return true;
                }
                BlockOutcome::Stored => {}
                BlockOutcome::Duplicate | BlockOutcome::Unexpected => return false,
            }
            begin = end;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::swarm::{Event, SwarmConfig};

    fn swarm(pieces: u32, last: u64) -> Swarm {
        let pl = 32 * 1024;
        let total = u64::from(pieces - 1) * pl + last;
        Swarm::new(
            pl,
            total,
            Bitfield::new(pieces),
            SwarmConfig::default(),
            Instant::now(),
        )
    }

    #[test]
    fn a_web_seed_takes_whole_pieces_of_its_own() {
        let mut s = swarm(5, 1000);
        let a = s.add_web_seed();
        let b = s.add_web_seed();
        assert_ne!(a, b);
        // 40 KiB asked: one whole 32 KiB piece (the next one's first block goes back).
        let first = s.web_seed_pick(a, 40 * 1024);
        assert_eq!(first.len(), 1);
        let second = s.web_seed_pick(b, 1 << 20);
        assert_eq!(second.len(), 4, "the rest, none of a's: {second:?}");
        assert!(!second.contains(&first[0]));
        assert!(s.web_seed_pick(a, 1 << 20).is_empty());
        // Released, a piece is anyone's again.
        s.web_seed_release(a, first[0]);
        assert_eq!(s.web_seed_pick(b, 1 << 20), first);
        // Delivered, it goes the peers' way. b holds every piece now; the
        // last is the short one (picks are random, so `second` may not
        // hold it: taking its largest index made this test fail 1 in 5).
        let last = 4;
        assert!(s.web_seed_piece(b, last, &vec![1; 1000]));
        assert!(matches!(
            s.poll_event(),
            Some(Event::PieceComplete { index, data }) if index == last && data.len() == 1000
        ));
        assert!(!s.web_seed_piece(b, last, &vec![1; 1000]), "not twice");
        assert!(!s.web_seed_piece(b, second[0], &[1; 10]), "wrong size");
    }

    #[test]
    fn a_removed_web_seed_frees_its_pieces() {
        let mut s = swarm(2, 32 * 1024);
        let a = s.add_web_seed();
        let got = s.web_seed_pick(a, 1 << 20);
        assert_eq!(got.len(), 2);
        for i in got {
            s.web_seed_release(a, i);
        }
        s.remove_web_seed(a);
        let b = s.add_web_seed();
        assert_eq!(s.web_seed_pick(b, 1 << 20).len(), 2);
    }
}
