//! Scripted hostile BitTorrent peers (plain std threads and sockets) for robustness tests.
//!
//! Peers for a torrent's data ([`HostilePeer::start`]) and for its metadata
//! ([`HostilePeer::start_metadata`], the `Meta*` modes: ut_metadata, BEP 9,
//! scripted in `hostile/metadata.rs`).
//!
//! A [`HostilePeer`] listens on 127.0.0.1, registers itself with a tracker ([`HostilePeer::announce`])
//! so that a leecher dials it, and then misbehaves in one scripted way ([`Mode`]). What happened is
//! counted in atomics ([`HostilePeer::counts`]). Every connection is served in its own thread with
//! 5 s socket timeouts and a bounded lifetime; at most [`MAX_CONNECTIONS`] are served. Dropping the
//! peer stops the listener, shuts every connection down and joins every thread.

use anyhow::{bail, Context, Result};
use rand::RngCore;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections served per hostile peer; later ones are closed at once.
pub const MAX_CONNECTIONS: u64 = 50;
/// Read and write timeout of every socket.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection is served longer than this.
const CONN_LIFETIME: Duration = Duration::from_secs(300);
/// Largest message accepted from the remote (ours are tiny; a bitfield of a big torrent fits).
const MAX_MESSAGE: usize = 1 << 20;
/// Largest block we answer in [`Mode::CorruptData`].
const MAX_BLOCK: usize = 128 * 1024;
const PSTR: &[u8; 19] = b"BitTorrent protocol";
const HANDSHAKE_LEN: usize = 68;

const MSG_UNCHOKE: u8 = 1;
const MSG_HAVE: u8 = 4;
const MSG_BITFIELD: u8 = 5;
const MSG_REQUEST: u8 = 6;
const MSG_PIECE: u8 = 7;
const MSG_HAVE_ALL: u8 = 0x0E;

/// How a hostile peer misbehaves once a remote has sent it a valid handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// 68 random bytes instead of a handshake, then random junk, then close.
    Garbage,
    /// A well-formed handshake naming another info-hash.
    WrongInfoHash,
    /// Valid handshake, then a message length prefix of 0xFFFF_FFF0 and a few bytes.
    OversizedLength,
    /// Valid handshake, then a bitfield three bytes too long.
    BadBitfield,
    /// Valid handshake, full bitfield, `have(piece_count + 5)`, `request(piece_count + 1, 0, 16 KiB)`.
    OutOfRange,
    /// Valid handshake (fast extension), have-all, unchoke, and every request answered with a
    /// `piece` of the right length but wrong bytes (all 0xAA).
    CorruptData,
    /// Slow loris: valid handshake, full bitfield, unchoke, then never answers a request.
    Silent,
    /// ut_metadata announced with a `metadata_size` of 4 GiB.
    MetaHugeSize,
    /// The true `metadata_size`, and every request answered with a 100-byte block.
    MetaWrongBlock,
    /// The true `metadata_size`, and blocks of the right size whose bytes are all 0xAA
    /// (so the metadata's SHA-1 does not match).
    MetaBadHash,
    /// The true `metadata_size`, and every request rejected, forever.
    MetaRejects,
}

mod metadata;

impl Mode {
    /// The modes that misbehave in the metadata exchange (peers of a magnet link).
    pub const METADATA: [Mode; 4] = [
        Mode::MetaHugeSize,
        Mode::MetaWrongBlock,
        Mode::MetaBadHash,
        Mode::MetaRejects,
    ];

    pub const ALL: [Mode; 7] = [
        Mode::Garbage,
        Mode::WrongInfoHash,
        Mode::OversizedLength,
        Mode::BadBitfield,
        Mode::OutOfRange,
        Mode::CorruptData,
        Mode::Silent,
    ];

