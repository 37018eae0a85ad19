//! Message Stream Encryption over any transport: the I/O around
//! capwise-proto's sans-IO handshake ([`capwise_proto::mse`]), and RC4 as a
//! layer over the carrier's halves.
//!
//! The handshake runs over a [`Transport`] as it came from its carrier and
//! gives back a new one of the same kind whose halves encrypt and decrypt
//! (or pass the payload through, when plaintext was selected), with the
//! bytes the peer sent after the handshake read ahead. The carrier's
//! [`WireBytes`](super::WireBytes) goes on counting underneath, so the
//! handshake's keys and padding are overhead like any other byte.
//!
//! Bounds: the whole handshake runs within one time limit, the machine keeps
//! at most about 67 KiB per half-open handshake, and the costly step (a
//! 768-bit exponentiation) waits for a [`DhBudget`], so a flood of half-open
//! handshakes costs at most a share of one core.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use capwise_proto::mse::{
    Cipher, Initiator, InitiatorConfig, Method, Methods, MseError, Outcome, Padding, Responder,
    ResponderConfig, SkeyLookup,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Semaphore;

use super::{BoxFuture, ReadHalf, Transport, TransportWrite, WriteHalf};
use crate::wire::PROTOCOL_HEADER;

/// Whether connections are encrypted (MSE/PE with RC4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encryption {
    /// Dial in plaintext; accept plaintext and encrypted peers.
    Allow,
    /// Dial encrypted (RC4), and again in plaintext if the peer refuses;
    /// accept both.
    #[default]
    Prefer,
    /// RC4 only, both ways: a peer that speaks plaintext is refused.
    Require,
}

impl Encryption {
    /// Its name in the configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Encryption::Allow => "allow",
            Encryption::Prefer => "prefer",
            Encryption::Require => "require",
        }
    }

    /// What an incoming MSE handshake may select, and what we pick when
    /// the peer offers both: RC4 unless we only allow encryption, where the
    /// cheaper plaintext payload will do.
    pub(crate) fn responder(self) -> ResponderConfig {
        let (accept, prefer) = match self {
            Encryption::Allow => (Methods::BOTH, Method::Plaintext),
            Encryption::Prefer => (Methods::BOTH, Method::Rc4),
            Encryption::Require => (Methods::RC4, Method::Rc4),
        };
        ResponderConfig {
            accept,
            prefer,
            padding: Padding::Random,
        }
    }
}

impl std::str::FromStr for Encryption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Encryption::Allow),
            "prefer" => Ok(Encryption::Prefer),
            "require" => Ok(Encryption::Require),
            other => Err(format!(
                "unknown encryption mode {other:?}: expected allow, prefer or require"
            )),
        }
    }
}

impl std::fmt::Display for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an MSE handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's bytes broke the handshake (or it closed).
    #[error(transparent)]
    Protocol(#[from] MseError),
    /// The carrier failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The whole handshake took longer than its time limit.
    #[error("MSE handshake not finished within {0:?}")]
    TimedOut(Duration),
    /// Too many incoming handshakes wait for their key exchange: this one
    /// is dropped rather than queued behind a flood (a genuine peer dials
    /// again).
    #[error("{MAX_DH_WAITING} encrypted handshakes already wait for their key exchange: dropped")]
    Busy,
}

/// Incoming handshakes that may wait for the budget at once: at 2 ms each
/// the last waits about 130 ms, so a genuine peer is answered long before
/// its time-out even while a flood keeps the queue full. (How many of them
/// one address may hold is bounded before, where connections are accepted:
/// `session/half_open.rs`.)
pub(crate) const MAX_DH_WAITING: usize = 64;

/// How many 768-bit exponentiations half-open handshakes may cost: one at
/// a time, and at most one per `spacing`, so that a flood of handshakes
/// that never finish takes at most that share of one core. At most
/// [`MAX_DH_WAITING`] wait; the rest are dropped at once, so a flood
/// cannot queue genuine peers past their time-out. Our own dials do not
/// wait for it: their number is bounded by our connection limit.
pub(crate) struct DhBudget {
    spacing: Duration,
    next: Mutex<Instant>,
    one_at_a_time: Semaphore,
    waiting: Semaphore,
}

impl DhBudget {
    /// A budget of one exponentiation step per `spacing`.
    pub(crate) fn new(spacing: Duration) -> Self {
        Self {
            spacing,
            next: Mutex::new(Instant::now()),
            one_at_a_time: Semaphore::new(1),
            waiting: Semaphore::new(MAX_DH_WAITING),
        }
    }

