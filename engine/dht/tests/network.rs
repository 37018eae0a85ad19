//! An in-memory network of DHT nodes on a fake clock: packets go from one
//! node's `poll_transmit` straight into another's `handle_packet`.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use capwise_dht::krpc::{Body, Message, Query, Response, ERROR_PROTOCOL};
use capwise_dht::{Config, Dht, Event, Limits, NodeId};
use capwise_proto::metainfo::InfoHash;

struct Net {
    nodes: Vec<Dht>,
    addrs: Vec<SocketAddr>,
    index: HashMap<SocketAddr, usize>,
    dead: HashSet<usize>,
    events: Vec<Vec<Event>>,
    wakeups: Vec<u64>,
    now: Instant,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8),
        6881,
    ))
}

impl Net {
    fn new() -> Net {
        Net {
            nodes: Vec::new(),
            addrs: Vec::new(),
            index: HashMap::new(),
            dead: HashSet::new(),
            events: Vec::new(),
            wakeups: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Adds a node joining through node 0 (the first node has no bootstrap)
    /// and lets the network settle.
    fn join(&mut self, read_only: bool) -> usize {
        let i = self.nodes.len();
        let config = Config {
            bootstrap: if i == 0 { vec![] } else { vec![self.addrs[0]] },
            read_only,
            ..Config::default()
        };
        self.add(Dht::new(config, self.now));
        self.settle();
        i
    }

    fn add(&mut self, dht: Dht) -> usize {
        let i = self.nodes.len();
        self.nodes.push(dht);
        self.addrs.push(addr(i));
        self.index.insert(addr(i), i);
        self.events.push(Vec::new());
        self.wakeups.push(0);
        i
    }

    fn build(n: usize) -> Net {
        let mut net = Net::new();
        for _ in 0..n {
            net.join(false);
        }
        // Nodes that joined early know few of the later ones until their
        // first bucket refreshes (15 minutes), as in a real DHT.
        net.idle_for(Duration::from_secs(16 * 60));
        net
    }

    /// Delivers packets until none is left.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.nodes.len() {
                if self.dead.contains(&i) {
                    continue;
                }
                while let Some(t) = self.nodes[i].poll_transmit(self.now) {
                    any = true;
                    if let Some(&j) = self.index.get(&t.to) {
                        if !self.dead.contains(&j) {
                            let from = self.addrs[i];
                            self.nodes[j].handle_packet(from, &t.bytes, self.now);
                        }
                    }
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events[i].push(e);
                }
            }
            if !any {
                return;
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|i| !self.dead.contains(i))
    }

