//! The `Dht` machine: one DHT node, driven by its caller.
//!
//! In: [`Dht::handle_packet`], [`Dht::handle_timeout`], [`Dht::get_peers`],
//! [`Dht::announce`], [`Dht::set_read_only`], [`Dht::set_silent`], each with
//! `now`. Out: [`Dht::poll_transmit`] (datagrams to send, after the caller
//! debits them), [`Dht::poll_event`] and [`Dht::poll_timeout`] (when to call
//! `handle_timeout` next; with no lookup running this is only the next bucket
//! refresh, 15 minutes away, so an idle node does not wake its caller).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use capwise_proto::bencode::{self, Owned};
use capwise_proto::metainfo::InfoHash;

use crate::id::NodeId;
use crate::krpc::{self, Body, Message, Query, Response};
use crate::limit::RateLimit;
use crate::lookup::{Lookup, LookupKind};
use crate::routing::{Heard, RoutingTable};
use crate::store::PeerStore;
use crate::tokens::Tokens;
use crate::DhtError;

/// Bounds and timings; [`Limits::default`] follows what libtorrent uses.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bucket size and lookup width (BEP 5: 8).
    pub k: usize,
    /// Queries in flight per lookup.
    pub alpha: usize,
    /// Time a query may wait for its answer.
    pub query_timeout: Duration,
    /// Queries in flight over all lookups.
    pub max_transactions: usize,
    /// Lookups running at once ([`Dht::get_peers`] refuses more).
    pub max_lookups: usize,
    /// Incoming queries answered per second per source IP, after the burst.
    pub queries_per_second: u32,
    /// Incoming queries answered at once per source IP.
    pub query_burst: u32,
    /// Source IPs the rate limiter tracks.
    pub max_sources: usize,
    /// Peers stored per info-hash.
    pub max_peers_per_hash: usize,
    /// Info-hashes stored.
    pub max_hashes: usize,
    /// How long an announced peer is kept.
    pub peer_ttl: Duration,
    /// Peers put in one `get_peers` answer.
    pub max_values_sent: usize,
    /// Events queued before new ones are dropped.
    pub max_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            k: 8,
            alpha: 3,
            query_timeout: Duration::from_secs(3),
            max_transactions: 256,
            max_lookups: 32,
            queries_per_second: 5,
            query_burst: 10,
            max_sources: 4096,
            max_peers_per_hash: 100,
            max_hashes: 2000,
            peer_ttl: Duration::from_secs(30 * 60),
            max_values_sent: 50,
            max_events: 1024,
        }
    }
}

/// How to start a node.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Our id; None picks a random one.
    pub node_id: Option<NodeId>,
    /// Nodes to join through (the I/O layer resolves names).
    pub bootstrap: Vec<SocketAddr>,
    /// BEP 43: query with `ro: 1` and answer nothing (metered networks).
    pub read_only: bool,
    /// Bounds and timings.
    pub limits: Limits,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The KRPC message.
    pub bytes: Vec<u8>,
}

/// Names a lookup started by [`Dht::get_peers`] or [`Dht::announce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What the node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Peers of `info_hash` not reported before by this lookup.
    Peers {
        /// The lookup.
        lookup: LookupId,
        /// The torrent.
        info_hash: InfoHash,
        /// The peers.
        peers: Vec<SocketAddr>,
    },
    /// A lookup ended.
    LookupDone {
        /// The lookup.
        lookup: LookupId,
        /// The torrent.
        info_hash: InfoHash,
        /// Distinct peers it found.
        peers: usize,
        /// Nodes it sent `announce_peer` to (0 for a plain `get_peers`).
        announced: usize,
    },
    /// The bootstrap (a `find_node` for our own id) ended.
    Bootstrapped {
        /// Nodes in the routing table afterwards.
        nodes: usize,
    },
}

