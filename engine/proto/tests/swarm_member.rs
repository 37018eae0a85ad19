//! Channel membership (`capwise_member`) between in-memory swarms on a fake
//! clock: two members exchange the whole torrent; a stranger (wrong key, a
//! proof replayed from another connection, no extension, no BEP 10 at all)
//! gets nothing (no greeting, no unchoke, no block, no metadata) and is
//! dropped at once or at the proof time-out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_proto::bencode::{self, Owned};
use capwise_proto::bitfield::Bitfield;
use capwise_proto::ext::member::{self, Membership, MembershipKey, PROOF_TIMEOUT};
use capwise_proto::ext::metadata::{self, MetadataMsg};
use capwise_proto::picker::PeerKey;
use capwise_proto::privacy::PeerSharing;
use capwise_proto::swarm::{Event, Outgoing, PeerOrigin, Swarm, SwarmConfig};
use capwise_proto::wire::{BlockRef, Handshake, Message};

const PIECE: u64 = 32 * 1024;
const PIECES: u32 = 4;
const INFO_HASH: [u8; 20] = [9; 20];
const SEED_ID: [u8; 20] = [0x5e; 20];

fn membership(seed: u8, peer_id: [u8; 20]) -> Membership {
    Membership {
        key: MembershipKey::from_seed([seed; 32]),
        info_hash: INFO_HASH,
        peer_id,
    }
}

/// A swarm of a private channel torrent as the session sets it up: PEX
/// among members, membership required (unless `key` is `None`).
fn swarm(full: bool, key: Option<Membership>, now: Instant) -> Swarm {
    let have = if full {
        Bitfield::full(PIECES)
    } else {
        Bitfield::new(PIECES)
    };
    let mut s = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        have,
        SwarmConfig::default(),
        now,
    );
    s.set_metadata(Bytes::from_static(b"d4:name1:xe"));
    if let Ok(sharing) = PeerSharing::check(true, key.is_some()) {
        s.enable_pex(sharing);
    }
    if let Some(m) = key {
        s.require_membership(m);
    }
    s
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 6881))
}

fn drain(s: &mut Swarm, key: PeerKey, now: Instant) -> Vec<Outgoing> {
    let mut out = Vec::new();
    s.poll_outgoing(key, now, &mut out);
    out
}

/// The nonce in an extension handshake among `out`.
fn nonce_in(out: &[Outgoing]) -> Option<[u8; 32]> {
    out.iter().find_map(|o| match o {
        Outgoing::Message(Message::Extended { id: 0, payload }) => {
            member::peer_member(payload).ok().map(|(_, n)| n)
        }
        _ => None,
    })
}

/// Whether `out` gives the peer anything: a greeting, an unchoke, a block,
/// metadata data.
fn gives_anything(out: &[Outgoing]) -> bool {
    out.iter().any(|o| match o {
        Outgoing::Block(_) => true,
        Outgoing::Message(m) => match m {
            Message::Bitfield(_) | Message::HaveAll | Message::Unchoke | Message::Piece { .. } => {
                true
            }
            Message::Extended { id, payload } if *id == metadata::OUR_ID => {
                matches!(MetadataMsg::decode(payload), Ok(MetadataMsg::Data { .. }))
            }
            _ => false,
        },
    })
}

fn disconnects(s: &mut Swarm) -> Vec<(PeerKey, String)> {
    let mut v = Vec::new();
    while let Some(ev) = s.poll_event() {
        if let Event::Disconnect { peer, reason, .. } = ev {
            v.push((peer, reason));
        }
    }
    v
}

/// An extension handshake as a capwise peer sends it.
fn ext_handshake(nonce: Option<&[u8; 32]>) -> Message {
    let payload = capwise_proto::wire::extension::our_handshake_with(0, 250, None, &[], nonce);
    Message::Extended {
        id: 0,
        payload: Bytes::from(payload),
    }
}

fn proof(m: &Membership, their_nonce: &[u8; 32]) -> Message {
    Message::Extended {
        id: member::OUR_ID,
        payload: Bytes::from(member::encode_proof(&member::sign(m, their_nonce))),
    }
}

/// After the exchange, what a peer asks for: interest, a block, metadata.
fn ask_for_everything(s: &mut Swarm, key: PeerKey, now: Instant) -> Result<(), String> {
    let msgs = [
        Message::Interested,
        Message::Request(BlockRef {
            index: 0,
            begin: 0,
            length: 16 * 1024,
        }),
        Message::Extended {
            id: metadata::OUR_ID,
            payload: MetadataMsg::Request { piece: 0 }.encode(),
        },
    ];
    for msg in msgs {
        s.on_message(key, msg, now).map_err(|v| v.0)?;
    }
    Ok(())
}

