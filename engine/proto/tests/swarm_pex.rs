//! Peer exchange (BEP 11) between in-memory swarms on a fake clock: one
//! message a minute per peer with what was added and dropped, the bounds
//! both ways, the LAN-from-WAN rule, nothing for a private torrent, and a
//! flooding peer dropped.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_proto::bitfield::Bitfield;
use capwise_proto::class::PeerClass;
use capwise_proto::ext::pex::{
    self, PeerFlags, PexEntry, PexMessage, MAX_ACCEPTED, MAX_ADDED, MAX_LISTED,
    MIN_RECEIVE_INTERVAL, SEND_INTERVAL,
};
use capwise_proto::picker::PeerKey;
use capwise_proto::privacy::PublicTorrent;
use capwise_proto::swarm::{Event, Outgoing, PeerOrigin, Swarm, SwarmConfig};
use capwise_proto::wire::{self, Handshake, Message};

const PIECE: u64 = 16 * 1024;
const PIECES: u32 = 4;
const LISTEN: u16 = 6881;

/// 10/8 and 192.168/16 are LAN, the rest WAN.
fn classify(ip: IpAddr) -> PeerClass {
    match ip {
        IpAddr::V4(v4) if v4.is_private() => PeerClass::Lan,
        _ => PeerClass::Wan,
    }
}

fn listen_addr(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::from((ip, LISTEN))
}

/// A swarm of ours: a seed, PEX as the session sets it up (`private` is
/// the torrent's BEP 27 flag, `pex` the config switch).
fn swarm(private: bool, pex: bool, now: Instant) -> Swarm {
    let config = SwarmConfig {
        listen_port: LISTEN,
        pex,
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        Bitfield::full(PIECES),
        config,
        now,
    );
    if let Ok(public) = PublicTorrent::check(private) {
        s.enable_pex(public);
    }
    s
}

/// A PEX message one node sent another, decoded.
#[derive(Debug)]
struct Sent {
    from: usize,
    to: usize,
    at: Instant,
    msg: PexMessage,
}

/// Swarms joined by in-memory links; the clock moves only when told.
struct Net {
    nodes: Vec<(Ipv4Addr, Swarm)>,
    /// (node, key) on one side to (node, key) on the other.
    links: HashMap<(usize, PeerKey), (usize, PeerKey)>,
    now: Instant,
    sent: Vec<Sent>,
    learnt: Vec<(usize, Vec<PexEntry>)>,
    dropped: Vec<(usize, String)>,
    next_port: u16,
}

impl Net {
    fn new(now: Instant) -> Self {
        Self {
            nodes: Vec::new(),
            links: HashMap::new(),
            now,
            sent: Vec::new(),
            learnt: Vec::new(),
            dropped: Vec::new(),
            next_port: 50_000,
        }
    }

    fn add(&mut self, ip: [u8; 4], swarm: Swarm) -> usize {
        self.nodes.push((Ipv4Addr::from(ip), swarm));
        self.nodes.len() - 1
    }

    /// `from` dials `to`; both finish the handshakes at once.
    fn connect(&mut self, from: usize, to: usize) {
        let (from_ip, to_ip) = (self.nodes[from].0, self.nodes[to].0);
        let port = self.next_port;
        self.next_port += 1;
        let hs = Handshake::new([9; 20], [from as u8; 20]);
        let out = PeerOrigin {
            class: classify(to_ip.into()),
            outgoing: true,
        };
        let inc = PeerOrigin {
            class: classify(from_ip.into()),
            outgoing: false,
        };
        let now = self.now;
        let a = self.nodes[from]
            .1
            .add_peer_with(listen_addr(to_ip), &hs, out, now);
        let b = self.nodes[to]
            .1
            .add_peer_with(SocketAddr::from((from_ip, port)), &hs, inc, now);
        self.links.insert((from, a), (to, b));
        self.links.insert((to, b), (from, a));
        self.pump();
    }

    fn disconnect(&mut self, node: usize, key: PeerKey) {
        if let Some(other) = self.links.remove(&(node, key)) {
            self.links.remove(&other);
            self.nodes[node].1.remove_peer(key);
            self.nodes[other.0].1.remove_peer(other.1);
        }
        self.pump();
    }

    fn link(&self, from: usize, to: usize) -> PeerKey {
        self.links
            .iter()
            .find(|((n, _), (m, _))| *n == from && *m == to)
            .map(|((_, k), _)| *k)
            .expect("linked")
    }

