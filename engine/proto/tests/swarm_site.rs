//! Site coordination ("LAN first, WAN once") between in-memory swarms on a
//! fake clock: members of one site (10.x, LAN to each other) and one WAN
//! seed (44.x) whose uploads are paced, so that claims and the split, not
//! the order of delivery, decide who fetches what. The WAN seed must be
//! asked for each block once; a member that leaves mid-transfer has its
//! pieces taken again; a late joiner takes everything from the LAN; a
//! claim that is not renewed lapses. The site-wide WAN cap: members say
//! whether they want WAN bytes, and the cap is split among those that do.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_proto::bitfield::Bitfield;
use capwise_proto::class::PeerClass;
use capwise_proto::ext::site::{self, SiteMsg};
use capwise_proto::picker::PeerKey;
use capwise_proto::swarm::{Event, Outgoing, PeerOrigin, Swarm, SwarmConfig};
use capwise_proto::wire::{BlockRef, Handshake, Message};

const PIECE: u64 = 32 * 1024;
const PIECES: u32 = 60;
const BLOCKS_PER_PIECE: u64 = PIECE / 16384;
const STEP: Duration = Duration::from_millis(50);

fn classify(ip: Ipv4Addr) -> PeerClass {
    if ip.octets()[0] == 10 {
        PeerClass::Lan
    } else {
        PeerClass::Wan
    }
}

fn payload() -> Vec<u8> {
    (0..PIECE * PIECES as u64)
        .map(|i| (i * 7 + i / 997) as u8)
        .collect()
}

struct Node {
    ip: Ipv4Addr,
    swarm: Swarm,
    /// Blocks this node sent, by receiver node.
    uploaded: HashMap<usize, u64>,
    up: bool,
}

/// Swarms joined by in-memory links. LAN messages arrive at once; the WAN
/// seed serves at most `seed_rate` blocks per step.
struct Net {
    nodes: Vec<Node>,
    links: HashMap<(usize, PeerKey), (usize, PeerKey)>,
    data: Vec<u8>,
    now: Instant,
    seed: usize,
    seed_rate: usize,
    /// Blocks the seed owes, in order: (to node, its key there, block).
    seed_queue: VecDeque<(usize, PeerKey, BlockRef)>,
    /// Requests the seed received, per block, from anyone.
    asked_of_seed: HashMap<BlockRef, u32>,
}

impl Net {
    fn new(seed_rate: usize) -> Self {
        let now = Instant::now();
        let data = payload();
        let mut net = Net {
            nodes: Vec::new(),
            links: HashMap::new(),
            data,
            now,
            seed: 0,
            seed_rate,
            seed_queue: VecDeque::new(),
            asked_of_seed: HashMap::new(),
        };
        let seed = Swarm::new(
            PIECE,
            PIECE * PIECES as u64,
            Bitfield::full(PIECES),
            SwarmConfig::default(),
            now,
        );
        net.seed = net.push([44, 0, 0, 1], seed);
        net
    }

    fn push(&mut self, ip: [u8; 4], swarm: Swarm) -> usize {
        self.nodes.push(Node {
            ip: Ipv4Addr::from(ip),
            swarm,
            uploaded: HashMap::new(),
            up: true,
        });
        self.nodes.len() - 1
    }

    /// A capwise site member, coordinating, with nothing yet.
    fn member(&mut self, n: u8) -> usize {
        let mut s = Swarm::new(
            PIECE,
            PIECE * PIECES as u64,
            Bitfield::new(PIECES),
            SwarmConfig::default(),
            self.now,
        );
        s.enable_site([n; 8]);
        self.push([10, 20, 0, n], s)
    }

    /// Node `n` admits proven members of one channel only (its peer id is
    /// its node index, as [`Net::connect`] hands out).
    fn require_membership(&mut self, n: usize) {
        use capwise_proto::ext::member::{Membership, MembershipKey};
        self.nodes[n].swarm.require_membership(Membership {
            key: MembershipKey::from_seed([4; 32]),
            info_hash: [9; 20],
            peer_id: [n as u8; 20],
        });
    }

    fn connect(&mut self, from: usize, to: usize) {
        let (fi, ti) = (self.nodes[from].ip, self.nodes[to].ip);
        // Each side sees the other's peer id (node index), which membership
        // proofs are bound to.
        let (to_hs, from_hs) = (
            Handshake::new([9; 20], [to as u8; 20]),
            Handshake::new([9; 20], [from as u8; 20]),
        );
        let now = self.now;
        let a = self.nodes[from].swarm.add_peer_with(
            SocketAddr::from((ti, 6881)),
            &to_hs,
            PeerOrigin {
                class: classify(ti),
                outgoing: true,
            },
            now,
        );
        let b = self.nodes[to].swarm.add_peer_with(
            SocketAddr::from((fi, 40000 + from as u16)),
            &from_hs,
            PeerOrigin {
                class: classify(fi),
                outgoing: false,
            },
            now,
        );
        self.links.insert((from, a), (to, b));
        self.links.insert((to, b), (from, a));
        self.pump();
    }

