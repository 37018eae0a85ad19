//! Inputs found by the fuzz targets in fuzz/ (see docs/robustness.md), kept
//! as tests so the bugs stay fixed. Each test names its target and finding.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use capwise_engine::bitfield::Bitfield;
use capwise_engine::swarm::{Outgoing, Swarm, SwarmConfig};
use capwise_engine::wire::{self, Handshake, Message, BLOCK_SIZE};

/// wire_stream, finding 1: a `piece` message whose offset lies past the end of
/// a short (last) piece that is being downloaded made the picker compute
/// `piece_size - begin` and overflow ("attempt to subtract with overflow" in
/// `picker::block_ref`): any peer could crash a build with overflow checks.
#[test]
fn piece_block_beyond_the_end_of_a_short_piece() {
    let now = Instant::now();
    // One piece of 371 bytes: its only block is (0, 0, 371).
    let mut swarm = Swarm::new(
        u64::from(BLOCK_SIZE),
        371,
        Bitfield::new(1),
        SwarmConfig::default(),
        now,
    );
    let mut plain = Handshake::new([1; 20], [2; 20]);
    plain.reserved = [0; 8];
    let addr: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    let peer = swarm.add_peer(addr, &plain, now);
    swarm
        .on_message(peer, Message::Bitfield(Bytes::from_static(&[0x80])), now)
        .unwrap();
    swarm.on_message(peer, Message::Unchoke, now).unwrap();
    let mut out = Vec::new();
    swarm.poll_outgoing(peer, now, &mut out);
    assert!(
        out.iter()
            .any(|o| matches!(o, Outgoing::Message(Message::Request(b)) if b.length == 371)),
        "the piece is being downloaded: {out:?}"
    );

    // A block-aligned offset past the piece's end, through the real codec.
    for begin in [BLOCK_SIZE, 0x8000_0000, u32::MAX - (BLOCK_SIZE - 1)] {
        let mut buf = BytesMut::new();
        wire::encode(
            &Message::Piece {
                index: 0,
                begin,
                data: Bytes::from(vec![0x5a; BLOCK_SIZE as usize]),
            },
            &mut buf,
        );
        let msg = wire::decode(&mut buf, 2 * BLOCK_SIZE).unwrap().unwrap();
        // Unrequested junk: tolerated (counted), never stored, never a panic.
        swarm.on_message(peer, msg, now).unwrap();
    }
    assert!(swarm.poll_event().is_none());
    assert_eq!(swarm.have().count(), 0);
}
