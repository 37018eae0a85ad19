//! One uTP connection (BEP 29) as a deterministic state machine.
//!
//! Inputs: [`Connection::handle_datagram`], [`Connection::handle_timeout`],
//! [`Connection::write`], [`Connection::close`]; outputs:
//! [`Connection::poll_transmit`] (datagrams to send to the peer),
//! [`Connection::poll_timeout`], [`Connection::poll_event`] and
//! [`Connection::read`]. Time is only what the caller passes in.
//!
//! Connection ids follow BEP 29: the initiator picks `recv_id`, sends its
//! SYN with it and everything after with `recv_id + 1`; the acceptor sends
//! with the SYN's id and receives on it plus one. A STATE carries the next
//! sequence number its sender will use, so the initiator acknowledges the
//! acceptor's STATE with `ack_nr = seq_nr - 1`.
//!
//! **Invariant (reflection):** an accepting connection sends nothing but
//! STATE packets (each no larger than the SYN that caused it) until a packet
//! from the initiator acknowledges its STATE, which needs the acceptor's
//! random sequence number: a SYN with a forged source address cannot make
//! it send data to a victim.
//!
//! Every byte handed to [`Connection::poll_transmit`]'s caller is counted in
//! [`Stats`] (headers, ACKs, retransmits), so the engine can debit uTP's
//! overhead like payload.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::ledbat::{Ledbat, LedbatConfig, RttEstimator};
use crate::packet::{self, seq_le, seq_lt, Header, Packet, PacketType, HEADER_LEN, MAX_SACK_BYTES};

/// A connection's tunables.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Payload bytes per packet (the MTU less IP, UDP and uTP headers).
    pub max_payload: usize,
    /// Bytes `write` takes before the peer acknowledged them (unsent plus
    /// in flight).
    pub send_buffer: usize,
    /// Bytes received and not yet read, out-of-order ones included; what is
    /// left is the `wnd_size` we advertise.
    pub receive_buffer: usize,
    /// Out-of-order packets held at most.
    pub max_reorder_packets: usize,
    /// LEDBAT's tunables.
    pub ledbat: LedbatConfig,
    /// Floor of the retransmission timeout (BEP 29: 500 ms).
    pub min_rto: Duration,
    /// Timeout before any RTT sample (BEP 29: 1 s).
    pub initial_rto: Duration,
    /// SYN retransmissions before giving up.
    pub max_syn_retransmits: u32,
    /// Consecutive time-outs of a data packet before giving up.
    pub max_retransmits: u32,
    /// How long an accepted connection waits for the initiator to
    /// acknowledge its STATE.
    pub handshake_timeout: Duration,
    /// How long a closed connection stays to acknowledge a retransmitted
    /// FIN whose ACK was lost.
    pub linger: Duration,
    /// An established connection that sent nothing this long sends a
    /// STATE, so that NAT mappings on the way stay open (libutp: 29 s;
    /// UDP mappings often last 30 s). None: never.
    pub keepalive: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_payload: 1400,
            send_buffer: 1 << 20,
            receive_buffer: 1 << 20,
            max_reorder_packets: 1024,
            ledbat: LedbatConfig::default(),
            min_rto: Duration::from_millis(500),
            initial_rto: Duration::from_secs(1),
            max_syn_retransmits: 3,
            max_retransmits: 6,
            handshake_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            keepalive: Some(Duration::from_secs(29)),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and had it acknowledged.
    Finished,
    /// The peer sent RESET, or we aborted.
    Reset,
    /// The peer stopped answering.
    TimedOut,
}

/// What the caller should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: data can flow.
    Connected,
    /// `read` has bytes (or the end of the stream).
    Readable,
    /// `write` takes bytes again after it took none.
    Writable,
    /// The peer sent FIN and everything before it was read into the buffer.
    PeerFinished,
    /// The connection is over; nothing more is sent.
    Closed(CloseReason),
}

/// Why a datagram was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// It does not decode.
    #[error("undecodable uTP datagram: {0}")]
    Malformed(#[from] packet::PacketError),
    /// It names another connection.
    #[error("connection id {got} is not this connection's ({expected})")]
    WrongConnection {
        /// What it carried.
        got: u16,
        /// What we receive on.
        expected: u16,
    },
    /// It is not what this state expects (an unconfirmed acceptor's data, a
    /// SYN to an initiator, an ACK of something never sent...).
    #[error("uTP packet ignored in this state")]
    Ignored,
}