/// Counters of what happened to incoming packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets that did not decode (or came from an IPv6 address).
    pub malformed: u64,
    /// Queries dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Queries answered.
    pub answered: u64,
    /// Queries ignored because we are read-only.
    pub ignored_read_only: u64,
    /// Responses and errors matching no transaction of ours (or from elsewhere).
    pub unsolicited: u64,
    /// Queries of ours that timed out.
    pub timeouts: u64,
    /// `announce_peer` queries refused for a bad or expired token.
    pub bad_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Lookup(LookupId),
    Announce,
}

#[derive(Debug, Clone)]
struct Transaction {
    to: SocketAddrV4,
    id: Option<NodeId>,
    deadline: Instant,
    purpose: Purpose,
}

#[derive(Debug, Clone)]
struct Running {
    lookup: Lookup,
    /// Reported to the caller (get_peers / announce), or internal.
    public: bool,
    bootstrap: bool,
}

/// First wait before bootstrapping again when the table stayed empty.
const BOOTSTRAP_RETRY_MIN: Duration = Duration::from_secs(30);
/// Longest wait between bootstrap attempts.
const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(15 * 60);

/// One DHT node.
#[derive(Debug)]
pub struct Dht {
    id: NodeId,
    bootstrap: Vec<SocketAddrV4>,
    read_only: bool,
    silent: bool,
    limits: Limits,
    table: RoutingTable,
    transactions: HashMap<u16, Transaction>,
    next_tid: u16,
    lookups: BTreeMap<LookupId, Running>,
    next_lookup: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    tokens: Tokens,
    store: PeerStore,
    limiter: RateLimit,
    bootstrap_at: Option<Instant>,
    bootstrap_backoff: Duration,
    stats: Stats,
}

impl Dht {
    /// A node; it starts bootstrapping at once (see [`Dht::poll_transmit`]).
    pub fn new(config: Config, now: Instant) -> Dht {
        let mut dht = Dht::empty(config, now);
        dht.start_bootstrap(now);
        dht
    }

    fn empty(config: Config, now: Instant) -> Dht {
        let id = config.node_id.unwrap_or_else(NodeId::random);
        let l = config.limits;
        Dht {
            id,
            bootstrap: config
                .bootstrap
                .into_iter()
                .filter_map(krpc::as_v4)
                .collect(),
            read_only: config.read_only,
            silent: false,
            table: RoutingTable::new(id, l.k, now),
            transactions: HashMap::new(),
            next_tid: rand::random(),
            lookups: BTreeMap::new(),
            next_lookup: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            tokens: Tokens::new(now),
            store: PeerStore::new(l.max_peers_per_hash, l.max_hashes, l.peer_ttl),
            limiter: RateLimit::new(l.queries_per_second, l.query_burst, l.max_sources),
            bootstrap_at: None,
            bootstrap_backoff: BOOTSTRAP_RETRY_MIN,
            stats: Stats::default(),
            limits: l,
        }
    }

    /// A node with the id and routing table [`Dht::save`] wrote (the
    /// config's `node_id` is ignored); it re-checks them with a bootstrap.
    pub fn restore(bytes: &[u8], config: Config, now: Instant) -> Result<Dht, DhtError> {
        let value = bencode::decode(bytes)?;
        let dict = value.as_dict().ok_or(DhtError::Malformed("saved state"))?;
        let id: [u8; 20] = dict
            .get(b"id")
            .and_then(|v| v.as_bytes())
            .and_then(|b| b.try_into().ok())
            .ok_or(DhtError::Malformed("id"))?;
        let nodes = dict
            .get(b"nodes")
            .and_then(|v| v.as_bytes())
            .ok_or(DhtError::Malformed("nodes"))?;
        let mut dht = Dht::empty(
            Config {
                node_id: Some(NodeId(id)),
                ..config
            },
            now,
        );
        for (nid, addr) in krpc::decode_nodes(nodes, 160 * dht.limits.k) {
            dht.table.heard(nid, addr, Heard::Restored, now);
        }
        dht.start_bootstrap(now);
        Ok(dht)
    }

