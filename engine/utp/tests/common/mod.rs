//! An in-memory pair of uTP connections on a fake clock (quinn-proto's
//! `Pair`): two one-way links with a delay, an optional bottleneck (a rate
//! and a tail-drop queue, whose queueing delay is recorded), loss,
//! duplication, reordering and cross traffic. Nothing sleeps: time jumps to
//! the next delivery or timer.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use capwise_utp::{Config, Connection};

/// What a link does to the `n`th datagram (counted from 0).
pub type Fault = Box<dyn FnMut(u64, &[u8]) -> Action>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
    Duplicate,
    /// Held back this much longer than the link's delay.
    Delay(Duration),
}

/// (arrival, tiebreak, bytes; None = cross traffic, not delivered).
type InFlight = Reverse<(Instant, u64, Option<Vec<u8>>)>;

pub struct Link {
    pub delay: Duration,
    /// Bytes per second through the bottleneck; None: no bottleneck.
    pub rate: Option<f64>,
    /// Bytes the bottleneck queue holds before it drops.
    pub queue_limit: usize,
    pub fault: Option<Fault>,
    /// (finish time of serialisation, bytes) of what is queued or on the wire.
    serialising: VecDeque<(Instant, usize)>,
    busy_until: Option<Instant>,
    in_flight: BinaryHeap<InFlight>,
    count: u64,
    /// (enqueue time, queueing delay) of every packet of ours through the bottleneck.
    pub queue_delays: Vec<(Instant, Duration)>,
    pub queue_drops: u64,
    pub cross_drops: u64,
    /// Payload-bearing bytes of ours delivered, with arrival times.
    pub delivered: Vec<(Instant, usize)>,
}

impl Link {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            rate: None,
            queue_limit: usize::MAX,
            fault: None,
            serialising: VecDeque::new(),
            busy_until: None,
            in_flight: BinaryHeap::new(),
            count: 0,
            queue_delays: Vec::new(),
            queue_drops: 0,
            cross_drops: 0,
            delivered: Vec::new(),
        }
    }

    pub fn bottleneck(mut self, rate: f64, queue_limit: usize) -> Self {
        self.rate = Some(rate);
        self.queue_limit = queue_limit;
        self
    }

    pub fn with_fault(mut self, f: impl FnMut(u64, &[u8]) -> Action + 'static) -> Self {
        self.fault = Some(Box::new(f));
        self
    }

    fn enqueue(&mut self, now: Instant, bytes: Option<Vec<u8>>, len: usize, extra: Duration) {
        let mut arrive = now + self.delay + extra;
        if let Some(rate) = self.rate {
            while self.serialising.front().is_some_and(|&(t, _)| t <= now) {
                self.serialising.pop_front();
            }
            let queued: usize = self.serialising.iter().map(|&(_, n)| n).sum();
            if queued + len > self.queue_limit {
                if bytes.is_some() {
                    self.queue_drops += 1;
                } else {
                    self.cross_drops += 1;
                }
                return;
            }
            let start = self.busy_until.map_or(now, |b| b.max(now));
            let done = start + Duration::from_secs_f64(len as f64 / rate);
            self.busy_until = Some(done);
            self.serialising.push_back((done, len));
            if bytes.is_some() {
                self.queue_delays.push((now, start - now));
            }
            arrive = done + self.delay + extra;
        }
        self.count += 1;
        self.in_flight.push(Reverse((arrive, self.count, bytes)));
    }

    pub fn send(&mut self, now: Instant, bytes: Vec<u8>) {
        let n = self.count;
        let action = match &mut self.fault {
            Some(f) => f(n, &bytes),
            None => Action::Pass,
        };
        let len = bytes.len() + 28; // IP and UDP headers share the bottleneck too
        match action {
            Action::Drop => self.count += 1,
            Action::Pass => self.enqueue(now, Some(bytes), len, Duration::ZERO),
            Action::Duplicate => {
                self.enqueue(now, Some(bytes.clone()), len, Duration::ZERO);
                self.enqueue(now, Some(bytes), len, Duration::ZERO);
            }
            Action::Delay(d) => self.enqueue(now, Some(bytes), len, d),
        }
    }

    /// A datagram of someone else's through the same bottleneck.
    pub fn send_cross(&mut self, now: Instant, len: usize) {
        self.enqueue(now, None, len, Duration::ZERO);
    }

    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((t, _, _))| *t)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Option<Vec<u8>>> {
        if self.next_arrival()? > now {
            return None;
        }
        let Reverse((t, _, bytes)) = self.in_flight.pop()?;
        if let Some(b) = &bytes {
            if b.len() > 20 {
                self.delivered.push((t, b.len()));
            }
        }
        Some(bytes)
    }

    /// Mean queueing delay of our packets enqueued in [from, to).
    pub fn mean_queue_delay(&self, from: Instant, to: Instant) -> Duration {
        let xs: Vec<Duration> = self
            .queue_delays
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, d)| *d)
            .collect();
        assert!(!xs.is_empty(), "no packets in that span");
        xs.iter().sum::<Duration>() / xs.len() as u32
    }

    /// Bytes per second of ours delivered in [from, to).
    pub fn delivered_rate(&self, from: Instant, to: Instant) -> f64 {
        let n: usize = self
            .delivered
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, n)| n)
            .sum();
        n as f64 / (to - from).as_secs_f64()
    }
}

