//! Which blocks to ask for: rarest piece first, partial pieces before new
//! ones, and an endgame that asks a second peer for blocks still in flight.
//! It also assembles received blocks into whole pieces for verification.
//! Pieces are asked for by [`Priority`] first: skipped pieces never, high
//! before normal; in sequential mode in order instead of rarest first.

use std::collections::BTreeMap;

use crate::bitfield::Bitfield;
use crate::priority::Priority;
use crate::wire::{BlockRef, BLOCK_SIZE};

/// Bytes of assembled pieces that may wait for verification at once.
const MAX_VERIFYING_BYTES: u64 = 32 * 1024 * 1024;

/// Piece buffers kept for reuse; enough for the pieces in flight on a fast link.
const MAX_SPARE_BUFFERS: usize = 16;

/// Identifies a connected peer inside a swarm.
pub type PeerKey = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceState {
    Missing,
    Partial,
    Verifying,
    Have,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Open,
    /// Requested from this many peers (more than one only in endgame).
    Requested(u8),
    Received,
}

#[derive(Debug)]
struct PartialPiece {
    blocks: Vec<BlockState>,
    /// Blocks nobody was asked for yet; 0 lets picks skip the piece.
    open: u32,
    /// The one peer on parole allowed to fill this piece.
    exclusive: Option<PeerKey>,
    received: u32,
    data: Vec<u8>,
    contributors: Vec<PeerKey>,
}

/// What became of a received block.
#[derive(Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Stored; the piece still lacks blocks.
    Stored,
    /// We already had it (endgame duplicate, or after a cancel).
    Duplicate,
    /// Not a block of a piece we are assembling (or a wrong size).
    Unexpected,
    /// The last block: the whole piece and the peers that sent parts of it.
    PieceComplete {
        /// Piece index.
        index: u32,
        /// The piece's bytes, to be hashed and written.
        data: Vec<u8>,
        /// Peers that sent blocks of it.
        contributors: Vec<PeerKey>,
    },
}

/// The peer asking for blocks, and what it can serve.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    /// The peer.
    pub peer: PeerKey,
    /// It shared a piece that failed its hash check: it only fills pieces
    /// alone, so that a second failure names the culprit, and nobody else
    /// joins those pieces.
    pub on_parole: bool,
    /// The pieces it has (ignored when `is_seed`).
    pub has: &'a Bitfield,
    /// It has every piece.
    pub is_seed: bool,
    /// Whether it has this block in flight already, so endgame never asks it twice.
    pub already: &'a dyn Fn(&BlockRef) -> bool,
    /// Limits picks to some pieces (allowed-fast while choked).
    pub allowed: Option<&'a dyn Fn(u32) -> bool>,
}

/// Piece selection and assembly state for one torrent.
#[derive(Debug)]
pub struct Picker {
    piece_length: u64,
    total_length: u64,
    state: Vec<PieceState>,
    availability: Vec<u32>,
    partial: BTreeMap<u32, PartialPiece>,
    have_count: u32,
    /// Bytes in verified pieces, kept as they change: progress reads it often.
    bytes_have: u64,
    /// Wanted pieces (priority above `Skip`) in state `Missing`.
    missing_count: u32,
    /// Each piece's priority; all `Normal` unless set.
    priority: Vec<Priority>,
    /// The highest priority of any wanted piece: a scan may stop early at
    /// a piece of this priority.
    top_priority: Priority,
    /// Pick the lowest missing index instead of the rarest.
    sequential: bool,
    /// Wanted pieces not verified yet; zero when the wanted data is done.
    wanted_left: u32,
    /// Bytes in wanted pieces, and in those verified.
    bytes_wanted: u64,
    bytes_wanted_have: u64,
    seed_count: u32,
    scan_start: u32,
    /// Pieces assembled and waiting for their hash check.
    verifying: u32,
    /// Above this many, no new piece is started.
    max_verifying: u32,
    /// Piece buffers handed back after verification, to spare page faults.
    spare_buffers: Vec<Vec<u8>>,
}

