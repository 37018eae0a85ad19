//! The demultiplexer: the uTP connections of one UDP socket.
//!
//! Datagrams come in with their source address; the endpoint routes each to
//! the connection keyed by (address, receive id), creates a connection for a
//! new SYN (bounded in number, half-open ones bounded apart) and answers a
//! packet for no connection with a RESET (never larger than what it
//! answers, and only so many queued). Randomness (connection ids, initial
//! sequence numbers) comes from a seeded generator, so runs are repeatable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::connection::{Config, Connection};
use crate::packet::{self, Header, Packet, PacketType};

/// An endpoint's bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// Each connection's tunables.
    pub connection: Config,
    /// Connections at most, of both directions.
    pub max_connections: usize,
    /// Accepted connections still waiting for the initiator's confirmation.
    pub max_half_open: usize,
    /// RESETs queued at most (more are not sent).
    pub max_queued_resets: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            connection: Config::default(),
            max_connections: 512,
            max_half_open: 64,
            max_queued_resets: 64,
        }
    }
}

/// Names a connection of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub u64);

/// Why the endpoint refused something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// `max_connections` are open.
    #[error("too many uTP connections (the limit is {0}); close some first")]
    TooManyConnections(usize),
    /// No free connection id for that address (65536 in use).
    #[error("no free uTP connection id towards {0}")]
    NoConnectionId(SocketAddr),
}

/// What became of one incoming datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Given to an existing connection.
    Connection(ConnectionHandle),
    /// A new connection from a SYN; also in [`Endpoint::accept`].
    Incoming(ConnectionHandle),
    /// Dropped: undecodable, over a bound, or for no connection.
    Dropped,
}

/// Counters of the endpoint itself (what no connection counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams that reached no connection.
    pub dropped: u64,
    /// Bytes of those.
    pub dropped_bytes: u64,
    /// SYNs refused for a bound.
    pub refused_syns: u64,
    /// RESETs sent for packets of no connection.
    pub resets_sent: u64,
    /// Bytes of those.
    pub reset_bytes: u64,
}

struct Entry {
    addr: SocketAddr,
    conn: Connection,
}

/// The uTP connections over one socket.
pub struct Endpoint {
    config: EndpointConfig,
    rng: StdRng,
    next_handle: u64,
    conns: BTreeMap<ConnectionHandle, Entry>,
    by_key: HashMap<(SocketAddr, u16), ConnectionHandle>,
    incoming: VecDeque<ConnectionHandle>,
    resets: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Where the last `poll_transmit` stopped, so every connection gets a turn.
    cursor: Option<ConnectionHandle>,
    stats: EndpointStats,
}

