//! The swarm's timers with a fake clock: `poll_timeout` names the next
//! instant `tick` has work, ticking before it does nothing, ticking at it
//! does the work.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_proto::bitfield::Bitfield;
use capwise_proto::picker::PeerKey;
use capwise_proto::swarm::{
    Event, Outgoing, Swarm, SwarmConfig, KEEPALIVE_INTERVAL, RATE_INTERVAL,
};
use capwise_proto::wire::{BlockRef, Handshake, Message, BLOCK_SIZE};

const PIECE: u64 = 4 * BLOCK_SIZE as u64;
const PIECES: u32 = 8;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn addr() -> SocketAddr {
    "10.0.0.2:6881".parse().unwrap()
}

fn swarm(seed: bool, now: Instant) -> Swarm {
    let have = if seed {
        Bitfield::full(PIECES)
    } else {
        Bitfield::new(PIECES)
    };
    Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        have,
        SwarmConfig::default(),
        now,
    )
}

/// A peer without BEP 6 or 10 (plain bitfields).
fn plain_peer(s: &mut Swarm, now: Instant) -> PeerKey {
    let hs = Handshake {
        reserved: [0; 8],
        info_hash: [1; 20],
        peer_id: [2; 20],
    };
    s.add_peer(addr(), &hs, now)
}

fn drain(s: &mut Swarm, key: PeerKey, now: Instant) -> Vec<Outgoing> {
    let mut out = Vec::new();
    s.poll_outgoing(key, now, &mut out);
    out
}

fn events(s: &mut Swarm) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A seed with one connected peer that has nothing and wants nothing.
fn idle_seed(t0: Instant) -> (Swarm, PeerKey) {
    let mut s = swarm(true, t0);
    let key = plain_peer(&mut s, t0);
    drain(&mut s, key, t0);
    s.on_message(key, Message::Bitfield(Bytes::from(vec![0u8])), t0)
        .unwrap();
    (s, key)
}

#[test]
fn an_idle_peer_wakes_the_swarm_only_for_keepalives() {
    let t0 = Instant::now();
    let (mut s, key) = idle_seed(t0);
    assert!(!s.serving());
    // No choker round, no rate sample, no time-out: the keep-alive is next.
    assert_eq!(s.poll_timeout(), Some(t0 + KEEPALIVE_INTERVAL));
    assert!(KEEPALIVE_INTERVAL >= secs(100), "minutes away, not seconds");

    // Ticking early does nothing at all.
    for t in [1, 10, 30, 60, 109] {
        s.tick(t0 + secs(t));
        assert!(drain(&mut s, key, t0 + secs(t)).is_empty(), "at {t} s");
        assert!(events(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0 + KEEPALIVE_INTERVAL), "at {t} s");
    }

    // At the deadline: one keep-alive.
    let t1 = t0 + KEEPALIVE_INTERVAL;
    s.tick(t1);
    assert_eq!(
        drain(&mut s, key, t1),
        vec![Outgoing::Message(Message::KeepAlive)]
    );
    // The peer answers; the next keep-alive is as far away again.
    s.on_message(key, Message::KeepAlive, t1).unwrap();
    assert_eq!(s.poll_timeout(), Some(t1 + KEEPALIVE_INTERVAL));
    assert_eq!(s.peer_count(), 1, "the peer stays");
}

#[test]
fn a_silent_peer_is_dropped_at_its_idle_deadline() {
    let t0 = Instant::now();
    let (mut s, key) = idle_seed(t0);
    let idle = SwarmConfig::default().idle_timeout;
    // We keep sending keep-alives; it never answers.
    let mut now = t0;
    while let Some(at) = s.poll_timeout() {
        assert!(at > now, "each deadline is ahead of the last tick");
        now = at;
        s.tick(now);
        drain(&mut s, key, now);
        if s.peer_count() == 0 {
            break;
        }
    }
    assert_eq!(now, t0 + idle, "dropped exactly at the idle time-out");
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Disconnect { ban: false, .. }]
    ));
    assert_eq!(s.poll_timeout(), None, "no peer: nothing to wake for");
}

#[test]
fn a_peer_that_says_nothing_useful_is_dropped_at_twenty_seconds() {
    let t0 = Instant::now();
    let mut s = swarm(true, t0);
    let key = plain_peer(&mut s, t0);
    drain(&mut s, key, t0);
    s.on_message(key, Message::KeepAlive, t0 + secs(5)).unwrap();
    let rule = SwarmConfig::default().unproductive_timeout;
    assert_eq!(s.poll_timeout(), Some(t0 + rule));
    s.tick(t0 + rule - Duration::from_millis(1));
    assert_eq!(s.peer_count(), 1, "not before its time");
    s.tick(t0 + rule);
    assert_eq!(s.peer_count(), 0);
    assert!(matches!(
        events(&mut s).as_slice(),
        [Event::Disconnect { .. }]
    ));
}