    /// Our id and routing table, for [`Dht::restore`].
    pub fn save(&self) -> Vec<u8> {
        let nodes: Vec<(NodeId, SocketAddrV4)> =
            self.table.entries().map(|e| (e.id, e.addr)).collect();
        Owned::dict()
            .with("id", self.id.0)
            .with("nodes", krpc::encode_nodes(&nodes))
            .build()
            .to_bytes()
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The routing table.
    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// Counters of incoming packets.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Info-hashes and peers held for others.
    pub fn stored(&self) -> (usize, usize) {
        (self.store.hashes(), self.store.peers())
    }

    /// Queries of ours awaiting an answer.
    pub fn in_flight(&self) -> usize {
        self.transactions.len()
    }

    /// Whether we are read-only (BEP 43).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// BEP 43 on or off: read-only queries carry `ro: 1` and we answer nothing.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// Silent (the WAN switch is off): no packet is sent or taken in, queued
    /// packets are dropped, queries in flight are forgotten without blaming
    /// their nodes, and no timer is asked for. Lookups wait and go on when the
    /// node speaks again.
    pub fn set_silent(&mut self, silent: bool, now: Instant) {
        if silent == self.silent {
            return;
        }
        self.silent = silent;
        if silent {
            self.transmits.clear();
            self.transactions.clear();
            for r in self.lookups.values_mut() {
                r.lookup.unsend_all();
            }
        } else {
            let ids: Vec<LookupId> = self.lookups.keys().copied().collect();
            for id in ids {
                self.step(id, now);
            }
            if self.table.is_empty() && !self.lookups.values().any(|r| r.bootstrap) {
                self.start_bootstrap(now);
            }
        }
    }

    /// More nodes to join through (bootstrap names the caller resolved
    /// late). With an empty routing table and no bootstrap running, a
    /// bootstrap starts at once.
    pub fn add_bootstrap(&mut self, nodes: &[SocketAddr], now: Instant) {
        for addr in nodes.iter().copied().filter_map(krpc::as_v4) {
            if !self.bootstrap.contains(&addr) {
                self.bootstrap.push(addr);
            }
        }
        let bootstrapping = self.lookups.values().any(|r| r.bootstrap);
        if self.table.is_empty() && !bootstrapping && !self.silent {
            self.start_bootstrap(now);
        }
    }

    /// Starts a `get_peers` lookup; peers come as [`Event::Peers`], the end as
    /// [`Event::LookupDone`]. A lookup already running for the same torrent
    /// and purpose is returned instead of a new one.
    pub fn get_peers(&mut self, info_hash: InfoHash, now: Instant) -> Result<LookupId, DhtError> {
        self.start_public(info_hash, LookupKind::GetPeers, now)
    }

    /// Like [`Dht::get_peers`], then announces us on `port` (None: the
    /// source port of our packets, `implied_port`) to the closest nodes that
    /// gave a token. Announces last 30 minutes: call again within that.
    pub fn announce(
        &mut self,
        info_hash: InfoHash,
        port: Option<u16>,
        now: Instant,
    ) -> Result<LookupId, DhtError> {
        self.start_public(info_hash, LookupKind::Announce { port }, now)
    }

    fn start_public(
        &mut self,
        info_hash: InfoHash,
        kind: LookupKind,
        now: Instant,
    ) -> Result<LookupId, DhtError> {
        let target = NodeId(info_hash.0);
        if let Some((id, _)) = self
            .lookups
            .iter()
            .find(|(_, r)| r.public && r.lookup.target == target && r.lookup.kind == kind)
        {
            return Ok(*id);
        }
        if self.lookups.len() >= self.limits.max_lookups {
            return Err(DhtError::TooManyLookups(self.limits.max_lookups));
        }
        if self.table.is_empty() && self.bootstrap.is_empty() {
            return Err(DhtError::NoNodes);
        }
        let id = self.start_lookup(target, kind, true, false, now);
        // We may be one of the nodes others announce this torrent to.
        let local = self.store.get(&info_hash.0, usize::MAX, now);
        if let Some(running) = self.lookups.get_mut(&id) {
            let peers = running.lookup.new_peers(&local);
            if !peers.is_empty() {
                let peers = peers.into_iter().map(SocketAddr::V4).collect();
                self.event(Event::Peers {
                    lookup: id,
                    info_hash,
                    peers,
                });
            }
        }
        Ok(id)
    }

    fn seeds(&self, target: &NodeId) -> Vec<(Option<NodeId>, SocketAddrV4)> {
        let k = self.limits.k;
        let mut seeds: Vec<_> = self
            .table
            .closest(target, k)
            .into_iter()
            .map(|e| (Some(e.id), e.addr))
            .collect();
        if seeds.len() < k {
            seeds.extend(self.bootstrap.iter().map(|a| (None, *a)));
        }
        seeds
    }

    fn start_lookup(
        &mut self,
        target: NodeId,
        kind: LookupKind,
        public: bool,
        bootstrap: bool,
        now: Instant,
    ) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        let lookup = Lookup::new(
            target,
            kind,
            self.seeds(&target),
            self.limits.k,
            self.limits.alpha,
        );
        self.lookups.insert(
            id,
            Running {
                lookup,
                public,
                bootstrap,
            },
        );
        self.step(id, now);
        id
    }

