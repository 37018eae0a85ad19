//! Payload needs credit (`SwarmConfig::needs_credit`), with a fake clock:
//! nothing is requested or served beyond what was granted, and a long wait
//! for credit (a throttled or closed gate) never runs a request's clock, so
//! the peer is not snubbed and its late answers are not unsolicited.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_proto::bitfield::Bitfield;
use capwise_proto::class::Direction;
use capwise_proto::picker::PeerKey;
use capwise_proto::swarm::{CreditWanted, Outgoing, Swarm, SwarmConfig};
use capwise_proto::wire::{BlockRef, Handshake, Message, BLOCK_SIZE};

const PIECE: u64 = 4 * BLOCK_SIZE as u64;
const PIECES: u32 = 8;
const BLOCK: u64 = BLOCK_SIZE as u64;

fn swarm(seed: bool, now: Instant) -> Swarm {
    let have = if seed {
        Bitfield::full(PIECES)
    } else {
        Bitfield::new(PIECES)
    };
    let config = SwarmConfig {
        needs_credit: true,
        ..SwarmConfig::default()
    };
    Swarm::new(PIECE, PIECE * PIECES as u64, have, config, now)
}

/// A peer without BEP 6 or 10 (plain bitfields).
fn plain_peer(s: &mut Swarm, now: Instant) -> PeerKey {
    let hs = Handshake {
        reserved: [0; 8],
        info_hash: [1; 20],
        peer_id: [2; 20],
    };
    let addr: SocketAddr = "10.0.0.2:6881".parse().unwrap();
    s.add_peer(addr, &hs, now)
}

fn drain(s: &mut Swarm, key: PeerKey, now: Instant) -> Vec<Outgoing> {
    let mut out = Vec::new();
    s.poll_outgoing(key, now, &mut out);
    out
}

fn requests(out: &[Outgoing]) -> Vec<BlockRef> {
    out.iter()
        .filter_map(|o| match o {
            Outgoing::Message(Message::Request(b)) => Some(*b),
            _ => None,
        })
        .collect()
}

fn blocks(out: &[Outgoing]) -> Vec<BlockRef> {
    out.iter()
        .filter_map(|o| match o {
            Outgoing::Block(b) => Some(*b),
            _ => None,
        })
        .collect()
}

/// A leecher facing a seed that unchoked it; nothing granted yet.
fn leecher_unchoked(t0: Instant) -> (Swarm, PeerKey) {
    let mut s = swarm(false, t0);
    let key = plain_peer(&mut s, t0);
    s.on_message(key, Message::Bitfield(Bytes::from(vec![0xffu8])), t0)
        .unwrap();
    s.on_message(key, Message::Unchoke, t0).unwrap();
    (s, key)
}

#[test]
fn no_request_leaves_before_its_bytes_are_granted() {
    let t0 = Instant::now();
    let (mut s, key) = leecher_unchoked(t0);
    let first = drain(&mut s, key, t0);
    assert!(
        requests(&first).is_empty(),
        "no credit, no request: {first:?}"
    );
    assert!(
        first.contains(&Outgoing::Message(Message::Interested)),
        "interest needs no credit"
    );
    let wanted = s.credit_wanted(key);
    assert!(wanted.down >= BLOCK, "it asks for credit: {wanted:?}");
    assert_eq!(wanted.up, 0);
    assert!(
        wanted.down <= 8 * BLOCK,
        "picked ahead of credit is bounded: {wanted:?}"
    );

    // Two blocks' worth: exactly two requests.
    s.grant_credit(key, Direction::Down, 2 * BLOCK, t0);
    let sent = requests(&drain(&mut s, key, t0));
    assert_eq!(sent.len(), 2, "{sent:?}");
    // Half a block more: none, and the half is kept.
    s.grant_credit(key, Direction::Down, BLOCK / 2, t0);
    assert!(requests(&drain(&mut s, key, t0)).is_empty());
    s.grant_credit(key, Direction::Down, BLOCK / 2, t0);
    assert_eq!(requests(&drain(&mut s, key, t0)).len(), 1);
}