    /// Node `n` leaves: every connection to it closes.
    fn leave(&mut self, n: usize) {
        let gone: Vec<((usize, PeerKey), (usize, PeerKey))> = self
            .links
            .iter()
            .filter(|((a, _), _)| *a == n)
            .map(|(&k, &v)| (k, v))
            .collect();
        for (mine, theirs) in gone {
            self.links.remove(&mine);
            self.links.remove(&theirs);
            self.nodes[theirs.0].swarm.remove_peer(theirs.1);
        }
        self.seed_queue.retain(|(to, _, _)| *to != n);
        self.nodes[n].up = false;
        self.pump();
    }

    fn deliver(&mut self, from: usize, to: usize, key: PeerKey, msg: Message) {
        if let Err(v) = self.nodes[to].swarm.on_message(key, msg, self.now) {
            panic!("node {to} refused a message from {from}: {v}");
        }
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let keys: Vec<(usize, PeerKey)> = self.links.keys().copied().collect();
            for (node, key) in keys {
                let Some(&(other, their_key)) = self.links.get(&(node, key)) else {
                    continue;
                };
                let mut out = Vec::new();
                self.nodes[node]
                    .swarm
                    .poll_outgoing(key, self.now, &mut out);
                for item in out {
                    moved = true;
                    match item {
                        Outgoing::Message(msg) => {
                            if other == self.seed {
                                if let Message::Request(b) = &msg {
                                    *self.asked_of_seed.entry(*b).or_default() += 1;
                                }
                            }
                            self.deliver(node, other, their_key, msg)
                        }
                        Outgoing::Block(b) if node == self.seed => {
                            self.seed_queue.push_back((other, their_key, b));
                        }
                        Outgoing::Block(b) => self.send_block(node, other, their_key, b),
                    }
                }
            }
            for n in 0..self.nodes.len() {
                while let Some(ev) = self.nodes[n].swarm.poll_event() {
                    if let Event::PieceComplete { index, data } = ev {
                        let at = index as usize * PIECE as usize;
                        let ok = data[..] == self.data[at..at + data.len()];
                        assert!(ok, "node {n}: piece {index} corrupt");
                        self.nodes[n].swarm.piece_verified(index, ok, self.now);
                        moved = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never went quiet");
    }

    fn send_block(&mut self, from: usize, to: usize, key: PeerKey, b: BlockRef) {
        let at = b.index as usize * PIECE as usize + b.begin as usize;
        let data = Bytes::copy_from_slice(&self.data[at..at + b.length as usize]);
        *self.nodes[from].uploaded.entry(to).or_default() += 1;
        self.deliver(
            from,
            to,
            key,
            Message::Piece {
                index: b.index,
                begin: b.begin,
                data,
            },
        );
    }

    /// One step of the clock: timers, the seed's paced uploads, delivery.
    fn step(&mut self) {
        self.now += STEP;
        for n in 0..self.nodes.len() {
            if self.nodes[n]
                .swarm
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                self.nodes[n].swarm.tick(self.now);
            }
        }
        for _ in 0..self.seed_rate {
            let Some((to, key, b)) = self.seed_queue.pop_front() else {
                break;
            };
            if self.links.contains_key(&(to, key)) {
                let seed = self.seed;
                self.send_block(seed, to, key, b);
            }
        }
        self.pump();
    }

    fn run_until_complete(&mut self, nodes: &[usize], max_steps: usize) {
        for _ in 0..max_steps {
            if nodes.iter().all(|&n| self.nodes[n].swarm.is_complete()) {
                return;
            }
            self.step();
        }
        let left: Vec<_> = nodes
            .iter()
            .map(|&n| self.nodes[n].swarm.stats().pieces_have)
            .collect();
        panic!("not complete after {max_steps} steps: {left:?}");
    }

    fn seed_uploads(&self) -> u64 {
        self.nodes[self.seed].uploaded.values().sum()
    }

    /// Every node in `nodes` dials the WAN seed.
    fn connect_to_seed(&mut self, nodes: &[usize]) {
        for &n in nodes {
            self.connect(n, self.seed);
        }
    }

    fn mesh(&mut self, members: &[usize]) {
        for (i, &a) in members.iter().enumerate() {
            for &b in &members[i + 1..] {
                self.connect(a, b);
            }
        }
    }
}

const TOTAL_BLOCKS: u64 = PIECES as u64 * BLOCKS_PER_PIECE;

#[test]
fn three_members_ask_the_wan_seed_for_each_block_once() {
    let mut net = Net::new(8);
    let members: Vec<usize> = (1..=3).map(|n| net.member(n)).collect();
    net.mesh(&members);
    for &m in &members {
        assert_eq!(net.nodes[m].swarm.site_members(), 2);
    }
    net.connect_to_seed(&members);
    net.run_until_complete(&members, 2_000);
    assert_eq!(net.seed_uploads(), TOTAL_BLOCKS, "one copy over the WAN");
    assert!(
        net.asked_of_seed.values().all(|&n| n == 1),
        "a block asked of the seed twice"
    );
    // The split shared the WAN work: each member fetched a part of it.
    for &m in &members {
        let part = net.nodes[net.seed].uploaded.get(&m).copied().unwrap_or(0);
        assert!(part > TOTAL_BLOCKS / 6, "member {m} fetched only {part}");
    }
}

/// Channel members (every peer must prove membership) become site members
/// as soon as their proofs are exchanged, not at the first renewal of a
/// claim 10 s later: the site message follows the proof on the wire. Then
/// the WAN seed (a member too) is asked for each block once.
#[test]
fn proven_channel_members_join_the_site_at_once() {
    let mut net = Net::new(8);
    let seed = net.seed;
    net.require_membership(seed);
    let members: Vec<usize> = (1..=3).map(|n| net.member(n)).collect();
    for &m in &members {
        net.require_membership(m);
    }
    net.mesh(&members);
    for &m in &members {
        assert_eq!(
            net.nodes[m].swarm.proven_members(),
            2,
            "node {m}: proofs exchanged"
        );
        assert_eq!(
            net.nodes[m].swarm.site_members(),
            2,
            "node {m}: site members"
        );
    }
    for &m in &members {
        net.connect(m, seed);
    }
    net.run_until_complete(&members, 2_000);
    assert_eq!(net.seed_uploads(), TOTAL_BLOCKS, "one copy over the WAN");
}

#[test]
fn without_site_members_the_wan_seed_is_asked_as_usual() {
    // Two coordinating swarms that are not connected to each other: each
    // is alone on its site, so each fetches the whole torrent.
    let mut net = Net::new(8);
    let a = net.member(1);
    let b = net.member(2);
    net.connect_to_seed(&[a, b]);
    net.run_until_complete(&[a, b], 2_000);
    assert_eq!(net.seed_uploads(), 2 * TOTAL_BLOCKS);
}

#[test]
fn a_member_that_leaves_mid_transfer_has_its_pieces_taken_again() {
    let mut net = Net::new(4);
    let members: Vec<usize> = (1..=3).map(|n| net.member(n)).collect();
    net.mesh(&members);
    net.connect_to_seed(&members);
    // 120 blocks at 4 a step: about a third of the way.
    for _ in 0..12 {
        net.step();
    }
    // The seed serves its requests in order: a member it has begun to
    // serve and still owes blocks leaves.
    let from_seed =
        |net: &Net, m: usize| net.nodes[net.seed].uploaded.get(&m).copied().unwrap_or(0);
    let owed = |net: &Net, m: usize| net.seed_queue.iter().any(|(to, _, _)| *to == m);
    let leaver = *members
        .iter()
        .find(|&&m| from_seed(&net, m) > 0 && owed(&net, m))
        .expect("a member mid-transfer");
    let have = net.nodes[leaver].swarm.stats().pieces_have;
    assert!(
        have > 0 && have < PIECES && from_seed(&net, leaver) > 0,
        "the leaver is mid-transfer: {have}"
    );
    assert!(
        net.seed_queue.iter().any(|(to, _, _)| *to == leaver),
        "the leaver still has blocks coming from the seed"
    );
    net.leave(leaver);
    let stay: Vec<usize> = members.iter().copied().filter(|&m| m != leaver).collect();
    let stay = &stay[..];
    for &m in stay {
        assert_eq!(net.nodes[m].swarm.site_members(), 1);
    }
    net.run_until_complete(stay, 4_000);
    // What the leaver took with it came over the WAN again, nothing more:
    // blocks it received from the seed but never passed on.
    let to_leaver = net.nodes[net.seed].uploaded[&leaver];
    let to_stay: u64 = stay
        .iter()
        .map(|m| net.nodes[net.seed].uploaded.get(m).copied().unwrap_or(0))
        .sum();
    assert!(
        to_stay <= TOTAL_BLOCKS + 2 * BLOCKS_PER_PIECE,
        "{to_stay} blocks to those who stayed"
    );
    assert!(
        net.seed_uploads() <= TOTAL_BLOCKS + to_leaver,
        "{} uploaded, {to_leaver} to the leaver",
        net.seed_uploads()
    );
}

#[test]
fn a_late_joiner_takes_everything_from_the_lan() {
    let mut net = Net::new(8);
    let early: Vec<usize> = (1..=2).map(|n| net.member(n)).collect();
    net.mesh(&early);
    net.connect_to_seed(&early);
    net.run_until_complete(&early, 2_000);
    let before = net.seed_uploads();
    assert_eq!(before, TOTAL_BLOCKS);
    let late = net.member(3);
    for &m in &early {
        net.connect(late, m);
    }
    let seed = net.seed;
    net.connect(late, seed);
    net.run_until_complete(&[late], 2_000);
    assert_eq!(net.seed_uploads(), before, "nothing more over the WAN");
}

#[test]
fn a_late_joiner_mid_transfer_fetches_only_what_nobody_has_or_claims() {
    let mut net = Net::new(4);
    let early: Vec<usize> = (1..=2).map(|n| net.member(n)).collect();
    net.mesh(&early);
    net.connect_to_seed(&early);
    for _ in 0..8 {
        net.step();
    }
    let late = net.member(3);
    for &m in &early {
        net.connect(late, m);
    }
    let seed = net.seed;
    net.connect(late, seed);
    let all = [early[0], early[1], late];
    net.run_until_complete(&all, 4_000);
    // The early two had claimed every piece before it came: it fetched
    // nothing over the WAN, and the WAN carried one copy.
    assert_eq!(net.seed_uploads(), TOTAL_BLOCKS, "still one copy");
}

/// A hand-driven member: its claims are what the test says.
fn claim_msg(member: [u8; 8], claims: Vec<u32>, full: bool) -> Message {
    Message::Extended {
        id: site::OUR_ID,
        payload: Bytes::from(
            SiteMsg {
                member,
                ttl_secs: 30,
                full,
                claims,
                // As an older member sends it.
                wants_wan: None,
            }
            .encode(),
        ),
    }
}

/// Our swarm with a fake LAN member (that named capwise_site under our
/// id) and a WAN seed; returns (swarm, member key, seed key).
fn with_fake_member(now: Instant) -> (Swarm, PeerKey, PeerKey) {
    let mut s = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        Bitfield::new(PIECES),
        SwarmConfig::default(),
        now,
    );
    s.enable_site([1; 8]);
    let hs = Handshake::new([9; 20], [2; 20]);
    let lan = PeerOrigin {
        class: PeerClass::Lan,
        outgoing: true,
    };
    let member = s.add_peer_with(SocketAddr::from(([10, 20, 0, 2], 6881)), &hs, lan, now);
    names_site(&mut s, member, now);
    (s, member, 0)
}

/// A WAN seed (44.0.0.1) that has everything and unchokes us.
fn wan_seed(s: &mut Swarm, now: Instant) -> PeerKey {
    let seed = s.add_peer_with(
        SocketAddr::from(([44, 0, 0, 1], 6881)),
        &Handshake::new([9; 20], [3; 20]),
        PeerOrigin {
            class: PeerClass::Wan,
            outgoing: true,
        },
        now,
    );
    s.on_message(seed, Message::HaveAll, now).unwrap();
    s.on_message(seed, Message::Unchoke, now).unwrap();
    seed
}

/// Peer `key`'s extension handshake names `capwise_site`.
fn names_site(s: &mut Swarm, key: PeerKey, now: Instant) {
    let ext = capwise_proto::wire::extension::our_handshake_with(
        6881,
        250,
        None,
        &[(site::EXTENSION_NAME, site::OUR_ID)],
        None,
    );
    let msg = Message::Extended {
        id: 0,
        payload: Bytes::from(ext),
    };
    s.on_message(key, msg, now).unwrap();
}

fn requested_pieces(s: &mut Swarm, key: PeerKey, now: Instant) -> Vec<u32> {
    let mut out = Vec::new();
    s.poll_outgoing(key, now, &mut out);
    let mut pieces: Vec<u32> = out
        .iter()
        .filter_map(|o| match o {
            Outgoing::Message(Message::Request(b)) => Some(b.index),
            _ => None,
        })
        .collect();
    pieces.dedup();
    pieces
}

#[test]
fn claims_keep_the_wan_away_until_they_lapse_or_their_member_leaves() {
    let t0 = Instant::now();
    let (mut s, member, _) = with_fake_member(t0);
    // The member claims every piece.
    s.on_message(member, claim_msg([2; 8], (0..PIECES).collect(), true), t0)
        .unwrap();
    assert_eq!(s.site_members(), 1);
    let hs = Handshake::new([9; 20], [3; 20]);
    let wan = PeerOrigin {
        class: PeerClass::Wan,
        outgoing: true,
    };
    let seed = s.add_peer_with(SocketAddr::from(([44, 0, 0, 1], 6881)), &hs, wan, t0);
    s.on_message(
        seed,
        Message::Bitfield(Bytes::from(Bitfield::full(PIECES).as_bytes().to_vec())),
        t0,
    )
    .unwrap();
    s.on_message(seed, Message::Unchoke, t0).unwrap();
    assert!(
        requested_pieces(&mut s, seed, t0).is_empty(),
        "every piece is claimed by the member"
    );
    // The member renews all but pieces 0..10 (a full list): those are free.
    let t1 = t0 + Duration::from_secs(10);
    s.on_message(member, claim_msg([2; 8], (10..PIECES).collect(), true), t1)
        .unwrap();
    s.tick(t1);
    let asked = requested_pieces(&mut s, seed, t1);
    assert!(
        !asked.is_empty() && asked.iter().all(|&i| i < 10),
        "{asked:?}"
    );
    // Nothing renewed any more: at the ttl, every claim lapses and the
    // swarm's deadline says so.
    let due = s.poll_timeout().unwrap();
    assert!(due <= t1 + site::CLAIM_TTL, "the lapse is a deadline");
    let t2 = t1 + site::CLAIM_TTL + Duration::from_millis(1);
    s.tick(t2);
    let asked = requested_pieces(&mut s, seed, t2);
    assert!(
        asked.iter().any(|&i| i >= 10),
        "lapsed claims free their pieces: {asked:?}"
    );
}

#[test]
fn a_member_that_leaves_frees_its_claims_at_once_and_the_split_follows() {
    let t0 = Instant::now();
    let (mut s, member, _) = with_fake_member(t0);
    s.on_message(member, claim_msg([2; 8], (0..PIECES).collect(), true), t0)
        .unwrap();
    // It holds piece 5 too: a have ends its claim but the piece is held.
    s.on_message(member, Message::Have(5), t0).unwrap();
    let seed = wan_seed(&mut s, t0);
    assert!(requested_pieces(&mut s, seed, t0).is_empty());
    s.remove_peer(member);
    assert_eq!(s.site_members(), 0);
    s.tick(t0 + Duration::from_millis(1));
    let asked = requested_pieces(&mut s, seed, t0);
    assert!(
        !asked.is_empty(),
        "alone on the site: as without coordination"
    );
}

#[test]
fn a_wan_peer_is_never_told_of_the_site() {
    let t0 = Instant::now();
    let mut s = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        Bitfield::new(PIECES),
        SwarmConfig::default(),
        t0,
    );
    s.enable_site([1; 8]);
    let hs = Handshake::new([9; 20], [3; 20]);
    let names_site = |s: &mut Swarm, class: PeerClass, ip: [u8; 4]| {
        let key = s.add_peer_with(
            SocketAddr::from((IpAddr::from(ip), 6881)),
            &hs,
            PeerOrigin {
                class,
                outgoing: true,
            },
            t0,
        );
        let mut out = Vec::new();
        s.poll_outgoing(key, t0, &mut out);
        out.iter().any(|o| matches!(o, Outgoing::Message(Message::Extended { id: 0, payload })
            if capwise_proto::wire::extension::peer_extension_id(payload, site::EXTENSION_NAME).is_some()))
    };
    assert!(!names_site(&mut s, PeerClass::Wan, [44, 0, 0, 1]));
    assert!(names_site(&mut s, PeerClass::Lan, [10, 20, 0, 2]));
}

