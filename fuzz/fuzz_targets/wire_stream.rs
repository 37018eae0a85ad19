//! A whole stream of peer wire messages, split into chunks, decoded with a
//! small `max_len`, and fed into a sans-IO `Swarm` driven by a fake clock.
//!
//! Input layout: a 5-byte header (flags, piece count, piece length, tail
//! length, max_len), then a bitfield of the pieces we have, then operations:
//! each op byte names a peer (high nibble) and an action (low nibble):
//! feed a chunk of raw bytes, answer the oldest request we sent with a block
//! (so pieces can complete without the fuzzer guessing 16 KiB), tick the
//! clock, finish a pending hash check (pass or fail), toggle seeding,
//! reconnect a dropped peer, lose a verified piece.
//!
//! Checked: decode never panics; an error consumes nothing; a decoded message
//! took exactly `wire_len` bytes and re-encodes to them; every outgoing
//! message round-trips through the codec; the swarm's counters agree.
#![no_main]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use capwise_engine::bitfield::Bitfield;
use capwise_engine::hooks::Direction;
use capwise_engine::swarm::{Event, Outgoing, Swarm, SwarmConfig};
use capwise_engine::wire::{self, BlockRef, Handshake, Message, BLOCK_SIZE};
use libfuzzer_sys::fuzz_target;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

struct FakePeer {
    key: Option<u64>,
    handshake: Handshake,
    addr: SocketAddr,
    buf: BytesMut,
    /// Requests we sent and the peer has not answered yet.
    requested: VecDeque<BlockRef>,
    /// Credit granted to this connection and payload it let out
    /// (`SwarmConfig::needs_credit`): down for requests, up for blocks.
    granted: [u64; 2],
    spent: [u64; 2],
}

struct Harness {
    swarm: Swarm,
    peers: Vec<FakePeer>,
    now: Instant,
    max_len: u32,
    /// Pieces waiting for their hash check.
    verifying: VecDeque<(u32, Vec<u8>)>,
    outgoing: Vec<Outgoing>,
    /// A verified piece was lost: blocks of it may still sit in an outbox.
    lost_any: bool,
    /// Payload moves only within granted credit.
    needs_credit: bool,
}

/// `msg` encodes to exactly `wire_len` bytes that decode back to `msg`.
fn round_trip(msg: &Message) -> BytesMut {
    let mut out = BytesMut::new();
    wire::encode(msg, &mut out);
    assert_eq!(out.len(), msg.wire_len());
    let mut copy = out.clone();
    let back = wire::decode(&mut copy, u32::MAX).expect("our encoding decodes");
    assert_eq!(back.as_ref(), Some(msg));
    assert!(copy.is_empty());
    out
}

impl Harness {
    fn drop_peer(&mut self, i: usize) {
        if let Some(key) = self.peers[i].key.take() {
            self.swarm.remove_peer(key);
        }
        self.peers[i].buf.clear();
        self.peers[i].requested.clear();
    }

    fn connect(&mut self, i: usize) {
        if self.peers[i].key.is_none() {
            let p = &self.peers[i];
            assert!(!self.swarm.is_connected(p.addr));
            let key = self.swarm.add_peer(p.addr, &p.handshake, self.now);
            self.peers[i].key = Some(key);
            self.peers[i].granted = [0; 2];
            self.peers[i].spent = [0; 2];
        }
    }

    /// Decode everything complete in peer `i`'s buffer and hand it to the swarm.
    fn pump(&mut self, i: usize) {
        loop {
            let Some(key) = self.peers[i].key else {
                self.peers[i].buf.clear();
                return;
            };
            let before = self.peers[i].buf.clone();
            match wire::decode(&mut self.peers[i].buf, self.max_len) {
                Ok(None) => {
                    assert_eq!(self.peers[i].buf[..], before[..]);
                    return;
                }
                Err(_) => {
                    assert_eq!(self.peers[i].buf[..], before[..], "error consumed input");
                    self.drop_peer(i);
                    return;
                }
                Ok(Some(msg)) => {
                    let used = before.len() - self.peers[i].buf.len();
                    assert_eq!(used, msg.wire_len());
                    assert!(used <= 4 + self.max_len as usize);
                    assert_eq!(round_trip(&msg)[..], before[..used]);
                    if let Message::Piece { index, begin, data } = &msg {
                        let block = BlockRef {
                            index: *index,
                            begin: *begin,
                            length: data.len() as u32,
                        };
                        self.peers[i].requested.retain(|b| *b != block);
                    }
                    if let Message::RejectRequest(block) = &msg {
                        self.peers[i].requested.retain(|b| b != block);
                    }
                    if self.swarm.on_message(key, msg, self.now).is_err() {
                        self.drop_peer(i);
                        return;
                    }
                    self.drain();
                }
            }
        }
    }