impl Endpoint {
    /// An endpoint whose random choices come from `seed`.
    pub fn new(config: EndpointConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            next_handle: 0,
            conns: BTreeMap::new(),
            by_key: HashMap::new(),
            incoming: VecDeque::new(),
            resets: VecDeque::new(),
            cursor: None,
            stats: EndpointStats::default(),
        }
    }

    /// The endpoint's own counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Connections open (closed ones count until [`remove`](Self::remove)d).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// No connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn insert(&mut self, addr: SocketAddr, conn: Connection) -> ConnectionHandle {
        let h = ConnectionHandle(self.next_handle);
        self.next_handle += 1;
        self.by_key.insert((addr, conn.recv_id()), h);
        self.conns.insert(h, Entry { addr, conn });
        h
    }

    /// Opens a connection to `addr`; its SYN leaves with the next
    /// `poll_transmit`.
    pub fn connect(
        &mut self,
        now: Instant,
        addr: SocketAddr,
    ) -> Result<ConnectionHandle, EndpointError> {
        if self.conns.len() >= self.config.max_connections {
            return Err(EndpointError::TooManyConnections(
                self.config.max_connections,
            ));
        }
        // The acceptor will receive on id + 1, so both must be free here
        // too (a connection from that address may be keyed by either).
        let mut id = self.rng.gen::<u16>();
        for _ in 0..=u16::MAX {
            if !self.by_key.contains_key(&(addr, id))
                && !self.by_key.contains_key(&(addr, id.wrapping_add(1)))
            {
                let conn = Connection::connect(self.config.connection.clone(), now, id);
                return Ok(self.insert(addr, conn));
            }
            id = id.wrapping_add(1);
        }
        Err(EndpointError::NoConnectionId(addr))
    }

    /// Routes one datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Routed {
        let Ok(p) = Packet::decode(datagram) else {
            return self.drop_datagram(datagram);
        };
        let h = p.header;
        let key_id = match h.packet_type {
            PacketType::Syn => h.connection_id.wrapping_add(1),
            _ => h.connection_id,
        };
        let mut handle = self.by_key.get(&(from, key_id)).copied();
        if handle.is_none() && h.packet_type == PacketType::Reset {
            // A RESET may carry the id we send with: one off either way.
            handle = [
                h.connection_id.wrapping_sub(1),
                h.connection_id.wrapping_add(1),
            ]
            .into_iter()
            .find_map(|id| self.by_key.get(&(from, id)).copied());
        }
        if let Some(handle) = handle {
            if let Some(e) = self.conns.get_mut(&handle) {
                return match e.conn.handle_datagram(now, datagram) {
                    Ok(()) => Routed::Connection(handle),
                    Err(_) => Routed::Dropped,
                };
            }
        }
        match h.packet_type {
            PacketType::Syn => self.accept_syn(now, from, datagram),
            PacketType::Reset => self.drop_datagram(datagram),
            _ => {
                self.queue_reset(from, &h);
                self.drop_datagram(datagram)
            }
        }
    }

    fn drop_datagram(&mut self, datagram: &[u8]) -> Routed {
        self.stats.dropped += 1;
        self.stats.dropped_bytes += datagram.len() as u64;
        Routed::Dropped
    }

    fn accept_syn(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Routed {
        let half_open = self
            .conns
            .values()
            .filter(|e| !e.conn.is_established() && !e.conn.is_closed())
            .count();
        if self.conns.len() >= self.config.max_connections || half_open >= self.config.max_half_open
        {
            self.stats.refused_syns += 1;
            return self.drop_datagram(datagram);
        }
        let seq = self.rng.gen::<u16>();
        match Connection::accept(self.config.connection.clone(), now, datagram, seq) {
            Ok(conn) => {
                let h = self.insert(from, conn);
                self.incoming.push_back(h);
                Routed::Incoming(h)
            }
            Err(_) => self.drop_datagram(datagram),
        }
    }

    fn queue_reset(&mut self, to: SocketAddr, h: &Header) {
        if self.resets.len() >= self.config.max_queued_resets {
            return;
        }
        let reset = Header {
            packet_type: PacketType::Reset,
            connection_id: h.connection_id,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr: self.rng.gen(),
            ack_nr: h.seq_nr,
        };
        let mut out = Vec::with_capacity(packet::HEADER_LEN);
        packet::encode_into(&reset, None, &[], &mut out);
        self.resets.push_back((to, out));
    }

    /// The next connection made from a SYN, not yet taken.
    pub fn accept(&mut self) -> Option<ConnectionHandle> {
        self.incoming.pop_front()
    }

    /// A connection, to read, write and poll events of.
    pub fn connection(&mut self, handle: ConnectionHandle) -> Option<&mut Connection> {
        self.conns.get_mut(&handle).map(|e| &mut e.conn)
    }

    /// The peer's address of a connection.
    pub fn remote(&self, handle: ConnectionHandle) -> Option<SocketAddr> {
        self.conns.get(&handle).map(|e| e.addr)
    }

    /// Forgets a connection (closed or not: an open one just goes silent;
    /// call `abort` first to tell the peer).
    pub fn remove(&mut self, handle: ConnectionHandle) -> Option<Connection> {
        let e = self.conns.remove(&handle)?;
        self.by_key.remove(&(e.addr, e.conn.recv_id()));
        self.incoming.retain(|&h| h != handle);
        Some(e.conn)
    }

    /// The handles of every connection.
    pub fn handles(&self) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.conns.keys().copied()
    }

    /// The next datagram to send and where, taking the connections in turn.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if let Some((to, bytes)) = self.resets.pop_front() {
            self.stats.resets_sent += 1;
            self.stats.reset_bytes += bytes.len() as u64;
            return Some((to, bytes));
        }
        let start = self
            .cursor
            .map_or(ConnectionHandle(0), |h| ConnectionHandle(h.0 + 1));
        let order: Vec<ConnectionHandle> = self
            .conns
            .range(start..)
            .chain(self.conns.range(..start))
            .map(|(&h, _)| h)
            .collect();
        for h in order {
            let e = self.conns.get_mut(&h).expect("listed");
            if let Some(bytes) = e.conn.poll_transmit(now) {
                self.cursor = Some(h);
                return Some((e.addr, bytes));
            }
        }
        None
    }

    /// The earliest timer of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|e| e.conn.poll_timeout())
            .min()
    }

    /// Runs every connection's due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for e in self.conns.values_mut() {
            if e.conn.poll_timeout().is_some_and(|t| t <= now) {
                e.conn.handle_timeout(now);
            }
        }
    }
}
