//! Peers that handshake and then say nothing useful (slow loris) must not
//! hold connection slots: the swarm drops them after `unproductive_timeout`
//! and offers the longest-silent one for eviction when a newcomer waits.
//! Sans-IO, with a fake clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use capwise_engine::bitfield::Bitfield;
use capwise_engine::swarm::{Event, Swarm, SwarmConfig};
use capwise_engine::wire::{Handshake, Message};

const PIECES: u32 = 8;
const PIECE: u32 = 16 * 1024;
const GRACE: Duration = Duration::from_secs(5);

fn swarm(now: Instant) -> Swarm {
    Swarm::new(
        u64::from(PIECE),
        u64::from(PIECES * PIECE),
        Bitfield::new(PIECES),
        SwarmConfig::default(),
        now,
    )
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 6881))
}

fn add(s: &mut Swarm, i: u8, now: Instant) -> u64 {
    s.add_peer(addr(i), &Handshake::new([0; 20], [i; 20]), now)
}

fn disconnected(s: &mut Swarm) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while let Some(ev) = s.poll_event() {
        if let Event::Disconnect { peer, reason, .. } = ev {
            out.push((peer, reason));
        }
    }
    out
}

#[test]
fn the_longest_silent_unproductive_peer_is_evicted_and_useful_ones_never() {
    let t0 = Instant::now();
    let mut s = swarm(t0);
    let silent_old = add(&mut s, 1, t0);
    let t1 = t0 + Duration::from_secs(2);
    let keepalive = add(&mut s, 2, t1);
    let honest = add(&mut s, 3, t1);
    let mut bits = Bitfield::new(PIECES);
    bits.set(0);
    s.on_message(
        honest,
        Message::Bitfield(bytes::Bytes::copy_from_slice(bits.as_bytes())),
        t1,
    )
    .expect("a valid bitfield");
    // A keep-alive refreshes silence but is not useful.
    let t2 = t0 + Duration::from_secs(8);
    s.on_message(keepalive, Message::KeepAlive, t2)
        .expect("keep-alive");

    // Too young for eviction right after connecting.
    assert_eq!(
        s.eviction_candidate(t0 + Duration::from_secs(1), GRACE),
        None
    );
    let (key, idle) = s.eviction_candidate(t2, GRACE).expect("a candidate");
    assert_eq!(key, silent_old, "the peer silent longest goes first");
    assert_eq!(idle, Duration::from_secs(8));
    assert!(s.evict(silent_old, t2, GRACE));
    assert_eq!(disconnected(&mut s).len(), 1);

    let (key, _) = s
        .eviction_candidate(t2, GRACE)
        .expect("the keep-alive peer");
    assert_eq!(key, keepalive);
    assert!(s.evict(keepalive, t2, GRACE));
    assert_eq!(
        s.eviction_candidate(t2, GRACE),
        None,
        "the honest peer is no candidate"
    );
    assert!(
        !s.evict(honest, t2, GRACE),
        "a useful peer is never evicted"
    );
    assert_eq!(s.peer_count(), 1);
}

#[test]
fn a_peer_that_says_nothing_useful_is_dropped_after_the_timeout() {
    let t0 = Instant::now();
    let mut s = swarm(t0);
    let silent = add(&mut s, 1, t0);
    let interested = add(&mut s, 2, t0);
    s.on_message(interested, Message::Interested, t0)
        .expect("interested");
    let timeout = SwarmConfig::default().unproductive_timeout;
    let mut now = t0;
    // Keep-alives every few seconds (slow loris) do not keep it connected.
    while now < t0 + timeout - Duration::from_secs(1) {
        now += Duration::from_secs(1);
        if s.peer_count() == 2 {
            s.on_message(silent, Message::KeepAlive, now)
                .expect("keep-alive");
        }
        s.tick(now);
    }
    assert_eq!(s.peer_count(), 2, "dropped before its time-out");
    let _ = disconnected(&mut s);
    now += Duration::from_secs(2);
    s.tick(now);
    let gone = disconnected(&mut s);
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0].0, silent);
    assert!(gone[0].1.contains("nothing useful"), "{}", gone[0].1);
    assert_eq!(s.peer_count(), 1, "the interested peer stays");
}