impl Picker {
    /// A picker for a torrent, given the pieces already verified.
    pub fn new(piece_length: u64, total_length: u64, have: &Bitfield) -> Self {
        let count = have.len();
        let state: Vec<_> = (0..count)
            .map(|i| {
                if have.has(i) {
                    PieceState::Have
                } else {
                    PieceState::Missing
                }
            })
            .collect();
        let bytes_have = have
            .ones()
            .map(|i| (total_length - i as u64 * piece_length).min(piece_length))
            .sum();
        Self {
            piece_length,
            total_length,
            state,
            availability: vec![0; count as usize],
            partial: BTreeMap::new(),
            have_count: have.count(),
            bytes_have,
            missing_count: count - have.count(),
            priority: vec![Priority::Normal; count as usize],
            top_priority: Priority::Normal,
            sequential: false,
            wanted_left: count - have.count(),
            bytes_wanted: total_length,
            bytes_wanted_have: bytes_have,
            seed_count: 0,
            scan_start: rand::random::<u32>() % count.max(1),
            spare_buffers: Vec::new(),
            verifying: 0,
            max_verifying: (MAX_VERIFYING_BYTES / piece_length.max(1)).max(4) as u32,
        }
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.state.len() as u32
    }

    /// Length of piece `index`.
    pub fn piece_size(&self, index: u32) -> u32 {
        let start = index as u64 * self.piece_length;
        (self.total_length.saturating_sub(start)).min(self.piece_length) as u32
    }

    /// Whether piece `index` is verified.
    pub fn have(&self, index: u32) -> bool {
        self.state.get(index as usize) == Some(&PieceState::Have)
    }

    /// Whether piece `index` is assembled and waits for its hash check.
    pub fn is_verifying(&self, index: u32) -> bool {
        self.state.get(index as usize) == Some(&PieceState::Verifying)
    }

    /// Verified pieces so far.
    pub fn have_count(&self) -> u32 {
        self.have_count
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.have_count == self.piece_count()
    }

    /// Whether every wanted piece is verified (skipped ones may be missing).
    pub fn is_done(&self) -> bool {
        self.wanted_left == 0
    }

    /// Wanted pieces not verified yet.
    pub fn wanted_left(&self) -> u32 {
        self.wanted_left
    }

    /// Whether piece `index` is wanted at all.
    pub fn is_wanted(&self, index: u32) -> bool {
        self.priority
            .get(index as usize)
            .is_some_and(|p| p.is_wanted())
    }

    /// Bytes in wanted pieces, and how many of them are verified.
    pub fn bytes_wanted(&self) -> (u64, u64) {
        (self.bytes_wanted_have, self.bytes_wanted)
    }

    /// Sets every piece's priority (see [`crate::priority::piece_priorities`]);
    /// a slice of the wrong length is ignored. Pieces already in flight
    /// finish; skipped pieces are not started again.
    pub fn set_priorities(&mut self, priority: &[Priority]) {
        if priority.len() != self.state.len() {
            return;
        }
        self.priority = priority.to_vec();
        self.top_priority = priority.iter().copied().max().unwrap_or_default();
        self.missing_count = 0;
        self.wanted_left = 0;
        self.bytes_wanted = 0;
        self.bytes_wanted_have = 0;
        for i in 0..self.piece_count() {
            if !priority[i as usize].is_wanted() {
                continue;
            }
            let size = self.piece_size(i) as u64;
            self.bytes_wanted += size;
            match self.state[i as usize] {
                PieceState::Have => self.bytes_wanted_have += size,
                PieceState::Missing => {
                    self.missing_count += 1;
                    self.wanted_left += 1;
                }
                PieceState::Partial | PieceState::Verifying => self.wanted_left += 1,
            }
        }
    }

    /// Sequential mode: new pieces in index order (within a priority).
    pub fn set_sequential(&mut self, on: bool) {
        self.sequential = on;
    }

    /// A peer announced it has `index`.
    pub fn add_availability(&mut self, index: u32) {
        if let Some(a) = self.availability.get_mut(index as usize) {
            *a += 1;
        }
    }

    /// A peer turned out not to have `index` after all.
    pub fn remove_availability(&mut self, index: u32) {
        if let Some(a) = self.availability.get_mut(index as usize) {
            *a = a.saturating_sub(1);
        }
    }