    /// Collect what the swarm wants sent, and its events.
    fn drain(&mut self) {
        for key in self.swarm.take_dirty() {
            let Some(i) = self.peers.iter().position(|p| p.key == Some(key)) else {
                continue;
            };
            self.outgoing.clear();
            self.swarm.poll_outgoing(key, self.now, &mut self.outgoing);
            for item in std::mem::take(&mut self.outgoing) {
                match item {
                    Outgoing::Message(msg) => {
                        round_trip(&msg);
                        match msg {
                            Message::Request(b) => {
                                assert!(b.length > 0 && b.length <= BLOCK_SIZE);
                                self.peers[i].spent[0] += u64::from(b.length);
                                self.peers[i].requested.push_back(b);
                            }
                            Message::Cancel(b) => self.peers[i].requested.retain(|r| *r != b),
                            _ => {}
                        }
                    }
                    Outgoing::Block(b) => {
                        assert!(self.lost_any || self.swarm.have().has(b.index));
                        self.peers[i].spent[1] += u64::from(b.length);
                        self.swarm.on_payload_sent(key, u64::from(b.length));
                    }
                }
            }
            let p = &self.peers[i];
            if self.needs_credit {
                assert!(p.spent[0] <= p.granted[0], "requests beyond credit");
                assert!(p.spent[1] <= p.granted[1], "blocks beyond credit");
            }
        }
        while let Some(event) = self.swarm.poll_event() {
            match event {
                Event::PieceComplete { index, data } => {
                    assert!(!self.swarm.have().has(index));
                    self.verifying.push_back((index, data));
                }
                Event::Disconnect { peer, .. } => {
                    if let Some(i) = self.peers.iter().position(|p| p.key == Some(peer)) {
                        self.peers[i].key = None;
                        self.peers[i].buf.clear();
                        self.peers[i].requested.clear();
                    }
                }
                Event::Finished => assert!(self.swarm.is_complete()),
                // PEX is not enabled for this swarm.
                Event::PeersLearnt { .. } => panic!("PEX event without PEX"),
            }
        }
        let stats = self.swarm.stats();
        assert_eq!(stats.pieces_have, self.swarm.have().count());
        assert_eq!(stats.piece_count, self.swarm.have().len());
        assert_eq!(self.swarm.is_complete(), self.swarm.have().is_full());
        assert_eq!(
            stats.peers,
            self.peers.iter().filter(|p| p.key.is_some()).count()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (Some(flags), Some(n), Some(plen), Some(tail), Some(max)) = (
        input.byte(),
        input.byte(),
        input.byte(),
        input.byte(),
        input.byte(),
    ) else {
        return;
    };
    let pieces = 1 + u32::from(n % 24);
    let piece_length = u64::from(BLOCK_SIZE) << (plen % 3);
    let tail = if tail & 0x80 != 0 {
        piece_length
    } else {
        1 + u64::from(tail) * 37
    };
    let total = piece_length * u64::from(pieces - 1) + tail;
    // A small limit makes `TooLong` reachable; the large one lets blocks in.
    let max_len = if max & 0x80 != 0 {
        u32::from(max & 0x7F)
    } else {
        9 + BLOCK_SIZE + u32::from(max)
    };
    let mut have = Bitfield::new(pieces);
    let bits = input.take((pieces as usize).div_ceil(8)).to_vec();
    for i in 0..pieces {
        if bits
            .get(i as usize / 8)
            .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
        {
            have.set(i);
        }
    }
    let now = Instant::now();
    let needs_credit = plen & 0x80 != 0;
    let config = SwarmConfig {
        upload_slots: 1 + usize::from(flags >> 6),
        needs_credit,
        ..SwarmConfig::default()
    };
    let npeers = 1 + usize::from(flags % 3);
    let peers = (0..npeers)
        .map(|i| {
            let mut handshake = Handshake::new([7; 20], [i as u8; 20]);
            if flags & (0x04 << i) == 0 {
                handshake.reserved[7] &= !0x04; // no fast extension
            }
            if flags & (0x20 >> i) == 0 {
                handshake.reserved[5] &= !0x10; // no BEP 10
            }
            FakePeer {
                key: None,
                handshake,
                addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, i as u8 + 1), 6881)),
                buf: BytesMut::new(),
                requested: VecDeque::new(),
                granted: [0; 2],
                spent: [0; 2],
            }
        })
        .collect();
    let mut h = Harness {
        swarm: Swarm::new(piece_length, total, have, config, now),
        peers,
        now,
        max_len,
        verifying: VecDeque::new(),
        outgoing: Vec::new(),
        lost_any: false,
        needs_credit,
    };
    for i in 0..npeers {
        h.connect(i);
    }
    h.drain();

    while let Some(op) = input.byte() {
        let i = usize::from(op >> 4) % npeers;
        match op & 0x0F {
            // Raw bytes from the peer, as they came off the socket.
            0..=4 => {
                let len = usize::from(input.byte().unwrap_or(0));
                let chunk = input.take(len).to_vec();
                if h.peers[i].key.is_some() {
                    h.peers[i].buf.extend_from_slice(&chunk);
                    h.pump(i);
                }
            }
            // The peer answers our oldest request with a well-formed block.
            6 => {
                let fill = input.byte().unwrap_or(0);
                if h.peers[i].key.is_none() {
                    continue;
                }
                if let Some(b) = h.peers[i].requested.pop_front() {
                    let msg = Message::Piece {
                        index: b.index,
                        begin: b.begin,
                        data: Bytes::from(vec![fill; b.length as usize]),
                    };
                    wire::encode(&msg, &mut h.peers[i].buf);
                    h.pump(i);
                }
            }
            // The gate debits payload for the peer (in credit mode).
            5 => {
                let amount = input.byte().unwrap_or(0);
                let Some(key) = h.peers[i].key else {
                    continue;
                };
                let (direction, slot) = if amount & 1 == 0 {
                    (Direction::Down, 0)
                } else {
                    (Direction::Up, 1)
                };
                let bytes = u64::from(amount >> 1) * 1024;
                h.peers[i].granted[slot] += bytes;
                h.swarm.grant_credit(key, direction, bytes, h.now);
            }
            // Time passes.
            7 => {
                let secs = u64::from(input.byte().unwrap_or(1));
                h.now += Duration::from_millis(secs * 250);
                h.swarm.tick(h.now);
            }
            // A hash check finishes.
            8 => {
                let ok = input.byte().unwrap_or(0) & 1 == 1;
                if let Some((index, data)) = h.verifying.pop_front() {
                    h.swarm.piece_verified(index, ok, h.now);
                    h.swarm.recycle_buffer(data);
                }
            }
            9 => {
                let on = input.byte().unwrap_or(0) & 1 == 1;
                h.swarm.set_seeding(on, h.now);
            }
            10 => h.connect(i),
            11 => h.drop_peer(i),
            // A verified piece turns out unreadable on disk.
            12 => {
                let index = u32::from(input.byte().unwrap_or(0)) % pieces;
                if h.swarm.have().has(index) && !h.verifying.iter().any(|(v, _)| *v == index) {
                    h.swarm.piece_lost(index);
                    h.lost_any = true;
                }
            }
            // A well-formed message built from the input (cheaper for the
            // fuzzer than spelling the framing): have, request, cancel,
            // allowed-fast, reject, bitfield of the right length.
            _ => {
                let kind = input.byte().unwrap_or(0);
                let raw = input.take(12);
                let word = |at: usize| {
                    raw.get(at..at + 4)
                        .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()))
                };
                let block = BlockRef {
                    index: word(0) % (pieces + 1),
                    begin: word(4) % (piece_length as u32 + 1),
                    length: word(8) % (2 * BLOCK_SIZE + 1),
                };
                let msg = match kind % 6 {
                    0 => Message::Have(word(0) % (pieces + 1)),
                    1 => Message::Request(block),
                    2 => Message::Cancel(block),
                    3 => Message::AllowedFast(word(0) % (pieces + 1)),
                    4 => Message::RejectRequest(block),
                    _ => {
                        let mut bf = Bitfield::new(pieces);
                        for p in 0..pieces {
                            if word(0) & (1 << (p % 32)) != 0 {
                                bf.set(p);
                            }
                        }
                        Message::Bitfield(Bytes::copy_from_slice(bf.as_bytes()))
                    }
                };
                if h.peers[i].key.is_some() {
                    wire::encode(&msg, &mut h.peers[i].buf);
                    h.pump(i);
                }
            }
        }
        h.drain();
    }
});