#[test]
fn two_members_prove_it_and_exchange_the_whole_torrent() {
    let t0 = Instant::now();
    let leech_id = [0x1e; 20];
    let mut seed = swarm(true, Some(membership(1, SEED_ID)), t0);
    let mut leech = swarm(false, Some(membership(1, leech_id)), t0);
    let hs = |id| Handshake::new(INFO_HASH, id);
    let origin = PeerOrigin::default();
    let s_key = seed.add_peer_with(addr(2), &hs(leech_id), origin, t0);
    let l_key = leech.add_peer_with(addr(1), &hs(SEED_ID), origin, t0);
    let mut now = t0;
    let mut bytes_in = 0u64;
    let mut leech_proved_seed = false;
    for _ in 0..200 {
        let mut moved = false;
        for item in drain(&mut seed, s_key, now) {
            moved = true;
            let msg = match item {
                Outgoing::Message(m) => m,
                Outgoing::Block(b) => Message::Piece {
                    index: b.index,
                    begin: b.begin,
                    data: Bytes::from(vec![7u8; b.length as usize]),
                },
            };
            if let Message::Piece { data, .. } = &msg {
                bytes_in += data.len() as u64;
            }
            leech.on_message(l_key, msg, now).unwrap();
        }
        for item in drain(&mut leech, l_key, now) {
            moved = true;
            let Outgoing::Message(msg) = item else {
                panic!("the leecher has nothing to serve");
            };
            seed.on_message(s_key, msg, now).unwrap();
        }
        while let Some(ev) = leech.poll_event() {
            match ev {
                Event::PieceComplete { index, .. } => leech.piece_verified(index, true, now),
                // Once complete, the leecher lets the other seed go.
                Event::Disconnect { reason, .. } => {
                    assert!(leech.is_complete(), "dropped: {reason}")
                }
                _ => {}
            }
        }
        leech_proved_seed |= leech.is_proven_member(l_key);
        if !moved && leech.is_complete() {
            break;
        }
        now += Duration::from_millis(100);
        seed.tick(now);
        leech.tick(now);
    }
    assert!(leech.is_complete());
    assert_eq!(bytes_in, PIECE * PIECES as u64);
    assert!(seed.is_proven_member(s_key) && leech_proved_seed);
    assert_eq!(seed.proven_members(), 1);
    // Past the proof time-out, the proven member is kept.
    seed.tick(t0 + PROOF_TIMEOUT * 2);
    assert!(disconnects(&mut seed).is_empty());
    assert!(seed.is_proven_member(s_key));
}

/// A stranger dialling our seed: what it sends after the seed's greeting,
/// given the seed's nonce. Returns whether it was dropped at once and what
/// the seed sent it in all.
fn stranger(send: impl Fn(&[u8; 32]) -> Vec<Message>) -> (Option<String>, Vec<Outgoing>) {
    let t0 = Instant::now();
    let stranger_id = [0x33; 20];
    let mut seed = swarm(true, Some(membership(1, SEED_ID)), t0);
    let key = seed.add_peer_with(
        addr(3),
        &Handshake::new(INFO_HASH, stranger_id),
        PeerOrigin::default(),
        t0,
    );
    let mut sent = drain(&mut seed, key, t0);
    let nonce = nonce_in(&sent).expect("our handshake carries a nonce");
    for msg in send(&nonce) {
        if let Err(v) = seed.on_message(key, msg, t0) {
            seed.remove_peer(key);
            return (Some(v.0), sent);
        }
        sent.extend(drain(&mut seed, key, t0));
    }
    if let Err(e) = ask_for_everything(&mut seed, key, t0) {
        return (Some(e), sent);
    }
    sent.extend(drain(&mut seed, key, t0));
    (None, sent)
}

#[test]
fn a_wrong_key_gets_nothing_and_is_dropped_at_once() {
    let (dropped, sent) = stranger(|nonce| {
        vec![
            ext_handshake(Some(&[4; 32])),
            proof(&membership(2, [0x33; 20]), nonce),
        ]
    });
    assert!(dropped.unwrap().contains("does not verify"));
    assert!(!gives_anything(&sent), "{sent:?}");
}

#[test]
fn a_proof_replayed_from_another_connection_fails() {
    // A real member's proof, but for the nonce of another connection.
    let (dropped, sent) = stranger(|_| {
        vec![
            ext_handshake(Some(&[4; 32])),
            proof(&membership(1, [0x33; 20]), &[0xee; 32]),
        ]
    });
    assert!(dropped.unwrap().contains("does not verify"));
    assert!(!gives_anything(&sent));
}