    fn start_bootstrap(&mut self, now: Instant) {
        self.bootstrap_at = None;
        if self.table.is_empty() && self.bootstrap.is_empty() {
            return;
        }
        if self.lookups.len() >= self.limits.max_lookups {
            self.bootstrap_at = Some(now + BOOTSTRAP_RETRY_MIN);
            return;
        }
        self.start_lookup(self.id, LookupKind::FindNode, false, true, now);
    }

    /// Sends what lookup `id` may send now; finishes it when it is done.
    fn step(&mut self, id: LookupId, now: Instant) {
        if self.silent {
            return;
        }
        loop {
            let Some(running) = self.lookups.get_mut(&id) else {
                return;
            };
            if self.transactions.len() >= self.limits.max_transactions {
                // Full: this lookup goes on when another query ends.
                return;
            }
            let Some((node, addr)) = running.lookup.next_query() else {
                break;
            };
            let query = match running.lookup.kind {
                LookupKind::FindNode => Query::FindNode {
                    target: running.lookup.target,
                },
                LookupKind::GetPeers | LookupKind::Announce { .. } => Query::GetPeers {
                    info_hash: running.lookup.target.0,
                },
            };
            self.send_query(addr, node, query, Purpose::Lookup(id), now);
        }
        if self.lookups.get(&id).is_some_and(|r| r.lookup.is_done()) {
            self.finish(id, now);
        }
    }

    fn finish(&mut self, id: LookupId, now: Instant) {
        let Some(running) = self.lookups.remove(&id) else {
            return;
        };
        let lookup = running.lookup;
        let mut announced = 0;
        if let LookupKind::Announce { port } = lookup.kind {
            for (node, addr, token) in lookup.announce_targets() {
                if self.transactions.len() >= self.limits.max_transactions {
                    break;
                }
                let query = Query::AnnouncePeer {
                    info_hash: lookup.target.0,
                    port: port.unwrap_or(0),
                    implied_port: port.is_none(),
                    token,
                };
                self.send_query(addr, Some(node), query, Purpose::Announce, now);
                announced += 1;
            }
        }
        if running.public {
            self.event(Event::LookupDone {
                lookup: id,
                info_hash: InfoHash(lookup.target.0),
                peers: lookup.peers_found,
                announced,
            });
        }
        if running.bootstrap {
            self.event(Event::Bootstrapped {
                nodes: self.table.len(),
            });
            if self.table.is_empty() {
                self.bootstrap_at = Some(now + self.bootstrap_backoff);
                self.bootstrap_backoff = (self.bootstrap_backoff * 2).min(BOOTSTRAP_RETRY_MAX);
            } else {
                self.bootstrap_backoff = BOOTSTRAP_RETRY_MIN;
            }
        }
    }

    fn event(&mut self, event: Event) {
        if self.events.len() < self.limits.max_events {
            self.events.push_back(event);
        }
    }