    /// Deliver every queued message, collect events, until all is quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            let keys: Vec<(usize, PeerKey)> = self.links.keys().copied().collect();
            for (node, key) in keys {
                let Some(&(other, their_key)) = self.links.get(&(node, key)) else {
                    continue;
                };
                let mut out = Vec::new();
                self.nodes[node].1.poll_outgoing(key, self.now, &mut out);
                for item in out {
                    let Outgoing::Message(msg) = item else {
                        continue;
                    };
                    moved = true;
                    if let Message::Extended { id, payload } = &msg {
                        if *id == pex::OUR_ID {
                            self.sent.push(Sent {
                                from: node,
                                to: other,
                                at: self.now,
                                msg: PexMessage::decode(payload).unwrap(),
                            });
                        }
                    }
                    if let Err(v) = self.nodes[other].1.on_message(their_key, msg, self.now) {
                        self.dropped.push((other, v.0));
                        self.disconnect(other, their_key);
                        break;
                    }
                }
            }
            for node in 0..self.nodes.len() {
                while let Some(ev) = self.nodes[node].1.poll_event() {
                    if let Event::PeersLearnt { learnt, .. } = ev {
                        self.learnt.push((node, learnt.to_dial(classify)));
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Move the clock to `until`, waking each swarm exactly at its
    /// `poll_timeout` on the way.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next = self
                .nodes
                .iter()
                .filter_map(|(_, s)| s.poll_timeout())
                .min()
                .filter(|t| *t <= until);
            let Some(t) = next else {
                self.now = until;
                return;
            };
            self.now = self.now.max(t);
            for (_, s) in self.nodes.iter_mut() {
                if s.poll_timeout().is_some_and(|d| d <= self.now) {
                    s.tick(self.now);
                }
            }
            self.pump();
        }
    }

    fn pex_from_to(&self, from: usize, to: usize) -> Vec<&Sent> {
        self.sent
            .iter()
            .filter(|s| s.from == from && s.to == to)
            .collect()
    }
}

fn addrs(entries: &[PexEntry]) -> Vec<SocketAddr> {
    let mut v: Vec<_> = entries.iter().map(|e| e.addr).collect();
    v.sort();
    v
}

#[test]
fn pex_goes_once_a_minute_with_what_was_added_and_dropped() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    let a = net.add([44, 0, 0, 1], swarm(false, true, t0));
    let b = net.add([44, 0, 0, 2], swarm(false, true, t0));
    let c = net.add([44, 0, 0, 3], swarm(false, true, t0));
    let d = net.add([44, 0, 0, 4], swarm(false, true, t0));
    // a dials b, then c dials b: b tells a of c (at its listen port, from
    // c's extension handshake), c of a.
    net.connect(a, b);
    net.connect(c, b);
    net.run_until(t0 + Duration::from_secs(1));
    let to_a = net.pex_from_to(b, a);
    let first_at = to_a[0].at;
    let all_added: Vec<SocketAddr> = to_a.iter().flat_map(|s| addrs(&s.msg.added)).collect();
    assert_eq!(all_added, vec![listen_addr([44, 0, 0, 3].into())]);
    // c dialled b: seed, but not "reachable" from b's view.
    assert_eq!(to_a.last().unwrap().msg.added[0].flags, PeerFlags::SEED);
    let to_c = net.pex_from_to(b, c);
    assert_eq!(
        addrs(&to_c.last().unwrap().msg.added),
        vec![listen_addr([44, 0, 0, 1].into())]
    );
    assert!(net
        .learnt
        .iter()
        .any(|(n, e)| *n == a && addrs(e) == vec![listen_addr([44, 0, 0, 3].into())]));
    let before = net.pex_from_to(b, a).len();

    // d arrives, c leaves: nothing more to a within the minute ...
    net.connect(d, b);
    let bc = net.link(b, c);
    net.disconnect(b, bc);
    net.run_until(first_at + SEND_INTERVAL - Duration::from_millis(1));
    assert_eq!(net.pex_from_to(b, a).len(), before, "one message a minute");
    // ... then one with both changes.
    net.run_until(first_at + SEND_INTERVAL);
    let to_a = net.pex_from_to(b, a);
    assert_eq!(to_a.len(), before + 1);
    let last = to_a.last().unwrap();
    assert_eq!(last.at, first_at + SEND_INTERVAL);
    assert_eq!(
        addrs(&last.msg.added),
        vec![listen_addr([44, 0, 0, 4].into())]
    );
    assert_eq!(last.msg.dropped, vec![listen_addr([44, 0, 0, 3].into())]);