    /// Runs packets and timers until no query is in flight anywhere.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            self.pump();
            let busy: Vec<usize> = self
                .live()
                .filter(|&i| self.nodes[i].in_flight() > 0)
                .collect();
            if busy.is_empty() {
                return;
            }
            let next = busy
                .iter()
                .filter_map(|&i| self.nodes[i].poll_timeout())
                .min()
                .expect("a node with queries in flight has a deadline");
            self.now = self.now.max(next);
            self.fire_due();
        }
        panic!("the network did not settle");
    }

    fn fire_due(&mut self) {
        for i in self.live().collect::<Vec<_>>() {
            if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                self.wakeups[i] += 1;
                self.nodes[i].handle_timeout(self.now);
            }
        }
    }

    /// Lets time pass, firing every timer the nodes ask for.
    fn idle_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self
                .live()
                .filter_map(|i| self.nodes[i].poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.fire_due();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn peers_found(&self, i: usize, hash: InfoHash) -> HashSet<SocketAddr> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Peers {
                    info_hash, peers, ..
                } if *info_hash == hash => Some(peers.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn done(&self, i: usize, hash: InfoHash) -> Option<(usize, usize)> {
        self.events[i].iter().find_map(|e| match e {
            Event::LookupDone {
                info_hash,
                peers,
                announced,
                ..
            } if *info_hash == hash => Some((*peers, *announced)),
            _ => None,
        })
    }
}

fn hash(b: u8) -> InfoHash {
    let mut h = [b; 20];
    h[19] = 0x5a;
    InfoHash(h)
}

#[test]
fn bootstrap_through_one_node_fills_every_routing_table() {
    let net = Net::build(60);
    for (i, node) in net.nodes.iter().enumerate() {
        let n = node.routing_table().len();
        assert!(n >= 8, "node {i} knows only {n} nodes");
    }
    assert!(net.events[20]
        .iter()
        .any(|e| matches!(e, Event::Bootstrapped { nodes } if *nodes >= 8)));
}

#[test]
fn announced_peer_is_found_by_another_node() {
    let mut net = Net::build(50);
    let (a, b, c) = (7, 33, 45);
    let h = hash(0x11);
    net.nodes[a].announce(h, Some(7000), net.now).unwrap();
    net.nodes[c].announce(h, None, net.now).unwrap();
    net.settle();
    let (_, announced) = net.done(a, h).expect("announce finished");
    assert!(announced >= 4, "announced to {announced} nodes");
    net.nodes[b].get_peers(h, net.now).unwrap();
    net.settle();
    let found = net.peers_found(b, h);
    // implied_port: the announcer's source port.
    assert!(found.contains(&net.addrs[c]), "{found:?}");
    let a_ip = net.addrs[a].ip();
    assert!(found.contains(&SocketAddr::new(a_ip, 7000)), "{found:?}");
    let (peers, announced) = net.done(b, h).expect("get_peers finished");
    assert_eq!((peers, announced), (2, 0));
}

#[test]
fn read_only_node_looks_up_but_is_in_no_table_and_answers_nothing() {
    let mut net = Net::build(40);
    let r = net.join(true);
    let h = hash(0x22);
    net.nodes[3].announce(h, Some(5000), net.now).unwrap();
    net.settle();
    net.nodes[r].get_peers(h, net.now).unwrap();
    net.settle();
    assert_eq!(net.peers_found(r, h).len(), 1);
    assert!(net.nodes[r].routing_table().len() >= 8);
    let rid = net.nodes[r].id();
    for (i, node) in net.nodes.iter().enumerate() {
        assert!(
            !node.routing_table().contains(&rid),
            "node {i} holds the read-only node"
        );
    }
    // It answers nothing, not even a ping.
    let ping = Message {
        tid: b"pp".to_vec(),
        read_only: false,
        body: Body::Query {
            id: NodeId([9; 20]),
            query: Query::Ping,
        },
    };
    let now = net.now;
    net.nodes[r].handle_packet(addr(999), &ping.encode(), now);
    assert!(net.nodes[r].poll_transmit(now).is_none());
    assert!(net.nodes[r].stats().ignored_read_only >= 1);
    // Writable again: it answers.
    net.nodes[r].set_read_only(false);
    net.nodes[r].handle_packet(addr(999), &ping.encode(), now);
    assert!(net.nodes[r].poll_transmit(now).is_some());
}

/// Sends `query` to `dht` from `from` and decodes its answer.
fn ask(dht: &mut Dht, from: SocketAddr, query: Query, now: Instant) -> Option<Body> {
    let msg = Message {
        tid: b"zz".to_vec(),
        read_only: false,
        body: Body::Query {
            id: NodeId([0x42; 20]),
            query,
        },
    };
    dht.handle_packet(from, &msg.encode(), now);
    let t = dht.poll_transmit(now)?;
    assert_eq!(t.to, from);
    Some(Message::decode(&t.bytes).unwrap().body)
}

fn lone_node(now: Instant) -> Dht {
    Dht::new(Config::default(), now)
}

#[test]
fn expired_and_foreign_tokens_are_refused() {
    let t0 = Instant::now();
    let mut dht = lone_node(t0);
    let me = addr(1);
    let Some(Body::Response(Response {
        token: Some(token), ..
    })) = ask(&mut dht, me, Query::GetPeers { info_hash: [1; 20] }, t0)
    else {
        panic!("no token")
    };
    let announce = |token: &[u8]| Query::AnnouncePeer {
        info_hash: [1; 20],
        port: 9000,
        implied_port: false,
        token: token.to_vec(),
    };
    // Another IP cannot use it.
    let reply = ask(&mut dht, addr(2), announce(&token), t0).unwrap();
    assert!(
        matches!(
            reply,
            Body::Error {
                code: ERROR_PROTOCOL,
                ..
            }
        ),
        "{reply:?}"
    );
    // Eleven minutes later it has expired (two rotations of 5 minutes).
    let late = t0 + Duration::from_secs(11 * 60);
    let reply = ask(&mut dht, me, announce(&token), late).unwrap();
    assert!(
        matches!(
            reply,
            Body::Error {
                code: ERROR_PROTOCOL,
                ..
            }
        ),
        "{reply:?}"
    );
    assert_eq!(dht.stored(), (0, 0));
    assert_eq!(dht.stats().bad_tokens, 2);
    // Seven minutes later it is still good (the previous secret).
    let mut dht = lone_node(t0);
    let Some(Body::Response(Response {
        token: Some(token), ..
    })) = ask(&mut dht, me, Query::GetPeers { info_hash: [1; 20] }, t0)
    else {
        panic!("no token")
    };
    let ok = t0 + Duration::from_secs(7 * 60);
    assert!(matches!(
        ask(&mut dht, me, announce(&token), ok),
        Some(Body::Response(_))
    ));
    assert_eq!(dht.stored(), (1, 1));
    let Some(Body::Response(r)) = ask(
        &mut dht,
        addr(3),
        Query::GetPeers { info_hash: [1; 20] },
        ok,
    ) else {
        panic!("no answer")
    };
    assert_eq!(
        r.values,
        vec![SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9000)]
    );
}

