//! The uTP driver: one tokio task that owns a [`capwise_utp::Endpoint`] for
//! the shared UDP socket (`udp.rs`), the only place uTP meets I/O.
//!
//! Datagrams come from the demux's bounded queue, go into the endpoint, and
//! whatever the endpoint has to send leaves through the shared socket; its
//! timers come from `poll_timeout`. The endpoint sits behind one mutex that
//! the transport halves (`utp.rs`) lock too: a read takes bytes straight
//! from the connection's receive buffer, a write puts them straight into its
//! send buffer, as quinn's streams do with their connection. Those buffers
//! are the bounded queues: a full send buffer makes the write half wait (a
//! waker the driver wakes on `Writable`), a full receive buffer shrinks the
//! window we advertise, so a slow reader slows the peer rather than growing
//! memory.
//!
//! Counting: every byte of every uTP datagram of a connection is in its
//! transport's [`WireBytes`]. Payload is added where the halves hand it
//! over (as TCP counts what the kernel took), and the rest (headers, ACKs,
//! SYN, FIN, retransmits, duplicates) is added by the driver as it happens,
//! so the peer code's "wire minus payload" is uTP's overhead. Datagrams that
//! reach no connection, RESETs for them, and connections never handed out
//! are counted here as overhead in the session's counters. `udp.rs` does
//! not count uTP datagrams.
//!
//! A connection becomes a transport only once its SYN exchange is complete
//! (`Event::Connected`): nothing is read or written before, and an accepted
//! connection sends only its STATE until the initiator confirms
//! (the crate's reflection invariant).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use capwise_utp::{CloseReason, ConnectionHandle, Endpoint, EndpointConfig, Event, Routed};
use quinn_udp::{Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};

use super::{Transport, WireBytes};
use crate::hooks::{Classifier, Counters, Direction, PeerClass, Switch};
use crate::udp::Datagram;

/// Accepted connections waiting for the session before new ones are
/// refused.
pub const ACCEPT_QUEUE: usize = 64;
/// Datagrams taken from the queue, or sent, per turn of the driver: the
/// two alternate, and the halves get the lock in between.
const BATCH: usize = 256;
/// How long a connection both halves let go of may take to finish its FIN
/// exchange before it is reset.
const RELEASE_GRACE: Duration = Duration::from_secs(10);
/// Bytes of one GSO send at most: the segments of one UDP datagram, which
/// IPv4's 16-bit total length bounds.
const GSO_BYTES: usize = 65_000;

/// What the driver needs from the session.
#[derive(Clone)]
pub struct UtpHooks {
    /// Where overhead no transport carries is counted.
    pub counters: Arc<Counters>,
    /// The class of a peer address (for that overhead, and `wan`).
    pub classifier: Arc<dyn Classifier>,
    /// WAN off: SYNs from WAN addresses are dropped unanswered.
    pub wan: Switch,
}

/// A handle on a running driver; cloning shares it. The driver ends when
/// the datagram queue closes (the `UdpEndpoint` is dropped).
#[derive(Clone)]
pub struct UtpDriver {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for UtpDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpDriver")
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Wakes the driver: a half wrote, read or let go.
    pub(super) wake: Notify,
    pub(super) local: SocketAddr,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("uTP driver lock")
    }
}

/// Who holds a connection.
pub(super) enum Owner {
    /// We dial: the caller waits for the SYN exchange.
    Dialling(oneshot::Sender<io::Result<()>>),
    /// A SYN came: waiting for the initiator's confirmation.
    Accepting,
    /// A transport's halves.
    Halves { reader: bool, writer: bool },
    /// Let go of (or never handed out): finishing, then removed.
    Released { reset_at: Instant },
}

pub(super) struct Slot {
    pub(super) owner: Owner,
    pub(super) wire: Arc<WireBytes>,
    pub(super) remote: SocketAddr,
    pub(super) read_waker: Option<Waker>,
    pub(super) write_waker: Option<Waker>,
    /// The write half's `room()`: woken once unsent data is under `unsent_limit`.
    pub(super) room_waker: Option<Waker>,
    pub(super) unsent_limit: Option<usize>,
    /// Overhead already added to `wire` (wire bytes less payload), each way.
    overhead_sent: u64,
    overhead_received: u64,
    /// Handed to the session as a transport (its bytes are counted there).
    pub(super) handed_out: bool,
}