    // Nothing changes any more: no message, and no PEX timer (an idle
    // swarm sleeps until its keep-alives).
    let count = net.sent.len();
    net.run_until(first_at + 10 * SEND_INTERVAL);
    assert_eq!(net.sent.len(), count);
    for (_, s) in &net.nodes {
        assert!(
            s.poll_timeout().is_none_or(|due| due > net.now),
            "nothing overdue"
        );
    }
    // Every message any node sent was at least a minute after the last to the same peer.
    for s in &net.sent {
        let earlier = net
            .sent
            .iter()
            .filter(|o| o.from == s.from && o.to == s.to && o.at < s.at)
            .map(|o| o.at)
            .max();
        if let Some(e) = earlier {
            assert!(s.at - e >= SEND_INTERVAL);
        }
    }
}

#[test]
fn at_most_fifty_added_per_message_the_rest_a_minute_later() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    let a = net.add([44, 0, 0, 1], swarm(false, true, t0));
    let b = net.add([44, 0, 0, 2], swarm(false, true, t0));
    net.connect(a, b);
    // b also dialled 60 peers that are no swarms of ours (driven by nobody).
    let hs = Handshake::new([9; 20], [7; 20]);
    for i in 0..60u8 {
        let origin = PeerOrigin {
            class: PeerClass::Wan,
            outgoing: true,
        };
        let s = &mut net.nodes[b].1;
        let key = s.add_peer_with(listen_addr([45, 0, 0, i + 1].into()), &hs, origin, t0);
        // Useful, so the swarm keeps them past the unproductive time-out.
        s.on_message(key, Message::HaveAll, t0).unwrap();
    }
    net.run_until(t0 + Duration::from_secs(1));
    let to_a = net.pex_from_to(b, a);
    let first = to_a.last().unwrap();
    assert_eq!(first.msg.added.len(), MAX_ADDED);
    assert!(first
        .msg
        .added
        .iter()
        .all(|e| e.flags == PeerFlags::SEED | PeerFlags::REACHABLE
            || e.flags == PeerFlags::REACHABLE));
    let first_at = first.at;
    // The rest (10, with nothing else changed) one minute later.
    net.run_until(first_at + SEND_INTERVAL);
    let to_a = net.pex_from_to(b, a);
    let second = to_a.last().unwrap();
    assert_eq!(second.at, first_at + SEND_INTERVAL);
    assert_eq!(second.msg.added.len(), 60 - MAX_ADDED);
    // a learnt each of the 60 once, at most 50 per message.
    let learnt: Vec<&Vec<PexEntry>> = net
        .learnt
        .iter()
        .filter(|(n, _)| *n == a)
        .map(|(_, e)| e)
        .collect();
    assert!(learnt.iter().all(|e| e.len() <= MAX_ACCEPTED));
    assert_eq!(learnt.iter().map(|e| e.len()).sum::<usize>(), 60);
}

#[test]
fn no_lan_address_goes_to_a_wan_peer_nor_is_taken_from_one() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    let wan = net.add([44, 0, 0, 1], swarm(false, true, t0));
    let mid = net.add([44, 0, 0, 2], swarm(false, true, t0));
    let lan = net.add([10, 0, 0, 3], swarm(false, true, t0));
    let other = net.add([44, 0, 0, 4], swarm(false, true, t0));
    net.connect(wan, mid);
    net.connect(mid, lan);
    net.connect(mid, other);
    net.run_until(t0 + Duration::from_secs(1));
    let told_wan: Vec<SocketAddr> = net
        .pex_from_to(mid, wan)
        .iter()
        .flat_map(|s| addrs(&s.msg.added))
        .collect();
    assert_eq!(told_wan, vec![listen_addr([44, 0, 0, 4].into())]);
    // A LAN peer hears of WAN and LAN peers alike.
    let told_lan: Vec<SocketAddr> = net
        .pex_from_to(mid, lan)
        .iter()
        .flat_map(|s| addrs(&s.msg.added))
        .collect();
    assert_eq!(told_lan.len(), 2);

    // A WAN peer that lists a LAN address: the event leaves it out.
    let mut s = swarm(false, true, t0);
    let key = s.add_peer_with(
        "44.9.9.9:6881".parse().unwrap(),
        &Handshake::new([9; 20], [5; 20]),
        PeerOrigin {
            class: PeerClass::Wan,
            outgoing: true,
        },
        t0,
    );
    let msg = PexMessage {
        added: ["192.168.1.7:6881", "44.1.1.1:6881"]
            .iter()
            .map(|a| PexEntry {
                addr: a.parse().unwrap(),
                flags: PeerFlags::default(),
            })
            .collect(),
        dropped: vec![],
    };
    s.on_message(
        key,
        Message::Extended {
            id: pex::OUR_ID,
            payload: Bytes::from(msg.encode()),
        },
        t0,
    )
    .unwrap();
    let Some(Event::PeersLearnt { peer, learnt }) = s.poll_event() else {
        panic!("peers learnt");
    };
    assert_eq!(peer, key);
    assert_eq!(learnt.sender_class(), PeerClass::Wan);
    assert_eq!(
        addrs(&learnt.to_dial(classify)),
        vec!["44.1.1.1:6881".parse().unwrap()]
    );
}

