//! QUIC between capwise agents: a quinn endpoint on a UDP port of its own,
//! speaking ALPN [`ALPN`], whose connections carry the peer protocol on one
//! bidirectional stream, handed to the engine as a [`Transport`] like any
//! TCP stream (the session does not know the difference).
//!
//! Each side presents its identity's self-signed certificate
//! (`identity.rs`); the dialler pins the agent id the peer offered
//! (`quic_verify.rs`), so a certificate with another key ends the dial.
//! With an allow-list (`allow_list.rs`) the listener also requires the
//! dialler's certificate and refuses a key not listed (TLS alert
//! `access_denied`, which the dialler's reads then report in plain words),
//! and the endpoint dials no agent that is not listed.
//! TLS is rustls with ring, TLS 1.3 only (RFC 9001).
//!
//! Wire bytes: a transport counts the UDP bytes its connection moved, from
//! quinn's statistics, so QUIC's own overhead (handshake, ACKs, retransmits,
//! headers) is billed as overhead like TCP's. Received: the connection's
//! `udp_rx` as it stands at each read. Sent: each write's bytes at once
//! (so payload is never counted ahead of the wire), plus whatever `udp_tx`
//! shows beyond what was written.
//!
//! Unsent data: quinn takes whatever flow control allows (about 1.25 MB a
//! stream), which a byte gate that closes could not take back. For WAN
//! peers the session asks for a bound ([`TransportWrite::limit_unsent`]),
//! as TCP's `TCP_NOTSENT_LOWAT`: before each write the connection's send
//! window (unacknowledged plus unsent bytes) is set to the congestion
//! window plus that bound, so what quinn holds beyond what it may have in
//! flight stays about the bound, and [`TransportWrite::room`] waits until
//! quinn would take a byte (a write of nothing, which quinn refuses while
//! the window is full and wakes when acknowledgements free it).
//!
//! Migration (issue 17): only the dialler may move a QUIC connection (RFC
//! 9000 9: a server does not migrate). What quinn 0.11 does with our
//! socket, bound to the wildcard address: a connection it dialled has no
//! local address of its own (quinn-proto's `Endpoint::connect` sets
//! `local_ip: None` and never learns one), so its datagrams leave with no
//! source address and the kernel picks one from the route at each send.
//! When our address changes the next datagram leaves from the new one; the
//! listener sees the dialler at a new address and validates the path
//! (quinn's servers allow migration by default) and the connection goes
//! on: no new handshake, nothing re-sent but what the gap lost. A
//! connection we accepted does have a local address (the one its first
//! datagram came to, `Connection::local_ip`), sent from with
//! `IP_PKTINFO`: once that address is gone it cannot move, and the
//! session closes and redials it. [`QuicEndpoint::rebind`] puts the
//! endpoint back on its own socket (a duplicate: same port, options,
//! device), which quinn takes as a change of local address: every
//! connection switches to a fresh connection id (the old path and the new
//! are not linkable) and pings at once, so the new path is proved within a
//! round trip rather than at the next keep-alive; [`QuicPath::received`]
//! then shows whether the peer answered (`session/addresses.rs` redials
//! the connections it did not within a short bound).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::allow_list::AllowList;
use super::identity::{AgentId, Identity};
use super::quic_verify::{AllowedClients, PinnedServer};
use super::{Transport, TransportKind, TransportWrite, WireBytes};

/// Our ALPN: the peer protocol (BEP 3) over one bidirectional stream.
pub const ALPN: &[u8] = b"capwise-bt/1";

/// The name a dialler asks for: a certificate needs one, but the key is
/// what is pinned.
const SERVER_NAME: &str = "capwise";

/// How long an accepted connection may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams a peer may have open on one connection: one per torrent shared
/// with it, and a few to spare.
const MAX_STREAMS: u32 = 16;

/// TLS's `access_denied` alert (49) as a QUIC crypto error (RFC 9001
/// 4.8): what a verifier's `ApplicationVerificationFailure` is sent as.
const ACCESS_DENIED: u8 = 49;

/// A QUIC endpoint: dials agents and takes their connections.
#[derive(Clone)]
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    identity: Arc<Identity>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    transport: Arc<quinn::TransportConfig>,
    /// Incoming connections whose handshake failed or timed out.
    failed: Arc<AtomicU64>,
    /// The agents we accept and dial; none: any.
    allowed: Option<Arc<AllowList>>,
    /// Diallers refused for a key not on the allow-list.
    refused: Arc<AtomicU64>,
    /// A duplicate of the endpoint's socket, for [`Self::rebind`].
    socket: Arc<std::net::UdpSocket>,
}