#[test]
fn a_wan_web_seed_gets_only_unclaimed_pieces_and_a_lan_one_anything() {
    let t0 = Instant::now();
    let (mut s, member, _) = with_fake_member(t0);
    // The member claims the first half and holds piece 59.
    s.on_message(member, claim_msg([2; 8], (0..30).collect(), true), t0)
        .unwrap();
    s.on_message(member, Message::Have(59), t0).unwrap();
    let wan_seed = s.add_web_seed();
    let mut got = Vec::new();
    for _ in 0..PIECES {
        let picked = s.web_seed_pick_from(wan_seed, PIECE, PeerClass::Wan);
        if picked.is_empty() {
            break;
        }
        got.extend(picked);
    }
    assert!(!got.is_empty());
    assert!(
        got.iter().all(|&i| (30..59).contains(&i)),
        "only unclaimed pieces nobody holds: {got:?}"
    );
    // Before the split settles, only our own share of them.
    let settled = t0 + site::SETTLE_TIME + Duration::from_millis(1);
    s.tick(settled);
    loop {
        let picked = s.web_seed_pick_from(wan_seed, PIECE, PeerClass::Wan);
        if picked.is_empty() {
            break;
        }
        got.extend(picked);
    }
    got.sort_unstable();
    assert_eq!(got, (30..59).collect::<Vec<_>>(), "then every free one");
    // A LAN web seed costs no WAN: it may take what the member claims.
    let lan_seed = s.add_web_seed();
    let lan = s.web_seed_pick_from(lan_seed, PIECE, PeerClass::Lan);
    assert!(lan.iter().all(|&i| i < 30 || i == 59), "{lan:?}");
    assert!(!lan.is_empty());
}