/// Constant-rate cross traffic (a "foreground" flow that does not back off).
pub struct Cross {
    pub rate: f64,
    pub packet: usize,
    pub from: Instant,
    pub until: Instant,
    next: Option<Instant>,
}

impl Cross {
    pub fn new(rate: f64, packet: usize, from: Instant, until: Instant) -> Self {
        Self {
            rate,
            packet,
            from,
            until,
            next: Some(from),
        }
    }
}

pub const ACCEPT_SEQ: u16 = 30_000;

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub a: Connection,
    pub b: Option<Connection>,
    pub b_config: Config,
    pub ab: Link,
    pub ba: Link,
    pub cross: Vec<Cross>,
    /// What b's side sent before it had a connection: never expected.
    pub steps: u64,
}

impl Pair {
    pub fn new(config: Config, ab: Link, ba: Link) -> Self {
        let now = Instant::now();
        Self {
            now,
            start: now,
            a: Connection::connect(config.clone(), now, 1000),
            b: None,
            b_config: config,
            ab,
            ba,
            cross: Vec::new(),
            steps: 0,
        }
    }

    pub fn b(&mut self) -> &mut Connection {
        self.b.as_mut().expect("b accepted")
    }

    pub fn at(&self, secs: f64) -> Instant {
        self.start + Duration::from_secs_f64(secs)
    }

    fn flush(&mut self) {
        while let Some(d) = self.a.poll_transmit(self.now) {
            self.ab.send(self.now, d);
        }
        if let Some(b) = &mut self.b {
            while let Some(d) = b.poll_transmit(self.now) {
                self.ba.send(self.now, d);
            }
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let b_timer = self.b.as_ref().and_then(|b| b.poll_timeout());
        let cross = self.cross.iter().filter_map(|c| c.next);
        [
            self.ab.next_arrival(),
            self.ba.next_arrival(),
            self.a.poll_timeout(),
            b_timer,
        ]
        .into_iter()
        .flatten()
        .chain(cross)
        .min()
    }

    /// Runs until `step` says done (true) or simulated time passes `limit`
    /// (false), calling `step` after every input so it can read and write.
    pub fn run(&mut self, limit: Duration, mut step: impl FnMut(&mut Pair) -> bool) -> bool {
        let deadline = self.now + limit;
        for _ in 0..50_000_000u64 {
            self.steps += 1;
            let done = step(self);
            self.flush();
            if done {
                return true;
            }
            let Some(next) = self.next_event() else {
                return false;
            };
            if next > deadline {
                self.now = deadline;
                return false;
            }
            self.now = self.now.max(next);
            let now = self.now;
            for c in &mut self.cross {
                while let Some(t) = c.next.filter(|&t| t <= now) {
                    self.ab.send_cross(t.max(c.from), c.packet);
                    let t2 = t + Duration::from_secs_f64(c.packet as f64 / c.rate);
                    c.next = (t2 < c.until).then_some(t2);
                }
            }
            if let Some(bytes) = self.ab.pop_due(now) {
                if let Some(bytes) = bytes {
                    match &mut self.b {
                        Some(b) => {
                            let _ = b.handle_datagram(now, &bytes);
                        }
                        None => {
                            if let Ok(b) =
                                Connection::accept(self.b_config.clone(), now, &bytes, ACCEPT_SEQ)
                            {
                                self.b = Some(b);
                            }
                        }
                    }
                }
                continue;
            }
            if let Some(Some(bytes)) = self.ba.pop_due(now) {
                let _ = self.a.handle_datagram(now, &bytes);
                continue;
            }
            if self.a.poll_timeout().is_some_and(|t| t <= now) {
                self.a.handle_timeout(now);
            }
            if let Some(b) = &mut self.b {
                if b.poll_timeout().is_some_and(|t| t <= now) {
                    b.handle_timeout(now);
                }
            }
        }
        panic!("simulation did not settle in its step bound");
    }
}

/// Deterministic bytes (an LCG), so a transfer's bytes are checked exactly.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// One direction of a bulk transfer, driven from `Pair::run`'s app hook.
#[derive(Default)]
pub struct Flow {
    pub data: Vec<u8>,
    pub written: usize,
    pub received: Vec<u8>,
}

impl Flow {
    pub fn new(data: Vec<u8>) -> Self {
        Self {
            data,
            written: 0,
            received: Vec::new(),
        }
    }

    pub fn pump(
        &mut self,
        from: &mut Connection,
        to: Option<&mut Connection>,
        close_when_done: bool,
    ) {
        if self.written < self.data.len() {
            self.written += from.write(&self.data[self.written..]);
            if self.written == self.data.len() && close_when_done {
                from.close();
            }
        }
        if let Some(to) = to {
            let mut buf = [0u8; 65536];
            loop {
                let n = to.read(&mut buf);
                if n == 0 {
                    break;
                }
                self.received.extend_from_slice(&buf[..n]);
            }
        }
    }

    pub fn complete(&self) -> bool {
        self.received.len() == self.data.len()
    }
}