/// A QUIC connection we dialled, seen from the session: it may migrate to
/// a new local address (module docs).
#[derive(Clone)]
pub struct QuicPath(quinn::Connection);

impl QuicPath {
    /// UDP bytes received on the connection so far: when it grows after a
    /// change of address, the peer hears us on the new path.
    pub fn received(&self) -> u64 {
        self.0.stats().udp_rx.bytes
    }
}

impl std::fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("local", &self.endpoint.local_addr().ok())
            .field("id", &self.identity.id())
            .finish_non_exhaustive()
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::other(format!("QUIC TLS setup: {e}"))
}

impl QuicEndpoint {
    /// Binds `addr` (port 0: a free one) and starts taking connections:
    /// each stream a peer opens comes out of the receiver as a transport,
    /// for the session's accept path.
    pub fn bind(
        addr: SocketAddr,
        identity: Arc<Identity>,
    ) -> io::Result<(Self, mpsc::Receiver<Transport>)> {
        Self::bind_allowing(addr, identity, None)
    }

    /// [`bind`](Self::bind), accepting and dialling only the agents of
    /// `allowed` when there is one (mutual TLS: a dialler must present a
    /// listed key).
    pub fn bind_allowing(
        addr: SocketAddr,
        identity: Arc<Identity>,
        allowed: Option<Arc<AllowList>>,
    ) -> io::Result<(Self, mpsc::Receiver<Transport>)> {
        Self::with_socket(std::net::UdpSocket::bind(addr)?, identity, allowed)
    }

    /// As [`QuicEndpoint::bind_allowing`], over a socket the caller bound
    /// (to the session's interface, `egress.rs`).
    pub fn with_socket(
        socket: std::net::UdpSocket,
        identity: Arc<Identity>,
        allowed: Option<Arc<AllowList>>,
    ) -> io::Result<(Self, mpsc::Receiver<Transport>)> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(MAX_STREAMS.into())
            .max_concurrent_uni_streams(0u32.into())
            // NAT mappings for UDP often last 30 s.
            .keep_alive_interval(Some(Duration::from_secs(25)))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(Duration::from_secs(120)).expect("within range"),
            ));
        let transport = Arc::new(transport);
        let refused = Arc::new(AtomicU64::new(0));
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?;
        let builder = match &allowed {
            Some(list) => builder.with_client_cert_verifier(Arc::new(AllowedClients::new(
                list.clone(),
                &provider,
                refused.clone(),
            ))),
            None => builder.with_no_client_auth(),
        };
        let mut tls = builder
            .with_single_cert(vec![identity.certificate()], identity.private_key())
            .map_err(tls_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| io::Error::other(format!("QUIC server config: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport.clone());
        // Handshakes waiting for us at once: beyond them, refused.
        server.max_incoming(64);
        let dup = Arc::new(socket.try_clone()?);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        let (tx, rx) = mpsc::channel(32);
        let failed = Arc::new(AtomicU64::new(0));
        tokio::spawn(accept_loop(endpoint.clone(), tx, failed.clone()));
        Ok((
            Self {
                endpoint,
                identity,
                provider,
                transport,
                failed,
                allowed,
                refused,
                socket: dup,
            },
            rx,
        ))
    }

    /// Our address changed: the endpoint takes its socket again (a
    /// duplicate of it), so every connection moves to a fresh connection
    /// id and probes its path at once (module docs).
    pub fn rebind(&self) -> io::Result<()> {
        self.endpoint.rebind(self.socket.try_clone()?)
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Our agent id, the one our certificate proves.
    pub fn id(&self) -> AgentId {
        self.identity.id()
    }

    /// Whether the agent `id` may connect to us and be dialled: it is on
    /// the allow-list, or there is none.
    pub fn allows(&self, id: &AgentId) -> bool {
        self.allowed.as_ref().is_none_or(|list| list.contains(id))
    }

    /// Whether an allow-list is in force.
    pub fn has_allow_list(&self) -> bool {
        self.allowed.is_some()
    }

    /// Dial the agent `expected` at `remote` and open the stream the peer
    /// protocol runs on; within `timeout`. A certificate with another key
    /// fails the dial; an agent not on our allow-list is not dialled
    /// (`PermissionDenied`). We present our certificate when the listener
    /// asks for it (its allow-list); if it refuses our key, the first read
    /// or write fails with `PermissionDenied`.
    pub async fn connect(
        &self,
        remote: SocketAddr,
        expected: AgentId,
        timeout: Duration,
    ) -> io::Result<Transport> {
        if !self.allows(&expected) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("agent {expected} is not on our QUIC allow-list"),
            ));
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer::new(expected, &self.provider)))
            .with_client_auth_cert(
                vec![self.identity.certificate()],
                self.identity.private_key(),
            )
            .map_err(tls_error)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| io::Error::other(format!("QUIC client config: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(self.transport.clone());
        let dialled = async {
            let connecting = self
                .endpoint
                .connect_with(client, remote, SERVER_NAME)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let connection = connecting.await.map_err(connection_error)?;
            let (send, recv) = connection.open_bi().await.map_err(connection_error)?;
            let path = QuicPath(connection.clone());
            Ok::<_, io::Error>(
                transport(&self.endpoint, connection, send, recv).with_quic_path(path),
            )
        };
        tokio::time::timeout(timeout, dialled)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "QUIC dial timed out",
                ))
            })
    }

    /// Incoming connections whose TLS handshake failed (a dialler that
    /// refused our key, or garbage) or timed out, so far.
    pub fn failed_handshakes(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Incoming connections refused because the dialler's key is not on
    /// the allow-list, so far (counted in [`failed_handshakes`] too).
    ///
    /// [`failed_handshakes`]: Self::failed_handshakes
    pub fn refused_agents(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Closes every connection (the session is stopping).
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }
}