    /// A peer with all of `has` left.
    pub fn remove_peer_availability(&mut self, has: &Bitfield, is_seed: bool) {
        if is_seed {
            self.seed_count = self.seed_count.saturating_sub(1);
            return;
        }
        for i in has.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// A peer that has everything joined; seeds are counted apart so that
    /// their arrival is O(1).
    pub fn add_seed(&mut self) {
        self.seed_count += 1;
    }

    /// Whether no piece is left untouched: every missing piece is in flight.
    pub fn in_endgame(&self) -> bool {
        self.missing_count == 0 && !self.partial.is_empty()
    }

    /// Append up to `want` blocks for the peer described by `asker`.
    pub fn pick(&mut self, asker: &Asker<'_>, want: usize, out: &mut Vec<BlockRef>) {
        let Asker {
            peer,
            on_parole,
            has,
            is_seed,
            already,
            allowed,
        } = *asker;
        let start = out.len();
        let peer_has = |i: u32| (is_seed || has.has(i)) && allowed.is_none_or(|f| f(i));
        // Finish partial pieces first: fewer pieces in flight, sooner verified.
        let partial_keys: Vec<u32> = self
            .partial
            .iter()
            .filter(|(_, p)| match p.exclusive {
                Some(owner) => owner == peer,
                None => !on_parole,
            })
            .filter(|(&i, _)| self.priority[i as usize].is_wanted())
            .map(|(&i, _)| i)
            .collect();
        for index in &partial_keys {
            if out.len() - start >= want {
                return;
            }
            if peer_has(*index) {
                self.take_open_blocks(*index, want - (out.len() - start), out);
            }
        }
        // Then new pieces, rarest first, unless verification lags behind:
        // pieces waiting for their hash check hold memory.
        while out.len() - start < want
            && self.missing_count > 0
            && self.verifying < self.max_verifying
        {
            let Some(index) = self.rarest_missing(&peer_has) else {
                break;
            };
            self.start_piece(index, on_parole.then_some(peer));
            self.take_open_blocks(index, want - (out.len() - start), out);
        }
        // Endgame: ask for blocks already in flight elsewhere.
        if out.len() - start < want && self.missing_count == 0 {
            for index in partial_keys {
                if !peer_has(index) {
                    continue;
                }
                let size = self.piece_size(index);
                let Some(p) = self.partial.get_mut(&index) else {
                    continue;
                };
                for (b, st) in p.blocks.iter_mut().enumerate() {
                    if out.len() - start >= want {
                        return;
                    }
                    if let BlockState::Requested(n) = st {
                        let block = block_ref(index, b as u32, size);
                        if *n < 2 && !already(&block) && !out[start..].contains(&block) {
                            *n += 1;
                            out.push(block);
                        }
                    }
                }
            }
        }
    }

    fn rarest_missing(&mut self, peer_has: &dyn Fn(u32) -> bool) -> Option<u32> {
        let count = self.piece_count();
        // Sequential mode scans from the first piece, and the lowest index
        // wins a tie; otherwise from a moving start, the rarest winning.
        let from = if self.sequential { 0 } else { self.scan_start };
        let mut best: Option<(u32, Priority, u32)> = None;
        for k in 0..count {
            let i = (from + k) % count;
            let prio = self.priority[i as usize];
            if self.state[i as usize] != PieceState::Missing || !prio.is_wanted() || !peer_has(i) {
                continue;
            }
            let avail = if self.sequential {
                0
            } else {
                self.availability[i as usize]
            };
            let better = best.is_none_or(|(_, p, a)| prio > p || (prio == p && avail < a));
            if better {
                best = Some((i, prio, avail));
                if prio == self.top_priority && avail <= 1 {
                    break;
                }
            }
        }
        // Move on so that ties among equally rare pieces spread across peers.
        if let Some((i, _, _)) = best {
            self.scan_start = (i + 1) % count;
        }
        best.map(|(i, _, _)| i)
    }

    fn start_piece(&mut self, index: u32, exclusive: Option<PeerKey>) {
        let size = self.piece_size(index);
        let blocks = size.div_ceil(BLOCK_SIZE) as usize;
        self.state[index as usize] = PieceState::Partial;
        self.missing_count -= 1;
        self.partial.insert(
            index,
            PartialPiece {
                blocks: vec![BlockState::Open; blocks],
                open: blocks as u32,
                exclusive,
                received: 0,
                data: Vec::new(),
                contributors: Vec::new(),
            },
        );
    }

    fn take_open_blocks(&mut self, index: u32, want: usize, out: &mut Vec<BlockRef>) {
        let size = self.piece_size(index);
        let Some(p) = self.partial.get_mut(&index) else {
            return;
        };
        if p.open == 0 {
            return;
        }
        let mut taken = 0;
        for (b, st) in p.blocks.iter_mut().enumerate() {
            if taken >= want || p.open == 0 {
                break;
            }
            if *st == BlockState::Open {
                *st = BlockState::Requested(1);
                p.open -= 1;
                out.push(block_ref(index, b as u32, size));
                taken += 1;
            }
        }
    }

    /// A request was given up (choke, reject, timeout, peer gone): the block
    /// may be asked of someone else.
    pub fn release(&mut self, block: &BlockRef) {
        if let Some(p) = self.partial.get_mut(&block.index) {
            if let Some(st) = p.blocks.get_mut((block.begin / BLOCK_SIZE) as usize) {
                *st = match *st {
                    BlockState::Requested(n) if n > 1 => BlockState::Requested(n - 1),
                    BlockState::Requested(_) => {
                        p.open += 1;
                        BlockState::Open
                    }
                    other => other,
                };
            }
        }
    }

    /// A partial piece nobody holds a block of (every block open, none
    /// received) is missing again, for anyone to start: a web seed gives
    /// back a whole piece it took for itself this way. False, and nothing
    /// changes, if any block is requested or received.
    pub fn abandon(&mut self, index: u32) -> bool {
        let Some(p) = self.partial.get(&index) else {
            return false;
        };
        if p.received > 0 || p.open as usize != p.blocks.len() {
            return false;
        }
        self.partial.remove(&index);
        self.state[index as usize] = PieceState::Missing;
        if self.is_wanted(index) {
            self.missing_count += 1;
        }
        true
    }

    /// A block arrived from `peer`.
    pub fn on_block(&mut self, peer: PeerKey, index: u32, begin: u32, data: &[u8]) -> BlockOutcome {
        let size = self.piece_size(index);
        let Some(p) = self.partial.get_mut(&index) else {
            return if self.state.get(index as usize).is_some() {
                BlockOutcome::Duplicate
            } else {
                BlockOutcome::Unexpected
            };
        };
        // `begin < size` first: `block_ref` subtracts `begin` from the size.
        if !begin.is_multiple_of(BLOCK_SIZE)
            || begin >= size
            || block_ref(index, begin / BLOCK_SIZE, size).length as usize != data.len()
        {
            return BlockOutcome::Unexpected;
        }
        let b = (begin / BLOCK_SIZE) as usize;
        match p.blocks.get(b) {
            None => return BlockOutcome::Unexpected,
            Some(BlockState::Received) => return BlockOutcome::Duplicate,
            Some(_) => {}
        }
        if p.blocks[b] == BlockState::Open {
            p.open -= 1;
        }
        if p.data.is_empty() {
            p.data = match self.spare_buffers.pop() {
                Some(mut buf) if buf.capacity() >= size as usize => {
                    // Every byte is overwritten by a block before the piece completes.
                    buf.resize(size as usize, 0);
                    buf
                }
                _ => vec![0; size as usize],
            };
        }
        p.data[begin as usize..begin as usize + data.len()].copy_from_slice(data);
        p.blocks[b] = BlockState::Received;
        p.received += 1;
        if !p.contributors.contains(&peer) {
            p.contributors.push(peer);
        }
        if p.received as usize == p.blocks.len() {
            let p = self.partial.remove(&index).expect("present above");
            self.state[index as usize] = PieceState::Verifying;
            self.verifying += 1;
            return BlockOutcome::PieceComplete {
                index,
                data: p.data,
                contributors: p.contributors,
            };
        }
        BlockOutcome::Stored
    }

    /// A peer left: pieces reserved for it are open to everyone again.
    pub fn peer_gone(&mut self, peer: PeerKey) {
        for p in self.partial.values_mut() {
            if p.exclusive == Some(peer) {
                p.exclusive = None;
            }
        }
    }

    /// Throw away every block `peer` delivered to unfinished pieces (it was
    /// banned): those pieces would fail and blame whoever completes them.
    pub fn discard_blocks_from(&mut self, peer: PeerKey) {
        for p in self.partial.values_mut() {
            if !p.contributors.contains(&peer) {
                continue;
            }
            for st in p.blocks.iter_mut() {
                if *st == BlockState::Received {
                    *st = BlockState::Open;
                    p.open += 1;
                }
            }
            p.received = 0;
            p.contributors.clear();
        }
    }

    /// Give back a piece buffer once its data is written.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare_buffers.len() < MAX_SPARE_BUFFERS
            && buf.capacity() as u64 >= self.piece_length
        {
            buf.clear();
            self.spare_buffers.push(buf);
        }
    }