#[test]
fn a_long_wait_for_credit_neither_times_out_nor_snubs() {
    let t0 = Instant::now();
    let (mut s, key) = leecher_unchoked(t0);
    drain(&mut s, key, t0);
    let timeout = SwarmConfig::default().request_timeout;
    // Nothing was sent: no request clock runs while the gate holds back.
    let deadline = s.poll_timeout().unwrap();
    assert!(
        deadline > t0 + timeout,
        "only idle-type deadlines, not a request time-out: {:?}",
        deadline - t0
    );
    // The gate lets the bytes through a minute later (a throttled link).
    let t1 = t0 + Duration::from_secs(60);
    s.on_message(key, Message::KeepAlive, t1).unwrap();
    s.tick(t1);
    let wanted = s.credit_wanted(key).down;
    s.grant_credit(key, Direction::Down, wanted, t1);
    let sent = requests(&drain(&mut s, key, t1));
    assert!(sent.len() > 1, "not snubbed (one request only): {sent:?}");
    // The time-out runs from when they left.
    assert_eq!(s.poll_timeout(), Some(t1 + timeout));
    s.tick(t1 + timeout - Duration::from_millis(1));
    // Answers just before it are expected blocks, not unsolicited ones.
    for b in &sent {
        let data = Bytes::from(vec![0u8; b.length as usize]);
        s.on_message(
            key,
            Message::Piece {
                index: b.index,
                begin: b.begin,
                data,
            },
            t1 + timeout - Duration::from_millis(1),
        )
        .unwrap();
    }
    let asked_again = s.credit_wanted(key);
    assert!(asked_again.down > 0, "answered in time: more picked for it");
}

#[test]
fn a_request_clock_starts_when_it_is_taken_to_be_sent() {
    let t0 = Instant::now();
    let (mut s, key) = leecher_unchoked(t0);
    s.grant_credit(key, Direction::Down, BLOCK, t0);
    // The writer takes it 5 s later (it was busy sending a batch).
    let t1 = t0 + Duration::from_secs(5);
    let sent = requests(&drain(&mut s, key, t1));
    assert_eq!(sent.len(), 1);
    let timeout = SwarmConfig::default().request_timeout;
    s.tick(t0 + timeout);
    s.on_message(key, Message::KeepAlive, t0 + timeout).unwrap();
    let data = Bytes::from(vec![0u8; sent[0].length as usize]);
    // At t0 + timeout it is still outstanding: its answer is welcome.
    s.on_message(
        key,
        Message::Piece {
            index: sent[0].index,
            begin: sent[0].begin,
            data,
        },
        t0 + timeout,
    )
    .unwrap();
    s.tick(t1 + timeout);
    let again = drain(&mut s, key, t1 + timeout);
    assert!(
        requests(&again).is_empty(),
        "nothing went back to the pool or was asked twice: {again:?}"
    );
}

#[test]
fn blocks_are_served_only_within_upload_credit() {
    let t0 = Instant::now();
    let mut s = swarm(true, t0);
    let key = plain_peer(&mut s, t0);
    s.on_message(key, Message::Bitfield(Bytes::from(vec![0u8])), t0)
        .unwrap();
    s.on_message(key, Message::Interested, t0).unwrap();
    let greeting = drain(&mut s, key, t0);
    assert!(greeting.contains(&Outgoing::Message(Message::Unchoke)));
    let asked: Vec<BlockRef> = (0..3)
        .map(|i| BlockRef {
            index: 0,
            begin: i * BLOCK_SIZE,
            length: BLOCK_SIZE,
        })
        .collect();
    for b in &asked {
        s.on_message(key, Message::Request(*b), t0).unwrap();
    }
    assert!(blocks(&drain(&mut s, key, t0)).is_empty(), "no credit yet");
    assert_eq!(
        s.credit_wanted(key),
        CreditWanted {
            down: 0,
            up: 3 * BLOCK
        }
    );
    s.grant_credit(key, Direction::Up, 2 * BLOCK, t0);
    assert_eq!(blocks(&drain(&mut s, key, t0)), asked[..2].to_vec());
    assert_eq!(s.credit_wanted(key).up, BLOCK);

    // A cancelled block needs no credit any more.
    s.on_message(key, Message::Cancel(asked[2]), t0).unwrap();
    assert_eq!(s.credit_wanted(key).up, 0);
}

