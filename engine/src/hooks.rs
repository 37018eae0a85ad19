//! What the policy may steer, with no dependency on the policy crate.
//!
//! The engine awaits a [`ByteGate`] before it sends a block (up) and before it
//! requests one (down), per peer class; [`Switch`]es stop uploads at once
//! without touching downloads (`seeding`), cut the WAN off entirely (`wan`)
//! and put the DHT in BEP 43 read-only mode (`dht_read_only`);
//! [`Counters`] count bytes per direction and class, payload and protocol
//! overhead apart, and the faults a monitor wants to see (pieces that failed
//! their hash check, disk reads and writes that failed).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use capwise_proto::class::{Direction, PeerClass};

/// Decides how a peer address is classed; the session uses one of these.
pub trait Classifier: Send + Sync {
    /// The class of a peer at `addr`.
    fn classify(&self, addr: IpAddr) -> PeerClass;

    /// The machine's addresses or routes may have changed: look again
    /// (a classifier that does not follow the machine ignores it).
    fn refresh(&self) {}
}

/// A boxed future that resolves when the bytes may move.
pub type GateFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Awaited before bytes move; resolving means they are debited and may go.
pub trait ByteGate: Send + Sync {
    /// Wait until `bytes` may move in `direction` to or from a peer of `class`.
    fn acquire(&self, direction: Direction, class: PeerClass, bytes: u64) -> GateFuture<'_>;

    /// Payload that was requested (through `acquire(Down, ..)`) arrived from a
    /// peer of `class`: a gate that debits requests ahead can tell what is
    /// still in flight.
    fn arrived(&self, _class: PeerClass, _bytes: u64) {}

    /// Whether bytes admitted earlier may still move now: asked just before
    /// a block goes to the socket, so one admitted before the gate closed
    /// (a metered switch) is held back rather than sent.
    fn still_admits(&self, _direction: Direction, _class: PeerClass) -> bool {
        true
    }
}

/// A gate shared by reference, for one torrent's own limit
/// ([`TorrentOptions::gate`](crate::session::TorrentOptions::gate)).
#[derive(Clone)]
pub struct SharedGate(pub std::sync::Arc<dyn ByteGate>);

impl std::fmt::Debug for SharedGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedGate")
    }
}

/// A gate that always lets bytes through.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenGate;

impl ByteGate for OpenGate {
    fn acquire(&self, _: Direction, _: PeerClass, _: u64) -> GateFuture<'_> {
        Box::pin(std::future::ready(()))
    }
}

/// A shared on/off switch the embedder flips and the session follows at
/// once (a torrent asleep until its next deadline hears a change): the
/// hooks hold three, each named for what it switches.
/// - `seeding`: uploads allowed (on by default); off chokes everyone and
///   refuses requests without touching downloads.
/// - `wan`: WAN traffic allowed (on by default); off (a roaming link, a
///   spent budget) means no tracker announces and no WAN peers kept,
///   dialled or accepted, so that not even handshakes and keep-alives cross
///   a link that must stay silent, besides the gates holding back payload.
///   LAN peers go on.
/// - `dht_read_only`: the DHT's BEP 43 read-only mode (off by default); on,
///   our node still looks peers up but answers no query and asks others not
///   to put it in their routing tables, so it spends no upload on serving
///   the DHT. The embedder turns it on on a metered network.
#[derive(Debug, Clone)]
pub struct Switch(Arc<tokio::sync::watch::Sender<bool>>);

impl Switch {
    /// A switch that starts `on`.
    pub fn new(on: bool) -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(on)))
    }

    /// Whether it is on now.
    pub fn is_on(&self) -> bool {
        *self.0.borrow()
    }

    /// Turn it on or off.
    pub fn set(&self, on: bool) {
        self.0
            .send_if_modified(|current| std::mem::replace(current, on) != on);
    }

    /// A receiver that is told of every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Resolves once it is on (at once if it is).
    pub async fn until_on(&self) {
        let mut watch = self.0.subscribe();
        // The sender lives in `self`, so the watch cannot close under us.
        let _ = watch.wait_for(|on| *on).await;
    }
}

/// Byte counters for one (direction, class) pair.
#[derive(Debug, Default)]
pub struct Counter {
    /// Piece payload bytes.
    pub payload: AtomicU64,
    /// Everything else on the wire: handshakes, message headers, other messages.
    pub overhead: AtomicU64,
}

/// Byte counters per direction and peer class, and fault counts.
#[derive(Debug, Default)]
pub struct Counters {
    up_lan: Counter,
    up_wan: Counter,
    down_lan: Counter,
    down_wan: Counter,
    hash_failures: AtomicU64,
    disk_errors: AtomicU64,
}

impl Counters {
    /// The counter for one direction and class.
    pub fn get(&self, direction: Direction, class: PeerClass) -> &Counter {
        match (direction, class) {
            (Direction::Up, PeerClass::Lan) => &self.up_lan,
            (Direction::Up, PeerClass::Wan) => &self.up_wan,
            (Direction::Down, PeerClass::Lan) => &self.down_lan,
            (Direction::Down, PeerClass::Wan) => &self.down_wan,
        }
    }
    /// Add payload bytes.
    pub fn add_payload(&self, direction: Direction, class: PeerClass, bytes: u64) {
        self.get(direction, class)
            .payload
            .fetch_add(bytes, Ordering::Relaxed);
    }
    /// Add protocol overhead bytes.
    pub fn add_overhead(&self, direction: Direction, class: PeerClass, bytes: u64) {
        self.get(direction, class)
            .overhead
            .fetch_add(bytes, Ordering::Relaxed);
    }
    /// Payload bytes so far in one direction and class.
    pub fn payload(&self, direction: Direction, class: PeerClass) -> u64 {
        self.get(direction, class).payload.load(Ordering::Relaxed)
    }
    /// Overhead bytes so far in one direction and class.
    pub fn overhead(&self, direction: Direction, class: PeerClass) -> u64 {
        self.get(direction, class).overhead.load(Ordering::Relaxed)
    }
    /// A downloaded piece (from a peer or a web seed) failed its hash check.
    pub fn add_hash_failure(&self) {
        self.hash_failures.fetch_add(1, Ordering::Relaxed);
    }
    /// Pieces that failed their hash check so far.
    pub fn hash_failures(&self) -> u64 {
        self.hash_failures.load(Ordering::Relaxed)
    }
    /// Writing a verified piece, or reading a block to serve, failed.
    pub fn add_disk_error(&self) {
        self.disk_errors.fetch_add(1, Ordering::Relaxed);
    }
    /// Failed disk reads and writes so far.
    pub fn disk_errors(&self) -> u64 {
        self.disk_errors.load(Ordering::Relaxed)
    }
}