    /// The hash check of `index` finished.
    pub fn on_verified(&mut self, index: u32, ok: bool) {
        let size = self.piece_size(index) as u64;
        let Some(st) = self.state.get_mut(index as usize) else {
            return;
        };
        if *st != PieceState::Verifying {
            return;
        }
        self.verifying -= 1;
        let wanted = self.priority[index as usize].is_wanted();
        if ok {
            *st = PieceState::Have;
            self.have_count += 1;
            self.bytes_have += size;
            if wanted {
                self.wanted_left -= 1;
                self.bytes_wanted_have += size;
            }
        } else {
            *st = PieceState::Missing;
            if wanted {
                self.missing_count += 1;
            }
        }
    }

    /// A verified piece turned out missing on disk (file truncated under us).
    pub fn forget(&mut self, index: u32) {
        let size = self.piece_size(index) as u64;
        if let Some(st) = self.state.get_mut(index as usize) {
            if *st == PieceState::Have {
                *st = PieceState::Missing;
                self.have_count -= 1;
                self.bytes_have -= size;
                if self.priority[index as usize].is_wanted() {
                    self.missing_count += 1;
                    self.wanted_left += 1;
                    self.bytes_wanted_have -= size;
                }
            }
        }
    }

    /// Bytes of verified data.
    pub fn bytes_have(&self) -> u64 {
        self.bytes_have
    }
}

