//! One peer connection, over any [`Transport`]: dial or accept, then a
//! reader that feeds the swarm and a writer that sends what the swarm
//! queued, through the byte gates. Counters take the transport's own tally
//! of wire bytes, so whatever a kind adds (an RC4 handshake, a retransmit)
//! counts as overhead.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use capwise_proto::admission::Member;
use capwise_proto::torrent::RunState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use crate::class::PeerSource;
use crate::hooks::{Direction, GateFuture, PeerClass};
use crate::swarm::Outgoing;
use crate::transport::{ReadHalf, Transport, TransportKind, WireBytes, WriteHalf};
use crate::wire::{self, Handshake, Message, BLOCK_SIZE};
use crate::Result;
use capwise_proto::ext::pex::PeerFlags;

use super::torrent::{PeerLink, TorrentShared};
use super::{read_handshake, HANDSHAKE_TIMEOUT};
/// Reads this large keep syscalls per block low on a fast link.
const READ_CHUNK: usize = 256 * 1024;
/// Flush the write buffer once it holds this much (LAN peers).
const WRITE_BATCH: usize = 256 * 1024;
/// For WAN peers, both our batch and the carrier's unsent data stay small
/// (about one block each, see [`crate::transport::TransportWrite`]): a byte gate
/// that closes (a metered switch, a cap) then holds back all but what the
/// carrier already took.
const WAN_WRITE_BATCH: usize = 16 * 1024;
const WAN_NOTSENT_LOWAT: u32 = 16 * 1024;

/// How a connection that was made ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The peer closed it (or it broke) with nothing held against the
    /// peer: worth dialling again (Transmission closes every connection of
    /// a magnet once its metadata is in, and never dials 127.x itself).
    ByPeer,
    /// We ended it (a protocol violation, a ban, a pause, an eviction, the
    /// WAN off, shutdown), or it never got going.
    Other,
}

/// Dial a peer a tracker listed, from the address we listen on if it is a
/// specific one.
pub(crate) async fn dial(
    shared: Arc<TorrentShared>,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Result<Ended> {
    let transport = shared
        .session
        .dial_peer(addr, shared.info_hash, shared.transports.as_ref())
        .await?;
    handshake_sent(shared, transport, permit, source).await
}

/// Waits before a peer that closed our connection is dialled again.
const REDIAL_AFTER_PEER_CLOSED: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
];

/// Dial `addr`; while the peer is the one to close each connection
/// (nothing held against it), dial it again after 5, 30 and 120 s, as
/// long as the torrent still admits it and a slot is free. A peer
/// that never dials us (Transmission on 127.x) would else be lost
/// until the next announce.
pub(crate) async fn dial_and_redial(
    shared: &Arc<TorrentShared>,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    source: PeerSource,
) {
    let mut permit = permit;
    for wait in REDIAL_AFTER_PEER_CLOSED {
        match dial(shared.clone(), addr, permit, source).await {
            Ok(Ended::ByPeer) => {}
            Ok(Ended::Other) => return,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "dial failed");
                return;
            }
        }
        tracing::debug!(%addr, after_s = wait.as_secs(), "peer closed the connection; dialling it again");
        let mut shutdown = shared.session.shutdown.subscribe();
        let mut run = shared.run.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Paused or removed meanwhile: its peers are dialled afresh
            // when it runs again.
            _ = super::announce::until(&mut run, |s| *s != RunState::Active) => return,
            _ = shutdown.recv() => return,
        }
        {
            let core = shared.lock_core();
            if core.admission().is_connected(addr) || !core.admission().admits(addr) {
                return;
            }
        }
        let Ok(next) = shared.session.connections.clone().try_acquire_owned() else {
            return;
        };
        permit = next;
    }
    // The last redial: whatever ends it, no more.
    if let Err(e) = dial(shared.clone(), addr, permit, source).await {
        tracing::debug!(%addr, error = %e, "dial failed");
    }
}

/// A connection the caller made: admitted like a peer we dial, in a task;
/// its source is [`PeerSource::Manual`].
pub(crate) fn connect_over(shared: Arc<TorrentShared>, transport: Transport) {
    let addr = transport.remote_addr();
    if !shared.admits(addr) {
        tracing::debug!(%addr, "not taking peers now; connection dropped");
        return;
    }
    let Ok(permit) = shared.session.connections.clone().try_acquire_owned() else {
        tracing::debug!(%addr, "connection limit reached; connection dropped");
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = handshake_out(shared, transport, permit, PeerSource::Manual).await {
            tracing::debug!(%addr, error = %e, "connection failed");
        }
    });
}