fn connection_error(e: quinn::ConnectionError) -> io::Error {
    if is_refusal(&e) {
        return refused_by_peer();
    }
    let kind = match e {
        quinn::ConnectionError::TimedOut => io::ErrorKind::TimedOut,
        quinn::ConnectionError::ConnectionClosed(_) | quinn::ConnectionError::Reset => {
            io::ErrorKind::ConnectionReset
        }
        _ => io::ErrorKind::ConnectionRefused,
    };
    io::Error::new(kind, format!("QUIC: {e}"))
}

/// Whether the peer closed the connection with `access_denied`: its
/// allow-list does not hold our key. (Our own verifier's refusal is a
/// local `TransportError`, not a close the peer sent.)
fn is_refusal(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ConnectionClosed(close)
        if close.error_code == quinn::TransportErrorCode::crypto(ACCESS_DENIED))
}

fn refused_by_peer() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the QUIC peer refused our key: this agent is not on its allow-list",
    )
}

/// `e`, or the plain-words refusal when the connection ended because the
/// peer refused our key (a dialler learns it only once the listener has
/// checked our certificate, after its own handshake completed).
fn explain(connection: &quinn::Connection, e: io::Error) -> io::Error {
    match connection.close_reason() {
        Some(reason) if is_refusal(&reason) => refused_by_peer(),
        _ => e,
    }
}

/// Takes connections until the endpoint closes; each one's streams become
/// transports in `out`.
async fn accept_loop(
    endpoint: quinn::Endpoint,
    out: mpsc::Sender<Transport>,
    failed: Arc<AtomicU64>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let out = out.clone();
        let endpoint = endpoint.clone();
        let failed = failed.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let connection = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, error = %e, "QUIC handshake failed");
                    return;
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%remote, "QUIC handshake timed out");
                    return;
                }
            };
            // A stream shows up once the peer writes on it (its BitTorrent
            // handshake); it ends with the connection.
            while let Ok((send, recv)) = connection.accept_bi().await {
                if out
                    .send(transport(&endpoint, connection.clone(), send, recv))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The transport of one stream of `connection`.
fn transport(
    endpoint: &quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> Transport {
    let wire = Arc::new(WireBytes::default());
    let stats = connection.stats();
    // The handshake crossed already: overhead, as TCP's SYNs are not.
    wire.add_received(stats.udp_rx.bytes);
    wire.add_sent(stats.udp_tx.bytes);
    let bound = endpoint
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let local = SocketAddr::new(connection.local_ip().unwrap_or(bound.ip()), bound.port());
    let remote = connection.remote_address();
    let reader = Reader {
        connection: connection.clone(),
        recv,
        wire: wire.clone(),
        seen: stats.udp_rx.bytes,
    };
    let writer = Writer {
        connection,
        send,
        wire: wire.clone(),
        written: 0,
        extra: stats.udp_tx.bytes,
        unsent_bound: None,
    };
    Transport::new(
        TransportKind::Quic,
        local,
        remote,
        Box::new(reader),
        Box::new(writer),
        wire,
    )
}

struct Reader {
    connection: quinn::Connection,
    recv: quinn::RecvStream,
    wire: Arc<WireBytes>,
    /// `udp_rx` already in `wire`.
    seen: u64,
}

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf);
        if let Poll::Ready(Err(e)) = polled {
            return Poll::Ready(Err(explain(&self.connection, e)));
        }
        if let Poll::Ready(Ok(())) = polled {
            // Whatever was read arrived in datagrams already counted here.
            let rx = self.connection.stats().udp_rx.bytes;
            if rx > self.seen {
                self.wire.add_received(rx - self.seen);
                self.seen = rx;
            }
        }
        polled
    }
}