#[test]
fn a_complete_member_keeps_no_site_timer() {
    let mut net = Net::new(8);
    let members: Vec<usize> = (1..=2).map(|n| net.member(n)).collect();
    net.mesh(&members);
    net.connect_to_seed(&members);
    net.run_until_complete(&members, 2_000);
    // Let the last renewals (now empty) go out.
    for _ in 0..(2 * site::RENEW_INTERVAL.as_millis() / STEP.as_millis()) {
        net.step();
    }
    for &m in &members {
        let due = net.nodes[m].swarm.poll_timeout();
        // Ticking at its deadlines (rates decay to nothing meanwhile) moves
        // it well beyond the renewal interval.
        let mut due = due;
        for _ in 0..20 {
            match due {
                Some(t) if t < net.now + Duration::from_secs(30) => {
                    net.now = net.now.max(t);
                    net.nodes[m].swarm.tick(net.now);
                    due = net.nodes[m].swarm.poll_timeout();
                }
                _ => break,
            }
        }
        assert!(
            due.is_none_or(|t| t >= net.now + Duration::from_secs(30)),
            "member {m} wakes at {:?} from now",
            due.map(|t| t.saturating_duration_since(net.now))
        );
    }
}

/// Where the torrent admits channel members only, a LAN peer that speaks
/// `capwise_site` but has not proved membership claims nothing for the
/// site: its claims keep no piece from our WAN sources.
#[test]
fn an_unproven_peer_claims_nothing_for_the_site() {
    use capwise_proto::ext::member::{self, Membership, MembershipKey};
    let t0 = Instant::now();
    let mut s = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        Bitfield::new(PIECES),
        SwarmConfig::default(),
        t0,
    );
    s.enable_site([1; 8]);
    s.require_membership(Membership {
        key: MembershipKey::from_seed([4; 32]),
        info_hash: [9; 20],
        peer_id: [1; 20],
    });
    let lan = PeerOrigin {
        class: PeerClass::Lan,
        outgoing: true,
    };
    let rogue = s.add_peer_with(
        SocketAddr::from(([10, 20, 0, 9], 6881)),
        &Handshake::new([9; 20], [2; 20]),
        lan,
        t0,
    );
    // Names both extensions (so it is not dropped at its handshake), but
    // sends no proof.
    let ext = capwise_proto::wire::extension::our_handshake_with(
        6881,
        250,
        None,
        &[(site::EXTENSION_NAME, site::OUR_ID)],
        Some(&[7; 32]),
    );
    s.on_message(
        rogue,
        Message::Extended {
            id: 0,
            payload: Bytes::from(ext),
        },
        t0,
    )
    .unwrap();
    let _ = s.on_message(rogue, claim_msg([2; 8], (0..PIECES).collect(), true), t0);
    let seed = s.add_peer_with(
        SocketAddr::from(([44, 0, 0, 1], 6881)),
        &Handshake::new([9; 20], [3; 20]),
        PeerOrigin {
            class: PeerClass::Wan,
            outgoing: true,
        },
        t0,
    );
    // The seed (WAN, a channel machine at headquarters) proves membership.
    let mut out = Vec::new();
    s.poll_outgoing(seed, t0, &mut out);
    let our_nonce = out
        .iter()
        .find_map(|o| match o {
            Outgoing::Message(Message::Extended { id: 0, payload }) => {
                member::peer_member(payload).ok().map(|(_, n)| n)
            }
            _ => None,
        })
        .expect("our handshake carries a nonce");
    let seed_ext =
        capwise_proto::wire::extension::our_handshake_with(6881, 250, None, &[], Some(&[8; 32]));
    s.on_message(
        seed,
        Message::Extended {
            id: 0,
            payload: Bytes::from(seed_ext),
        },
        t0,
    )
    .unwrap();
    let seed_membership = Membership {
        key: MembershipKey::from_seed([4; 32]),
        info_hash: [9; 20],
        peer_id: [3; 20],
    };
    s.on_message(
        seed,
        Message::Extended {
            id: member::OUR_ID,
            payload: Bytes::from(member::encode_proof(&member::sign(
                &seed_membership,
                &our_nonce,
            ))),
        },
        t0,
    )
    .unwrap();
    assert!(s.is_proven_member(seed) && !s.is_proven_member(rogue));
    s.on_message(
        seed,
        Message::Bitfield(Bytes::from(Bitfield::full(PIECES).as_bytes().to_vec())),
        t0,
    )
    .unwrap();
    s.on_message(seed, Message::Unchoke, t0).unwrap();
    let t1 = t0 + Duration::from_secs(3);
    s.tick(t1);
    let asked = requested_pieces(&mut s, seed, t1);
    assert!(
        !asked.is_empty(),
        "an unproven peer's claims held the WAN back"
    );
}

