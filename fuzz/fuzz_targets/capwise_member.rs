//! capwise_member (channel membership proofs): hostile extension handshakes
//! and proof messages into a swarm that requires membership never panic,
//! and never make a peer a proven member (forging ed25519 is out of reach,
//! so any "proven" here is a bug).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_engine::bitfield::Bitfield;
use capwise_engine::ext::member::{self, MemberPeer, Membership, MembershipKey};
use capwise_engine::swarm::{PeerOrigin, Swarm, SwarmConfig};
use capwise_engine::wire::{Handshake, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = Membership {
        key: MembershipKey::from_seed([1; 32]),
        info_hash: [9; 20],
        peer_id: [2; 20],
    };
    // The pure parsers and one peer's state.
    let _ = member::decode_proof(data);
    let _ = member::peer_member(data);
    let now = Instant::now();
    let mut peer = MemberPeer::new([3; 32], [4; 20], now);
    let _ = peer.on_handshake(&m, data);
    let _ = peer.on_proof(&m, data);
    assert!(!peer.is_proven());

    // The swarm: the input split into extension messages (first byte: id).
    let mut swarm = Swarm::new(
        16 * 1024,
        64 * 1024,
        Bitfield::full(4),
        SwarmConfig::default(),
        now,
    );
    swarm.require_membership(m);
    let addr = SocketAddr::from(([10, 0, 0, 1], 6881));
    let key = swarm.add_peer_with(
        addr,
        &Handshake::new([9; 20], [4; 20]),
        PeerOrigin::default(),
        now,
    );
    for chunk in data.split(|&b| b == 0xff).take(16) {
        let (id, payload) = match chunk.split_first() {
            Some((&id, rest)) => (id % 8, rest),
            None => (0, chunk),
        };
        let msg = Message::Extended {
            id,
            payload: Bytes::copy_from_slice(payload),
        };
        if swarm.on_message(key, msg, now).is_err() {
            swarm.remove_peer(key);
            break;
        }
        assert!(!swarm.is_proven_member(key));
    }
    swarm.tick(now + Duration::from_secs(11));
    assert!(!swarm.is_proven_member(key));
});