/// Bytes and packets that crossed the carrier, and the ones that were
/// payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every byte of every datagram sent: headers, ACKs, retransmits.
    pub bytes_sent_on_wire: u64,
    /// Every byte of every datagram received for this connection, taken or
    /// not.
    pub bytes_received_on_wire: u64,
    /// Payload bytes sent the first time.
    pub payload_sent: u64,
    /// Payload bytes sent again.
    pub payload_retransmitted: u64,
    /// Payload bytes delivered to the read buffer (each once).
    pub payload_received: u64,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams that were retransmissions.
    pub packets_retransmitted: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Received payload packets we had already.
    pub duplicates_received: u64,
    /// Retransmission time-outs.
    pub timeouts: u64,
    /// Fast retransmits (duplicate ACKs or selective ACK).
    pub fast_retransmits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SynSent,
    SynReceived,
    Established,
    /// Both FINs done; acknowledging retransmitted FINs until the instant.
    Lingering(Instant),
    Closed(CloseReason),
}

#[derive(Debug)]
struct Sent {
    seq: u16,
    kind: PacketType,
    payload: Vec<u8>,
    sent_at: Instant,
    transmissions: u32,
    /// Acknowledged by a selective ACK (still before the cumulative ACK).
    sacked: bool,
    /// To be sent again.
    resend: bool,
    /// Counted in `flight_bytes`.
    in_flight: bool,
}

#[derive(Debug)]
enum Held {
    Data(Vec<u8>),
    Fin,
}

/// One uTP connection.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    phase: Phase,
    initiator: bool,
    epoch: Instant,
    recv_id: u16,
    send_id: u16,

    // Sending.
    /// Next sequence number to use.
    seq_nr: u16,
    unsent: VecDeque<u8>,
    sent: VecDeque<Sent>,
    flight_bytes: usize,
    /// Packets of `sent` marked `resend` (SYN aside).
    resend_count: usize,
    unacked_payload: usize,
    peer_wnd: usize,
    ledbat: Ledbat,
    rtt: RttEstimator,
    backoff: u32,
    rto_deadline: Option<Instant>,
    /// When a zero peer window may be probed with one packet.
    probe_at: Option<Instant>,
    probe_allowed: bool,
    dup_acks: u32,
    last_ack_nr: u16,
    /// Losses of packets before this sequence number belong to the loss
    /// event that already halved the window.
    recovery_until: u16,
    close_requested: bool,
    fin_seq: Option<u16>,
    fin_acked: bool,
    write_blocked: bool,
    reset_pending: bool,
    /// The acceptor's SYN-time deadline for the initiator's confirmation.
    handshake_deadline: Option<Instant>,
    /// The initiator's bare confirmation (a STATE) is not retransmitted by
    /// reliability: until the acceptor shows it is established (its data)
    /// or we send data (which carries the confirmation), it goes again at
    /// these instants, a few times. The acceptor never repeats its STATE,
    /// so a forged SYN is answered once.
    confirm_at: Option<Instant>,
    confirm_retries: u32,
    /// When the last datagram left (for the keepalive).
    last_sent: Instant,

    // Receiving.
    /// Last sequence number received in order.
    ack_nr: u16,
    readable: VecDeque<u8>,
    held: HashMap<u16, Held>,
    held_bytes: usize,
    peer_fin: Option<u16>,
    eof: bool,
    ack_pending: bool,
    reply_micro: u32,

    events: VecDeque<Event>,
    stats: Stats,
}

