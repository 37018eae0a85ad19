//! The tokio driver around the sans-IO DHT node ([`capwise_dht::Dht`]).
//!
//! One task owns the node. It sends over the session's shared UDP socket
//! ([`crate::udp::UdpEndpoint`], the port peers use) and takes the KRPC
//! datagrams that socket's receive task hands it. Every datagram the node
//! wants sent first passes the [`ByteGate`] as WAN upload (debited before it
//! leaves) and is then counted as WAN overhead; while the gate holds one, the
//! task goes on receiving, and a datagram held longer than a query may wait
//! for its answer is dropped instead of sent late. The task sleeps until the
//! node's `poll_timeout` (with no lookup running, the next bucket refresh,
//! 15 minutes away), so an idle DHT does not wake the process: there is no
//! tick. While the `wan` [`Switch`] is off the node is silent (nothing sent,
//! nothing taken in, no timer); `read_only` on makes it read-only
//! (BEP 43). Bootstrap names are resolved in a task of their own, with a
//! time-out, so neither start-up nor a machine without network waits on
//! DNS. The node id and routing table are kept in a state file
//! ([`state`]): read at start, written when they changed (at most every 5
//! minutes) and at shutdown.
//!
//! Lookups take a [`PublicTorrent`]: a private torrent (BEP 27) cannot be
//! looked up or announced.

pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capwise_dht::{Config, Dht, Event, Stats};
use capwise_proto::metainfo::InfoHash;
use capwise_proto::privacy::PublicTorrent;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::deadline::sleep_until;
use crate::hooks::{ByteGate, Counters, Direction, PeerClass, Switch};
use crate::udp::Datagram;

/// What the driver needs from its embedder.
#[derive(Clone)]
pub struct DhtHooks {
    /// Debits each datagram (up, WAN) before it leaves.
    pub gate: Arc<dyn ByteGate>,
    /// Counts what is sent, as WAN overhead (the socket counts what arrives).
    pub counters: Arc<Counters>,
    /// Off: the node is silent.
    pub wan: Switch,
    /// On: BEP 43 read-only.
    pub read_only: Switch,
}

/// How to start the driver.
#[derive(Debug, Clone, Default)]
pub struct DhtOptions {
    /// Nodes to join through, `HOST:PORT` each; names are resolved in the
    /// background (those that do not resolve are retried, less and less
    /// often, and skipped meanwhile).
    pub bootstrap: Vec<String>,
    /// Where the node id and routing table are kept (bencoded); none keeps
    /// nothing and every start is a fresh node.
    pub state_file: Option<PathBuf>,
    /// The node's bounds and timings ([`Config::default`] when none).
    pub node: Option<Config>,
}

enum Command {
    GetPeers(InfoHash),
    Announce(InfoHash, Option<u16>),
    AddBootstrap(Vec<SocketAddr>),
    Inspect(oneshot::Sender<Snapshot>),
    Shutdown(oneshot::Sender<()>),
}

/// What the node holds, for tests and status.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Nodes in the routing table.
    pub nodes: usize,
    /// Counters of incoming packets.
    pub stats: Stats,
    /// Info-hashes and peers stored for others.
    pub stored: (usize, usize),
    /// Our queries awaiting an answer.
    pub in_flight: usize,
    /// Read-only (BEP 43) now.
    pub read_only: bool,
    /// The node id.
    pub id: [u8; 20],
    /// The UDP address it speaks from (None if the socket cannot say).
    pub addr: Option<SocketAddr>,
}

/// The running driver; dropping every clone stops the task (without saving:
/// call [`DhtHandle::shutdown`] for that).
#[derive(Clone)]
pub struct DhtHandle {
    commands: mpsc::Sender<Command>,
}