struct Writer {
    connection: quinn::Connection,
    send: quinn::SendStream,
    wire: Arc<WireBytes>,
    /// Stream bytes written (in `wire` at once).
    written: u64,
    /// What `udp_tx` showed beyond `written` (in `wire` too): handshake,
    /// headers, ACKs, retransmits.
    extra: u64,
    /// Unsent bytes quinn may hold beyond its congestion window, when the
    /// session asked for a bound (WAN peers).
    unsent_bound: Option<u64>,
}

impl Writer {
    /// Keeps quinn's unacknowledged plus unsent bytes to the congestion
    /// window plus the bound, when there is one.
    fn bound_send_window(&self) {
        if let Some(bound) = self.unsent_bound {
            let cwnd = self.connection.stats().path.cwnd;
            self.connection.set_send_window(cwnd.saturating_add(bound));
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.bound_send_window();
        let polled = AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf);
        if let Poll::Ready(Err(e)) = polled {
            return Poll::Ready(Err(explain(&self.connection, e)));
        }
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.add_sent(n as u64);
            self.written += n as u64;
            let tx = self.connection.stats().udp_tx.bytes;
            let extra = tx.saturating_sub(self.written);
            if extra > self.extra {
                self.wire.add_sent(extra - self.extra);
                self.extra = extra;
            }
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.send), cx)
    }
}

impl TransportWrite for Writer {
    fn limit_unsent(&mut self, bytes: u32) -> io::Result<()> {
        self.unsent_bound = Some(bytes.into());
        self.bound_send_window();
        Ok(())
    }