/// What member `n` sees: how many others want WAN bytes, and so its share
/// of a site-wide cap.
fn share_seen(net: &Net, n: usize, cap: u64) -> (usize, u64) {
    let wanting = net.nodes[n].swarm.site_wan_wanting().len();
    (wanting, site::wan_share(cap, wanting))
}

#[test]
fn members_that_fetch_over_the_wan_split_the_site_cap_and_the_split_follows_them() {
    const CAP: u64 = 3_000_000;
    let mut net = Net::new(2);
    let members: Vec<usize> = (1..=3).map(|n| net.member(n)).collect();
    net.mesh(&members);
    // Met, but nobody fetches: alone in wanting, each may take the whole cap.
    for &m in &members {
        assert_eq!(net.nodes[m].swarm.site_members(), 2);
        assert_eq!(share_seen(&net, m, CAP), (0, CAP));
        assert!(!net.nodes[m].swarm.site_wants_wan());
    }
    net.connect_to_seed(&members);
    for _ in 0..4 {
        net.step();
    }
    // All three fetch their shares over the WAN: a third of the cap each.
    for &m in &members {
        assert!(net.nodes[m].swarm.site_wants_wan(), "member {m}");
        assert_eq!(share_seen(&net, m, CAP), (2, CAP / 3), "member {m}");
    }
    // One leaves: the two that stay split the cap between them at once.
    net.leave(members[2]);
    for &m in &members[..2] {
        assert_eq!(share_seen(&net, m, CAP), (1, CAP / 2), "member {m}");
    }
    // Done: within a renewal each says it wants no more, and a member that
    // joins now (and fetches) sees the whole cap for itself.
    net.run_until_complete(&members[..2], 4_000);
    let renewal = (site::RENEW_INTERVAL.as_millis() / STEP.as_millis()) as usize + 2;
    for _ in 0..renewal {
        net.step();
    }
    for &m in &members[..2] {
        assert!(!net.nodes[m].swarm.site_wants_wan());
    }
    let late = net.member(4);
    net.connect(late, members[0]);
    net.connect(late, members[1]);
    assert_eq!(share_seen(&net, late, CAP), (0, CAP));
    assert_eq!(share_seen(&net, members[0], CAP), (0, CAP));
}