#[test]
fn hostile_packets_do_not_panic_and_memory_stays_bounded() {
    let t0 = Instant::now();
    let limits = Limits {
        max_sources: 100,
        max_hashes: 50,
        max_peers_per_hash: 10,
        ..Limits::default()
    };
    let mut dht = Dht::new(
        Config {
            limits: limits.clone(),
            ..Config::default()
        },
        t0,
    );
    let from = addr(1);
    let garbage: Vec<Vec<u8>> = vec![
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q".to_vec(),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:yi5ee".to_vec(),
        vec![b'l'; 2000],
        [b"l".to_vec(), b"i1e".repeat(600), b"e".to_vec()].concat(),
        vec![0xff; 65_000],
        b"d1:rd2:id20:abcdefghij0123456789e1:t2:\x00\x011:y1:re".to_vec(),
        b"d1:eli201e4:oopse1:t2:\x00\x021:y1:ee".to_vec(),
        b"d1:ad2:id20:abcdefghij01234567894:porti99999e5:token1:x9:info_hash20:abcdefghij0123456789e1:q13:announce_peer1:t2:aa1:y1:qe".to_vec(),
        Vec::new(),
    ];
    for g in &garbage {
        dht.handle_packet(from, g, t0);
    }
    assert!(dht.poll_transmit(t0).is_none(), "garbage gets no answer");
    assert_eq!(dht.stats().malformed, 7);
    assert_eq!(dht.stats().unsolicited, 2);

    // A flood from one IP: only the burst is answered.
    let ping = Message {
        tid: b"pp".to_vec(),
        read_only: false,
        body: Body::Query {
            id: NodeId([9; 20]),
            query: Query::Ping,
        },
    }
    .encode();
    for _ in 0..1000 {
        dht.handle_packet(from, &ping, t0);
    }
    let mut answered = 0;
    while dht.poll_transmit(t0).is_some() {
        answered += 1;
    }
    assert_eq!(answered, limits.query_burst as usize);
    assert_eq!(dht.stats().rate_limited, 1000 - answered as u64);

    // Many sources, ids and announces: every table stays within its bound.
    for i in 0..5000u32 {
        let ip = Ipv4Addr::from(0x0b00_0000 + i);
        let src = SocketAddr::from((ip, 1000));
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let q = Message {
            tid: b"qq".to_vec(),
            read_only: false,
            body: Body::Query {
                id: NodeId(id),
                query: Query::GetPeers { info_hash: id },
            },
        };
        dht.handle_packet(src, &q.encode(), t0 + Duration::from_millis(u64::from(i)));
        if let Some(t) = dht.poll_transmit(t0) {
            if let Ok(Message {
                body:
                    Body::Response(Response {
                        token: Some(tok), ..
                    }),
                ..
            }) = Message::decode(&t.bytes)
            {
                let a = Message {
                    tid: b"qa".to_vec(),
                    read_only: false,
                    body: Body::Query {
                        id: NodeId(id),
                        query: Query::AnnouncePeer {
                            info_hash: id,
                            port: 1,
                            implied_port: false,
                            token: tok,
                        },
                    },
                };
                dht.handle_packet(src, &a.encode(), t0 + Duration::from_millis(u64::from(i)));
            }
        }
        while dht.poll_transmit(t0).is_some() {}
    }
    let (hashes, peers) = dht.stored();
    assert!(hashes <= 50 && peers <= 500, "{hashes} {peers}");
    assert!(dht.routing_table().len() <= 160 * 8);
}

#[test]
fn timed_out_queries_move_the_lookup_to_other_nodes() {
    let mut net = Net::build(50);
    let h = hash(0x33);
    net.nodes[10].announce(h, Some(6000), net.now).unwrap();
    net.settle();
    // The five nodes closest to the torrent vanish, and a third of the rest
    // (not the announcer, not the searcher).
    let mut by_distance: Vec<usize> = (1..50).filter(|&i| i != 10 && i != 20).collect();
    by_distance.sort_by_key(|&i| net.nodes[i].id().distance(&NodeId(h.0)));
    net.dead.extend(by_distance[..5].iter().copied());
    net.dead.extend(by_distance[5..].iter().copied().step_by(3));
    net.nodes[10].announce(h, Some(6000), net.now).unwrap();
    net.settle();
    let before = net.nodes[20].stats().timeouts;
    net.nodes[20].get_peers(h, net.now).unwrap();
    net.settle();
    assert!(
        net.nodes[20].stats().timeouts > before,
        "no dead node was asked"
    );
    assert_eq!(net.peers_found(20, h).len(), 1);
}

