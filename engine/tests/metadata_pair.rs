//! ut_metadata over the real codec, in memory with a fake clock: a swarm
//! that has the metadata serves it, a `MetadataFetch` assembles and
//! verifies it; no sockets, no sleeps.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use capwise_engine::bitfield::Bitfield;
use capwise_engine::ext::metadata::{MetadataFetch, MetadataMsg, BLOCK_SIZE, OUR_ID};
use capwise_engine::metainfo::InfoHash;
use capwise_engine::picker::PeerKey;
use capwise_engine::swarm::{Outgoing, Swarm, SwarmConfig};
use capwise_engine::wire::{self, Handshake, Message};

/// Everything the swarm queued for `key`, through the wire codec.
fn drain(swarm: &mut Swarm, key: PeerKey, now: Instant) -> Vec<Message> {
    let mut out = Vec::new();
    swarm.poll_outgoing(key, now, &mut out);
    let mut buf = BytesMut::new();
    for o in out {
        if let Outgoing::Message(m) = o {
            wire::encode(&m, &mut buf);
        }
    }
    let mut msgs = Vec::new();
    while let Some(m) = wire::decode(&mut buf, 1 << 20).unwrap() {
        msgs.push(m);
    }
    msgs
}

fn seeder_with(info: &[u8], now: Instant) -> (Swarm, PeerKey) {
    let mut swarm = Swarm::new(16384, 16384, Bitfield::full(1), SwarmConfig::default(), now);
    swarm.set_metadata(Bytes::copy_from_slice(info));
    let key = swarm.add_peer(
        "127.0.0.2:6881".parse().unwrap(),
        &Handshake::new([1; 20], [2; 20]),
        now,
    );
    (swarm, key)
}

#[test]
fn a_swarm_serves_its_metadata_to_a_fetch_which_verifies_it() {
    let info: Vec<u8> = (0..(2 * BLOCK_SIZE + 300))
        .map(|i| (i % 253) as u8)
        .collect();
    let now = Instant::now();
    let (mut seeder, key) = seeder_with(&info, now);
    // The seeder's extension handshake tells the size and its id.
    let greeting = drain(&mut seeder, key, now);
    let Some(Message::Extended { id: 0, payload }) = greeting.first() else {
        panic!("no extension handshake first: {greeting:?}");
    };
    let (their_id, size) = wire::extension::peer_ut_metadata(payload);
    assert_eq!(size, Some(info.len() as i64));
    // Our side greets too, so the seeder knows the id to answer with.
    let ours = Bytes::from(wire::extension::our_handshake(0, 250, None));
    seeder
        .on_message(
            key,
            Message::Extended {
                id: 0,
                payload: ours,
            },
            now,
        )
        .unwrap();
    let mut fetch = MetadataFetch::new(InfoHash::of(&info));
    fetch.add_peer(1, their_id, size).unwrap();
    let mut t = now;
    let mut result = None;
    for _ in 0..20 {
        for req in fetch.poll_requests(t) {
            let payload = MetadataMsg::Request { piece: req.piece }.encode();
            seeder
                .on_message(
                    key,
                    Message::Extended {
                        id: req.ext_id,
                        payload,
                    },
                    t,
                )
                .unwrap();
        }
        for msg in drain(&mut seeder, key, t) {
            let Message::Extended { id, payload } = msg else {
                continue;
            };
            assert_eq!(id, OUR_ID, "answered with the id we gave");
            if let MetadataMsg::Data {
                piece,
                total_size,
                data,
            } = MetadataMsg::decode(&payload).unwrap()
            {
                result = result.or(fetch.on_data(1, piece, total_size, data, t).unwrap());
            }
        }
        if result.is_some() {
            break;
        }
        t += Duration::from_millis(100);
    }
    assert_eq!(result.as_deref(), Some(&info[..]));
}

#[test]
fn a_request_out_of_range_is_rejected_and_garbage_is_a_violation() {
    let info = vec![b'x'; 100];
    let now = Instant::now();
    let (mut seeder, key) = seeder_with(&info, now);
    drain(&mut seeder, key, now);
    let ours = Bytes::from(wire::extension::our_handshake(0, 250, None));
    seeder
        .on_message(
            key,
            Message::Extended {
                id: 0,
                payload: ours,
            },
            now,
        )
        .unwrap();
    let payload = MetadataMsg::Request { piece: 1 }.encode();
    seeder
        .on_message(
            key,
            Message::Extended {
                id: OUR_ID,
                payload,
            },
            now,
        )
        .unwrap();
    let answers = drain(&mut seeder, key, now);
    let Some(Message::Extended { payload, .. }) = answers.first() else {
        panic!("no answer: {answers:?}");
    };
    assert_eq!(
        MetadataMsg::decode(payload).unwrap(),
        MetadataMsg::Reject { piece: 1 }
    );
    let garbage = Bytes::from(vec![b'd'; 20 * 1024]);
    assert!(seeder
        .on_message(
            key,
            Message::Extended {
                id: OUR_ID,
                payload: garbage
            },
            now
        )
        .is_err());
}