/// Events queued for the embedder before new ones are dropped.
const EVENT_QUEUE: usize = 1024;
/// Commands queued before callers wait.
const COMMAND_QUEUE: usize = 256;
/// The routing table is written at most this often while it changes.
const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long one bootstrap name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before an unresolved bootstrap name is tried again; doubles up
/// to [`RESOLVE_RETRY_MAX`].
const RESOLVE_RETRY: Duration = Duration::from_secs(30);
const RESOLVE_RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// Starts the node on `socket` (shared: see [`crate::udp`]), fed the KRPC
/// datagrams of `incoming`. Returns the handle and the node's events
/// (peers found, lookups done). Must be called within a tokio runtime.
pub fn spawn(
    socket: Arc<UdpSocket>,
    incoming: mpsc::Receiver<Datagram>,
    options: DhtOptions,
    hooks: DhtHooks,
) -> (DhtHandle, mpsc::Receiver<Event>) {
    let now = Instant::now();
    let config = Config {
        read_only: hooks.read_only.is_on(),
        ..options.node.clone().unwrap_or_default()
    };
    let query_timeout = config.limits.query_timeout;
    let loaded = options.state_file.as_deref().and_then(state::load);
    let (dht, saved) = match loaded {
        Some(bytes) => match Dht::restore(&bytes, config.clone(), now) {
            Ok(dht) => (dht, bytes),
            Err(e) => {
                tracing::warn!(error = %e, "the saved DHT state is damaged; starting with a fresh node id");
                (Dht::new(config, now), Vec::new())
            }
        },
        None => (Dht::new(config, now), Vec::new()),
    };
    let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
    let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
    let handle = DhtHandle { commands };
    tokio::spawn(resolve_bootstrap(
        options.bootstrap,
        handle.commands.downgrade(),
    ));
    let driver = Driver {
        saved,
        query_timeout,
        dht,
        socket,
        hooks,
        state_file: options.state_file,
        save_at: None,
    };
    tokio::spawn(driver.run(incoming, command_rx, event_tx));
    (handle, events)
}

impl DhtHandle {
    /// Starts a `get_peers` lookup for a public torrent.
    pub async fn get_peers(&self, info_hash: InfoHash, _public: PublicTorrent) {
        let _ = self.commands.send(Command::GetPeers(info_hash)).await;
    }

    /// Looks a public torrent up and announces us on `port` (None: the
    /// UDP source port, `implied_port`) to the closest nodes.
    pub async fn announce(&self, info_hash: InfoHash, _public: PublicTorrent, port: Option<u16>) {
        let _ = self.commands.send(Command::Announce(info_hash, port)).await;
    }