    /// Runs `work` when the budget allows, or refuses at once when
    /// [`MAX_DH_WAITING`] already wait.
    async fn spend<T>(&self, work: impl FnOnce() -> T) -> Result<T, HandshakeError> {
        // Given back when the handshake is done or dropped (a time-out
        // cancels the wait).
        let _place = self
            .waiting
            .try_acquire()
            .map_err(|_| HandshakeError::Busy)?;
        let _turn = self
            .one_at_a_time
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let at = {
            let mut next = self.next.lock().expect("DH budget lock");
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.spacing;
            at
        };
        tokio::time::sleep_until(at.into()).await;
        Ok(work())
    }
}

/// What a connection's first bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// `\x13BitTorrent protocol`: a plaintext handshake.
    Plaintext,
    /// Anything else: an MSE public key, or garbage the handshake rejects.
    Obfuscated,
}

/// Reads ahead (without consuming) until the first bytes tell a plaintext
/// BitTorrent handshake from an MSE one.
pub(crate) async fn opening(transport: &mut Transport) -> Result<Opening, HandshakeError> {
    loop {
        let seen = transport.peeked();
        let n = seen.len().min(PROTOCOL_HEADER.len());
        if seen[..n] != PROTOCOL_HEADER[..n] {
            return Ok(Opening::Obfuscated);
        }
        if n == PROTOCOL_HEADER.len() {
            return Ok(Opening::Plaintext);
        }
        if transport.fill_peek(PROTOCOL_HEADER.len()).await? == 0 {
            return Err(MseError::ShortPublicKey(n).into());
        }
    }
}

/// The dialling side: offers `provide` for the torrent `info_hash` and sends
/// `initial_payload` (our BitTorrent handshake) inside the handshake, all
/// within `limit`.
pub(crate) async fn initiate(
    mut transport: Transport,
    info_hash: [u8; 20],
    provide: Methods,
    initial_payload: Vec<u8>,
    limit: Duration,
) -> Result<Transport, HandshakeError> {
    let config = InitiatorConfig {
        info_hash,
        provide,
        initial_payload,
        padding: Padding::Random,
    };
    let mut machine = Initiator::new(config, &mut rand::thread_rng())?;
    let outcome = drive(&mut transport, &mut machine, None, limit).await?;
    Ok(wrap(transport, outcome))
}

/// The accepting side: learns the torrent from req2 through `skeys`,
/// selects from what `config` accepts, spends the `budget` for its
/// exponentiations, all within `limit`. Returns the info-hash too.
pub(crate) async fn respond(
    mut transport: Transport,
    skeys: SkeyLookup,
    config: ResponderConfig,
    budget: &DhBudget,
    limit: Duration,
) -> Result<(Transport, [u8; 20]), HandshakeError> {
    let mut machine = Responder::new(skeys, config, &mut rand::thread_rng());
    let outcome = drive(&mut transport, &mut machine, Some(budget), limit).await?;
    let info_hash = outcome.info_hash;
    Ok((wrap(transport, outcome), info_hash))
}

/// What [`drive`] needs of either role.
trait Machine {
    fn handle_input(&mut self, data: &[u8]) -> Result<(), MseError>;
    fn handle_eof(&mut self) -> Result<(), MseError>;
    fn wants_dh(&self) -> bool;
    fn compute_dh(&mut self) -> Result<(), MseError>;
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn outcome(&mut self) -> Option<Outcome>;
}

macro_rules! machine {
    ($role:ty) => {
        impl Machine for $role {
            fn handle_input(&mut self, data: &[u8]) -> Result<(), MseError> {
                <$role>::handle_input(self, data)
            }
            fn handle_eof(&mut self) -> Result<(), MseError> {
                <$role>::handle_eof(self)
            }
            fn wants_dh(&self) -> bool {
                <$role>::wants_dh(self)
            }
            fn compute_dh(&mut self) -> Result<(), MseError> {
                <$role>::compute_dh(self)
            }
            fn poll_transmit(&mut self) -> Option<Vec<u8>> {
                <$role>::poll_transmit(self)
            }
            fn outcome(&mut self) -> Option<Outcome> {
                <$role>::outcome(self)
            }
        }
    };
}
machine!(Initiator);
machine!(Responder);

