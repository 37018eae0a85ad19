//! Swarms talking to each other in memory with a fake clock: every message
//! goes through the real codec; no sockets, no sleeps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use capwise_engine::bitfield::Bitfield;
use capwise_engine::picker::PeerKey;
use capwise_engine::swarm::{Event, Outgoing, Swarm, SwarmConfig};
use capwise_engine::wire::{self, Handshake, Message};
use sha1::{Digest, Sha1};

const PIECE: u64 = 64 * 1024;

struct Node {
    swarm: Swarm,
    data: Vec<u8>,
    /// Flip a byte in every block this node sends.
    corrupt: bool,
    /// Link id → our key for the peer on that link.
    links: HashMap<usize, PeerKey>,
    banned: Vec<PeerKey>,
    finished: bool,
}

fn hashes(data: &[u8]) -> Vec<[u8; 20]> {
    data.chunks(PIECE as usize)
        .map(|c| Sha1::digest(c).into())
        .collect()
}

fn node(data: Vec<u8>, have: Bitfield, now: Instant) -> Node {
    let swarm = Swarm::new(PIECE, data.len() as u64, have, SwarmConfig::default(), now);
    Node {
        swarm,
        data,
        corrupt: false,
        links: HashMap::new(),
        banned: Vec::new(),
        finished: false,
    }
}

fn addr(i: usize) -> SocketAddr {
    format!("127.0.0.{}:6881", i + 1).parse().unwrap()
}

/// Connect nodes a and b; `link` names the pair.
fn connect(nodes: &mut [Node], a: usize, b: usize, link: usize, now: Instant) {
    let hs = Handshake::new([7; 20], [a as u8; 20]);
    let ka = nodes[a].swarm.add_peer(addr(b), &hs, now);
    nodes[a].links.insert(link, ka);
    let kb = nodes[b].swarm.add_peer(addr(a), &hs, now);
    nodes[b].links.insert(link, kb);
}

/// Move everything queued on `link` from node `from` to node `to`.
fn pump(nodes: &mut [Node], from: usize, to: usize, link: usize, now: Instant) -> usize {
    let (Some(&kf), Some(&kt)) = (nodes[from].links.get(&link), nodes[to].links.get(&link)) else {
        return 0;
    };
    let mut out = Vec::new();
    nodes[from].swarm.poll_outgoing(kf, now, &mut out);
    let mut wire_bytes = BytesMut::new();
    for item in &out {
        let msg = match item {
            Outgoing::Message(m) => m.clone(),
            Outgoing::Block(b) => {
                let start = b.index as usize * PIECE as usize + b.begin as usize;
                let mut block = nodes[from].data[start..start + b.length as usize].to_vec();
                if nodes[from].corrupt {
                    block[0] ^= 0xff;
                }
                nodes[from].swarm.on_payload_sent(kf, b.length as u64);
                Message::Piece {
                    index: b.index,
                    begin: b.begin,
                    data: Bytes::from(block),
                }
            }
        };
        wire::encode(&msg, &mut wire_bytes);
    }
    let mut moved = 0;
    while let Some(msg) = wire::decode(&mut wire_bytes, 1 << 20).unwrap() {
        moved += 1;
        if nodes[to].swarm.on_message(kt, msg, now).is_err() {
            nodes[to].swarm.remove_peer(kt);
            nodes[to].links.remove(&link);
            return moved;
        }
    }
    moved
}