    /// What the node holds now; None once the driver ended.
    pub async fn inspect(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Inspect(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Saves the state file (if any) and stops the driver.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Resolves the bootstrap names, each with a time-out, in the background;
/// names that fail are tried again later. IP literals need no lookup.
async fn resolve_bootstrap(names: Vec<String>, commands: mpsc::WeakSender<Command>) {
    let mut pending = names;
    let mut wait = RESOLVE_RETRY;
    loop {
        let mut failed = Vec::new();
        let mut found = Vec::new();
        for name in pending {
            let looked_up =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(name.clone())).await;
            match looked_up {
                Ok(Ok(addrs)) => found.extend(addrs.filter(SocketAddr::is_ipv4)),
                Ok(Err(e)) => {
                    tracing::debug!(bootstrap = %name, error = %e, "DHT bootstrap name not resolved");
                    failed.push(name);
                }
                Err(_) => {
                    tracing::debug!(bootstrap = %name, "DHT bootstrap name: lookup timed out");
                    failed.push(name);
                }
            }
        }
        if !found.is_empty() {
            let Some(commands) = commands.upgrade() else {
                return;
            };
            if commands.send(Command::AddBootstrap(found)).await.is_err() {
                return;
            }
        }
        if failed.is_empty() {
            return;
        }
        pending = failed;
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RESOLVE_RETRY_MAX);
        if commands.upgrade().is_none() {
            return;
        }
    }
}

struct Driver {
    dht: Dht,
    socket: Arc<UdpSocket>,
    hooks: DhtHooks,
    state_file: Option<PathBuf>,
    /// What the state file holds (or would, with none).
    saved: Vec<u8>,
    /// When to look whether the state changed (set once something arrived).
    save_at: Option<Instant>,
    /// How long a query waits for its answer: a datagram held at the gate
    /// longer would only be answered after the node gave up on it.
    query_timeout: Duration,
}

impl Driver {
    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<Datagram>,
        mut commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
    ) {
        let gate = self.hooks.gate.clone();
        let mut wan = self.hooks.wan.subscribe();
        let mut read_only = self.hooks.read_only.subscribe();
        self.dht
            .set_silent(!*wan.borrow_and_update(), Instant::now());
        // The datagram at the gate, the gate's future, and when to give up.
        let mut held: Option<(capwise_dht::Transmit, Instant)> = None;
        let mut admit: Option<crate::hooks::GateFuture<'_>> = None;
        let query_timeout = self.query_timeout;
        loop {
            if held.is_none() {
                if let Some(t) = self.dht.poll_transmit(Instant::now()) {
                    admit = Some(gate.acquire(Direction::Up, PeerClass::Wan, t.bytes.len() as u64));
                    held = Some((t, Instant::now() + query_timeout));
                }
            }
            while let Some(e) = self.dht.poll_event() {
                let _ = events.try_send(e);
            }
            let give_up = held.as_ref().map(|(_, at)| *at);
            let wake = [self.dht.poll_timeout(), self.save_at]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                () = async { admit.as_mut().expect("held").as_mut().await }, if admit.is_some() => {
                    admit = None;
                    let (t, _) = held.take().expect("held");
                    if self.hooks.wan.is_on() {
                        self.send(t).await;
                    }
                }
                () = sleep_until(give_up), if give_up.is_some() => {
                    admit = None;
                    if let Some((t, _)) = held.take() {
                        tracing::debug!(to = %t.to, "DHT datagram held at the gate too long; dropped");
                    }
                }
                received = incoming.recv() => {
                    let Some(d) = received else { return self.save().await };
                    self.dht.handle_packet(d.from, &d.bytes, Instant::now());
                    self.save_at.get_or_insert_with(|| Instant::now() + SAVE_EVERY);
                }
                () = sleep_until(wake) => {
                    let now = Instant::now();
                    self.dht.handle_timeout(now);
                    if self.save_at.is_some_and(|at| at <= now) {
                        self.save_at = None;
                        self.save().await;
                    }
                }
                changed = wan.changed() => {
                    if changed.is_err() {
                        return self.save().await;
                    }
                    let on = *wan.borrow_and_update();
                    if !on {
                        admit = None;
                        held = None;
                    }
                    self.dht.set_silent(!on, Instant::now());
                }
                changed = read_only.changed() => {
                    if changed.is_ok() {
                        let ro = *read_only.borrow_and_update();
                        tracing::debug!(read_only = ro, "DHT read-only mode");
                        self.dht.set_read_only(ro);
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return self.save().await };
                    if let Some(done) = self.command(command) {
                        self.save().await;
                        let _ = done.send(());
                        return;
                    }
                }
            }
        }
    }

    /// Handles a command; `Some` asks the driver to stop.
    fn command(&mut self, command: Command) -> Option<oneshot::Sender<()>> {
        let now = Instant::now();
        match command {
            Command::GetPeers(h) => {
                if let Err(e) = self.dht.get_peers(h, now) {
                    tracing::debug!(info_hash = %h.to_hex(), error = %e, "DHT get_peers not started");
                }
            }
            Command::Announce(h, port) => {
                if let Err(e) = self.dht.announce(h, port, now) {
                    tracing::debug!(info_hash = %h.to_hex(), error = %e, "DHT announce not started");
                }
            }
            Command::AddBootstrap(nodes) => self.dht.add_bootstrap(&nodes, now),
            Command::Inspect(tx) => {
                let _ = tx.send(Snapshot {
                    nodes: self.dht.routing_table().len(),
                    stats: self.dht.stats(),
                    stored: self.dht.stored(),
                    in_flight: self.dht.in_flight(),
                    read_only: self.dht.is_read_only(),
                    id: self.dht.id().0,
                    addr: self.socket.local_addr().ok(),
                });
            }
            Command::Shutdown(done) => return Some(done),
        }
        None
    }

    /// Sends one admitted datagram and counts it.
    async fn send(&mut self, t: capwise_dht::Transmit) {
        let len = t.bytes.len() as u64;
        self.hooks
            .counters
            .add_overhead(Direction::Up, PeerClass::Wan, len);
        if let Err(e) = self.socket.send_to(&t.bytes, t.to).await {
            tracing::debug!(to = %t.to, error = %e, "DHT send failed");
        }
    }

    /// Writes the state file if the id or table changed since last time.
    async fn save(&mut self) {
        let bytes = self.dht.save();
        if bytes == self.saved {
            return;
        }
        if let Some(path) = &self.state_file {
            if let Err(e) = state::store(path, &bytes) {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the DHT state");
                return;
            }
        }
        self.saved = bytes;
    }
}