impl Slot {
    fn new(owner: Owner, remote: SocketAddr) -> Self {
        Self {
            owner,
            wire: Arc::new(WireBytes::default()),
            remote,
            read_waker: None,
            write_waker: None,
            room_waker: None,
            unsent_limit: None,
            overhead_sent: 0,
            overhead_received: 0,
            handed_out: false,
        }
    }

    fn wake_all(&mut self) {
        for w in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.room_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            w.wake();
        }
    }
}

pub(super) struct State {
    pub(super) endpoint: Endpoint,
    pub(super) slots: HashMap<ConnectionHandle, Slot>,
    /// The driver has ended: every half fails.
    pub(super) ended: bool,
}

impl State {
    /// A half let go of its connection: once both have, it finishes (FIN)
    /// and is removed, or reset after a grace period.
    pub(super) fn release_half(&mut self, handle: ConnectionHandle, reader: bool) {
        let Some(slot) = self.slots.get_mut(&handle) else {
            return;
        };
        let Owner::Halves {
            reader: r,
            writer: w,
        } = &mut slot.owner
        else {
            return;
        };
        if reader {
            *r = false;
        } else {
            *w = false;
            if let Some(conn) = self.endpoint.connection(handle) {
                conn.close();
            }
        }
        if !*r && !*w {
            slot.owner = Owner::Released {
                reset_at: Instant::now() + RELEASE_GRACE,
            };
            if let Some(conn) = self.endpoint.connection(handle) {
                conn.close();
            }
        }
    }
}

impl UtpDriver {
    /// Starts the driver over `socket`, fed by `datagrams` (the demux's uTP
    /// queue). Connections peers open come out of the returned receiver as
    /// transports, once their SYN exchange is complete.
    pub fn spawn(
        socket: Arc<UdpSocket>,
        datagrams: mpsc::Receiver<Datagram>,
        config: EndpointConfig,
        hooks: UtpHooks,
    ) -> io::Result<(UtpDriver, mpsc::Receiver<Transport>)> {
        let local = socket.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                endpoint: Endpoint::new(config, rand::random()),
                slots: HashMap::new(),
                ended: false,
            }),
            wake: Notify::new(),
            local,
        });
        let (accepted_tx, accepted) = mpsc::channel(ACCEPT_QUEUE);
        // Batched sends (GSO) where the socket allows; plain `send_to` if not.
        let udp = match UdpSocketState::new((&*socket).into()) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::debug!("uTP: no segmentation offload ({e})");
                None
            }
        };
        let driver = Driver {
            shared: shared.clone(),
            socket,
            udp,
            gso: Vec::new(),
            datagrams,
            accepted: accepted_tx,
            hooks,
        };
        tokio::spawn(driver.run());
        Ok((UtpDriver { shared }, accepted))
    }

    /// The address of the socket uTP runs on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// Connections open now, of both directions (closing ones included).
    pub fn connection_count(&self) -> usize {
        self.shared.lock().endpoint.len()
    }

    /// Starts a connection to `remote`: resolves once the SYN exchange is
    /// complete (or refused, or timed out by the connection itself).
    pub(super) fn open(
        &self,
        remote: SocketAddr,
    ) -> io::Result<(ConnectionHandle, oneshot::Receiver<io::Result<()>>)> {
        let mut state = self.shared.lock();
        if state.ended {
            return Err(driver_ended());
        }
        let handle = state
            .endpoint
            .connect(Instant::now(), remote)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        state
            .slots
            .insert(handle, Slot::new(Owner::Dialling(tx), remote));
        drop(state);
        self.shared.wake.notify_one();
        Ok((handle, rx))
    }

    /// Gives up on a dial: the connection is reset and removed.
    pub(super) fn abandon(&self, handle: ConnectionHandle) {
        let mut state = self.shared.lock();
        if let Some(conn) = state.endpoint.connection(handle) {
            conn.abort();
        }
        if let Some(slot) = state.slots.get_mut(&handle) {
            slot.owner = Owner::Released {
                reset_at: Instant::now(),
            };
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// The transport of an established connection (dialled or accepted).
    pub(super) fn transport(&self, handle: ConnectionHandle) -> io::Result<Transport> {
        let mut state = self.shared.lock();
        let slot = state
            .slots
            .get_mut(&handle)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "uTP connection gone"))?;
        slot.owner = Owner::Halves {
            reader: true,
            writer: true,
        };
        slot.handed_out = true;
        let (remote, wire) = (slot.remote, slot.wire.clone());
        drop(state);
        Ok(super::utp::transport(self.clone(), handle, remote, wire))
    }
}