impl Connection {
    fn new(
        config: Config,
        now: Instant,
        recv_id: u16,
        send_id: u16,
        seq_nr: u16,
        phase: Phase,
    ) -> Self {
        let ledbat = Ledbat::new(config.ledbat, config.max_payload);
        let rtt = RttEstimator::new(config.min_rto, config.initial_rto);
        let peer_wnd = config.max_payload * 2;
        Self {
            initiator: phase == Phase::SynSent,
            phase,
            epoch: now,
            recv_id,
            send_id,
            seq_nr,
            unsent: VecDeque::new(),
            sent: VecDeque::new(),
            flight_bytes: 0,
            resend_count: 0,
            unacked_payload: 0,
            peer_wnd,
            ledbat,
            rtt,
            backoff: 0,
            rto_deadline: None,
            probe_at: None,
            probe_allowed: false,
            dup_acks: 0,
            last_ack_nr: seq_nr.wrapping_sub(1),
            recovery_until: seq_nr,
            close_requested: false,
            fin_seq: None,
            fin_acked: false,
            write_blocked: false,
            reset_pending: false,
            handshake_deadline: None,
            confirm_at: None,
            confirm_retries: 0,
            last_sent: now,
            ack_nr: 0,
            readable: VecDeque::new(),
            held: HashMap::new(),
            held_bytes: 0,
            peer_fin: None,
            eof: false,
            ack_pending: false,
            reply_micro: 0,
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Opens a connection: the first `poll_transmit` is its SYN. `recv_id`
    /// is the id it receives on (random, unique per peer address).
    pub fn connect(config: Config, now: Instant, recv_id: u16) -> Self {
        let mut c = Self::new(
            config,
            now,
            recv_id,
            recv_id.wrapping_add(1),
            1,
            Phase::SynSent,
        );
        c.sent.push_back(Sent {
            seq: 1,
            kind: PacketType::Syn,
            payload: Vec::new(),
            sent_at: now,
            transmissions: 0,
            sacked: false,
            resend: true,
            in_flight: false,
        });
        c.seq_nr = 2;
        c.last_ack_nr = 0;
        c.recovery_until = 2;
        c
    }

    /// Answers a SYN (`datagram`, already decoded by the caller's demux
    /// as a SYN): the connection acknowledges it and waits for the
    /// initiator's confirmation before it sends data. `initial_seq` should
    /// be random: it is what makes the confirmation unforgeable off-path.
    pub fn accept(
        config: Config,
        now: Instant,
        datagram: &[u8],
        initial_seq: u16,
    ) -> Result<Self, DatagramError> {
        let p = Packet::decode(datagram)?;
        if p.header.packet_type != PacketType::Syn {
            return Err(DatagramError::Ignored);
        }
        let id = p.header.connection_id;
        let mut c = Self::new(
            config,
            now,
            id.wrapping_add(1),
            id,
            initial_seq,
            Phase::SynReceived,
        );
        c.handshake_deadline = Some(now + c.config.handshake_timeout);
        c.stats.bytes_received_on_wire += datagram.len() as u64;
        c.stats.packets_received += 1;
        c.ack_nr = p.header.seq_nr;
        c.note_peer(&p.header, now);
        c.ack_pending = true;
        Ok(c)
    }

    /// The id this connection receives on (what a demux keys it by).
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// Counters of what crossed the carrier.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The congestion window in bytes.
    pub fn congestion_window(&self) -> usize {
        self.ledbat.window()
    }

    /// LEDBAT's smallest window in bytes.
    pub fn min_congestion_window(&self) -> usize {
        self.ledbat.min_window()
    }

    /// The queueing delay LEDBAT sees now.
    pub fn queuing_delay(&self) -> Option<Duration> {
        self.ledbat.history().queuing_delay()
    }

    /// The smoothed round-trip time.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Payload bytes in flight (sent, not acknowledged, not given up).
    pub fn bytes_in_flight(&self) -> usize {
        self.flight_bytes
    }

    /// The handshake completed and the connection has not ended.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// The connection ended (nothing more is sent or taken).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// Why it ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self.phase {
            Phase::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn now_us(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    /// Queues bytes to send; returns how many it took (bounded by the send
    /// buffer; 0 after `close` or once closed).
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.close_requested || matches!(self.phase, Phase::Closed(_) | Phase::Lingering(_)) {
            return 0;
        }
        let room = self
            .config
            .send_buffer
            .saturating_sub(self.unsent.len() + self.unacked_payload);
        let n = room.min(data.len());
        self.unsent.extend(&data[..n]);
        if n < data.len() {
            self.write_blocked = true;
        }
        n
    }

    /// Bytes `write` would take now.
    pub fn write_room(&self) -> usize {
        if self.close_requested || matches!(self.phase, Phase::Closed(_) | Phase::Lingering(_)) {
            return 0;
        }
        self.config
            .send_buffer
            .saturating_sub(self.unsent.len() + self.unacked_payload)
    }

    /// Bytes written and not yet sent once (what TCP calls "not sent"; in
    /// flight bytes are not among them).
    pub fn unsent_len(&self) -> usize {
        self.unsent.len()
    }

    /// Takes received bytes in order; 0 means nothing yet, or the end of the
    /// stream when [`is_read_closed`](Self::is_read_closed).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let before = self.receive_window();
        let n = buf.len().min(self.readable.len());
        // Two slice copies (the ring's halves), not a byte-wise drain.
        let (a, b) = self.readable.as_slices();
        let first = n.min(a.len());
        buf[..first].copy_from_slice(&a[..first]);
        buf[first..n].copy_from_slice(&b[..n - first]);
        self.readable.drain(..n);
        // A window that reopens from below one packet is told at once: the
        // peer may be waiting on it.
        if before < self.config.max_payload
            && self.receive_window() >= self.config.max_payload
            && self.phase == Phase::Established
        {
            self.ack_pending = true;
        }
        n
    }

    /// The peer finished and everything it sent has been read.
    pub fn is_read_closed(&self) -> bool {
        (self.eof || self.is_closed()) && self.readable.is_empty()
    }

    /// Bytes waiting to be read.
    pub fn readable_len(&self) -> usize {
        self.readable.len()
    }

    /// Ends our direction: once everything written is sent, a FIN follows.
    pub fn close(&mut self) {
        self.close_requested = true;
    }

    /// Drops the connection at once, telling the peer with a RESET.
    pub fn abort(&mut self) {
        if !self.is_closed() {
            // A SYN never sent opened nothing to reset.
            self.reset_pending = self.phase != Phase::SynSent
                || self.sent.front().is_some_and(|s| s.transmissions > 0);
            self.finish(CloseReason::Reset);
        }
    }

    fn finish(&mut self, reason: CloseReason) {
        if !self.is_closed() {
            self.phase = Phase::Closed(reason);
            self.unsent.clear();
            self.sent.clear();
            self.resend_count = 0;
            self.flight_bytes = 0;
            self.rto_deadline = None;
            self.events.push_back(Event::Closed(reason));
        }
    }

    fn receive_window(&self) -> usize {
        self.config
            .receive_buffer
            .saturating_sub(self.readable.len() + self.held_bytes)
    }

    fn note_peer(&mut self, h: &Header, now: Instant) {
        self.reply_micro = self.now_us(now).wrapping_sub(h.timestamp_us);
        self.peer_wnd = h.wnd_size as usize;
        if h.timestamp_diff_us != 0 {
            self.ledbat.on_delay_sample(h.timestamp_diff_us, now);
        }
    }

    /// Takes one datagram the demux routed here.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DatagramError> {
        let p = Packet::decode(datagram)?;
        let h = p.header;
        let expected = if h.packet_type == PacketType::Syn {
            self.send_id
        } else {
            self.recv_id
        };
        // libutp sends RESET with either id of the connection.
        let reset_for_us = h.packet_type == PacketType::Reset && h.connection_id == self.send_id;
        if h.connection_id != expected && !reset_for_us {
            return Err(DatagramError::WrongConnection {
                got: h.connection_id,
                expected,
            });
        }
        if self.is_closed() {
            return Err(DatagramError::Ignored);
        }
        self.stats.bytes_received_on_wire += datagram.len() as u64;
        self.stats.packets_received += 1;

        match self.phase {
            Phase::SynSent => {
                // Only the acceptor's STATE acknowledging our SYN (or a
                // RESET refusing it) means anything yet.
                if h.packet_type == PacketType::Reset && h.ack_nr == 1 {
                    self.finish(CloseReason::Reset);
                    return Ok(());
                }
                if h.packet_type != PacketType::State || h.ack_nr != 1 {
                    return Err(DatagramError::Ignored);
                }
                self.note_peer(&h, now);
                if let Some(syn) = self.sent.pop_front() {
                    if syn.transmissions == 1 {
                        self.rtt.sample(now.saturating_duration_since(syn.sent_at));
                    }
                }
                self.last_ack_nr = 1;
                self.ack_nr = h.seq_nr.wrapping_sub(1);
                self.phase = Phase::Established;
                self.rto_deadline = None;
                self.backoff = 0;
                // Confirms the handshake even when we have nothing to say.
                self.ack_pending = true;
                self.confirm_at = Some(now + self.rtt.rto(0));
                self.events.push_back(Event::Connected);
                return Ok(());
            }
            Phase::SynReceived => match h.packet_type {
                PacketType::Syn => {
                    // Our STATE was lost: say it again (no bigger than the SYN).
                    self.note_peer(&h, now);
                    self.ack_pending = true;
                    return Ok(());
                }
                PacketType::Reset => {
                    self.finish(CloseReason::Reset);
                    return Ok(());
                }
                _ if h.ack_nr == self.seq_nr.wrapping_sub(1) => {
                    self.phase = Phase::Established;
                    self.handshake_deadline = None;
                    self.events.push_back(Event::Connected);
                }
                _ => return Err(DatagramError::Ignored),
            },
            _ => {}
        }

        match h.packet_type {
            PacketType::Reset => {
                self.finish(CloseReason::Reset);
                return Ok(());
            }
            PacketType::Syn if self.initiator => return Err(DatagramError::Ignored),
            PacketType::Syn => {
                // A retransmitted SYN after we are established: re-ack.
                self.ack_pending = true;
                return Ok(());
            }
            _ => {}
        }
        // An ACK of something never sent is forged: the packet teaches
        // nothing. One older than the last (reordered) still carries data.
        let newest = self.seq_nr.wrapping_sub(1);
        let stale = seq_lt(h.ack_nr, self.last_ack_nr);
        if seq_lt(newest, h.ack_nr) || (stale && self.last_ack_nr.wrapping_sub(h.ack_nr) >= 0x4000)
        {
            return Err(DatagramError::Ignored);
        }
        let window_before = self.peer_wnd;
        self.note_peer(&h, now);
        if !stale {
            self.process_ack(now, &p, window_before);
        }
        if matches!(h.packet_type, PacketType::Data | PacketType::Fin) {
            self.process_sequenced(&p);
        }
        self.check_done(now);
        Ok(())
    }