#[test]
fn a_peer_without_the_extension_is_dropped_at_its_handshake() {
    let (dropped, sent) = stranger(|_| vec![ext_handshake(None)]);
    assert!(dropped.unwrap().contains("does not speak capwise_member"));
    assert!(!gives_anything(&sent));
}

#[test]
fn a_member_proof_from_the_right_key_opens_the_door() {
    // The control: the same steps with the right key do get served.
    let (dropped, sent) = stranger(|nonce| {
        vec![
            ext_handshake(Some(&[4; 32])),
            proof(&membership(1, [0x33; 20]), nonce),
        ]
    });
    assert_eq!(dropped, None);
    assert!(gives_anything(&sent));
}

#[test]
fn a_silent_or_plain_peer_gets_nothing_and_is_dropped_at_the_time_out() {
    let t0 = Instant::now();
    let mut seed = swarm(true, Some(membership(1, SEED_ID)), t0);
    // No BEP 10 at all (reserved bits clear), as a plain client might.
    let mut hs = Handshake::new(INFO_HASH, [0x44; 20]);
    hs.reserved = [0; 8];
    let key = seed.add_peer_with(addr(4), &hs, PeerOrigin::default(), t0);
    let mut sent = drain(&mut seed, key, t0);
    ask_for_everything(&mut seed, key, t0).unwrap();
    seed.on_message(key, Message::Bitfield(Bytes::from_static(&[0])), t0)
        .unwrap();
    let deadline = seed.poll_timeout().unwrap();
    assert!(deadline <= t0 + PROOF_TIMEOUT);
    let mut now = t0;
    while now < t0 + PROOF_TIMEOUT - Duration::from_millis(500) {
        now += Duration::from_millis(500);
        seed.tick(now);
        sent.extend(drain(&mut seed, key, now));
        assert!(disconnects(&mut seed).is_empty());
    }
    assert_eq!(seed.peer_count(), 1);
    seed.tick(t0 + PROOF_TIMEOUT);
    let gone = disconnects(&mut seed);
    assert_eq!(gone.len(), 1);
    assert!(gone[0].1.contains("no membership proof"));
    assert_eq!(seed.peer_count(), 0);
    assert!(!gives_anything(&sent), "{sent:?}");
    assert!(!seed.is_proven_member(key));
}

#[test]
fn a_torrent_without_membership_serves_as_before() {
    let t0 = Instant::now();
    let mut seed = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        Bitfield::full(PIECES),
        SwarmConfig::default(),
        t0,
    );
    let key = seed.add_peer_with(
        addr(5),
        &Handshake::new(INFO_HASH, [0x55; 20]),
        PeerOrigin::default(),
        t0,
    );
    let mut sent = drain(&mut seed, key, t0);
    assert_eq!(nonce_in(&sent), None);
    seed.on_message(key, ext_handshake(None), t0).unwrap();
    ask_for_everything(&mut seed, key, t0).unwrap();
    sent.extend(drain(&mut seed, key, t0));
    assert!(gives_anything(&sent));
    assert!(!seed.is_proven_member(key) && !seed.requires_membership());
    seed.tick(t0 + PROOF_TIMEOUT * 2);
    assert!(disconnects(&mut seed)
        .iter()
        .all(|(_, r)| !r.contains("membership")));
}

#[test]
fn an_ordinary_private_torrent_still_gets_no_pex_or_lsd() {
    assert!(PeerSharing::check(true, false).is_err());
    let s = swarm(true, None, Instant::now());
    assert!(!s.pex_enabled());
    let m = swarm(true, Some(membership(1, SEED_ID)), Instant::now());
    assert!(m.pex_enabled() && m.requires_membership());
}

#[test]
fn hostile_extension_payloads_never_panic() {
    let t0 = Instant::now();
    let mut seed = swarm(true, Some(membership(1, SEED_ID)), t0);
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"d".to_vec(),
        b"d3:sigi5ee".to_vec(),
        bencode::encode(&Owned::dict().with("sig", vec![0u8; 64]).build()),
        vec![0xff; 1000],
    ];
    for (n, payload) in inputs.into_iter().enumerate() {
        for id in [0u8, member::OUR_ID] {
            let key = seed.add_peer_with(
                addr(10 + n as u8),
                &Handshake::new(INFO_HASH, [n as u8; 20]),
                PeerOrigin::default(),
                t0,
            );
            let msg = Message::Extended {
                id,
                payload: Bytes::from(payload.clone()),
            };
            if seed.on_message(key, msg, t0).is_ok() {
                assert!(!seed.is_proven_member(key));
            }
            seed.remove_peer(key);
        }
    }
}