/// The dialling side's handshakes over `transport`, then the connection.
pub(crate) async fn handshake_out(
    shared: Arc<TorrentShared>,
    mut transport: Transport,
    permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Result<Ended> {
    let ours = Handshake::new(shared.info_hash, shared.session.peer_id());
    tokio::time::timeout(HANDSHAKE_TIMEOUT, transport.write_all(&ours.encode()))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
    handshake_sent(shared, transport, permit, source).await
}

/// The peer's handshake, once ours is sent, then the connection.
async fn handshake_sent(
    shared: Arc<TorrentShared>,
    mut transport: Transport,
    permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Result<Ended> {
    let theirs = read_handshake(&mut transport).await?;
    if theirs.info_hash != shared.info_hash {
        return Err(wire::WireError::BadHandshake.into());
    }
    Ok(run(shared, transport, theirs, permit, source).await)
}

/// Run a connection whose handshakes are done, until either side ends it;
/// `source` is where we learnt of the peer.
pub(crate) async fn run(
    shared: Arc<TorrentShared>,
    transport: Transport,
    theirs: Handshake,
    _permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Ended {
    let mut addr = transport.known_addr();
    let mut source = source;
    let class = shared.session.hooks.classifier.classify(addr.ip());
    if class == PeerClass::Wan && !shared.session.hooks.wan.is_on() {
        return Ended::Other;
    }
    let link = {
        let mut core = shared.lock_core();
        let now = Instant::now();
        if transport.kind() == TransportKind::Quic {
            // An upgrade: it takes the old connection's place (`upgrade.rs`).
            if let Some(known) =
                super::upgrade::retire(&shared, &mut core, &theirs.peer_id, addr.ip())
            {
                (addr, source) = known;
            }
        } else if super::upgrade::on_quic(&shared, &core, &theirs.peer_id, addr.ip()) {
            tracing::debug!(%addr, "peer is on QUIC already; connection not taken");
            return Ended::Other;
        }
        // The driver may be on its slow idle beat: take the switch as it is now.
        core.swarm
            .set_seeding(shared.session.hooks.seeding.is_on(), now);
        let member = Member {
            addr,
            peer_id: theirs.peer_id,
            source,
        };
        // Admitted under the core lock, which a pause or an error takes to
        // close the table: a connection cannot slip in after that.
        let joined = match core.join(member, &theirs, class, &shared.session.peer_id(), now) {
            Ok(joined) => joined,
            Err(refusal) => {
                tracing::debug!(%addr, %refusal, "connection not taken");
                return Ended::Other;
            }
        };
        let mut shown = PeerFlags::default();
        if transport.kind() == TransportKind::Utp {
            shown = shown | PeerFlags::UTP;
        }
        if transport.encryption().is_some() {
            shown = shown | PeerFlags::ENCRYPTION;
        }
        core.swarm.peer_shows(joined.key, shown);
        let link = Arc::new(PeerLink {
            addr,
            local: transport.local_addr(),
            wan: std::sync::atomic::AtomicBool::new(class == PeerClass::Wan),
            source,
            encrypted: transport.encryption() == Some(capwise_proto::mse::Method::Rc4),
            kind: transport.kind(),
            quic_path: transport.quic_path(),
            wake: tokio::sync::Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            gone: tokio::sync::Notify::new(),
        });
        {
            let mut links = shared.links.lock().expect("links lock");
            if let Some(old) = joined.replaces.and_then(|k| links.get(&k)) {
                tracing::debug!(old = %old.addr, new = %addr, "a second connection to the peer replaces the first");
                old.close();
            }
            links.insert(joined.key, link.clone());
        }
        shared.dispatch(core);
        // Back to the one-second beat that rates and time-outs need.
        shared.driver_wake.notify_one();
        (joined.key, link)
    };
    let (key, link) = link;
    // What crossed so far (the handshakes, anything a kind adds before
    // them) is protocol overhead.
    let wire = transport.wire().clone();
    // Bytes read ahead (the eviction peek) are messages: the reader counts them.
    let ahead = transport.peeked().len() as u64;
    let down = Tally::new(wire.received().saturating_sub(ahead));
    count(&shared, Direction::Up, class, 0, wire.sent());
    count(&shared, Direction::Down, class, 0, down.reported);
    tracing::debug!(%addr, kind = ?transport.kind(), ?class, source = source.name(), "peer connected");
    let (reader, mut writer) = transport.into_split();
    if class == PeerClass::Wan {
        if let Err(e) = writer.limit_unsent(WAN_NOTSENT_LOWAT) {
            tracing::debug!(%addr, error = %e, "cannot bound unsent data");
        }
    }
    let mut shutdown = shared.session.shutdown.subscribe();
    let (reason, from_peer) = tokio::select! {
        r = read_loop(&shared, key, &link, reader, (&wire, down)) => (r, true),
        r = write_loop(&shared, key, &link, Outbound::new(&shared, &link, writer, &wire)) => {
            let broke = r.is_err();
            (r, broke)
        }
        () = link.until_closed() => (Ok(()), false),
        _ = shutdown.recv() => (Ok(()), false),
    };
    let ended = if from_peer && !link.closed.load(Ordering::Acquire) {
        Ended::ByPeer
    } else {
        Ended::Other
    };
    if let Err(e) = reason {
        tracing::debug!(%addr, error = %e, "peer connection ended");
    }
    let mut core = shared.lock_core();
    core.leave(key);
    shared.links.lock().expect("links lock").remove(&key);
    shared.dispatch(core);
    // Watchers see the peer go now, and the driver picks its beat again
    // (idle when this was the last peer).
    shared.publish_now();
    shared.driver_wake.notify_one();
    ended
}

/// Count bytes in this torrent's counters and the session's (what the policy reads).
fn count(
    shared: &TorrentShared,
    direction: Direction,
    class: PeerClass,
    payload: u64,
    overhead: u64,
) {
    for counters in [&*shared.counters, &*shared.session.hooks.counters] {
        counters.add_payload(direction, class, payload);
        counters.add_overhead(direction, class, overhead);
    }
}

/// The wire bytes one direction has put in the counters so far.
struct Tally {
    /// Wire bytes before the loop's first byte (after what `run` counted).
    start: u64,
    reported: u64,
}

impl Tally {
    fn new(start: u64) -> Self {
        Self {
            start,
            reported: start,
        }
    }
}

async fn read_loop(
    shared: &Arc<TorrentShared>,
    key: u64,
    link: &PeerLink,
    mut reader: ReadHalf,
    (wire, mut tally): (&WireBytes, Tally),
) -> Result<()> {
    // Large enough for the bitfield of the torrent; block payloads are far smaller.
    let bitfield_len = shared.metainfo.info.piece_count().div_ceil(8) + 1;
    let max_len = (BLOCK_SIZE * 2 + 13).max(bitfield_len + 16).max(1 << 20);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut messages = Vec::new();
    // Bytes the reader returned; of them, those still in `buf` are part of
    // a message not yet whole and are counted once it is.
    let mut read_total = 0u64;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = reader.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        read_total += n as u64;
        let mut payload = 0u64;
        loop {
            let msg = match wire::decode(&mut buf, max_len) {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(e) => {
                    // A message we cannot take: ended by us, not a peer
                    // to dial again.
                    link.close();
                    return Err(e.into());
                }
            };
            if let Message::Piece { data, .. } = &msg {
                payload += data.len() as u64;
            }
            if let Message::Extended { id: 0, payload } = &msg {
                super::upgrade::consider(shared, link, payload);
            }
            messages.push(msg);
        }
        // Whole messages, plus whatever the carrier moved beyond the bytes
        // it handed us (a kind's own framing; none for TCP).
        let carried = wire.received().saturating_sub(tally.start);
        let settled = tally.start
            + read_total.saturating_sub(buf.len() as u64)
            + carried.saturating_sub(read_total);
        let moved = settled.saturating_sub(tally.reported);
        tally.reported = tally.reported.max(settled);
        count(
            shared,
            Direction::Down,
            link.class(),
            payload,
            moved.saturating_sub(payload),
        );
        if payload > 0 {
            shared.session.hooks.gate.arrived(link.class(), payload);
        }
        if messages.is_empty() {
            continue;
        }
        let now = Instant::now();
        let mut core = shared.lock_core();
        for msg in messages.drain(..) {
            if let Err(violation) = core.swarm.on_message(key, msg, now) {
                drop(core);
                tracing::info!(addr = %link.addr, %violation, "peer broke the protocol");
                // Ended by us: not a peer to dial again.
                link.close();
                return Ok(());
            }
        }
        shared.dispatch(core);
        if link.closed.load(Ordering::Acquire) {
            return Ok(());
        }
    }
}

/// The write half with its counting: bytes are counted once they crossed
/// the carrier (the transport's tally), the payload among them as payload.
struct Outbound<'a> {
    shared: &'a TorrentShared,
    /// Counted in the link's class at the time of each write.
    link: &'a PeerLink,
    writer: WriteHalf,
    wire: &'a WireBytes,
    tally: Tally,
    /// Payload encoded into the batch and not yet counted.
    payload: u64,
}

impl<'a> Outbound<'a> {
    fn new(
        shared: &'a TorrentShared,
        link: &'a PeerLink,
        writer: WriteHalf,
        wire: &'a WireBytes,
    ) -> Self {
        Self {
            shared,
            link,
            writer,
            wire,
            tally: Tally::new(wire.sent()),
            payload: 0,
        }
    }

    /// Sends and empties `out`, then counts what crossed.
    async fn flush(&mut self, out: &mut BytesMut) -> Result<()> {
        let written = self.writer.write_all(out).await;
        out.clear();
        let sent = self.wire.sent();
        let moved = sent.saturating_sub(self.tally.reported);
        self.tally.reported = self.tally.reported.max(sent);
        let payload = std::mem::take(&mut self.payload).min(moved);
        count(
            self.shared,
            Direction::Up,
            self.link.class(),
            payload,
            moved - payload,
        );
        Ok(written?)
    }
}

/// Uploads were switched off after `block` was queued: stop them in the swarm
/// now (choke everyone) rather than at the next tick, and reject the block.
fn withhold(shared: &Arc<TorrentShared>, key: u64, block: wire::BlockRef) {
    let mut core = shared.lock_core();
    core.swarm.set_seeding(false, Instant::now());
    core.swarm.block_withheld(key, block);
    shared.dispatch(core);
}

/// The gate closed for this peer's class after these blocks were admitted
/// (a metered switch): they go back to the peer's outbox, to wait at the
/// gate until it opens; uploads to other classes go on.
fn held_back(shared: &Arc<TorrentShared>, key: u64, blocks: Vec<wire::BlockRef>) {
    tracing::debug!(blocks = blocks.len(), "blocks held back: the gate closed");
    let mut core = shared.lock_core();
    core.swarm.blocks_deferred(key, blocks, Instant::now());
    shared.dispatch(core);
}

/// Most payload one credit grant covers: a WAN peer's batch stays about
/// one block, so that a gate that closes holds back all but what was
/// already paid for; a LAN peer's is one write batch.
fn credit_step(class: PeerClass) -> u64 {
    match class {
        PeerClass::Lan => WRITE_BATCH as u64,
        PeerClass::Wan => 4 * BLOCK_SIZE as u64,
    }
}

/// A debit at the gate under way: how much, and the gate's future.
struct Pending<'g> {
    bytes: u64,
    gate: GateFuture<'g>,
}