fn block_ref(index: u32, block: u32, piece_size: u32) -> BlockRef {
    let begin = block * BLOCK_SIZE;
    BlockRef {
        index,
        begin,
        length: (piece_size - begin).min(BLOCK_SIZE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &BlockRef) -> bool {
        false
    }

    fn ask<'a>(
        peer: PeerKey,
        on_parole: bool,
        has: &'a Bitfield,
        is_seed: bool,
        already: &'a dyn Fn(&BlockRef) -> bool,
    ) -> Asker<'a> {
        Asker {
            peer,
            on_parole,
            has,
            is_seed,
            already,
            allowed: None,
        }
    }

    #[test]
    fn rarest_first_and_partials_first() {
        let mut p = Picker::new(32 * 1024, 4 * 32 * 1024, &Bitfield::new(4));
        let mut all = Bitfield::full(4);
        for i in 0..4 {
            p.add_availability(i);
        }
        p.add_availability(0);
        p.add_availability(1);
        p.add_availability(3);
        // piece 2 is the rarest
        let mut out = Vec::new();
        p.pick(&ask(1, false, &all, false, &never), 1, &mut out);
        assert_eq!(
            out,
            vec![BlockRef {
                index: 2,
                begin: 0,
                length: BLOCK_SIZE
            }]
        );
        // the partial piece 2 is finished before a new one starts
        out.clear();
        p.pick(&ask(1, false, &all, false, &never), 1, &mut out);
        assert_eq!(out[0].index, 2);
        assert_eq!(out[0].begin, BLOCK_SIZE);
        all.clear(0);
        out.clear();
        p.pick(&ask(1, false, &all, false, &never), 100, &mut out);
        assert!(
            out.iter().all(|b| b.index != 0),
            "never asks for what the peer lacks"
        );
    }

    /// Picks one block at a time from a seed and completes each piece it
    /// starts, returning the pieces in the order they were started.
    fn order_of_pieces(p: &mut Picker, rounds: usize) -> Vec<u32> {
        let all = Bitfield::full(p.piece_count());
        let mut order = Vec::new();
        for _ in 0..rounds {
            let mut out = Vec::new();
            p.pick(&ask(1, false, &all, true, &never), 1, &mut out);
            let Some(b) = out.first().copied() else {
                break;
            };
            let data = vec![0u8; b.length as usize];
            if let BlockOutcome::PieceComplete { index, .. } =
                p.on_block(1, b.index, b.begin, &data)
            {
                order.push(index);
                p.on_verified(index, true);
            }
        }
        order
    }

    #[test]
    fn skipped_pieces_are_never_asked_for_and_high_ones_come_first() {
        use Priority::*;
        let mut p = Picker::new(BLOCK_SIZE as u64, 6 * BLOCK_SIZE as u64, &Bitfield::new(6));
        p.set_priorities(&[Normal, Skip, High, Normal, Skip, High]);
        assert_eq!(p.bytes_wanted(), (0, 4 * BLOCK_SIZE as u64));
        let order = order_of_pieces(&mut p, 20);
        assert_eq!(order.len(), 4, "only the four wanted pieces: {order:?}");
        let mut first_two = order[..2].to_vec();
        first_two.sort();
        assert_eq!(first_two, vec![2, 5], "high before normal: {order:?}");
        assert!(!order.contains(&1) && !order.contains(&4));
        assert!(p.is_done() && !p.is_complete());
        assert_eq!(
            p.bytes_wanted(),
            (4 * BLOCK_SIZE as u64, 4 * BLOCK_SIZE as u64)
        );
        // Wanting a skipped piece again makes the torrent not done.
        p.set_priorities(&[Normal; 6]);
        assert!(!p.is_done());
        assert_eq!(order_of_pieces(&mut p, 20).len(), 2);
        assert!(p.is_done() && p.is_complete());
    }

    #[test]
    fn sequential_mode_goes_in_order_after_its_high_pieces() {
        use Priority::*;
        let mut p = Picker::new(BLOCK_SIZE as u64, 5 * BLOCK_SIZE as u64, &Bitfield::new(5));
        // As piece_priorities gives it for one file in sequential mode.
        p.set_priorities(&[High, Normal, Normal, Normal, High]);
        p.set_sequential(true);
        // Availability would make piece 3 the rarest; order wins.
        for i in [0, 1, 2, 4] {
            p.add_availability(i);
        }
        assert_eq!(order_of_pieces(&mut p, 20), vec![0, 4, 1, 2, 3]);
    }

    #[test]
    fn assembles_and_verifies_short_last_piece() {
        let total = 16 * 1024 + 100;
        let mut p = Picker::new(32 * 1024, total, &Bitfield::new(1));
        let mut out = Vec::new();
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &never),
            10,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].length, 100);
        assert_eq!(
            p.on_block(1, 0, 0, &[1; 100]),
            BlockOutcome::Unexpected,
            "wrong length refused"
        );
        assert_eq!(p.on_block(1, 0, 0, &vec![1; 16384]), BlockOutcome::Stored);
        assert_eq!(
            p.on_block(1, 0, 0, &vec![1; 16384]),
            BlockOutcome::Duplicate
        );
        match p.on_block(2, 0, 16384, &[2; 100]) {
            BlockOutcome::PieceComplete {
                index,
                data,
                contributors,
            } => {
                assert_eq!(index, 0);
                assert_eq!(data.len(), total as usize);
                assert_eq!(contributors, vec![1, 2]);
            }
            other => panic!("expected completion, got {other:?}"),
        }
        p.on_verified(0, false);
        assert!(!p.is_complete());
        out.clear();
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &never),
            10,
            &mut out,
        );
        assert_eq!(out.len(), 2, "a failed piece is asked for again");
    }

    #[test]
    fn endgame_duplicates_only_to_other_peers() {
        let mut p = Picker::new(16 * 1024, 16 * 1024, &Bitfield::new(1));
        let mut first = Vec::new();
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &never),
            10,
            &mut first,
        );
        assert_eq!(first.len(), 1);
        assert!(p.in_endgame());
        let mut again = Vec::new();
        let mine = first[0];
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &|b| *b == mine),
            10,
            &mut again,
        );
        assert!(again.is_empty(), "same peer is not asked twice");
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &never),
            10,
            &mut again,
        );
        assert_eq!(again, first, "another peer gets the in-flight block");
    }

    #[test]
    fn parole_pieces_are_filled_alone() {
        let mut p = Picker::new(32 * 1024, 2 * 32 * 1024, &Bitfield::new(2));
        let all = Bitfield::full(2);
        let mut paroled = Vec::new();
        p.pick(&ask(7, true, &all, true, &never), 1, &mut paroled);
        assert_eq!(paroled.len(), 1);
        let mut other = Vec::new();
        p.pick(&ask(8, false, &all, true, &never), 10, &mut other);
        assert!(
            other.iter().all(|b| b.index != paroled[0].index),
            "others keep out of a parole piece"
        );
        p.peer_gone(7);
        let mut later = Vec::new();
        p.pick(&ask(8, false, &all, true, &never), 10, &mut later);
        assert!(
            later.iter().any(|b| b.index == paroled[0].index),
            "open again once the peer left"
        );
    }

    #[test]
    fn blocks_of_a_banned_peer_are_discarded() {
        let mut p = Picker::new(32 * 1024, 32 * 1024, &Bitfield::new(1));
        let mut out = Vec::new();
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &never),
            10,
            &mut out,
        );
        assert_eq!(
            p.on_block(1, 0, 0, &vec![0xaa; 16384]),
            BlockOutcome::Stored
        );
        p.discard_blocks_from(1);
        p.release(&out[1]);
        let mut again = Vec::new();
        p.pick(
            &ask(2, false, &Bitfield::full(1), true, &never),
            10,
            &mut again,
        );
        assert_eq!(again, out, "both blocks are asked for again");
        assert_eq!(p.on_block(2, 0, 0, &vec![1; 16384]), BlockOutcome::Stored);
        match p.on_block(2, 0, 16384, &vec![1; 16384]) {
            BlockOutcome::PieceComplete {
                data, contributors, ..
            } => {
                assert!(data.iter().all(|&b| b == 1));
                assert_eq!(contributors, vec![2], "the banned peer is no contributor");
            }
            other => panic!("expected completion, got {other:?}"),
        }
    }

    #[test]
    fn bytes_have_follows_verification_and_loss() {
        let total = 3 * 16 * 1024 + 100;
        let mut have = Bitfield::new(4);
        have.set(3);
        let mut p = Picker::new(16 * 1024, total, &have);
        assert_eq!(
            p.bytes_have(),
            100,
            "the short last piece counts its own size"
        );
        let mut out = Vec::new();
        p.pick(
            &ask(1, false, &Bitfield::full(4), true, &never),
            1,
            &mut out,
        );
        let index = out[0].index;
        assert!(matches!(
            p.on_block(1, index, 0, &vec![0; 16384]),
            BlockOutcome::PieceComplete { .. }
        ));
        p.on_verified(index, true);
        assert_eq!(p.bytes_have(), 100 + 16384);
        p.forget(index);
        p.forget(index);
        assert_eq!(p.bytes_have(), 100, "forgetting twice subtracts once");
    }

    #[test]
    fn release_reopens_block() {
        let mut p = Picker::new(16 * 1024, 16 * 1024, &Bitfield::new(1));
        let mut out = Vec::new();
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &never),
            1,
            &mut out,
        );
        p.release(&out[0]);
        let mut again = Vec::new();
        p.pick(
            &ask(1, false, &Bitfield::full(1), true, &|b| *b == out[0]),
            1,
            &mut again,
        );
        assert_eq!(again, out);
    }
}