pub(super) fn driver_ended() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the uTP driver has stopped")
}

pub(super) fn close_error(reason: CloseReason) -> io::Error {
    match reason {
        CloseReason::Finished => io::Error::new(io::ErrorKind::BrokenPipe, "uTP connection closed"),
        CloseReason::Reset => {
            io::Error::new(io::ErrorKind::ConnectionReset, "uTP connection reset")
        }
        CloseReason::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "uTP peer stopped answering")
        }
    }
}

struct Driver {
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    /// quinn-udp's view of the socket, for GSO sends.
    udp: Option<UdpSocketState>,
    /// A run of datagrams laid end to end for one GSO send.
    gso: Vec<u8>,
    datagrams: mpsc::Receiver<Datagram>,
    accepted: mpsc::Sender<Transport>,
    hooks: UtpHooks,
}

impl Driver {
    async fn run(mut self) {
        let mut inbox: Vec<Datagram> = Vec::with_capacity(BATCH);
        let mut outbox: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(BATCH);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                got = self.datagrams.recv() => match got {
                    Some(d) => {
                        inbox.push(d);
                        while inbox.len() < BATCH {
                            match self.datagrams.try_recv() {
                                Ok(d) => inbox.push(d),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                () = self.shared.wake.notified() => {}
                () = crate::deadline::sleep_until(deadline) => {}
            }
            let mut accepted = Vec::new();
            let more = self.turn(&mut inbox, &mut outbox, &mut accepted);
            self.send_all(&outbox).await;
            outbox.clear();
            for transport in accepted {
                if let Err(e) = self.accepted.try_send(transport) {
                    // The session takes no more now (full or gone): the
                    // transport's drop (outside the lock) closes it.
                    tracing::debug!("uTP connection refused: {e}");
                }
            }
            if more {
                // Sending was cut at a batch: come back at once.
                self.shared.wake.notify_one();
            }
        }
        let mut state = self.shared.lock();
        state.ended = true;
        for slot in state.slots.values_mut() {
            if let Owner::Dialling(_) = slot.owner {
                if let Owner::Dialling(tx) = std::mem::replace(
                    &mut slot.owner,
                    Owner::Released {
                        reset_at: Instant::now(),
                    },
                ) {
                    let _ = tx.send(Err(driver_ended()));
                }
            }
            slot.wake_all();
        }
    }

    /// Sends a turn's datagrams in order. A run of datagrams to one
    /// address, all as long as the first but the last (which may be
    /// shorter), leaves as one GSO send: the kernel cuts it into the same
    /// datagrams, so the peer sees exactly what one send each would give.
    async fn send_all(&mut self, outbox: &[(SocketAddr, Vec<u8>)]) {
        let max_segments = self.udp.as_ref().map_or(1, |u| u.max_gso_segments());
        let mut i = 0;
        while i < outbox.len() {
            let (to, first) = &outbox[i];
            let segment = first.len();
            let limit = max_segments.min(GSO_BYTES / segment.max(1)).max(1);
            let mut j = i + 1;
            while j < outbox.len()
                && j - i < limit
                && outbox[j].0 == *to
                && outbox[j].1.len() <= segment
                && outbox[j - 1].1.len() == segment
            {
                j += 1;
            }
            if j - i == 1 {
                self.send(*to, first).await;
            } else {
                let mut gso = std::mem::take(&mut self.gso);
                gso.clear();
                for (_, d) in &outbox[i..j] {
                    gso.extend_from_slice(d);
                }
                if !self.send_segments(*to, &gso, segment).await {
                    for (to, d) in &outbox[i..j] {
                        self.send(*to, d).await;
                    }
                }
                self.gso = gso;
            }
            i = j;
        }
    }

    /// One GSO send of `bytes`, cut by the kernel every `segment` bytes;
    /// false when the datagrams should go one by one instead.
    async fn send_segments(&self, to: SocketAddr, bytes: &[u8], segment: usize) -> bool {
        let Some(udp) = self.udp.as_ref() else {
            return false;
        };
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents: bytes,
            segment_size: Some(segment),
            src_ip: None,
        };
        let socket = &*self.socket;
        let send = || udp.try_send(socket.into(), &transmit);
        let sent = match socket.try_io(Interest::WRITABLE, send) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                socket.async_io(Interest::WRITABLE, send).await
            }
            other => other,
        };
        match sent {
            Ok(()) => true,
            Err(e) => {
                tracing::trace!(%to, error = %e, "uTP GSO send failed");
                // EIO or EINVAL: the device cannot segment, and quinn-udp
                // has turned GSO off for good; these go one by one. Any
                // other error would fail one by one too (lost like any
                // datagram: uTP sends them again).
                udp.max_gso_segments() > 1
            }
        }
    }

    async fn send(&self, to: SocketAddr, bytes: &[u8]) {
        match self.socket.try_send_to(bytes, to) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = self.socket.send_to(bytes, to).await {
                    tracing::trace!(%to, error = %e, "uTP send failed");
                }
            }
            Err(e) => tracing::trace!(%to, error = %e, "uTP send failed"),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let state = self.shared.lock();
        let releases = state.slots.values().filter_map(|s| match s.owner {
            Owner::Released { reset_at } => Some(reset_at),
            _ => None,
        });
        state
            .endpoint
            .poll_timeout()
            .into_iter()
            .chain(releases)
            .min()
    }

    fn class(&self, addr: SocketAddr) -> PeerClass {
        self.hooks.classifier.classify(addr.ip())
    }

    /// One turn under the lock: datagrams in, timers, events, releases, and
    /// up to a batch of datagrams out. True when more are left to send.
    fn turn(
        &mut self,
        inbox: &mut Vec<Datagram>,
        outbox: &mut Vec<(SocketAddr, Vec<u8>)>,
        accepted: &mut Vec<Transport>,
    ) -> bool {
        let now = Instant::now();
        let shared = self.shared.clone();
        let mut guard = shared.lock();
        let state = &mut *guard;
        let wan_off = !self.hooks.wan.is_on();
        for d in inbox.drain(..) {
            // A SYN's type nibble is 4. With the WAN off, a WAN peer gets no
            // answer at all.
            if wan_off && d.bytes[0] >> 4 == 4 && self.class(d.from) == PeerClass::Wan {
                self.hooks.counters.add_overhead(
                    Direction::Down,
                    PeerClass::Wan,
                    d.bytes.len() as u64,
                );
                continue;
            }
            match state.endpoint.handle_datagram(now, d.from, &d.bytes) {
                Routed::Incoming(h) => {
                    let _ = state.endpoint.accept();
                    state.slots.insert(h, Slot::new(Owner::Accepting, d.from));
                }
                Routed::Connection(_) => {}
                Routed::Dropped => {
                    let class = self.class(d.from);
                    self.hooks
                        .counters
                        .add_overhead(Direction::Down, class, d.bytes.len() as u64);
                }
            }
        }
        if state.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            state.endpoint.handle_timeout(now);
        }
        let handles: Vec<ConnectionHandle> = state.slots.keys().copied().collect();
        for h in &handles {
            accepted.extend(self.events(state, *h, now));
        }
        let resets_before = state.endpoint.stats().reset_bytes;
        let mut more = false;
        while outbox.len() < BATCH {
            match state.endpoint.poll_transmit(now) {
                Some(d) => outbox.push(d),
                None => break,
            }
        }
        if outbox.len() == BATCH {
            more = true;
        }
        let reset_bytes = state.endpoint.stats().reset_bytes - resets_before;
        if reset_bytes > 0 {
            // RESETs for packets of no connection: their class is the
            // first one's, close enough for a few bytes.
            let class = outbox
                .first()
                .map_or(PeerClass::Wan, |(to, _)| self.class(*to));
            self.hooks
                .counters
                .add_overhead(Direction::Up, class, reset_bytes);
        }
        for h in handles {
            self.settle(state, h);
        }
        more
    }

    /// Acts on a connection's events and its owner's state; an accepted
    /// connection whose SYN exchange just completed comes back as a
    /// transport for the session.
    fn events(&self, state: &mut State, h: ConnectionHandle, now: Instant) -> Option<Transport> {
        let Some(conn) = state.endpoint.connection(h) else {
            state.slots.remove(&h);
            return None;
        };
        let slot = state.slots.get_mut(&h).expect("listed");
        let mut handed = None;
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Connected => {
                    match std::mem::replace(&mut slot.owner, Owner::Released { reset_at: now }) {
                        Owner::Dialling(tx) => {
                            if tx.send(Ok(())).is_ok() {
                                // The dialler takes the transport (`transport`).
                                slot.owner = Owner::Halves {
                                    reader: true,
                                    writer: true,
                                };
                            } else {
                                conn.abort();
                            }
                        }
                        Owner::Accepting => {
                            slot.owner = Owner::Halves {
                                reader: true,
                                writer: true,
                            };
                            handed = Some(slot.remote);
                        }
                        other => slot.owner = other,
                    }
                }
                Event::Readable | Event::PeerFinished => {
                    if let Some(w) = slot.read_waker.take() {
                        w.wake();
                    }
                }
                Event::Writable => {
                    if let Some(w) = slot.write_waker.take() {
                        w.wake();
                    }
                }
                Event::Closed(reason) => {
                    if let Owner::Dialling(_) = slot.owner {
                        if let Owner::Dialling(tx) =
                            std::mem::replace(&mut slot.owner, Owner::Released { reset_at: now })
                        {
                            let _ = tx.send(Err(close_error(reason)));
                        }
                    }
                    if let Owner::Accepting = slot.owner {
                        slot.owner = Owner::Released { reset_at: now };
                    }
                    slot.wake_all();
                }
            }
        }
        if let (Some(limit), Some(_)) = (slot.unsent_limit, slot.room_waker.as_ref()) {
            if conn.unsent_len() <= limit || conn.is_closed() {
                slot.room_waker.take().expect("checked").wake();
            }
        }
        match slot.owner {
            Owner::Released { reset_at } => {
                // Nobody reads: keep the window open so the FIN gets through.
                let mut scratch = [0u8; 16 * 1024];
                while conn.read(&mut scratch) > 0 {}
                // Still open after the grace (a lingering one ends by
                // itself, a half-open one by its handshake timer).
                if now >= reset_at && conn.is_established() {
                    conn.abort();
                }
            }
            Owner::Accepting if conn.is_closed() => {
                slot.owner = Owner::Released { reset_at: now };
            }
            _ => {}
        }
        let remote = handed?;
        slot.handed_out = true;
        let driver = UtpDriver {
            shared: self.shared.clone(),
        };
        Some(super::utp::transport(driver, h, remote, slot.wire.clone()))
    }

    /// Moves the connection's overhead into its wire tally, and removes it
    /// once it is closed and let go of.
    fn settle(&self, state: &mut State, h: ConnectionHandle) {
        let Some(conn) = state.endpoint.connection(h) else {
            return;
        };
        let Some(slot) = state.slots.get_mut(&h) else {
            return;
        };
        let stats = conn.stats();
        let overhead_sent = stats.bytes_sent_on_wire.saturating_sub(stats.payload_sent);
        let overhead_received = stats
            .bytes_received_on_wire
            .saturating_sub(stats.payload_received);
        slot.wire
            .add_sent(overhead_sent.saturating_sub(slot.overhead_sent));
        slot.wire
            .add_received(overhead_received.saturating_sub(slot.overhead_received));
        slot.overhead_sent = slot.overhead_sent.max(overhead_sent);
        slot.overhead_received = slot.overhead_received.max(overhead_received);
        let closed = conn.is_closed() && conn.poll_timeout().is_none();
        if closed && matches!(slot.owner, Owner::Released { .. }) {
            if !slot.handed_out {
                // Never a transport: nobody else counts its bytes.
                let class = self.class(slot.remote);
                let counters = &self.hooks.counters;
                counters.add_overhead(Direction::Up, class, slot.wire.sent());
                counters.add_overhead(Direction::Down, class, slot.wire.received());
            }
            state.slots.remove(&h);
            state.endpoint.remove(h);
        }
    }
}