    fn room(&mut self) -> super::BoxFuture<'_, io::Result<()>> {
        Box::pin(std::future::poll_fn(|cx| {
            self.bound_send_window();
            // Quinn refuses even an empty write while the send window is
            // full, and wakes us when acknowledgements free some of it.
            match AsyncWrite::poll_write(Pin::new(&mut self.send), cx, &[]) {
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(explain(&self.connection, e))),
                Poll::Pending => Poll::Pending,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn endpoint() -> (QuicEndpoint, mpsc::Receiver<Transport>) {
        let identity = Arc::new(Identity::ephemeral().unwrap());
        QuicEndpoint::bind("127.0.0.1:0".parse().unwrap(), identity).unwrap()
    }

    #[tokio::test]
    async fn a_pinned_dial_carries_a_stream_and_counts_the_wire() {
        let (a, _) = endpoint();
        let (b, mut b_in) = endpoint();
        let at = b.local_addr().unwrap();
        let mut ours = a.connect(at, b.id(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(ours.kind(), TransportKind::Quic);
        assert_eq!(ours.remote_addr(), at);
        ours.write_all(&[5; 100_000]).await.unwrap();
        let mut theirs = tokio::time::timeout(Duration::from_secs(5), b_in.recv())
            .await
            .unwrap()
            .unwrap();
        let mut got = vec![0u8; 100_000];
        theirs.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&b| b == 5));
        // The wire carried the bytes plus QUIC's own (handshake, headers).
        assert!(theirs.wire().received() > 100_000, "{:?}", theirs.wire());
        assert!(ours.wire().sent() > 100_000, "{:?}", ours.wire());
        theirs.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        ours.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
    }

    #[tokio::test]
    async fn a_bounded_writer_waits_for_room_and_gets_everything_through() {
        let (a, _) = endpoint();
        let (b, mut b_in) = endpoint();
        let ours = a
            .connect(b.local_addr().unwrap(), b.id(), Duration::from_secs(5))
            .await
            .unwrap();
        let (_reader, mut writer) = ours.into_split();
        writer.limit_unsent(16 * 1024).unwrap();
        let block = vec![9u8; 16 * 1024];
        let sending = tokio::spawn(async move {
            for _ in 0..128 {
                writer.room().await?;
                writer.write_all(&block).await?;
            }
            writer.flush().await?;
            Ok::<_, io::Error>(writer)
        });
        let mut theirs = tokio::time::timeout(Duration::from_secs(5), b_in.recv())
            .await
            .unwrap()
            .unwrap();
        let mut got = vec![0u8; 128 * 16 * 1024];
        tokio::time::timeout(Duration::from_secs(20), theirs.read_exact(&mut got))
            .await
            .expect("every block in time")
            .unwrap();
        assert!(got.iter().all(|&x| x == 9));
        let _writer = sending.await.unwrap().unwrap();
    }

    fn allowing(identity: Identity, ids: &[AgentId]) -> (QuicEndpoint, mpsc::Receiver<Transport>) {
        QuicEndpoint::bind_allowing(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(identity),
            Some(Arc::new(AllowList::new(ids.iter().copied()))),
        )
        .unwrap()
    }

    async fn wait_for(what: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if what() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_listed_dialler_presents_its_key_and_gets_through() {
        let ours = Identity::ephemeral().unwrap();
        let our_id = ours.id();
        let (b, mut b_in) = allowing(Identity::ephemeral().unwrap(), &[our_id]);
        let (a, _) = allowing(ours, &[b.id()]);
        assert!(a.has_allow_list() && a.allows(&b.id()) && !a.allows(&AgentId([0; 32])));
        let mut stream = a
            .connect(b.local_addr().unwrap(), b.id(), Duration::from_secs(5))
            .await
            .unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut theirs = tokio::time::timeout(Duration::from_secs(5), b_in.recv())
            .await
            .unwrap()
            .unwrap();
        let mut got = [0u8; 5];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        theirs.write_all(b"back").await.unwrap();
        stream.read_exact(&mut got[..4]).await.unwrap();
        assert_eq!((b.failed_handshakes(), b.refused_agents()), (0, 0));
    }

    #[tokio::test]
    async fn a_dialler_not_on_the_list_is_refused_in_plain_words() {
        // The listener lists some other agent; the dialler has no list.
        let (b, mut b_in) = allowing(Identity::ephemeral().unwrap(), &[AgentId([7; 32])]);
        let (a, _) = endpoint();
        // Its own handshake completes before the listener has read its
        // certificate, so the refusal shows at the first read.
        let outcome = async {
            let mut stream = a
                .connect(b.local_addr().unwrap(), b.id(), Duration::from_secs(5))
                .await?;
            stream.write_all(b"hello").await?;
            let mut got = [0u8; 1];
            stream.read_exact(&mut got).await.map(|_| ())
        };
        let err = tokio::time::timeout(Duration::from_secs(5), outcome)
            .await
            .expect("refused in time")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains("allow-list"), "{err}");
        assert!(wait_for(|| b.refused_agents() == 1).await);
        assert_eq!(b.failed_handshakes(), 1);
        assert!(b_in.try_recv().is_err(), "no stream got through");
    }

    #[tokio::test]
    async fn a_listener_not_on_our_list_is_not_dialled() {
        let (b, _) = endpoint();
        let (a, _) = allowing(Identity::ephemeral().unwrap(), &[AgentId([7; 32])]);
        let err = a
            .connect(b.local_addr().unwrap(), b.id(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(b.failed_handshakes(), 0, "never dialled");
    }

    #[tokio::test]
    async fn another_key_than_the_pinned_one_is_refused() {
        let (a, _) = endpoint();
        let (b, mut b_in) = endpoint();
        let at = b.local_addr().unwrap();
        let wrong = AgentId([0xab; 32]);
        let err = a
            .connect(at, wrong, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), b_in.recv())
                .await
                .is_err(),
            "no stream reached the endpoint"
        );
        for _ in 0..50 {
            if b.failed_handshakes() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(b.failed_handshakes(), 1, "the refusal reached the endpoint");
    }
}
