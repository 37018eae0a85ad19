//! Hostile MSE/PE handshakes against a listening peer (capwise): a scripted dialer that sends a
//! broken opening and measures how long the peer keeps the connection open.
//!
//! Where the spec puts the bounds: the initiator's public key is 96 bytes, PadA at most 512, and
//! the responder looks for HASH('req1', S) within the first 96 + 512 + 20 bytes; a peer that closes
//! before 96 bytes, or sends more than 608 without the sync point, is dropped at once, and any
//! handshake that does not finish is dropped by the responder's time limit.

use anyhow::{Context, Result};
use rand::RngCore;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One way to break the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// 50 random bytes (less than a 96-byte public key), then our write side closed.
    Short,
    /// 96 random bytes (a public key), then junk up to 1,200 bytes: no sync point in 96 + 512 + 20.
    Oversized,
    /// A "public key" of 96 × 0xFF (above the prime, invalid), 200 bytes of junk, then silence.
    Garbage,
    /// 96 random bytes (a public key), then nothing: the handshake never finishes.
    Stall,
    /// One random byte every 300 ms: never silent long, never done; only a limit on the whole
    /// handshake (not an idle timer) ends it.
    Drip,
    /// A plaintext BitTorrent handshake for `info_hash` (refused by a peer that requires encryption).
    Plaintext { info_hash: [u8; 20] },
}

impl Attack {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Attack::Short => "short",
            Attack::Oversized => "oversized",
            Attack::Garbage => "garbage",
            Attack::Stall => "stall",
            Attack::Drip => "drip",
            Attack::Plaintext { .. } => "plaintext",
        }
    }

    /// The attacks every listener must drop, whatever its encryption mode.
    pub const BROKEN: [Attack; 5] = [
        Attack::Short,
        Attack::Oversized,
        Attack::Garbage,
        Attack::Stall,
        Attack::Drip,
    ];
}

/// How a hostile handshake ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attack: Attack,
    /// Bytes we sent.
    pub sent: usize,
    /// Bytes the peer sent us (its public key and padding, at most 608, for the MSE attacks).
    pub received: Vec<u8>,
    /// Time from connect until the peer closed (EOF or reset); None: still open at the bound.
    pub closed_after: Option<Duration>,
}

fn closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

fn plaintext_handshake(info_hash: &[u8; 20]) -> Vec<u8> {
    let mut h = Vec::with_capacity(68);
    h.extend_from_slice(crate::sniff::PLAINTEXT_HEADER);
    h.extend_from_slice(&[0u8; 8]);
    h.extend_from_slice(info_hash);
    h.extend_from_slice(b"-CW0000-hostile-plai");
    h
}

/// Dials `addr`, runs `attack`, and waits at most `bound` for the peer to close the connection.
pub fn run(addr: SocketAddr, attack: Attack, bound: Duration) -> Result<Outcome> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr} for {attack:?}"))?;
    let t0 = Instant::now();
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let opening = match attack {
        Attack::Short => random_bytes(50),
        Attack::Oversized => random_bytes(1_200),
        Attack::Garbage => {
            let mut b = vec![0xFF; 96];
            b.extend(random_bytes(200));
            b
        }
        Attack::Stall => {
            let mut b = random_bytes(96);
            // Below the prime (whose top bytes are 0xFF), so that the key is valid.
            b[0] = 0x7F;
            b
        }
        Attack::Drip => Vec::new(),
        Attack::Plaintext { info_hash } => plaintext_handshake(&info_hash),
    };
    let mut out = Outcome {
        attack,
        sent: 0,
        received: Vec::new(),
        closed_after: None,
    };
    match s.write_all(&opening) {
        Ok(()) => out.sent = opening.len(),
        Err(e) if closed(&e) => {
            out.closed_after = Some(t0.elapsed());
            return Ok(out);
        }
        Err(e) => return Err(e).context("writing the opening"),
    }
    if attack == Attack::Short {
        s.shutdown(Shutdown::Write)?;
    }
    let mut next_drip = t0;
    let mut buf = [0u8; 4096];
    while t0.elapsed() < bound {
        if attack == Attack::Drip && Instant::now() >= next_drip {
            next_drip += Duration::from_millis(300);
            match s.write_all(&random_bytes(1)) {
                Ok(()) => out.sent += 1,
                Err(e) if closed(&e) => {
                    out.closed_after = Some(t0.elapsed());
                    break;
                }
                Err(e) => return Err(e).context("dripping"),
            }
        }
        match s.read(&mut buf) {
            Ok(0) => {
                out.closed_after = Some(t0.elapsed());
                break;
            }
            // Bounded: a peer that streams at us is cut off at 1 MiB.
            Ok(n) if out.received.len() < 1 << 20 => out.received.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if closed(&e) => {
                out.closed_after = Some(t0.elapsed());
                break;
            }
            Err(e) => return Err(e).context("reading"),
        }
    }
    Ok(out)
}

/// Runs every attack in `attacks` at once (a thread each) against `addr`.
pub fn run_all(addr: SocketAddr, attacks: &[Attack], bound: Duration) -> Result<Vec<Outcome>> {
    let handles: Vec<_> = attacks
        .iter()
        .map(|&a| std::thread::spawn(move || run(addr, a, bound)))
        .collect();
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a hostile handshake thread panicked"))?
        })
        .collect()
}