#[test]
fn an_older_member_that_does_not_say_counts_as_wanting() {
    let t0 = Instant::now();
    let (mut s, member, _) = with_fake_member(t0);
    assert!(
        s.site_wan_wanting().is_empty(),
        "not a member before its message"
    );
    // An older member's message: no `w`.
    s.on_message(member, claim_msg([2; 8], vec![], true), t0)
        .unwrap();
    assert_eq!(s.site_wan_wanting(), vec![member]);
    let says = |w: bool| Message::Extended {
        id: site::OUR_ID,
        payload: Bytes::from(
            SiteMsg {
                member: [2; 8],
                ttl_secs: 30,
                full: true,
                claims: vec![],
                wants_wan: Some(w),
            }
            .encode(),
        ),
    };
    s.on_message(member, says(false), t0).unwrap();
    assert!(s.site_wan_wanting().is_empty());
    s.on_message(member, says(true), t0).unwrap();
    assert_eq!(s.site_wan_wanting(), vec![member]);
    // It leaves: nobody wants, the whole cap is ours again.
    s.remove_peer(member);
    assert!(s.site_wan_wanting().is_empty());
    assert_eq!(site::wan_share(1000, s.site_wan_wanting().len()), 1000);
}

#[test]
fn our_messages_say_whether_we_want_wan_bytes() {
    let t0 = Instant::now();
    let (mut s, member, _) = with_fake_member(t0);
    let sent = |s: &mut Swarm, now: Instant| -> Vec<SiteMsg> {
        let mut out = Vec::new();
        s.poll_outgoing(member, now, &mut out);
        out.into_iter()
            .filter_map(|o| match o {
                Outgoing::Message(Message::Extended { id, payload }) if id == site::OUR_ID => {
                    Some(SiteMsg::decode(&payload, PIECES).unwrap())
                }
                _ => None,
            })
            .collect()
    };
    // The greeting: nothing in flight, no WAN wanted.
    let greeting = sent(&mut s, t0);
    assert_eq!(greeting.last().map(|m| m.wants_wan), Some(Some(false)));
    s.on_message(member, claim_msg([2; 8], vec![], true), t0)
        .unwrap();
    // A WAN seed comes: the pieces picked for it are claimed, with `w` = 1.
    let hs = Handshake::new([9; 20], [3; 20]);
    let wan = s.add_peer_with(
        SocketAddr::from(([44, 0, 0, 1], 6881)),
        &hs,
        PeerOrigin {
            class: PeerClass::Wan,
            outgoing: true,
        },
        t0,
    );
    s.on_message(
        wan,
        Message::Bitfield(Bytes::from(Bitfield::full(PIECES).as_bytes().to_vec())),
        t0,
    )
    .unwrap();
    s.on_message(wan, Message::Unchoke, t0).unwrap();
    assert!(!requested_pieces(&mut s, wan, t0).is_empty());
    assert!(s.site_wants_wan());
    let claims = sent(&mut s, t0);
    assert!(
        claims
            .iter()
            .any(|m| m.wants_wan == Some(true) && !m.claims.is_empty()),
        "{claims:?}"
    );
    // The seed leaves: the next renewal releases everything and says `w` = 0.
    s.remove_peer(wan);
    let t1 = t0 + site::RENEW_INTERVAL + Duration::from_millis(1);
    s.tick(t1);
    let renewal = sent(&mut s, t1);
    assert_eq!(
        renewal.last().map(|m| (m.full, m.wants_wan)),
        Some((true, Some(false)))
    );
    assert!(!s.site_wants_wan());
}