    fn process_ack(&mut self, now: Instant, p: &Packet<'_>, window_before: usize) {
        let ack_nr = p.header.ack_nr;
        let flight_before = self.flight_bytes;
        let mut acked_bytes = 0usize;
        let mut newly_acked = false;
        // The smallest round trip of the packets this ACK covers: a one-way
        // delay above it is clock drift, not queue (libutp's reasoning).
        let mut ack_rtt: Option<Duration> = None;
        while let Some(front) = self.sent.front() {
            if !seq_le(front.seq, ack_nr) {
                break;
            }
            let s = self.sent.pop_front().expect("front exists");
            if !s.sacked {
                acked_bytes += s.payload.len();
                if s.transmissions == 1 {
                    let rtt = now.saturating_duration_since(s.sent_at);
                    ack_rtt = Some(ack_rtt.map_or(rtt, |m: Duration| m.min(rtt)));
                }
            }
            self.retire(now, &s);
            newly_acked = true;
        }
        let cumulative_moved = ack_nr != self.last_ack_nr;
        self.last_ack_nr = ack_nr;

        if let Some(mask) = p.selective_ack {
            for s in self.sent.iter_mut() {
                let Some(bit) = (s.seq.wrapping_sub(ack_nr) as usize).checked_sub(2) else {
                    continue;
                };
                if bit >= mask.len() * 8 {
                    break;
                }
                if !s.sacked && mask[bit / 8] & (1 << (bit % 8)) != 0 {
                    s.sacked = true;
                    if std::mem::take(&mut s.resend) {
                        self.resend_count -= 1;
                    }
                    if s.in_flight {
                        s.in_flight = false;
                        self.flight_bytes -= s.payload.len();
                    }
                    acked_bytes += s.payload.len();
                    newly_acked = true;
                    if s.transmissions == 1 {
                        let rtt = now.saturating_duration_since(s.sent_at);
                        self.rtt.sample(rtt);
                        ack_rtt = Some(ack_rtt.map_or(rtt, |m| m.min(rtt)));
                    }
                }
            }
        }

        // Duplicate ACKs: the same cumulative ACK on a STATE, nothing new,
        // with data outstanding, and the same window (RFC 5681's rule: a
        // STATE that only says the receiver read, libtorrent's window
        // update, is no sign of loss).
        if !cumulative_moved
            && p.header.packet_type == PacketType::State
            && !self.sent.is_empty()
            && !newly_acked
            && p.header.wnd_size as usize == window_before
        {
            self.dup_acks += 1;
            if self.dup_acks == 3 {
                self.mark_lost(0);
            }
        } else if cumulative_moved {
            self.dup_acks = 0;
        }

        // Selective ACK loss detection: a packet with three acknowledged
        // packets after it is lost (libutp's rule, like TCP's three dups).
        if p.selective_ack.is_some() {
            let mut sacked_after = 0;
            let mut lost = Vec::new();
            for (i, s) in self.sent.iter().enumerate().rev() {
                if s.sacked {
                    sacked_after += 1;
                } else if sacked_after >= 3 && s.in_flight {
                    lost.push(i);
                }
            }
            for i in lost {
                self.mark_lost(i);
            }
        }

        if acked_bytes > 0 {
            self.unacked_payload = self.unacked_payload.saturating_sub(acked_bytes);
            self.ledbat.on_ack(acked_bytes, flight_before, ack_rtt);
        }
        if newly_acked {
            self.backoff = 0;
            self.rto_deadline = self.has_outstanding().then(|| now + self.rtt.rto(0));
            if self.write_blocked && self.write_room() > 0 {
                self.write_blocked = false;
                self.events.push_back(Event::Writable);
            }
        }
    }