#[test]
fn a_private_torrent_or_pex_off_neither_offers_sends_nor_takes_pex() {
    for (private, pex_on) in [(true, true), (false, false)] {
        let t0 = Instant::now();
        let mut net = Net::new(t0);
        let ours = net.add([44, 0, 0, 1], swarm(private, pex_on, t0));
        let public = net.add([44, 0, 0, 2], swarm(false, true, t0));
        let third = net.add([44, 0, 0, 3], swarm(false, true, t0));
        assert!(!net.nodes[ours].1.pex_enabled());
        net.connect(public, ours);
        net.connect(third, ours);
        net.run_until(t0 + 5 * SEND_INTERVAL);
        assert!(
            net.sent.iter().all(|s| s.from != ours),
            "private {private}, pex {pex_on}: {:?}",
            net.sent
        );
        // Our handshake did not name ut_pex, so the others send us nothing
        // either; one that does anyway is not heard.
        assert!(net.sent.iter().all(|s| s.to != ours));
        let key = net.link(ours, public);
        let msg = PexMessage {
            added: vec![PexEntry {
                addr: "44.7.7.7:1".parse().unwrap(),
                flags: PeerFlags::default(),
            }],
            dropped: vec![],
        };
        let s = &mut net.nodes[ours].1;
        s.on_message(
            key,
            Message::Extended {
                id: pex::OUR_ID,
                payload: Bytes::from(msg.encode()),
            },
            t0,
        )
        .unwrap();
        assert!(
            std::iter::from_fn(|| s.poll_event()).all(|e| !matches!(e, Event::PeersLearnt { .. }))
        );
    }
    // The handshake itself: ut_pex named only when PEX runs.
    let t0 = Instant::now();
    for (private, pex_on, named) in [
        (false, true, true),
        (true, true, false),
        (false, false, false),
    ] {
        let mut s = swarm(private, pex_on, t0);
        let key = s.add_peer(
            "44.0.0.9:1".parse().unwrap(),
            &Handshake::new([9; 20], [3; 20]),
            t0,
        );
        let mut out = Vec::new();
        s.poll_outgoing(key, t0, &mut out);
        let Outgoing::Message(Message::Extended { id: 0, payload }) = &out[0] else {
            panic!("extension handshake first: {out:?}");
        };
        assert_eq!(wire::extension::peer_ut_pex(payload).is_some(), named);
    }
}

/// A peer no swarm of ours, speaking ut_pex, that we dialled.
fn hostile(t0: Instant) -> (Swarm, PeerKey) {
    let mut s = swarm(false, true, t0);
    let key = s.add_peer_with(
        "44.6.6.6:6881".parse().unwrap(),
        &Handshake::new([9; 20], [6; 20]),
        PeerOrigin {
            class: PeerClass::Wan,
            outgoing: true,
        },
        t0,
    );
    (s, key)
}

fn listing(n: usize) -> Message {
    let msg = PexMessage {
        added: (0..n)
            .map(|i| PexEntry {
                addr: SocketAddr::from(([46, 0, (i / 250) as u8, (i % 250) as u8 + 1], 6881)),
                flags: PeerFlags::default(),
            })
            .collect(),
        dropped: vec![],
    };
    Message::Extended {
        id: pex::OUR_ID,
        payload: Bytes::from(msg.encode()),
    }
}