    fn send_query(
        &mut self,
        to: SocketAddrV4,
        node: Option<NodeId>,
        query: Query,
        purpose: Purpose,
        now: Instant,
    ) {
        let mut tid = self.next_tid;
        while self.transactions.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        self.transactions.insert(
            tid,
            Transaction {
                to,
                id: node,
                deadline: now + self.limits.query_timeout,
                purpose,
            },
        );
        let msg = Message {
            tid: tid.to_be_bytes().to_vec(),
            read_only: self.read_only,
            body: Body::Query { id: self.id, query },
        };
        self.transmits.push_back(Transmit {
            to: SocketAddr::V4(to),
            bytes: msg.encode(),
        });
    }

    fn reply(&mut self, to: SocketAddrV4, tid: Vec<u8>, body: Body) {
        // Answers are bounded by the rate limit; this bounds them further
        // should the caller not drain the queue.
        if self.transmits.len() >= self.limits.max_transactions * 2 {
            return;
        }
        let msg = Message {
            tid,
            read_only: false,
            body,
        };
        self.transmits.push_back(Transmit {
            to: SocketAddr::V4(to),
            bytes: msg.encode(),
        });
    }

    /// Takes in one datagram from `from`. Anything malformed is dropped
    /// without an answer; IPv6 sources are not supported yet and dropped.
    pub fn handle_packet(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        if self.silent {
            return;
        }
        let Some(from) = krpc::as_v4(from) else {
            self.stats.malformed += 1;
            return;
        };
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match msg.body {
            Body::Query { id, query } => {
                self.on_query(from, msg.tid, msg.read_only, id, query, now)
            }
            Body::Response(r) => self.on_response(from, &msg.tid, Some(r), now),
            Body::Error { .. } => self.on_response(from, &msg.tid, None, now),
        }
    }

    fn on_query(
        &mut self,
        from: SocketAddrV4,
        tid: Vec<u8>,
        sender_read_only: bool,
        id: NodeId,
        query: Query,
        now: Instant,
    ) {
        if self.read_only {
            self.stats.ignored_read_only += 1;
            return;
        }
        if !self.limiter.allow((*from.ip()).into(), now) {
            self.stats.rate_limited += 1;
            return;
        }
        if !sender_read_only && id != self.id {
            self.table.heard(id, from, Heard::Queried, now);
        }
        self.stats.answered += 1;
        let closest =
            |table: &RoutingTable, target: &NodeId, k: usize| -> Vec<(NodeId, SocketAddrV4)> {
                table
                    .closest(target, k)
                    .into_iter()
                    .filter(|e| e.addr != from)
                    .map(|e| (e.id, e.addr))
                    .collect()
            };
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        match query {
            Query::Ping => {}
            Query::FindNode { target } => r.nodes = closest(&self.table, &target, self.limits.k),
            Query::GetPeers { info_hash } => {
                r.nodes = closest(&self.table, &NodeId(info_hash), self.limits.k);
                r.values = self.store.get(&info_hash, self.limits.max_values_sent, now);
                r.token = Some(self.tokens.issue((*from.ip()).into(), now).to_vec());
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.check((*from.ip()).into(), &token, now) {
                    self.stats.bad_tokens += 1;
                    let body = Body::Error {
                        code: krpc::ERROR_PROTOCOL,
                        message: "bad token".into(),
                    };
                    return self.reply(from, tid, body);
                }
                let port = if implied_port { from.port() } else { port };
                if port != 0 {
                    self.store
                        .add(info_hash, SocketAddrV4::new(*from.ip(), port), now);
                }
            }
            Query::Unknown { .. } => {
                let body = Body::Error {
                    code: krpc::ERROR_METHOD_UNKNOWN,
                    message: "method unknown".into(),
                };
                return self.reply(from, tid, body);
            }
        }
        self.reply(from, tid, Body::Response(r));
    }