/// Runs a handshake to its end over `transport`: what the machine queues
/// goes out, what comes in goes to it, its exponentiations wait for the
/// `budget` when there is one; all within `limit`.
async fn drive(
    transport: &mut Transport,
    machine: &mut impl Machine,
    budget: Option<&DhBudget>,
    limit: Duration,
) -> Result<Outcome, HandshakeError> {
    let steps = async {
        let mut chunk = [0u8; 2048];
        loop {
            while let Some(bytes) = machine.poll_transmit() {
                transport.write_all(&bytes).await?;
            }
            transport.flush().await?;
            if let Some(outcome) = machine.outcome() {
                return Ok::<_, HandshakeError>(outcome);
            }
            if machine.wants_dh() {
                match budget {
                    Some(budget) => budget.spend(|| machine.compute_dh()).await??,
                    None => machine.compute_dh()?,
                }
                continue;
            }
            let n = transport.read(&mut chunk).await?;
            if n == 0 {
                machine.handle_eof()?;
            } else {
                machine.handle_input(&chunk[..n])?;
            }
        }
    };
    tokio::time::timeout(limit, steps)
        .await
        .map_err(|_| HandshakeError::TimedOut(limit))?
}

/// The transport after a handshake: RC4 halves (or the carrier's own, for
/// a plaintext payload), and the peer's payload read ahead.
fn wrap(transport: Transport, outcome: Outcome) -> Transport {
    let (kind, local, remote) = (transport.kind, transport.local, transport.remote);
    let wire = transport.wire.clone();
    let (reader, writer) = transport.into_split();
    let (reader, writer): (ReadHalf, WriteHalf) = match (outcome.receive, outcome.send) {
        (Some(receive), Some(send)) => (
            Box::new(Decrypting {
                inner: reader,
                cipher: receive,
            }),
            Box::new(Encrypting {
                inner: writer,
                cipher: send,
                pending: Vec::new(),
                written: 0,
            }),
        ),
        _ => (reader, writer),
    };
    let mut wrapped = Transport::new(kind, local, remote, reader, writer, wire);
    wrapped.peeked.extend_from_slice(&outcome.payload);
    wrapped.encryption = Some(outcome.method);
    wrapped
}

/// Decrypts what the carrier's read half returns.
struct Decrypting {
    inner: ReadHalf,
    cipher: Cipher,
}

impl AsyncRead for Decrypting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.cipher.apply(&mut buf.filled_mut()[before..]);
        Poll::Ready(Ok(()))
    }
}

/// Most plaintext taken in one write: what sits encrypted here, not yet in
/// the carrier, is at most this (about one block, like the WAN bound on
/// the carrier's own unsent data).
const ENCRYPT_CHUNK: usize = 16 * 1024;

/// Encrypts into a buffer of its own, then writes to the carrier. Bytes are
/// encrypted once, in order: the keystream moves on as they are taken, so
/// what the carrier did not take yet waits here and goes first.
struct Encrypting {
    inner: WriteHalf,
    cipher: Cipher,
    pending: Vec<u8>,
    /// Of `pending`, how much the carrier took.
    written: usize,
}

impl Encrypting {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Encrypting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        let n = buf.len().min(ENCRYPT_CHUNK);
        this.pending.extend_from_slice(&buf[..n]);
        this.cipher.apply(&mut this.pending);
        // Taken: it goes out with this call if the carrier has room, else
        // with the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl TransportWrite for Encrypting {
    fn limit_unsent(&mut self, bytes: u32) -> io::Result<()> {
        self.inner.limit_unsent(bytes)
    }