#[test]
fn a_member_whose_wan_window_shuts_releases_its_claims_and_wants_nothing() {
    let t0 = Instant::now();
    // Payload needs credit, as in the engine: a shut window gives none.
    let config = SwarmConfig {
        needs_credit: true,
        ..SwarmConfig::default()
    };
    let mut s = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        Bitfield::new(PIECES),
        config,
        t0,
    );
    s.enable_site([1; 8]);
    let hs = Handshake::new([9; 20], [2; 20]);
    let member = s.add_peer_with(
        SocketAddr::from(([10, 20, 0, 2], 6881)),
        &hs,
        PeerOrigin {
            class: PeerClass::Lan,
            outgoing: true,
        },
        t0,
    );
    let ext = capwise_proto::wire::extension::our_handshake_with(
        6881,
        250,
        None,
        &[(site::EXTENSION_NAME, site::OUR_ID)],
        None,
    );
    s.on_message(
        member,
        Message::Extended {
            id: 0,
            payload: Bytes::from(ext),
        },
        t0,
    )
    .unwrap();
    s.on_message(member, claim_msg([2; 8], vec![], true), t0)
        .unwrap();
    let site_msgs = |s: &mut Swarm, now: Instant| -> Vec<SiteMsg> {
        let mut out = Vec::new();
        s.poll_outgoing(member, now, &mut out);
        out.into_iter()
            .filter_map(|o| match o {
                Outgoing::Message(Message::Extended { id, payload }) if id == site::OUR_ID => {
                    Some(SiteMsg::decode(&payload, PIECES).unwrap())
                }
                _ => None,
            })
            .collect()
    };
    site_msgs(&mut s, t0);
    let wan = s.add_peer_with(
        SocketAddr::from(([44, 0, 0, 1], 6881)),
        &Handshake::new([9; 20], [3; 20]),
        PeerOrigin {
            class: PeerClass::Wan,
            outgoing: true,
        },
        t0,
    );
    let full = Bitfield::full(PIECES);
    s.on_message(
        wan,
        Message::Bitfield(Bytes::from(full.as_bytes().to_vec())),
        t0,
    )
    .unwrap();
    s.on_message(wan, Message::Unchoke, t0).unwrap();
    // Open: blocks are picked for the WAN seed (waiting for credit) and claimed.
    let mut out = Vec::new();
    s.poll_outgoing(wan, t0, &mut out);
    assert!(s.site_wants_wan());
    assert!(site_msgs(&mut s, t0)
        .iter()
        .any(|m| m.wants_wan == Some(true) && !m.claims.is_empty()));
    // The window shuts: the picks go back, the next tick releases every
    // claim and says `w` = 0, and nothing more is picked for the WAN.
    let t1 = t0 + Duration::from_millis(100);
    s.set_wan_held(true, t1);
    s.tick(t1);
    let released = site_msgs(&mut s, t1);
    assert_eq!(
        released
            .last()
            .map(|m| (m.full, m.claims.len(), m.wants_wan)),
        Some((true, 0, Some(false))),
        "{released:?}"
    );
    assert!(!s.site_wants_wan());
    assert_eq!(
        s.credit_wanted(wan).down,
        0,
        "blocks picked for the WAN while shut"
    );
    // Open again: picked and claimed again.
    s.set_wan_held(false, t1);
    s.tick(t1);
    let mut out = Vec::new();
    s.poll_outgoing(wan, t1, &mut out);
    assert!(s.credit_wanted(wan).down > 0);
    assert!(site_msgs(&mut s, t1)
        .iter()
        .any(|m| m.wants_wan == Some(true) && !m.claims.is_empty()));
}