#[test]
fn choking_a_peer_drops_the_blocks_waiting_for_credit() {
    let t0 = Instant::now();
    let mut s = swarm(true, t0);
    let key = plain_peer(&mut s, t0);
    s.on_message(key, Message::Bitfield(Bytes::from(vec![0u8])), t0)
        .unwrap();
    s.on_message(key, Message::Interested, t0).unwrap();
    drain(&mut s, key, t0);
    let b = BlockRef {
        index: 1,
        begin: 0,
        length: BLOCK_SIZE,
    };
    s.on_message(key, Message::Request(b), t0).unwrap();
    assert_eq!(s.credit_wanted(key).up, BLOCK);
    // Uploads stop (the seeding switch): everyone is choked.
    s.set_seeding(false, t0);
    assert_eq!(s.credit_wanted(key).up, 0, "nothing left to pay for");
    s.grant_credit(key, Direction::Up, BLOCK, t0);
    let out = drain(&mut s, key, t0);
    assert!(
        blocks(&out).is_empty(),
        "a choked peer is served nothing: {out:?}"
    );
}

#[test]
fn a_peer_that_leaves_gives_its_picked_blocks_back() {
    let t0 = Instant::now();
    let (mut s, a) = leecher_unchoked(t0);
    drain(&mut s, a, t0);
    assert!(s.credit_wanted(a).down > 0);
    s.remove_peer(a);
    // Another peer gets every block in turn, the first peer's picks included.
    let b = plain_peer(&mut s, t0);
    s.on_message(b, Message::Bitfield(Bytes::from(vec![0xffu8])), t0)
        .unwrap();
    s.on_message(b, Message::Unchoke, t0).unwrap();
    s.tick(t0);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        let wanted = s.credit_wanted(b).down;
        if wanted == 0 {
            break;
        }
        s.grant_credit(b, Direction::Down, wanted, t0);
        for r in requests(&drain(&mut s, b, t0)) {
            seen.insert(r);
        }
    }
    assert_eq!(seen.len() as u64, PIECE * PIECES as u64 / BLOCK);
}

/// A metered switch closes the gate after blocks were granted: the blocks
/// the I/O layer hands back need credit again, so it waits at the (closed)
/// gate rather than being given them again at once, round after round.
#[test]
fn blocks_held_back_by_a_closing_gate_wait_for_fresh_credit() {
    let t0 = Instant::now();
    let mut s = swarm(true, t0);
    let key = plain_peer(&mut s, t0);
    s.on_message(key, Message::Bitfield(Bytes::from(vec![0u8])), t0)
        .unwrap();
    s.on_message(key, Message::Interested, t0).unwrap();
    drain(&mut s, key, t0);
    let asked: Vec<BlockRef> = (0..2)
        .map(|i| BlockRef {
            index: 1,
            begin: i * BLOCK_SIZE,
            length: BLOCK_SIZE,
        })
        .collect();
    for b in &asked {
        s.on_message(key, Message::Request(*b), t0).unwrap();
    }
    s.grant_credit(key, Direction::Up, 2 * BLOCK, t0);
    let handed = blocks(&drain(&mut s, key, t0));
    assert_eq!(handed, asked);

    s.blocks_deferred(key, handed, t0);
    assert!(
        blocks(&drain(&mut s, key, t0)).is_empty(),
        "held-back blocks came straight back without credit"
    );
    assert_eq!(s.credit_wanted(key).up, 2 * BLOCK);

    s.grant_credit(key, Direction::Up, 2 * BLOCK, t0);
    assert_eq!(blocks(&drain(&mut s, key, t0)), asked, "in their order");
}