    /// A short tag, also the 3rd..6th bytes of the peer id.
    pub fn tag(self) -> &'static str {
        match self {
            Mode::Garbage => "GARB",
            Mode::WrongInfoHash => "WRIH",
            Mode::OversizedLength => "OVSZ",
            Mode::BadBitfield => "BADB",
            Mode::OutOfRange => "OOR_",
            Mode::CorruptData => "CORR",
            Mode::Silent => "SILE",
            Mode::MetaHugeSize => "MHUG",
            Mode::MetaWrongBlock => "MBLK",
            Mode::MetaBadHash => "MSHA",
            Mode::MetaRejects => "MREJ",
        }
    }
}

/// The shape of the torrent a hostile peer pretends to serve.
#[derive(Debug, Clone, Copy)]
struct Shape {
    info_hash: [u8; 20],
    piece_count: u32,
    piece_len: u32,
    total_len: u64,
    /// The size of the info dictionary (the `Meta*` modes).
    metadata_len: u64,
}

impl Shape {
    fn piece_size(&self, index: u32) -> u64 {
        let start = index as u64 * self.piece_len as u64;
        self.total_len
            .saturating_sub(start)
            .min(self.piece_len as u64)
    }

    /// A bitfield with every piece set and the spare bits clear.
    fn full_bitfield(&self) -> Vec<u8> {
        let n = self.piece_count as usize;
        let mut b = vec![0xFFu8; n.div_ceil(8)];
        if !n.is_multiple_of(8) {
            if let Some(last) = b.last_mut() {
                *last = 0xFFu8 << (8 - n % 8);
            }
        }
        b
    }
}

/// What a hostile peer saw and did (all connections from accepted remotes).
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    rejected: AtomicU64,
    handshakes: AtomicU64,
    requests: AtomicU64,
    pieces_sent: AtomicU64,
    bytes_sent: AtomicU64,
    remote_closed: AtomicU64,
}

/// A snapshot of a hostile peer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// TCP connections accepted (including rejected ones).
    pub connections: u64,
    /// Connections closed at once: over the cap, or a peer id without the accepted prefix.
    pub rejected: u64,
    /// Valid handshakes for our info-hash received from accepted remotes.
    pub handshakes: u64,
    /// `request` messages received.
    pub requests: u64,
    /// `piece` messages sent.
    pub pieces_sent: u64,
    /// Bytes written to remotes (handshakes, messages, junk).
    pub bytes_sent: u64,
    /// Served connections that the remote closed (EOF or reset) before we did.
    pub remote_closed: u64,
}

struct Shared {
    mode: Mode,
    shape: Shape,
    peer_id: [u8; 20],
    accept_prefix: Vec<u8>,
    stop: AtomicBool,
    stats: Stats,
    /// Clones of every served stream, shut down on drop to unblock their threads.
    streams: Mutex<Vec<TcpStream>>,
}

/// One scripted hostile peer on 127.0.0.1; stops (and joins every thread) on drop.
pub struct HostilePeer {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HostilePeer {
    /// Starts a hostile peer for a torrent of `piece_count` pieces of `piece_len` bytes
    /// (`total_len` in all) with `info_hash`; serves every remote.
    pub fn start(
        mode: Mode,
        info_hash: [u8; 20],
        piece_count: u32,
        piece_len: u32,
        total_len: u64,
    ) -> Result<Self> {
        Self::start_for(mode, info_hash, piece_count, piece_len, total_len, b"")
    }

    /// A peer of a magnet link whose info dictionary is `metadata_len` bytes: misbehaves in
    /// the ut_metadata exchange as one of the [`Mode::METADATA`] modes (its `requests` count
    /// ut_metadata requests, `pieces_sent` its answers); serves only remotes whose peer id
    /// starts with `peer_id_prefix`.
    pub fn start_metadata(
        mode: Mode,
        info_hash: [u8; 20],
        metadata_len: u64,
        peer_id_prefix: &[u8],
    ) -> Result<Self> {
        if !Mode::METADATA.contains(&mode) || metadata_len == 0 {
            bail!("{mode:?} is not a metadata mode, or the metadata is empty");
        }
        Self::start_shaped(mode, info_hash, (1, 1, 1, metadata_len), peer_id_prefix)
    }