/// A coordinating torrent with no member yet waits [`site::MEET_TIME`]
/// before it asks the WAN (a branch's machines start at once and meet over
/// LSD meanwhile), then goes on alone; a WAN web seed is asked for one
/// piece at a time however much the fetcher offers to take.
#[test]
fn alone_it_waits_for_the_site_to_meet_then_fetches_piece_by_piece() {
    let t0 = Instant::now();
    let mut s = Swarm::new(
        PIECE,
        PIECE * PIECES as u64,
        Bitfield::new(PIECES),
        SwarmConfig::default(),
        t0,
    );
    s.enable_site([1; 8]);
    let seed = wan_seed(&mut s, t0);
    let web = s.add_web_seed();
    assert!(
        requested_pieces(&mut s, seed, t0).is_empty(),
        "the WAN peer waits"
    );
    assert!(
        s.web_seed_pick_from(web, 64 * PIECE, PeerClass::Wan)
            .is_empty(),
        "the WAN web seed waits"
    );
    assert!(s.poll_timeout().is_some_and(|t| t <= t0 + site::MEET_TIME));
    let met = t0 + site::MEET_TIME;
    s.tick(met);
    assert!(
        !requested_pieces(&mut s, seed, met).is_empty(),
        "then alone"
    );
    assert_eq!(
        s.web_seed_pick_from(web, 64 * PIECE, PeerClass::Wan).len(),
        1,
        "one piece per web seed request"
    );
}

/// Both machines dialled each other: the second connection replaces the
/// first. The member, its claims and the split go on over the new
/// connection; nothing it was fetching is freed for our WAN sources when
/// the old connection closes.
#[test]
fn a_member_whose_connection_is_replaced_keeps_its_claims() {
    let t0 = Instant::now();
    let (mut s, member, _) = with_fake_member(t0);
    s.on_message(member, claim_msg([2; 8], (0..PIECES).collect(), true), t0)
        .unwrap();
    // The same machine (same member id) over its second connection.
    let second = s.add_peer_with(
        SocketAddr::from(([10, 20, 0, 2], 40001)),
        &Handshake::new([9; 20], [2; 20]),
        PeerOrigin {
            class: PeerClass::Lan,
            outgoing: false,
        },
        t0,
    );
    names_site(&mut s, second, t0);
    s.on_message(second, claim_msg([2; 8], (0..PIECES).collect(), true), t0)
        .unwrap();
    s.remove_peer(member);
    assert_eq!(s.site_members(), 1, "the member stays");
    let seed = wan_seed(&mut s, t0);
    let later = t0 + Duration::from_millis(100);
    s.tick(later);
    assert!(
        requested_pieces(&mut s, seed, later).is_empty(),
        "its claims still keep the WAN away"
    );
}
