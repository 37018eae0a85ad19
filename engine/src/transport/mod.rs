//! Transports: what a peer connection's bytes travel over.
//!
//! A [`Transport`] is one connected peer, whatever carries it: a kind
//! ([`TransportKind`]: TCP, uTP, QUIC between capwise agents), whether MSE
//! encrypts it ([`Transport::encryption`], a layer over any kind: `mse.rs`),
//! the local and remote address, a read and a write half (boxed, as rqbit's
//! `stream_connect` returns them), and the bytes that crossed the carrier
//! each way ([`WireBytes`]). Those are counted *in the transport*, as the
//! carrier bills them: an RC4 handshake or a retransmit is a byte too. The
//! peer code (`session/peer.rs`) sees only this type: the handshake, the
//! eviction peek ([`Transport::fill_peek`]) and the counters go through it,
//! and what only a kind can do (TCP's `TCP_NOTSENT_LOWAT`, `send_room.rs`)
//! sits behind [`TransportWrite`].
//!
//! Dialling ([`dial`]) and accepting (`tcp::accepted`, from the session's
//! accept loop) are the only places transports are made from sockets; a
//! caller may also hand the session one it made itself
//! (`Session::accept`, `TorrentHandle::connect_transport`), such as the
//! in-memory pair of [`memory::pair`].

pub mod allow_list;
pub mod carriers;
pub mod identity;
pub mod memory;
pub mod mse;
pub mod quic;
pub mod quic_ledbat;
mod quic_verify;
mod send_room;
pub(crate) mod tcp;
pub mod utp;
pub mod utp_driver;

pub use carriers::{Carrier, Dialer, Transports};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use capwise_proto::mse::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What carries a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// Plain TCP.
    Tcp,
    /// uTP (BEP 29) with LEDBAT, over the session's UDP socket (`utp.rs`).
    Utp,
    /// QUIC between capwise agents, one bidirectional stream of a
    /// connection whose peer proved the agent id it offered (`quic.rs`).
    Quic,
    /// An in-process pipe ([`memory::pair`]): tests, and embedders that
    /// carry the bytes themselves.
    Memory,
}

/// Bytes that crossed a transport's carrier, each way, protocol overhead
/// included (for TCP: what went through the socket). Shared by both halves.
#[derive(Debug, Default)]
pub struct WireBytes {
    received: AtomicU64,
    sent: AtomicU64,
}

