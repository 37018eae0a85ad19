//! One connection of the metadata phase (BEP 9), over any [`Transport`]:
//! dialled through `SessionInner::dial_peer` (`session/connect.rs`: from the address we listen on, encrypted or not),
//! accepted (the session's accept loop hands over a peer whose handshake
//! names a magnet still fetching its metadata: it may have the metadata),
//! or made by the caller (`TorrentHandle::connect_transport`).
//!
//! A reader hands whole messages to the phase (`MagnetShared::on_message`);
//! a writer sends what the phase queued, each ut_metadata request only once
//! the byte gate admitted the block it asks for (download direction, the
//! peer's class), as the peer code does for piece requests; the block's
//! arrival is reported to the gate (`arrived`). Counters take the
//! transport's own tally of wire bytes, all of it overhead (metadata is not
//! the torrent's payload). A WAN connection is neither made nor kept while
//! the WAN switch is off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use capwise_proto::torrent::RunState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::class::PeerSource;
use crate::hooks::{Direction, PeerClass};
use crate::transport::{Transport, WireBytes};
use crate::wire::{self, Handshake, Message};
use crate::Result;

use super::announce::until;
use super::metadata::MagnetShared;
use super::{read_handshake, HANDSHAKE_TIMEOUT};
/// A peer that sends nothing for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest wire message read in this phase: ut_metadata's 17 KiB, or a
/// bitfield of a torrent of up to 1 M pieces.
const MAX_WIRE_LEN: u32 = 128 * 1024;

/// A message for a connection's writer.
pub(crate) struct Queued {
    pub(crate) msg: Message,
    /// Bytes its answer brings (a metadata block), taken from the byte
    /// gate (download direction) before the message leaves; 0 for none.
    pub(crate) debit: u64,
}

/// Dial `addr` and run the connection.
pub(crate) async fn dial(
    me: Arc<MagnetShared>,
    addr: SocketAddr,
    permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Result<()> {
    let transport = me
        .session
        .dial_peer(addr, me.info_hash, me.transports.as_ref())
        .await?;
    handshake_sent(me, transport, permit, source).await
}

/// The dialling side's handshakes over `transport`, then the connection.
pub(crate) async fn handshake_out(
    me: Arc<MagnetShared>,
    mut transport: Transport,
    permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Result<()> {
    let class = me
        .session
        .hooks
        .classifier
        .classify(transport.remote_addr().ip());
    if class == PeerClass::Wan && !me.session.hooks.wan.is_on() {
        // Not even a handshake crosses a WAN that must stay silent.
        return Ok(());
    }
    let ours = Handshake::new(me.info_hash, me.session.peer_id());
    tokio::time::timeout(HANDSHAKE_TIMEOUT, transport.write_all(&ours.encode()))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
    handshake_sent(me, transport, permit, source).await
}

/// The peer's handshake, once ours is sent, then the connection.
async fn handshake_sent(
    me: Arc<MagnetShared>,
    mut transport: Transport,
    permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Result<()> {
    let theirs = read_handshake(&mut transport).await?;
    if theirs.info_hash != me.info_hash {
        return Err(wire::WireError::BadHandshake.into());
    }
    run(me, transport, theirs, permit, source).await
}

fn count(me: &MagnetShared, direction: Direction, class: PeerClass, bytes: u64) {
    if bytes > 0 {
        me.counters.add_overhead(direction, class, bytes);
        me.session
            .hooks
            .counters
            .add_overhead(direction, class, bytes);
    }
}

/// What one direction of a transport has put in the counters so far.
struct Tally<'a> {
    wire: &'a WireBytes,
    reported: u64,
}

impl Tally<'_> {
    /// The bytes that crossed since the last call.
    fn moved(&mut self, now: u64) -> u64 {
        let moved = now.saturating_sub(self.reported);
        self.reported = self.reported.max(now);
        moved
    }
}

/// Run a connection whose handshakes are done, until it fails, the phase
/// ends, or the torrent is paused or removed.
pub(crate) async fn run(
    me: Arc<MagnetShared>,
    transport: Transport,
    theirs: Handshake,
    _permit: OwnedSemaphorePermit,
    source: PeerSource,
) -> Result<()> {
    let addr = transport.remote_addr();
    let class = me.session.hooks.classifier.classify(addr.ip());
    let wire = transport.wire().clone();
    let mut up = Tally {
        wire: &wire,
        reported: 0,
    };
    let mut down = Tally {
        wire: &wire,
        reported: 0,
    };
    // The handshakes (and anything the kind added before them).
    count(&me, Direction::Up, class, up.moved(up.wire.sent()));
    count(
        &me,
        Direction::Down,
        class,
        down.moved(down.wire.received()),
    );
    if theirs.peer_id == me.session.peer_id() {
        return Err(wire::WireError::BadHandshake.into());
    }
    if class == PeerClass::Wan && !me.session.hooks.wan.is_on() {
        return Ok(());
    }
    if !theirs.supports_extensions() {
        // It cannot send metadata; the torrent dials it again later.
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let Some(key) = me.register(addr, theirs.peer_id, source, transport.kind(), tx) else {
        return Ok(());
    };
    tracing::debug!(%addr, kind = ?transport.kind(), ?class, "metadata peer connected");
    let mut run = me.run.subscribe();
    let mut shutdown = me.session.shutdown.subscribe();
    let mut wan = me.session.hooks.wan.subscribe();
    let (mut reader, mut writer) = transport.into_split();
    let read = async {
        let mut buf = BytesMut::with_capacity(32 * 1024);
        loop {
            while let Some(msg) = wire::decode(&mut buf, MAX_WIRE_LEN)? {
                me.on_message(key, class, msg)?;
            }
            let n = tokio::time::timeout(IDLE_TIMEOUT, reader.read_buf(&mut buf))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer idle"))??;
            count(&me, Direction::Down, class, down.moved(wire.received()));
            if n == 0 {
                return Ok::<(), crate::Error>(());
            }
        }
    };
    let write = async {
        let gate = &me.session.hooks.gate;
        let mut out = BytesMut::new();
        while let Some(queued) = rx.recv().await {
            if queued.debit > 0 {
                gate.acquire(Direction::Down, class, queued.debit).await;
            }
            out.clear();
            wire::encode(&queued.msg, &mut out);
            let written = writer.write_all(&out).await;
            count(&me, Direction::Up, class, up.moved(wire.sent()));
            written?;
        }
        Ok::<(), crate::Error>(())
    };
    let wan_off = async {
        if class == PeerClass::Wan {
            let _ = wan.wait_for(|on| !on).await;
            tracing::info!(%addr, "WAN off: closing the metadata connection");
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = read => r,
        r = write => r,
        _ = until(&mut run, |s| *s != RunState::Active) => Ok(()),
        _ = shutdown.recv() => Ok(()),
        _ = me.ready.notified() => Ok(()),
        _ = wan_off => Ok(()),
    };
    me.unregister(key);
    result
}

/// A connection the caller made: run like one we dialled, in a task.
pub(crate) fn connect_over(me: Arc<MagnetShared>, transport: Transport) {
    let addr = transport.remote_addr();
    if !me.takes_peer(addr) {
        tracing::debug!(%addr, "not taking metadata peers now; connection dropped");
        return;
    }
    let Ok(permit) = me.session.connections.clone().try_acquire_owned() else {
        tracing::debug!(%addr, "connection limit reached; connection dropped");
        return;
    };
    tokio::spawn(async move {
        if let Err(e) = handshake_out(me, transport, permit, PeerSource::Manual).await {
            tracing::debug!(%addr, error = %e, "metadata connection failed");
        }
    });
}