    fn has_outstanding(&self) -> bool {
        self.sent.iter().any(|s| !s.sacked)
    }

    /// A packet left the sent queue by a cumulative ACK.
    fn retire(&mut self, now: Instant, s: &Sent) {
        if s.in_flight {
            self.flight_bytes -= s.payload.len();
        }
        if s.transmissions == 1 && !s.sacked {
            self.rtt.sample(now.saturating_duration_since(s.sent_at));
        }
        if s.kind == PacketType::Fin {
            self.fin_acked = true;
        }
    }

    /// The packet at `index` of the sent queue is lost: send it again, and
    /// halve the window once per loss event.
    fn mark_lost(&mut self, index: usize) {
        let Some(s) = self.sent.get_mut(index) else {
            return;
        };
        if s.sacked || s.resend {
            return;
        }
        s.resend = true;
        self.resend_count += 1;
        if s.in_flight {
            s.in_flight = false;
            self.flight_bytes -= s.payload.len();
        }
        self.stats.fast_retransmits += 1;
        if !seq_lt(s.seq, self.recovery_until) {
            self.ledbat.on_loss();
            self.recovery_until = self.seq_nr;
        }
    }

    fn process_sequenced(&mut self, p: &Packet<'_>) {
        // The acceptor sends sequenced packets only once confirmed.
        self.confirm_at = None;
        let seq = p.header.seq_nr;
        let dist = seq.wrapping_sub(self.ack_nr);
        if dist == 0 || dist >= 0x8000 || self.peer_fin.is_some_and(|f| seq_lt(f, seq)) {
            // Old (or past the end): our ACK may have been lost.
            self.stats.duplicates_received += 1;
            self.ack_pending = true;
            return;
        }
        let fin = p.header.packet_type == PacketType::Fin;
        if fin {
            self.peer_fin = Some(seq);
        }
        self.ack_pending = true;
        if dist == 1 {
            // In order: straight from the datagram into the read buffer.
            let delivered = if fin {
                self.deliver_fin()
            } else {
                self.deliver_data(p.payload)
            };
            if !delivered {
                return;
            }
            self.ack_nr = seq;
            while let Some(next) = self.held.remove(&self.ack_nr.wrapping_add(1)) {
                if let Held::Data(d) = &next {
                    self.held_bytes -= d.len();
                }
                if !self.deliver(next) {
                    break;
                }
                self.ack_nr = self.ack_nr.wrapping_add(1);
            }
        } else {
            let item = if fin {
                Held::Fin
            } else {
                Held::Data(p.payload.to_vec())
            };
            let len = match &item {
                Held::Data(d) => d.len(),
                Held::Fin => 0,
            };
            if self.held.contains_key(&seq) {
                self.stats.duplicates_received += 1;
            } else if usize::from(dist) <= self.config.max_reorder_packets
                && self.held.len() < self.config.max_reorder_packets
                && len <= self.receive_window()
            {
                self.held_bytes += len;
                self.held.insert(seq, item);
            }
        }
    }