    fn room(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            std::future::poll_fn(|cx| self.poll_drain(cx)).await?;
            self.inner.room().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory;
    use capwise_proto::mse::skeys_from;
    use std::net::SocketAddr;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const LIMIT: Duration = Duration::from_secs(10);

    async fn handshake(
        provide: Methods,
        accept: Encryption,
        info_hash: [u8; 20],
    ) -> (
        Result<Transport, HandshakeError>,
        Result<(Transport, [u8; 20]), HandshakeError>,
    ) {
        let (a, b) = memory::pair(addr(1), addr(2), 64 * 1024);
        let budget = DhBudget::new(Duration::ZERO);
        let skeys = skeys_from(&[[7; 20], [9; 20]]);
        tokio::join!(
            initiate(a, info_hash, provide, b"hello, responder".to_vec(), LIMIT),
            respond(b, skeys, accept.responder(), &budget, LIMIT)
        )
    }

    #[tokio::test]
    async fn rc4_both_ways_with_the_initial_payload_first() {
        let (a, b) = handshake(Methods::RC4, Encryption::Require, [9; 20]).await;
        let (a, (mut b, info_hash)) = (a.unwrap(), b.unwrap());
        assert_eq!(info_hash, [9; 20]);
        assert_eq!(a.encryption(), Some(Method::Rc4));
        assert_eq!(b.encryption(), Some(Method::Rc4));
        let mut ia = [0u8; 16];
        b.read_exact(&mut ia).await.unwrap();
        assert_eq!(&ia, b"hello, responder");
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (wire_a, wire_b) = (a.wire().clone(), b.wire().clone());
        let (_ra, mut wa) = a.into_split();
        let (mut rb, mut wb) = b.into_split();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            wa.write_all(&sent).await.unwrap();
            wa.flush().await.unwrap();
            wa
        });
        let mut got = vec![0u8; big.len()];
        rb.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);
        writer.await.unwrap();
        wb.write_all(b"back").await.unwrap();
        assert!(
            wire_a.sent() > big.len() as u64 + 96,
            "the handshake is counted"
        );
        assert_eq!(wire_a.sent(), wire_b.received());
    }

    #[tokio::test]
    async fn a_plaintext_payload_after_an_obfuscated_handshake() {
        let (a, b) = handshake(Methods::BOTH, Encryption::Allow, [7; 20]).await;
        let (mut a, (mut b, _)) = (a.unwrap(), b.unwrap());
        assert_eq!(a.encryption(), Some(Method::Plaintext));
        let mut ia = [0u8; 16];
        b.read_exact(&mut ia).await.unwrap();
        a.write_all(b"clear").await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"clear");
    }

    #[tokio::test]
    async fn an_unknown_torrent_or_a_method_not_accepted_fails_both_sides() {
        let (a, b) = handshake(Methods::RC4, Encryption::Require, [1; 20]).await;
        assert!(matches!(
            b.unwrap_err(),
            HandshakeError::Protocol(MseError::UnknownInfoHash)
        ));
        assert!(a.is_err());
        let (a, b) = handshake(Methods::PLAINTEXT, Encryption::Require, [7; 20]).await;
        assert!(matches!(
            b.unwrap_err(),
            HandshakeError::Protocol(MseError::NoCommonMethod { .. })
        ));
        assert!(a.is_err());
    }

    #[tokio::test]
    async fn the_opening_tells_plaintext_from_mse() {
        let (mut a, mut b) = memory::pair(addr(1), addr(2), 1024);
        a.write_all(&PROTOCOL_HEADER[..5]).await.unwrap();
        let tail = PROTOCOL_HEADER[5..].to_vec();
        let (seen, _) = tokio::join!(opening(&mut b), async move {
            a.write_all(&tail).await.unwrap();
            a
        });
        assert_eq!(seen.unwrap(), Opening::Plaintext);
        assert_eq!(b.peeked(), PROTOCOL_HEADER, "nothing consumed");

        let (mut a, mut b) = memory::pair(addr(1), addr(2), 1024);
        a.write_all(&[0x13, b'B', b'X']).await.unwrap();
        assert_eq!(opening(&mut b).await.unwrap(), Opening::Obfuscated);

        let (mut a, mut b) = memory::pair(addr(1), addr(2), 1024);
        a.write_all(&[0x13, b'B']).await.unwrap();
        drop(a);
        assert!(
            opening(&mut b).await.is_err(),
            "closed before it could tell"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stalls_is_timed_out() {
        let (mut a, b) = memory::pair(addr(1), addr(2), 64 * 1024);
        a.write_all(&[5u8; 96]).await.unwrap();
        let budget = DhBudget::new(Duration::ZERO);
        let err = respond(
            b,
            skeys_from(&[[7; 20]]),
            Encryption::Prefer.responder(),
            &budget,
            LIMIT,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HandshakeError::TimedOut(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_spaces_exponentiations() {
        let budget = DhBudget::new(Duration::from_millis(50));
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            budget.spend(|| ()).await.unwrap();
        }
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_fills_a_short_queue_and_the_rest_are_dropped() {
        let budget = DhBudget::new(Duration::from_millis(2));
        // A few waiting: the next still gets in, at once.
        let held: Vec<_> = (0..4)
            .map(|_| budget.waiting.try_acquire().unwrap())
            .collect();
        let start = tokio::time::Instant::now();
        budget.spend(|| ()).await.unwrap();
        assert!(start.elapsed() <= Duration::from_millis(2));
        // A flood fills the queue, then is refused; places come back when
        // their handshakes end.
        let mut many = Vec::new();
        for _ in 0..=255 {
            if let Ok(place) = budget.waiting.try_acquire() {
                many.push(place);
            }
        }
        assert_eq!(many.len() + held.len(), MAX_DH_WAITING);
        assert!(matches!(
            budget.spend(|| ()).await,
            Err(HandshakeError::Busy)
        ));
        drop(many);
        drop(held);
        assert_eq!(budget.waiting.available_permits(), MAX_DH_WAITING);
        budget.spend(|| ()).await.unwrap();
    }
}