    /// Like [`start`](Self::start), but only serves remotes whose handshake peer id starts with
    /// `peer_id_prefix` (e.g. `b"-CW"` for capwise); others are closed after their handshake, so a
    /// reference client in the same swarm does not blur the counters.
    pub fn start_for(
        mode: Mode,
        info_hash: [u8; 20],
        piece_count: u32,
        piece_len: u32,
        total_len: u64,
        peer_id_prefix: &[u8],
    ) -> Result<Self> {
        if piece_count == 0 || piece_len == 0 || total_len == 0 {
            bail!("hostile peer needs a non-empty torrent");
        }
        Self::start_shaped(
            mode,
            info_hash,
            (piece_count, piece_len, total_len, 0),
            peer_id_prefix,
        )
    }

    fn start_shaped(
        mode: Mode,
        info_hash: [u8; 20],
        (piece_count, piece_len, total_len, metadata_len): (u32, u32, u64, u64),
        peer_id_prefix: &[u8],
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a hostile peer")?;
        let port = listener.local_addr()?.port();
        let mut peer_id = [0u8; 20];
        peer_id[..2].copy_from_slice(b"-H");
        peer_id[2..6].copy_from_slice(mode.tag().as_bytes());
        peer_id[6] = b'-';
        for b in &mut peer_id[7..] {
            *b = b'0' + (rand::random::<u8>() % 10);
        }
        let shared = Arc::new(Shared {
            mode,
            shape: Shape {
                info_hash,
                piece_count,
                piece_len,
                total_len,
                metadata_len,
            },
            peer_id,
            accept_prefix: peer_id_prefix.to_vec(),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            streams: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("hostile-{}", mode.tag()))
            .spawn(move || accept_loop(listener, s))
            .context("spawning a hostile peer thread")?;
        Ok(Self {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`
    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn counts(&self) -> Counts {
        let s = &self.shared.stats;
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Counts {
            connections: g(&s.connections),
            rejected: g(&s.rejected),
            handshakes: g(&s.handshakes),
            requests: g(&s.requests),
            pieces_sent: g(&s.pieces_sent),
            bytes_sent: g(&s.bytes_sent),
            remote_closed: g(&s.remote_closed),
        }
    }

    /// Registers this peer as a seeder (`left=0`) at `tracker_url` (`http://HOST:PORT/announce`)
    /// with a hand-written HTTP/1.0 GET; errors on a non-200 answer or a failure reason.
    pub fn announce(&self, tracker_url: &str) -> Result<()> {
        let rest = tracker_url
            .strip_prefix("http://")
            .with_context(|| format!("not an http tracker URL: {tracker_url}"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr: SocketAddr = host
            .parse()
            .with_context(|| format!("tracker host must be IP:PORT: {host}"))?;
        let enc = |b: &[u8]| b.iter().map(|b| format!("%{b:02X}")).collect::<String>();
        let sep = if path.contains('?') { '&' } else { '?' };
        let req = format!(
            "GET /{path}{sep}info_hash={}&peer_id={}&port={}&uploaded=0&downloaded=0&left=0\
             &event=started&compact=1&numwant=0 HTTP/1.0\r\nHost: {host}\r\n\
             Connection: close\r\n\r\n",
            enc(&self.shared.shape.info_hash),
            enc(&self.shared.peer_id),
            self.port
        );
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connecting to tracker {addr}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.write_all(req.as_bytes())?;
        let mut resp = Vec::new();
        s.take(1 << 20).read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp);
        let status = text.lines().next().unwrap_or("");
        if !status.contains(" 200") {
            bail!(
                "tracker answered {status:?} to the announce of {:?}",
                self.mode()
            );
        }
        if text.contains("failure reason") {
            bail!("tracker refused the announce of {:?}: {text}", self.mode());
        }
        Ok(())
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept(); the acceptor then shuts down and joins every connection.
        let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    // Bounded: every accepted connection counts, and the cap closes all beyond it.
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else {
            // e.g. out of descriptors: do not spin.
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let n = shared.stats.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if n > MAX_CONNECTIONS {
            shared.stats.rejected.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        shared
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(clone);
        let s = shared.clone();
        match std::thread::Builder::new()
            .name(format!("hostile-{}-conn", shared.mode.tag()))
            .spawn(move || serve(stream, &s))
        {
            Ok(h) => workers.push(h),
            Err(_) => continue,
        }
        workers.retain(|h| !h.is_finished());
    }
    for s in shared
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        let _ = s.shutdown(Shutdown::Both);
    }
    for h in workers {
        let _ = h.join();
    }
}

/// How a served connection ended.
enum End {
    /// The remote closed or reset it.
    Remote,
    /// We stopped (drop, lifetime, our own protocol error).
    Local,
}

/// One accepted connection, with a read buffer that survives read timeouts.
struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    shared: &'a Shared,
    deadline: Instant,
}

impl Conn<'_> {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.shared
            .stats
            .bytes_sent
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn send_msg(&mut self, id: u8, payload: &[u8]) -> io::Result<()> {
        let mut m = Vec::with_capacity(5 + payload.len());
        m.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
        m.push(id);
        m.extend_from_slice(payload);
        self.send(&m)
    }

    fn handshake(&mut self, info_hash: &[u8; 20], fast: bool) -> io::Result<()> {
        let mut reserved = [0u8; 8];
        if fast {
            reserved[7] |= 0x04;
        }
        self.handshake_with(info_hash, reserved)
    }

    fn handshake_with(&mut self, info_hash: &[u8; 20], reserved: [u8; 8]) -> io::Result<()> {
        let mut h = Vec::with_capacity(HANDSHAKE_LEN);
        h.push(19);
        h.extend_from_slice(PSTR);
        h.extend_from_slice(&reserved);
        h.extend_from_slice(info_hash);
        h.extend_from_slice(&self.shared.peer_id);
        self.send(&h)
    }

    /// Reads until `buf` holds at least `n` bytes. `Ok(Err(end))` when the connection ends.
    fn fill(&mut self, n: usize) -> io::Result<Result<(), End>> {
        let mut chunk = [0u8; 16 * 1024];
        while self.buf.len() < n {
            if self.shared.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline {
                return Ok(Err(End::Local));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Err(End::Remote)),
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(Err(End::Remote))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Ok(()))
    }

    /// The remote's handshake: `Some(peer_id)` if it names our info-hash.
    fn read_handshake(&mut self) -> io::Result<Result<Option<[u8; 20]>, End>> {
        if let Err(end) = self.fill(HANDSHAKE_LEN)? {
            return Ok(Err(end));
        }
        let h: Vec<u8> = self.buf.drain(..HANDSHAKE_LEN).collect();
        if h[0] != 19 || &h[1..20] != PSTR || h[28..48] != self.shared.shape.info_hash {
            return Ok(Ok(None));
        }
        let mut id = [0u8; 20];
        id.copy_from_slice(&h[48..68]);
        Ok(Ok(Some(id)))
    }

    /// The next message `(id, payload)`; keep-alives are skipped.
    fn next_message(&mut self) -> io::Result<Result<(u8, Vec<u8>), End>> {
        // Bounded by the connection deadline inside `fill`.
        loop {
            if let Err(end) = self.fill(4)? {
                return Ok(Err(end));
            }
            let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let len = len as usize;
            if len > MAX_MESSAGE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("remote sent a {len}-byte message"),
                ));
            }
            if len == 0 {
                self.buf.drain(..4);
                continue;
            }
            if let Err(end) = self.fill(4 + len)? {
                return Ok(Err(end));
            }
            let m: Vec<u8> = self.buf.drain(..4 + len).collect();
            return Ok(Ok((m[4], m[5..].to_vec())));
        }
    }

    /// Reads and discards everything until the connection ends.
    fn drain_until_end(&mut self) -> io::Result<End> {
        loop {
            match self.next_message()? {
                Ok(_) => {}
                Err(end) => return Ok(end),
            }
        }
    }

    /// Reads messages, counting requests and answering them with `answer` until the end.
    fn serve_requests(&mut self, answer: bool) -> io::Result<End> {
        loop {
            let (id, payload) = match self.next_message()? {
                Ok(m) => m,
                Err(end) => return Ok(end),
            };
            if id != MSG_REQUEST || payload.len() != 12 {
                continue;
            }
            self.shared.stats.requests.fetch_add(1, Ordering::SeqCst);
            if !answer {
                continue;
            }
            let word = |i: usize| u32::from_be_bytes(payload[i..i + 4].try_into().expect("4"));
            let (index, begin, length) = (word(0), word(4), word(8));
            let shape = self.shared.shape;
            if index >= shape.piece_count
                || length as usize > MAX_BLOCK
                || begin as u64 + length as u64 > shape.piece_size(index)
            {
                continue;
            }
            let mut p = Vec::with_capacity(8 + length as usize);
            p.extend_from_slice(&index.to_be_bytes());
            p.extend_from_slice(&begin.to_be_bytes());
            p.resize(8 + length as usize, 0xAA);
            self.send_msg(MSG_PIECE, &p)?;
            self.shared.stats.pieces_sent.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut c = Conn {
        stream,
        buf: Vec::new(),
        shared,
        deadline: Instant::now() + CONN_LIFETIME,
    };
    let end = match script(&mut c) {
        Ok(end) => end,
        // Write errors: the remote went away while we were talking.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ) =>
        {
            End::Remote
        }
        Err(_) => End::Local,
    };
    if matches!(end, End::Remote) && !shared.stop.load(Ordering::SeqCst) {
        shared.stats.remote_closed.fetch_add(1, Ordering::SeqCst);
    }
    let _ = c.stream.shutdown(Shutdown::Both);
}

/// Plays this peer's [`Mode`] on one connection.
fn script(c: &mut Conn<'_>) -> io::Result<End> {
    let shared = c.shared;
    let shape = shared.shape;
    let remote_id = match c.read_handshake()? {
        Ok(Some(id)) => id,
        Ok(None) => return Ok(End::Local),
        Err(end) => return Ok(end),
    };
    if !remote_id.starts_with(&shared.accept_prefix) {
        shared.stats.rejected.fetch_add(1, Ordering::SeqCst);
        return Ok(End::Local);
    }
    shared.stats.handshakes.fetch_add(1, Ordering::SeqCst);
    match shared.mode {
        Mode::Garbage => {
            let mut junk = vec![0u8; HANDSHAKE_LEN + 4096];
            rand::thread_rng().fill_bytes(&mut junk);
            // Never a valid handshake, whatever the random bytes.
            junk[0] = 0xFF;
            c.send(&junk)?;
            Ok(End::Local)
        }
        Mode::WrongInfoHash => {
            let mut other = shape.info_hash;
            for b in &mut other {
                *b ^= 0x5A;
            }
            c.handshake(&other, false)?;
            c.drain_until_end()
        }
        Mode::OversizedLength => {
            c.handshake(&shape.info_hash, false)?;
            let mut m = 0xFFFF_FFF0u32.to_be_bytes().to_vec();
            m.push(MSG_PIECE);
            m.extend_from_slice(&[0x55; 1024]);
            c.send(&m)?;
            c.drain_until_end()
        }
        Mode::BadBitfield => {
            c.handshake(&shape.info_hash, false)?;
            let mut bf = shape.full_bitfield();
            bf.extend_from_slice(&[0xFF; 3]);
            c.send_msg(MSG_BITFIELD, &bf)?;
            c.drain_until_end()
        }
        Mode::OutOfRange => {
            c.handshake(&shape.info_hash, false)?;
            c.send_msg(MSG_BITFIELD, &shape.full_bitfield())?;
            c.send_msg(MSG_HAVE, &(shape.piece_count + 5).to_be_bytes())?;
            let mut r = Vec::with_capacity(12);
            r.extend_from_slice(&(shape.piece_count + 1).to_be_bytes());
            r.extend_from_slice(&0u32.to_be_bytes());
            r.extend_from_slice(&(16u32 * 1024).to_be_bytes());
            c.send_msg(MSG_REQUEST, &r)?;
            c.drain_until_end()
        }
        Mode::CorruptData => {
            c.handshake(&shape.info_hash, true)?;
            c.send_msg(MSG_HAVE_ALL, &[])?;
            c.send_msg(MSG_UNCHOKE, &[])?;
            c.serve_requests(true)
        }
        Mode::Silent => {
            c.handshake(&shape.info_hash, false)?;
            c.send_msg(MSG_BITFIELD, &shape.full_bitfield())?;
            c.send_msg(MSG_UNCHOKE, &[])?;
            c.serve_requests(false)
        }
        Mode::MetaHugeSize | Mode::MetaWrongBlock | Mode::MetaBadHash | Mode::MetaRejects => {
            metadata::script(c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: [u8; 20] = [7u8; 20];

    fn connect(p: &HostilePeer, peer_id: &[u8; 20]) -> TcpStream {
        let s = TcpStream::connect_timeout(&p.addr(), Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut h = vec![19u8];
        h.extend_from_slice(PSTR);
        h.extend_from_slice(&[0u8; 8]);
        h.extend_from_slice(&HASH);
        h.extend_from_slice(peer_id);
        (&s).write_all(&h).unwrap();
        s
    }

    fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut m = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut m).unwrap();
        (m[0], m[1..].to_vec())
    }

    #[test]
    fn full_bitfield_clears_spare_bits() {
        let shape = Shape {
            info_hash: HASH,
            piece_count: 10,
            piece_len: 4,
            total_len: 38,
            metadata_len: 0,
        };
        assert_eq!(shape.full_bitfield(), vec![0xFF, 0xC0]);
        assert_eq!(shape.piece_size(9), 2);
        assert_eq!(shape.piece_size(0), 4);
    }

    #[test]
    fn corrupt_peer_answers_requests_with_junk() {
        let p = HostilePeer::start(Mode::CorruptData, HASH, 4, 32 * 1024, 100_000).unwrap();
        let mut s = connect(&p, b"-CW0100-000000000001");
        let mut h = [0u8; HANDSHAKE_LEN];
        s.read_exact(&mut h).unwrap();
        assert_eq!(&h[28..48], &HASH);
        assert_eq!(h[27] & 0x04, 0x04);
        assert_eq!(read_msg(&mut s), (MSG_HAVE_ALL, vec![]));
        assert_eq!(read_msg(&mut s), (MSG_UNCHOKE, vec![]));
        let mut req = vec![0, 0, 0, 13, MSG_REQUEST];
        for w in [3u32, 0, 1000] {
            req.extend_from_slice(&w.to_be_bytes());
        }
        s.write_all(&req).unwrap();
        let (id, payload) = read_msg(&mut s);
        assert_eq!(id, MSG_PIECE);
        assert_eq!(payload.len(), 8 + 1000);
        assert!(payload[8..].iter().all(|&b| b == 0xAA));
        drop(s);
        let t = Instant::now();
        while p.counts().remote_closed == 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let c = p.counts();
        assert_eq!((c.connections, c.handshakes, c.requests), (1, 1, 1));
        assert_eq!((c.pieces_sent, c.remote_closed), (1, 1));
    }

    #[test]
    fn filtered_peer_rejects_other_clients_and_drop_joins() {
        let p = HostilePeer::start_for(Mode::Silent, HASH, 4, 32 * 1024, 100_000, b"-CW").unwrap();
        let mut other = connect(&p, b"-LT2000-000000000001");
        let mut buf = [0u8; 1];
        // Closed without a handshake.
        assert_eq!(other.read(&mut buf).unwrap_or(0), 0);
        // A capwise-like remote stays connected; drop must not hang on it.
        let _cw = connect(&p, b"-CW0100-000000000001");
        let t = Instant::now();
        while p.counts().handshakes == 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(p.counts().rejected, 1);
        assert_eq!(p.counts().handshakes, 1);
        let t = Instant::now();
        drop(p);
        assert!(t.elapsed() < Duration::from_secs(3));
    }
}