    fn on_response(&mut self, from: SocketAddrV4, tid: &[u8], r: Option<Response>, now: Instant) {
        let Some(tid) = <[u8; 2]>::try_from(tid).ok().map(u16::from_be_bytes) else {
            self.stats.unsolicited += 1;
            return;
        };
        // Only the address we asked may answer: a spoofed answer from
        // elsewhere leaves the transaction open.
        if !matches!(self.transactions.get(&tid), Some(t) if t.to == from) {
            self.stats.unsolicited += 1;
            return;
        }
        let Some(txn) = self.transactions.remove(&tid) else {
            return;
        };
        let lookup_id = match txn.purpose {
            Purpose::Lookup(id) => Some(id),
            Purpose::Announce => None,
        };
        match r {
            Some(r) if r.id != self.id => {
                if let Some(expected) = txn.id.filter(|e| *e != r.id) {
                    // It answered under another id: forget the one we had.
                    self.table.remove(&expected);
                }
                self.table.heard(r.id, from, Heard::Responded, now);
                if let Some(lid) = lookup_id {
                    let mut found = Vec::new();
                    if let Some(running) = self.lookups.get_mut(&lid) {
                        running
                            .lookup
                            .responded(from, r.id, &r.nodes, r.token, &self.id);
                        if running.public {
                            found = running.lookup.new_peers(&r.values);
                        }
                        let info_hash = InfoHash(running.lookup.target.0);
                        if !found.is_empty() {
                            let peers = found.into_iter().map(SocketAddr::V4).collect();
                            self.event(Event::Peers {
                                lookup: lid,
                                info_hash,
                                peers,
                            });
                        }
                    }
                }
            }
            // An error, or an answer carrying our own id: it does not count.
            _ => {
                if let Some(lid) = lookup_id {
                    if let Some(running) = self.lookups.get_mut(&lid) {
                        running.lookup.failed(from);
                    }
                }
            }
        }
        self.step_all(lookup_id, now);
    }

    /// Steps `first`, then every other lookup (a transaction slot came free).
    fn step_all(&mut self, first: Option<LookupId>, now: Instant) {
        if let Some(id) = first {
            self.step(id, now);
        }
        if self.transactions.len() < self.limits.max_transactions {
            let ids: Vec<LookupId> = self
                .lookups
                .keys()
                .copied()
                .filter(|id| Some(*id) != first)
                .collect();
            for id in ids {
                self.step(id, now);
            }
        }
    }

    /// Handles what is due at `now`: query time-outs, a bucket refresh, a
    /// bootstrap retry.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.silent {
            return;
        }
        let expired: Vec<u16> = self
            .transactions
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(tid, _)| *tid)
            .collect();
        let mut touched = Vec::new();
        for tid in expired {
            let Some(txn) = self.transactions.remove(&tid) else {
                continue;
            };
            self.stats.timeouts += 1;
            if let Some(id) = txn.id {
                self.table.failed(&id);
            }
            if let Purpose::Lookup(lid) = txn.purpose {
                if let Some(running) = self.lookups.get_mut(&lid) {
                    running.lookup.failed(txn.to);
                    touched.push(lid);
                }
            }
        }
        if !touched.is_empty() {
            self.step_all(None, now);
        }
        if self.bootstrap_at.is_some_and(|at| at <= now) {
            self.start_bootstrap(now);
        }
        if !self.refreshing() {
            if let Some(index) = self.table.stale_bucket(now) {
                self.table.touch(index, now);
                let target = self.id.random_with_prefix(index);
                self.start_lookup(target, LookupKind::FindNode, false, false, now);
            }
        }
    }

    fn refreshing(&self) -> bool {
        self.lookups.values().any(|r| !r.public)
    }

    /// When [`Dht::handle_timeout`] is next due; None while silent.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.silent {
            return None;
        }
        let txn = self.transactions.values().map(|t| t.deadline).min();
        let refresh = if self.refreshing() {
            None
        } else {
            self.table.next_refresh()
        };
        [txn, refresh, self.bootstrap_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next datagram to send; the caller debits and counts it first.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