#[test]
fn an_outstanding_request_wakes_the_swarm_at_its_time_out() {
    let t0 = Instant::now();
    let mut s = swarm(false, t0);
    let key = plain_peer(&mut s, t0);
    s.on_message(key, Message::Bitfield(Bytes::from(vec![0xffu8])), t0)
        .unwrap();
    s.on_message(key, Message::Unchoke, t0).unwrap();
    let sent = drain(&mut s, key, t0);
    assert!(sent
        .iter()
        .any(|o| matches!(o, Outgoing::Message(Message::Request(_)))));
    let timeout = SwarmConfig::default().request_timeout;
    assert_eq!(s.poll_timeout(), Some(t0 + timeout));

    s.tick(t0 + timeout - Duration::from_millis(1));
    assert!(drain(&mut s, key, t0 + timeout).is_empty(), "not yet");

    // At the time-out the requests go back to the pool; the peer, snubbed,
    // is asked for one block again, and that one's time-out is next.
    let t1 = t0 + timeout;
    s.tick(t1);
    let again = drain(&mut s, key, t1);
    let requests = again
        .iter()
        .filter(|o| matches!(o, Outgoing::Message(Message::Request(_))))
        .count();
    assert_eq!(requests, 1, "a snubbed peer gets one request: {again:?}");
    assert_eq!(s.poll_timeout(), Some(t1 + timeout));
}

#[test]
fn the_choker_runs_only_while_someone_is_interested_or_unchoked() {
    let t0 = Instant::now();
    let (mut s, key) = idle_seed(t0);
    let t1 = t0 + secs(50);
    s.on_message(key, Message::Interested, t1).unwrap();
    assert!(s.serving());
    assert_eq!(
        drain(&mut s, key, t1),
        vec![Outgoing::Message(Message::Unchoke)],
        "a free slot is given at once"
    );
    // A round is due (the last one was long ago): now, then every 10 s.
    let due = s.poll_timeout().unwrap();
    assert!(due <= t1, "{:?} after the interest", due - t0);
    s.tick(t1);
    assert!(drain(&mut s, key, t1).is_empty(), "it keeps its slot");
    assert_eq!(s.poll_timeout(), Some(t1 + secs(10)));

    // It loses interest: the next round chokes it, and then no more rounds.
    s.on_message(key, Message::NotInterested, t1 + secs(3))
        .unwrap();
    s.tick(t1 + secs(10));
    assert_eq!(
        drain(&mut s, key, t1 + secs(10)),
        vec![Outgoing::Message(Message::Choke)]
    );
    assert!(!s.serving());
    assert_eq!(
        s.poll_timeout(),
        Some(t1 + secs(10) + KEEPALIVE_INTERVAL),
        "back to the keep-alive alone"
    );
}

#[test]
fn rates_are_sampled_only_while_payload_moves() {
    let t0 = Instant::now();
    let (mut s, key) = idle_seed(t0);
    s.on_message(key, Message::Interested, t0).unwrap();
    s.tick(t0);
    drain(&mut s, key, t0);
    let block = BlockRef {
        index: 0,
        begin: 0,
        length: BLOCK_SIZE,
    };
    let t1 = t0 + secs(3);
    s.on_message(key, Message::Request(block), t1).unwrap();
    assert_eq!(
        s.poll_timeout(),
        Some(t1 + RATE_INTERVAL),
        "a sample is due"
    );
    assert_eq!(drain(&mut s, key, t1), vec![Outgoing::Block(block)]);
    s.on_payload_sent(key, BLOCK_SIZE as u64);
    s.tick(t1 + RATE_INTERVAL);
    let up = s.stats().upload_rate;
    assert_eq!(up, BLOCK_SIZE as f64, "one block over one second");

    // Nothing more moves: the rate decays to 0 and the sampling stops; the
    // choker's 10 s rounds (the peer is still unchoked) are all that is left.
    let mut now = t1 + RATE_INTERVAL;
    let mut wakes = 0;
    while s.poll_timeout().unwrap() - now <= RATE_INTERVAL {
        now = s.poll_timeout().unwrap();
        s.tick(now);
        wakes += 1;
        assert!(wakes < 30, "sampling never stops");
    }
    assert_eq!(s.stats().upload_rate, 0.0);
    let end = now + secs(60);
    let mut later = 0;
    while let Some(at) = s.poll_timeout().filter(|&at| at <= end) {
        now = at;
        s.tick(now);
        later += 1;
    }
    assert!(later <= 6, "{later} wakes in a minute: choker rounds only");
}

#[test]
fn blocks_released_outside_a_tick_are_handed_out_at_the_next_one() {
    let t0 = Instant::now();
    let mut s = swarm(false, t0);
    let hs = |id: u8| Handshake {
        reserved: [0; 8],
        info_hash: [1; 20],
        peer_id: [id; 20],
    };
    let a = s.add_peer("10.0.0.2:1".parse().unwrap(), &hs(2), t0);
    let b = s.add_peer("10.0.0.3:1".parse().unwrap(), &hs(3), t0);
    // Both have piece 0 alone: `a`, first, is asked for all its blocks,
    // and `b` for none (not the endgame: the other pieces are untouched).
    for k in [a, b] {
        s.on_message(k, Message::Bitfield(Bytes::from(vec![0x80u8])), t0)
            .unwrap();
        s.on_message(k, Message::Unchoke, t0).unwrap();
    }
    let asked = |out: &[Outgoing]| {
        out.iter()
            .filter(|o| matches!(o, Outgoing::Message(Message::Request(_))))
            .count()
    };
    assert_eq!(asked(&drain(&mut s, a, t0)), 4);
    assert_eq!(asked(&drain(&mut s, b, t0)), 0);
    // `a` chokes us: its requests go back; `b` may take them at the next tick,
    // which is due at once.
    let t1 = t0 + secs(2);
    s.on_message(a, Message::Choke, t1).unwrap();
    assert!(s.poll_timeout().unwrap() <= t1);
    s.tick(t1);
    assert_eq!(
        asked(&drain(&mut s, b, t1)),
        4,
        "the blocks `a` held are asked of `b`"
    );
    assert!(s.poll_timeout().unwrap() > t1, "and then no more");
}