fn handle_events(node: &mut Node, expected: &[[u8; 20]], now: Instant) {
    while let Some(ev) = node.swarm.poll_event() {
        match ev {
            Event::PieceComplete { index, data } => {
                let ok: [u8; 20] = Sha1::digest(&data).into();
                let ok = ok == expected[index as usize];
                if ok {
                    let start = index as usize * PIECE as usize;
                    node.data[start..start + data.len()].copy_from_slice(&data);
                }
                node.swarm.piece_verified(index, ok, now);
            }
            Event::Disconnect { peer, ban, .. } => {
                if ban {
                    node.banned.push(peer);
                }
                node.links.retain(|_, k| *k != peer);
            }
            Event::Finished => node.finished = true,
            // PEX is not enabled for these swarms.
            Event::PeersLearnt { .. } => panic!("no PEX here"),
        }
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Runs the links until node `leecher` finishes or the step budget runs out.
fn run(
    nodes: &mut [Node],
    links: &[(usize, usize)],
    leecher: usize,
    expected: &[[u8; 20]],
    start: Instant,
) -> Instant {
    let mut now = start;
    for _step in 0..20_000 {
        let mut moved = 0;
        for (link, &(a, b)) in links.iter().enumerate() {
            moved += pump(nodes, a, b, link, now);
            moved += pump(nodes, b, a, link, now);
        }
        for n in nodes.iter_mut() {
            handle_events(n, expected, now);
        }
        if nodes[leecher].finished {
            return now;
        }
        if moved == 0 {
            now += Duration::from_millis(500);
            for n in nodes.iter_mut() {
                n.swarm.tick(now);
            }
        }
    }
    panic!("leecher did not finish in the step budget");
}

#[test]
fn leecher_downloads_everything_from_seeder() {
    let start = Instant::now();
    let data = payload(PIECE as usize * 10 + 1234);
    let expected = hashes(&data);
    let pieces = expected.len() as u32;
    let mut nodes = vec![
        node(data.clone(), Bitfield::full(pieces), start),
        node(vec![0; data.len()], Bitfield::new(pieces), start),
    ];
    connect(&mut nodes, 0, 1, 0, start);
    let end = run(&mut nodes, &[(0, 1)], 1, &expected, start);
    assert_eq!(nodes[1].data, data);
    assert!(nodes[1].swarm.is_complete());
    assert!(
        end.duration_since(start) < Duration::from_secs(15),
        "no waiting on the choker: {:?}",
        end - start
    );
}

#[test]
fn a_leecher_fetches_only_the_pieces_of_its_wanted_files() {
    use capwise_engine::priority::{piece_priorities, Priority};
    let start = Instant::now();
    // Three files: 2.5 pieces, 3 pieces, 4.5 pieces; only the middle one wanted.
    let lengths = [PIECE * 5 / 2, PIECE * 3, PIECE * 9 / 2];
    let data = payload(lengths.iter().sum::<u64>() as usize);
    let expected = hashes(&data);
    let pieces = expected.len() as u32;
    let mut nodes = vec![
        node(data.clone(), Bitfield::full(pieces), start),
        node(vec![0; data.len()], Bitfield::new(pieces), start),
    ];
    let prio = piece_priorities(
        PIECE,
        &lengths,
        &[Priority::Skip, Priority::Normal, Priority::Skip],
        false,
    );
    nodes[1].swarm.set_priorities(&prio, false, start);
    connect(&mut nodes, 0, 1, 0, start);
    run(&mut nodes, &[(0, 1)], 1, &expected, start);
    let leecher = &nodes[1].swarm;
    assert!(leecher.is_done() && !leecher.is_complete());
    // The middle file spans pieces 2..=5 (it starts and ends mid-piece).
    let had: Vec<u32> = leecher.have().ones().collect();
    assert_eq!(had, vec![2, 3, 4, 5]);
    let middle = (lengths[0] as usize)..(lengths[0] + lengths[1]) as usize;
    assert_eq!(nodes[1].data[middle.clone()], data[middle]);
    let stats = leecher.stats();
    assert_eq!(
        (stats.bytes_wanted, stats.bytes_wanted_have),
        (4 * PIECE, 4 * PIECE)
    );
    // The seeder is dropped once we are done: nothing more to trade.
    assert_eq!(leecher.peer_count(), 0);
    // Wanting the rest later: the download goes on from another seeder.
    nodes[1].finished = false;
    nodes.push(node(data.clone(), Bitfield::full(pieces), start));
    nodes[1]
        .swarm
        .set_priorities(&vec![Priority::Normal; pieces as usize], false, start);
    assert!(!nodes[1].swarm.is_done());
    connect(&mut nodes, 2, 1, 1, start);
    run(&mut nodes, &[(0, 1), (2, 1)], 1, &expected, start);
    assert!(nodes[1].swarm.is_complete());
    assert_eq!(nodes[1].data, data);
}

#[test]
fn corrupt_peer_is_banned_and_download_completes_from_honest_one() {
    let start = Instant::now();
    let data = payload(PIECE as usize * 64);
    let expected = hashes(&data);
    let pieces = expected.len() as u32;
    let mut nodes = vec![
        node(data.clone(), Bitfield::full(pieces), start),
        node(data.clone(), Bitfield::full(pieces), start),
        node(vec![0; data.len()], Bitfield::new(pieces), start),
    ];
    nodes[1].corrupt = true;
    connect(&mut nodes, 0, 2, 0, start);
    connect(&mut nodes, 1, 2, 1, start);
    run(&mut nodes, &[(0, 2), (1, 2)], 2, &expected, start);
    assert_eq!(nodes[2].data, data);
    assert_eq!(nodes[2].banned.len(), 1, "the corrupting seeder is banned");
    assert!(!nodes[2].links.contains_key(&1));
}

#[test]
fn seeding_switch_stops_uploads_at_once() {
    let start = Instant::now();
    let data = payload(PIECE as usize * 8);
    let expected = hashes(&data);
    let pieces = expected.len() as u32;
    let mut nodes = vec![
        node(data.clone(), Bitfield::full(pieces), start),
        node(vec![0; data.len()], Bitfield::new(pieces), start),
    ];
    connect(&mut nodes, 0, 1, 0, start);
    // Handshake traffic and the first requests.
    for _ in 0..3 {
        pump(&mut nodes, 0, 1, 0, start);
        pump(&mut nodes, 1, 0, 0, start);
    }
    nodes[0].swarm.set_seeding(false, start);
    let seeder_key = nodes[0].links[&0];
    let mut out = Vec::new();
    nodes[0].swarm.poll_outgoing(seeder_key, start, &mut out);
    assert!(
        out.iter().all(|o| !matches!(o, Outgoing::Block(_))),
        "no block leaves once seeding stops"
    );
    assert!(out.contains(&Outgoing::Message(Message::Choke)));
    for _ in 0..10 {
        pump(&mut nodes, 1, 0, 0, start);
        let mut out = Vec::new();
        nodes[0].swarm.poll_outgoing(seeder_key, start, &mut out);
        assert!(out.iter().all(|o| !matches!(o, Outgoing::Block(_))));
    }
    assert!(expected.len() == 8);
}

#[test]
fn protocol_violations_are_reported() {
    let start = Instant::now();
    let mut s = Swarm::new(
        PIECE,
        PIECE * 4,
        Bitfield::new(4),
        SwarmConfig::default(),
        start,
    );
    let k = s.add_peer(addr(1), &Handshake::new([0; 20], [1; 20]), start);
    assert!(
        s.on_message(k, Message::Have(4), start).is_err(),
        "have out of range"
    );
    let k = s.add_peer(addr(2), &Handshake::new([0; 20], [2; 20]), start);
    assert!(
        s.on_message(k, Message::Bitfield(Bytes::from_static(&[0xf0, 0])), start)
            .is_err(),
        "wrong length"
    );
    let k = s.add_peer(addr(3), &Handshake::new([0; 20], [3; 20]), start);
    let big = wire::BlockRef {
        index: 0,
        begin: 0,
        length: 1 << 20,
    };
    assert!(
        s.on_message(k, Message::Request(big), start).is_err(),
        "oversized request"
    );
    let k = s.add_peer(addr(4), &Handshake::new([0; 20], [4; 20]), start);
    s.on_message(k, Message::Have(1), start).unwrap();
    s.on_message(k, Message::Bitfield(Bytes::from_static(&[0xf0])), start)
        .expect("a late bitfield adds haves");
    assert!(
        s.on_message(k, Message::Bitfield(Bytes::from_static(&[0xf1])), start)
            .is_err(),
        "spare bits set"
    );
}

#[test]
fn pieces_a_seeder_lost_are_not_asked_of_it_again() {
    let start = Instant::now();
    let data = payload(PIECE as usize * 8);
    let expected = hashes(&data);
    let pieces = expected.len() as u32;
    let mut nodes = vec![
        node(data.clone(), Bitfield::full(pieces), start),
        node(vec![0; data.len()], Bitfield::new(pieces), start),
    ];
    connect(&mut nodes, 0, 1, 0, start);
    // The leecher learns the seeder has everything, then the seeder's disk
    // loses two pieces; it cannot take its announcement back.
    pump(&mut nodes, 0, 1, 0, start);
    assert!(nodes[0].swarm.piece_lost(3));
    assert!(nodes[0].swarm.piece_lost(4));
    assert!(!nodes[0].swarm.piece_lost(4), "lost once");
    let mut now = start;
    for _ in 0..2_000 {
        let moved = pump(&mut nodes, 0, 1, 0, now) + pump(&mut nodes, 1, 0, 0, now);
        for n in nodes.iter_mut() {
            handle_events(n, &expected, now);
        }
        if moved == 0 {
            now += Duration::from_millis(500);
            for n in nodes.iter_mut() {
                n.swarm.tick(now);
            }
        }
    }
    let got: Vec<u32> = nodes[1].swarm.have().ones().collect();
    let want: Vec<u32> = (0..pieces).filter(|p| *p != 3 && *p != 4).collect();
    assert_eq!(got, want, "every piece the seeder still has arrived");
    // Refused while unchoked: the leecher stops asking for them.
    now += Duration::from_secs(5);
    nodes[1].swarm.tick(now);
    let mut out = Vec::new();
    let seeder = nodes[1].links[&0];
    nodes[1].swarm.poll_outgoing(seeder, now, &mut out);
    assert!(
        !out.iter().any(
            |o| matches!(o, Outgoing::Message(Message::Request(b)) if b.index == 3 || b.index == 4)
        ),
        "no more requests for lost pieces: {out:?}"
    );
}

/// A peer that is no swarm of ours: it greets `leecher` with an extension
/// handshake carrying `reqq`, have-all and an unchoke, and is driven by hand.
fn fake_seeder(leecher: &mut Node, reqq: usize, now: Instant) -> PeerKey {
    let key = leecher
        .swarm
        .add_peer(addr(0), &Handshake::new([7; 20], [0; 20]), now);
    let greeting = [
        Message::Extended {
            id: 0,
            payload: Bytes::from(wire::extension::our_handshake(51413, reqq, None)),
        },
        Message::HaveAll,
        Message::Unchoke,
    ];
    for msg in greeting {
        leecher.swarm.on_message(key, msg, now).unwrap();
    }
    key
}

/// The leecher's new requests to `key` (cancels remove from `queued`).
fn new_requests(leecher: &mut Node, key: PeerKey, queued: &mut Vec<wire::BlockRef>, now: Instant) {
    let mut out = Vec::new();
    leecher.swarm.poll_outgoing(key, now, &mut out);
    for item in out {
        match item {
            Outgoing::Message(Message::Request(b)) => queued.push(b),
            Outgoing::Message(Message::Cancel(b)) => queued.retain(|q| *q != b),
            _ => {}
        }
    }
}

/// `key` sends the leecher the blocks of `data` it asked for.
fn answer(
    leecher: &mut Node,
    key: PeerKey,
    blocks: Vec<wire::BlockRef>,
    data: &[u8],
    expected: &[[u8; 20]],
    now: Instant,
) {
    for b in blocks {
        let at = b.index as usize * PIECE as usize + b.begin as usize;
        let msg = Message::Piece {
            index: b.index,
            begin: b.begin,
            data: Bytes::copy_from_slice(&data[at..at + b.length as usize]),
        };
        leecher.swarm.on_message(key, msg, now).unwrap();
        handle_events(leecher, expected, now);
    }
}

/// A seeder that writes the way Transmission 3.00 does: it keeps the
/// requests it is sent (fewer than its `reqq` of 512, rejecting beyond) and
/// answers all of them in one burst every 500 ms (its bandwidth pulse);
/// requests sent during a burst wait for the next one. Returns the fake
/// seconds the leecher took to finish from the unchoke.
fn download_from_burst_seeder(pieces: u32) -> f64 {
    const BURST: Duration = Duration::from_millis(500);
    const REQQ: usize = 512;
    let start = Instant::now();
    let data = payload(PIECE as usize * pieces as usize);
    let expected = hashes(&data);
    let mut leecher = node(vec![0; data.len()], Bitfield::new(pieces), start);
    let key = fake_seeder(&mut leecher, REQQ, start);
    let mut queued = Vec::new();
    let mut now = start;
    let mut next_tick = start + Duration::from_secs(1);
    while !leecher.finished {
        assert!(now - start < Duration::from_secs(600), "no progress");
        new_requests(&mut leecher, key, &mut queued, now);
        for b in queued.split_off(queued.len().min(REQQ - 1)) {
            leecher
                .swarm
                .on_message(key, Message::RejectRequest(b), now)
                .unwrap();
        }
        answer(
            &mut leecher,
            key,
            std::mem::take(&mut queued),
            &data,
            &expected,
            now,
        );
        now += BURST;
        if now >= next_tick {
            // The session's driver ticks once a second.
            leecher.swarm.tick(now);
            next_tick += Duration::from_secs(1);
        }
    }
    assert_eq!(leecher.data, data);
    (now - start).as_secs_f64()
}

#[test]
fn a_seeder_sending_bursts_every_500_ms_reaches_its_pace() {
    // 64 MiB. Transmission answers at most 511 requests per burst: 16 MiB/s.
    // A request queue of 0.5 s of the measured rate, refilled as blocks come,
    // holds exactly what one burst sends, so whatever rate the first bursts
    // give is never exceeded (and the smoothed estimate, starting at zero,
    // pulls it lower): capwise crawled at about 1 MB/s from Transmission.
    let pieces = 1024;
    let secs = download_from_burst_seeder(pieces);
    let mb_per_s = (PIECE * pieces as u64) as f64 / secs / 1e6;
    assert!(
        mb_per_s >= 10.0,
        "64 MiB from a 500 ms-burst seeder took {secs:.1} s ({mb_per_s:.1} MB/s)"
    );
}

#[test]
fn the_first_rate_estimate_is_the_first_second_measured() {
    // A new peer's first second is its rate: averaged with the zero before
    // it, the estimate (and the request queue sized from it) started at half.
    let start = Instant::now();
    let pieces = 16;
    let data = payload(PIECE as usize * pieces as usize);
    let expected = hashes(&data);
    let mut leecher = node(vec![0; data.len()], Bitfield::new(pieces), start);
    let key = fake_seeder(&mut leecher, 512, start);
    let mut queued = Vec::new();
    new_requests(&mut leecher, key, &mut queued, start);
    assert!(queued.len() >= 32, "an initial queue of {}", queued.len());
    let first: Vec<_> = queued.drain(..32).collect();
    let bytes: u32 = first.iter().map(|b| b.length).sum();
    answer(&mut leecher, key, first, &data, &expected, start);
    leecher.swarm.tick(start + Duration::from_secs(1));
    let rate = leecher.swarm.stats().download_rate;
    assert!(
        (rate - bytes as f64).abs() < 1.0,
        "{bytes} B in the first second, estimated {rate:.0} B/s"
    );
}