fn learnt_counts(s: &mut Swarm) -> Vec<usize> {
    std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            Event::PeersLearnt { learnt, .. } => Some(learnt.to_dial(classify).len()),
            _ => None,
        })
        .collect()
}

#[test]
fn incoming_pex_is_bounded_and_a_flooding_peer_is_dropped() {
    let t0 = Instant::now();
    let (mut s, key) = hostile(t0);
    // 150 listed: 50 taken.
    s.on_message(key, listing(150), t0).unwrap();
    assert_eq!(learnt_counts(&mut s), vec![MAX_ACCEPTED]);
    // More within the minute: ignored, the peer stays (so far).
    for i in 1..=4 {
        s.on_message(key, listing(10), t0 + Duration::from_secs(i))
            .unwrap();
    }
    assert!(learnt_counts(&mut s).is_empty());
    // After the interval, one more is taken.
    let t1 = t0 + MIN_RECEIVE_INTERVAL;
    s.on_message(key, listing(10), t1).unwrap();
    assert_eq!(learnt_counts(&mut s), vec![10]);
    // The seventh within a minute: a flood, a violation (the caller drops it).
    let err = s.on_message(key, listing(1), t1).unwrap_err();
    assert!(err.0.contains("ut_pex messages"), "{}", err.0);

    // One message with a huge list is a flood too.
    let (mut s, key) = hostile(t0);
    let err = s.on_message(key, listing(MAX_LISTED + 1), t0).unwrap_err();
    assert!(err.0.contains("added peers"), "{}", err.0);
    // So is garbage.
    let (mut s, key) = hostile(t0);
    let garbage = Message::Extended {
        id: pex::OUR_ID,
        payload: Bytes::from_static(b"not bencode"),
    };
    assert!(s.on_message(key, garbage, t0).is_err());
}

#[test]
fn a_flooding_swarm_peer_is_dropped_in_the_pair() {
    // Over links: the flooder's messages reach our swarm, which refuses
    // the seventh; the link is gone on both sides.
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    let ours = net.add([44, 0, 0, 1], swarm(false, true, t0));
    let flooder = net.add([44, 0, 0, 2], swarm(false, true, t0));
    net.connect(ours, flooder);
    let key = net.link(flooder, ours);
    for i in 0..7 {
        net.now = t0 + Duration::from_secs(i);
        if !net.links.contains_key(&(flooder, key)) {
            break;
        }
        // A ut_pex message as the flooder would send it, a second apart.
        let raw = listing(3);
        let their_key = net.links[&(flooder, key)].1;
        if let Err(v) = net.nodes[ours].1.on_message(their_key, raw, net.now) {
            net.dropped.push((ours, v.0));
            net.disconnect(ours, their_key);
        }
    }
    assert_eq!(net.dropped.len(), 1, "{:?}", net.dropped);
    assert!(net.links.is_empty(), "dropped on both sides");
    assert_eq!(net.nodes[ours].1.peer_count(), 0);
}

#[test]
fn peers_are_listed_with_what_their_connections_showed() {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    let a = net.add([44, 0, 0, 1], swarm(false, true, t0));
    let b = net.add([44, 0, 0, 2], swarm(false, true, t0));
    let c = net.add([44, 0, 0, 3], swarm(false, true, t0));
    let d = net.add([44, 0, 0, 4], swarm(false, true, t0));
    net.connect(a, b);
    net.connect(c, b);
    net.connect(d, b);
    // b's connection from c is uTP, the one from d TCP through MSE.
    let bc = net.link(b, c);
    net.nodes[b].1.peer_shows(bc, PeerFlags::UTP);
    let bd = net.link(b, d);
    net.nodes[b].1.peer_shows(bd, PeerFlags::ENCRYPTION);
    net.run_until(t0 + Duration::from_secs(1));
    let told: Vec<PexEntry> = net
        .pex_from_to(b, a)
        .iter()
        .flat_map(|s| s.msg.added.clone())
        .collect();
    let flags_of = |ip: [u8; 4]| {
        told.iter()
            .find(|e| e.addr == listen_addr(ip.into()))
            .map(|e| e.flags)
            .expect("listed")
    };
    assert_eq!(flags_of([44, 0, 0, 3]), PeerFlags::SEED | PeerFlags::UTP);
    assert_eq!(
        flags_of([44, 0, 0, 4]),
        PeerFlags::SEED | PeerFlags::ENCRYPTION
    );
}