/// Resolves when `pending` (if any) was debited, with its bytes; never
/// without one.
async fn debited(pending: &mut Option<Pending<'_>>) -> u64 {
    match pending {
        Some(p) => {
            p.gate.as_mut().await;
            p.bytes
        }
        None => std::future::pending().await,
    }
}

/// Sends what the swarm queued for one peer. Payload needs credit
/// (`SwarmConfig::needs_credit`): the writer obtains it from the gate
/// while it waits for the swarm, and the swarm lets requests and blocks out
/// only within it, so a wait at the gate never runs a request's clock.
async fn write_loop(
    shared: &Arc<TorrentShared>,
    key: u64,
    link: &PeerLink,
    mut writer: Outbound<'_>,
) -> Result<()> {
    let hooks = &shared.session.hooks;
    let mut items = Vec::new();
    let mut down: Option<Pending<'_>> = None;
    let mut up: Option<Pending<'_>> = None;
    let mut out = BytesMut::with_capacity(WRITE_BATCH + 64 * 1024);
    let mut window = shared.window_watch();
    loop {
        // A network change may reclassify the peer: batches and credit
        // steps follow its class now.
        let class = link.class();
        let batch = match class {
            PeerClass::Lan => WRITE_BATCH,
            PeerClass::Wan => WAN_WRITE_BATCH,
        };
        let step = credit_step(class);
        let wanted = if shared.window_admits(class) {
            shared.lock_core().swarm.credit_wanted(key)
        } else {
            // The torrent's WAN window is shut: no credit is asked for, and
            // what was being asked for is given up, so no payload moves
            // until it opens (a debit already made stays counted: the cap
            // errs on the safe side).
            down = None;
            up = None;
            Default::default()
        };
        if down.is_none() && wanted.down > 0 {
            let bytes = wanted.down.min(step);
            down = Some(Pending {
                bytes,
                gate: shared.acquire(Direction::Down, class, bytes),
            });
        }
        if up.is_none() && wanted.up > 0 && hooks.seeding.is_on() {
            let bytes = wanted.up.min(step);
            up = Some(Pending {
                bytes,
                gate: shared.acquire(Direction::Up, class, bytes),
            });
        }
        let granted = tokio::select! {
            _ = link.wake.notified() => None,
            () = TorrentShared::window_changed(&mut window) => None,
            bytes = debited(&mut down) => {
                down = None;
                Some((Direction::Down, bytes))
            }
            bytes = debited(&mut up) => {
                up = None;
                Some((Direction::Up, bytes))
            }
        };
        if link.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        {
            let mut core = shared.lock_core();
            let now = Instant::now();
            if let Some((direction, bytes)) = granted {
                core.swarm.grant_credit(key, direction, bytes, now);
            }
            core.swarm.poll_outgoing(key, now, &mut items);
            // Requests went out: the driver may have to wake sooner for
            // their time-outs.
            shared.dispatch(core);
        }
        let mut sent_payload = 0u64;
        // Blocks the gate no longer admits, and every block after them (kept
        // in order); they go back to the swarm.
        let mut deferred = Vec::new();
        for item in items.drain(..) {
            match item {
                Outgoing::Block(block) if !deferred.is_empty() => deferred.push(block),
                Outgoing::Message(msg) => wire::encode(&msg, &mut out),
                Outgoing::Block(block) => {
                    if !hooks.seeding.is_on() {
                        withhold(shared, key, block);
                        continue;
                    }
                    if link.class() == PeerClass::Wan {
                        // Wait for room in the carrier (TCP_NOTSENT_LOWAT)
                        // before the last look at the gate, so the block is
                        // judged when it can leave, not long before.
                        if !out.is_empty() {
                            writer.flush(&mut out).await?;
                        }
                        writer.writer.room().await?;
                        if link.closed.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        // The switch may have flipped while the carrier was full.
                        if !hooks.seeding.is_on() {
                            withhold(shared, key, block);
                            continue;
                        }
                    }
                    if !hooks.gate.still_admits(Direction::Up, link.class())
                        || !shared.window_admits(link.class())
                    {
                        deferred.push(block);
                        continue;
                    }
                    let start = out.len();
                    wire::encode_piece_header(&block, &mut out);
                    let data_at = out.len();
                    out.resize(data_at + block.length as usize, 0);
                    if let Err(e) =
                        shared
                            .storage
                            .read_block(block.index, block.begin, &mut out[data_at..])
                    {
                        // Never serve what is not on disk: forget the piece
                        // and check the rest of its file.
                        out.truncate(start);
                        shared.block_unreadable(key, block, &e);
                        continue;
                    }
                    writer.payload += block.length as u64;
                    sent_payload += block.length as u64;
                }
            }
            if out.len() >= batch {
                writer.flush(&mut out).await?;
            }
        }
        if !out.is_empty() {
            writer.flush(&mut out).await?;
        }
        if sent_payload > 0 {
            shared.lock_core().swarm.on_payload_sent(key, sent_payload);
        }
        if !deferred.is_empty() {
            held_back(shared, key, deferred);
        }
    }
}