impl WireBytes {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Counts `n` more bytes received; for transport implementations.
    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` more bytes sent; for transport implementations.
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
}

/// A future a transport half returns from a boxed method.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The read half of a transport.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// The write half of a transport, with what only some kinds can do.
pub trait TransportWrite: AsyncWrite + Send + Unpin {
    /// Keep what the carrier has taken but not yet sent to about `bytes`
    /// (TCP: `TCP_NOTSENT_LOWAT`), so that a byte gate that closes holds
    /// back all but that much. Kinds without such a queue do nothing.
    fn limit_unsent(&mut self, bytes: u32) -> io::Result<()> {
        let _ = bytes;
        Ok(())
    }

    /// Waits until the carrier's unsent data is under that limit (TCP: the
    /// kernel itself says so, see `send_room.rs`). Ready at once by default.
    fn room(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The write half of a transport, boxed.
pub type WriteHalf = Box<dyn TransportWrite>;

/// Wraps an `AsyncRead` or `AsyncWrite` and counts what passes in a
/// [`WireBytes`]: the counting a transport whose bytes are its carrier's
/// needs (TCP's read half, the in-memory pipe).
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    wire: Arc<WireBytes>,
}

impl<T> Counted<T> {
    /// Counts `inner`'s bytes in `wire`.
    pub fn new(inner: T, wire: Arc<WireBytes>) -> Self {
        Self { inner, wire }
    }

    /// The wrapped reader or writer.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.wire.add_received((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.add_sent(n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncWrite + Send + Unpin> TransportWrite for Counted<T> {}

/// One connected peer, over any carrier.
pub struct Transport {
    kind: TransportKind,
    local: SocketAddr,
    remote: SocketAddr,
    reader: ReadHalf,
    writer: WriteHalf,
    wire: Arc<WireBytes>,
    /// Read ahead by [`fill_peek`](Self::fill_peek), handed out first.
    peeked: BytesMut,
    /// What an MSE handshake selected for the payload; none: no MSE.
    encryption: Option<Method>,
    /// The address the peer is known by when it is not `remote` (a QUIC
    /// connection that replaces a TCP one keeps that one's address).
    known: Option<SocketAddr>,
    /// A QUIC connection we dialled, which can move to a new local address
    /// (`session/addresses.rs`).
    quic_path: Option<quic::QuicPath>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("kind", &self.kind)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("encryption", &self.encryption)
            .field("wire", &self.wire)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport from its halves. They must count in `wire` the bytes
    /// that cross the carrier, overhead included (wrap them in [`Counted`]
    /// when those are just the bytes they pass).
    pub fn new(
        kind: TransportKind,
        local: SocketAddr,
        remote: SocketAddr,
        reader: ReadHalf,
        writer: WriteHalf,
        wire: Arc<WireBytes>,
    ) -> Self {
        Self {
            kind,
            local,
            remote,
            reader,
            writer,
            wire,
            peeked: BytesMut::new(),
            encryption: None,
            known: None,
            quic_path: None,
        }
    }

    /// The same transport, a QUIC connection we dialled: it can migrate.
    pub(crate) fn with_quic_path(mut self, path: quic::QuicPath) -> Self {
        self.quic_path = Some(path);
        self
    }

    /// The QUIC connection under this transport when we dialled it.
    pub(crate) fn quic_path(&self) -> Option<quic::QuicPath> {
        self.quic_path.clone()
    }

    /// The same transport, with the peer known by `addr` rather than the
    /// address its carrier reaches (`session/upgrade.rs`).
    pub fn with_known_addr(mut self, addr: SocketAddr) -> Self {
        self.known = Some(addr);
        self
    }

    /// The address the peer is known by: the one given to
    /// [`with_known_addr`](Self::with_known_addr), else
    /// [`remote_addr`](Self::remote_addr).
    pub fn known_addr(&self) -> SocketAddr {
        self.known.unwrap_or(self.remote)
    }

    /// What carries this connection.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// What an MSE handshake selected for this connection's payload:
    /// [`Method::Rc4`] when it is encrypted, [`Method::Plaintext`] when only
    /// the handshake was obfuscated; `None` when it began in plaintext.
    pub fn encryption(&self) -> Option<Method> {
        self.encryption
    }

    /// Our end's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The bytes that crossed the carrier so far; stays valid after
    /// [`into_split`](Self::into_split).
    pub fn wire(&self) -> &Arc<WireBytes> {
        &self.wire
    }

    /// What [`fill_peek`](Self::fill_peek) read ahead: the next bytes a
    /// read returns.
    pub fn peeked(&self) -> &[u8] {
        &self.peeked
    }

    /// Reads ahead without consuming: waits for more bytes, up to `limit`
    /// held back in all, and returns how many came (0: the peer closed, or
    /// `limit` is reached). Reads and the read half return them first.
    pub async fn fill_peek(&mut self, limit: usize) -> io::Result<usize> {
        let room = limit.saturating_sub(self.peeked.len());
        if room == 0 {
            return Ok(0);
        }
        self.peeked.reserve(room);
        let mut more = (&mut self.reader).take(room as u64);
        more.read_buf(&mut self.peeked).await
    }

    /// The read and write halves, to run in two tasks.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let reader = if self.peeked.is_empty() {
            self.reader
        } else {
            let ahead = std::io::Cursor::new(self.peeked.freeze());
            Box::new(ahead.chain(self.reader))
        };
        (reader, self.writer)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.peeked.is_empty() {
            let n = self.peeked.len().min(buf.remaining());
            let ahead = self.peeked.split_to(n);
            buf.put_slice(&ahead);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// Dial `remote` over the dialer's carriers in order, or in a torrent's
/// own order (`wanted`) among them (TCP leaving from its `bind` address
/// when given: the address we listen on, so that the peer sees the address
/// others are told); within `timeout` each. The one place outgoing
/// connections are made: the kind is chosen here (`carriers.rs`).
pub(crate) async fn dial(
    dialer: &Dialer,
    remote: SocketAddr,
    timeout: Duration,
    wanted: Option<&Transports>,
) -> io::Result<Transport> {
    dialer.dial(remote, timeout, wanted).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn peeked_bytes_are_read_again_and_counted_once() {
        let (mut a, mut b) = memory::pair(addr(1), addr(2), 1024);
        a.write_all(b"hello world").await.unwrap();
        assert_eq!(b.fill_peek(5).await.unwrap(), 5);
        assert_eq!(b.peeked(), b"hello");
        assert_eq!(b.fill_peek(5).await.unwrap(), 0, "limit reached");
        assert_eq!(b.fill_peek(8).await.unwrap(), 3);
        assert_eq!(b.peeked(), b"hello wo");
        let mut first = [0u8; 2];
        b.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"he");
        let (mut reader, _writer) = b.into_split();
        let mut rest = [0u8; 9];
        reader.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"llo world");
        assert_eq!(a.wire().sent(), 11);
    }

    #[tokio::test]
    async fn both_halves_count_into_one_tally() {
        let (a, b) = memory::pair(addr(1), addr(2), 1024);
        assert_eq!((a.local_addr(), a.remote_addr()), (addr(1), addr(2)));
        assert_eq!((b.local_addr(), b.remote_addr()), (addr(2), addr(1)));
        assert_eq!(a.kind(), TransportKind::Memory);
        let (wire_a, wire_b) = (a.wire().clone(), b.wire().clone());
        let (_ra, mut wa) = a.into_split();
        let (mut rb, mut wb) = b.into_split();
        wa.write_all(&[1; 100]).await.unwrap();
        wb.write_all(&[2; 7]).await.unwrap();
        let mut got = [0u8; 100];
        rb.read_exact(&mut got).await.unwrap();
        assert_eq!((wire_a.sent(), wire_b.received()), (100, 100));
        assert_eq!(wire_b.sent(), 7);
        assert_eq!(wire_a.received(), 0, "nothing read on a yet");
    }
}