    /// Puts an in-order packet into the read buffer; false when it does not
    /// fit (it is dropped unacknowledged and comes again).
    fn deliver(&mut self, item: Held) -> bool {
        match item {
            Held::Data(d) => self.deliver_data(&d),
            Held::Fin => self.deliver_fin(),
        }
    }

    fn deliver_data(&mut self, d: &[u8]) -> bool {
        if d.len()
            > self
                .config
                .receive_buffer
                .saturating_sub(self.readable.len() + self.held_bytes)
        {
            return false;
        }
        if !d.is_empty() {
            if self.readable.is_empty() {
                self.events.push_back(Event::Readable);
            }
            self.stats.payload_received += d.len() as u64;
            self.readable.extend(d);
        }
        true
    }

    fn deliver_fin(&mut self) -> bool {
        self.eof = true;
        self.events.push_back(Event::PeerFinished);
        self.events.push_back(Event::Readable);
        true
    }

    fn check_done(&mut self, now: Instant) {
        if self.phase == Phase::Established && self.fin_acked && self.eof {
            self.phase = Phase::Lingering(now + self.config.linger);
        }
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed(_) => None,
            Phase::Lingering(until) => Some(until),
            Phase::SynReceived => self.handshake_deadline,
            Phase::SynSent => [self.rto_deadline, self.probe_at, self.confirm_at]
                .into_iter()
                .flatten()
                .min(),
            Phase::Established => [
                self.rto_deadline,
                self.probe_at,
                self.confirm_at,
                self.keepalive_at(),
            ]
            .into_iter()
            .flatten()
            .min(),
        }
    }

    /// Acts on the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed(_) => {}
            Phase::Lingering(until) => {
                if now >= until {
                    self.finish(CloseReason::Finished);
                }
            }
            Phase::SynReceived => {
                if self.handshake_deadline.is_some_and(|d| now >= d) {
                    self.finish(CloseReason::TimedOut);
                }
            }
            Phase::SynSent => {
                if self.rto_deadline.is_some_and(|d| now >= d) {
                    self.stats.timeouts += 1;
                    if self.backoff >= self.config.max_syn_retransmits {
                        self.finish(CloseReason::TimedOut);
                        return;
                    }
                    self.backoff += 1;
                    if let Some(syn) = self.sent.front_mut() {
                        syn.resend = true;
                    }
                    self.rto_deadline = None;
                }
            }
            Phase::Established => {
                if self.keepalive_at().is_some_and(|d| now >= d) {
                    self.ack_pending = true;
                }
                if self.confirm_at.is_some_and(|d| now >= d) {
                    self.ack_pending = true;
                    self.confirm_retries += 1;
                    self.confirm_at = (self.confirm_retries < 3)
                        .then(|| now + self.rtt.rto(self.confirm_retries));
                }
                if self.probe_at.is_some_and(|d| now >= d) {
                    self.probe_at = None;
                    self.probe_allowed = true;
                }
                if self.rto_deadline.is_some_and(|d| now >= d) {
                    self.stats.timeouts += 1;
                    if self.backoff >= self.config.max_retransmits {
                        self.finish(CloseReason::TimedOut);
                        return;
                    }
                    self.backoff += 1;
                    self.ledbat.on_timeout();
                    // Everything outstanding is presumed lost; the window
                    // (now its minimum) decides how much goes again.
                    for s in self.sent.iter_mut() {
                        if !s.sacked && !s.resend {
                            s.resend = true;
                            self.resend_count += 1;
                            if s.in_flight {
                                s.in_flight = false;
                                self.flight_bytes -= s.payload.len();
                            }
                        }
                    }
                    self.recovery_until = self.seq_nr;
                    self.dup_acks = 0;
                    self.rto_deadline = None;
                }
            }
        }
    }

    /// When the keepalive is due: only while nothing else is (an ACK
    /// already queued goes first).
    fn keepalive_at(&self) -> Option<Instant> {
        let every = self.config.keepalive?;
        (!self.ack_pending).then(|| self.last_sent + every)
    }

    fn header(&self, now: Instant, packet_type: PacketType, seq_nr: u16) -> Header {
        Header {
            packet_type,
            connection_id: if packet_type == PacketType::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: self.now_us(now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.receive_window().min(u32::MAX as usize) as u32,
            seq_nr,
            ack_nr: self.ack_nr,
        }
    }

    fn selective_ack(&self) -> Option<Vec<u8>> {
        if self.held.is_empty() {
            return None;
        }
        let mut mask = vec![0u8; MAX_SACK_BYTES];
        let mut last = 0;
        for bit in 0..MAX_SACK_BYTES * 8 {
            let seq = self.ack_nr.wrapping_add(2 + bit as u16);
            if self.held.contains_key(&seq) {
                mask[bit / 8] |= 1 << (bit % 8);
                last = bit / 8 + 1;
            }
        }
        if last == 0 {
            return None;
        }
        mask.truncate(last.div_ceil(4) * 4);
        Some(mask)
    }

    fn emit(
        &mut self,
        now: Instant,
        packet_type: PacketType,
        seq_nr: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let header = self.header(now, packet_type, seq_nr);
        let sack = if packet_type == PacketType::Syn {
            None
        } else {
            self.selective_ack()
        };
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + 40);
        packet::encode_into(&header, sack.as_deref(), payload, &mut out);
        self.stats.bytes_sent_on_wire += out.len() as u64;
        self.stats.packets_sent += 1;
        self.ack_pending = false;
        self.last_sent = now;
        out
    }

    fn send_window(&self) -> usize {
        self.ledbat.window().min(self.peer_wnd)
    }

    /// The next datagram to send to the peer, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.phase {
            Phase::Closed(_) => {
                if std::mem::take(&mut self.reset_pending) {
                    let seq = self.seq_nr;
                    return Some(self.emit(now, PacketType::Reset, seq, &[]));
                }
                None
            }
            Phase::SynSent => {
                let syn = self.sent.front_mut()?;
                if !syn.resend {
                    return None;
                }
                syn.resend = false;
                syn.transmissions += 1;
                syn.sent_at = now;
                if syn.transmissions > 1 {
                    self.stats.packets_retransmitted += 1;
                }
                self.rto_deadline = Some(now + self.rtt.rto(self.backoff));
                Some(self.emit(now, PacketType::Syn, 1, &[]))
            }
            Phase::SynReceived => {
                if self.ack_pending {
                    let seq = self.seq_nr;
                    return Some(self.emit(now, PacketType::State, seq, &[]));
                }
                None
            }
            Phase::Established | Phase::Lingering(_) => {
                if let Some(d) = self.transmit_established(now) {
                    return Some(d);
                }
                if self.ack_pending {
                    let seq = self.seq_nr;
                    return Some(self.emit(now, PacketType::State, seq, &[]));
                }
                None
            }
        }
    }

    fn transmit_established(&mut self, now: Instant) -> Option<Vec<u8>> {
        let window = self.send_window();
        let probe = std::mem::take(&mut self.probe_allowed);
        // Retransmissions first, oldest first, within the window (one
        // packet always fits an empty flight).
        let first_resend = if self.resend_count > 0 {
            self.sent.iter().position(|s| s.resend)
        } else {
            None
        };
        if let Some(i) = first_resend {
            let len = self.sent[i].payload.len();
            if self.flight_bytes == 0 || self.flight_bytes + len <= window || probe {
                return Some(self.send_queued(now, i));
            }
            self.arm_probe(now);
            return None;
        }
        if !self.unsent.is_empty() {
            let room = window.saturating_sub(self.flight_bytes);
            let mut len = self.unsent.len().min(self.config.max_payload);
            if self.flight_bytes > 0 && room < len {
                // Wait for ACKs rather than send runts.
                return None;
            }
            if self.flight_bytes == 0 && self.peer_wnd < len && !probe {
                // The peer's buffer is (nearly) full: send what fits, or
                // probe later.
                if self.peer_wnd == 0 {
                    self.arm_probe(now);
                    return None;
                }
                len = self.peer_wnd;
            }
            let mut payload = Vec::with_capacity(len);
            let (a, b) = self.unsent.as_slices();
            let first = len.min(a.len());
            payload.extend_from_slice(&a[..first]);
            payload.extend_from_slice(&b[..len - first]);
            self.unsent.drain(..len);
            self.unacked_payload += payload.len();
            self.stats.payload_sent += payload.len() as u64;
            self.push_sent(now, PacketType::Data, payload);
            let i = self.sent.len() - 1;
            return Some(self.send_queued(now, i));
        }
        if self.close_requested && self.fin_seq.is_none() {
            self.fin_seq = Some(self.seq_nr);
            self.push_sent(now, PacketType::Fin, Vec::new());
            let i = self.sent.len() - 1;
            return Some(self.send_queued(now, i));
        }
        None
    }

    fn arm_probe(&mut self, now: Instant) {
        if self.flight_bytes == 0 && self.probe_at.is_none() {
            self.probe_at = Some(now + self.rtt.rto(0));
        }
    }

    fn push_sent(&mut self, now: Instant, kind: PacketType, payload: Vec<u8>) {
        let seq = self.seq_nr;
        self.seq_nr = self.seq_nr.wrapping_add(1);
        self.sent.push_back(Sent {
            seq,
            kind,
            payload,
            sent_at: now,
            transmissions: 0,
            sacked: false,
            resend: false,
            in_flight: false,
        });
    }

    fn send_queued(&mut self, now: Instant, index: usize) -> Vec<u8> {
        self.confirm_at = None;
        let s = &mut self.sent[index];
        if std::mem::take(&mut s.resend) {
            self.resend_count -= 1;
        }
        s.transmissions += 1;
        s.sent_at = now;
        s.in_flight = true;
        let (kind, seq, retransmit) = (s.kind, s.seq, s.transmissions > 1);
        let payload = std::mem::take(&mut s.payload);
        self.flight_bytes += payload.len();
        if retransmit {
            self.stats.packets_retransmitted += 1;
            self.stats.payload_retransmitted += payload.len() as u64;
        }
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rtt.rto(self.backoff));
        }
        let out = self.emit(now, kind, seq, &payload);
        self.sent[index].payload = payload;
        out
    }
}