#[test]
fn idle_node_wakes_rarely() {
    let mut net = Net::build(30);
    let now = net.now;
    for (i, node) in net.nodes.iter().enumerate() {
        let next = node.poll_timeout().expect("a refresh is scheduled");
        assert!(
            next >= now + Duration::from_secs(10 * 60),
            "node {i} wakes early"
        );
    }
    let before: u64 = net.wakeups.iter().sum();
    let hours = 4;
    net.idle_for(Duration::from_secs(hours * 3600));
    let wakeups: u64 = net.wakeups.iter().sum::<u64>() - before;
    let per_node_per_second = wakeups as f64 / 30.0 / (hours * 3600) as f64;
    assert!(
        per_node_per_second < 0.02,
        "{per_node_per_second} wakeups/s"
    );
    // The refreshes kept the tables full.
    assert!(net.nodes.iter().all(|n| n.routing_table().len() >= 8));
}

#[test]
fn save_and_restore_keep_the_id_and_the_table() {
    let mut net = Net::build(30);
    let saved = net.nodes[12].save();
    let old_id = net.nodes[12].id();
    let old_len = net.nodes[12].routing_table().len();
    let restored = Dht::restore(&saved, Config::default(), net.now).unwrap();
    assert_eq!(restored.id(), old_id);
    assert_eq!(restored.routing_table().len(), old_len);
    assert!(Dht::restore(b"garbage", Config::default(), net.now).is_err());
    assert!(Dht::restore(b"d2:id3:abc5:nodes0:e", Config::default(), net.now).is_err());
    // The restored node (no bootstrap list) takes the dead one's place and
    // finds peers through its saved table.
    net.dead.insert(12);
    let i = net.add(restored);
    let h = hash(0x44);
    net.nodes[4].announce(h, Some(4000), net.now).unwrap();
    net.settle();
    net.nodes[i].get_peers(h, net.now).unwrap();
    net.settle();
    assert_eq!(net.peers_found(i, h).len(), 1);
}

#[test]
fn silent_node_sends_and_takes_nothing_then_resumes() {
    let mut net = Net::build(30);
    let h = hash(0x55);
    net.nodes[2].announce(h, Some(2000), net.now).unwrap();
    net.settle();
    // The node farthest from the torrent: it holds no announce itself.
    let s = (3..30)
        .max_by_key(|&i| net.nodes[i].id().distance(&NodeId(h.0)))
        .unwrap();
    assert_eq!(net.nodes[s].stored(), (0, 0));
    let now = net.now;
    net.nodes[s].set_silent(true, now);
    net.nodes[s].get_peers(h, now).unwrap();
    assert!(net.nodes[s].poll_transmit(now).is_none());
    assert!(net.nodes[s].poll_timeout().is_none());
    let ping = Message {
        tid: b"pp".to_vec(),
        read_only: false,
        body: Body::Query {
            id: NodeId([9; 20]),
            query: Query::Ping,
        },
    };
    net.nodes[s].handle_packet(addr(0), &ping.encode(), now);
    assert!(net.nodes[s].poll_transmit(now).is_none());
    // (Less than the 30 minutes an announce lives.)
    net.idle_for(Duration::from_secs(20 * 60));
    assert!(net.peers_found(s, h).is_empty());
    let now = net.now;
    net.nodes[s].set_silent(false, now);
    net.settle();
    assert_eq!(net.peers_found(s, h).len(), 1);
}

#[test]
fn a_bootstrap_node_given_late_starts_the_bootstrap() {
    let mut net = Net::build(20);
    // A node whose bootstrap names resolved only after it started.
    let late = net.add(Dht::new(Config::default(), net.now));
    net.settle();
    assert_eq!(net.nodes[late].routing_table().len(), 0);
    let boot = net.addrs[0];
    let now = net.now;
    net.nodes[late].add_bootstrap(&[boot], now);
    net.settle();
    let n = net.nodes[late].routing_table().len();
    assert!(n >= 8, "the late node knows only {n} nodes");
    assert!(net.events[late]
        .iter()
        .any(|e| matches!(e, Event::Bootstrapped { .. })));
}
