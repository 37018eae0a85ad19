//! A capture of the TCP traffic on `lo` (a raw `AF_PACKET` socket, no tcpdump), to prove that a
//! connection was really encrypted: the plaintext BitTorrent handshake header
//! (`\x13BitTorrent protocol`) must appear in no segment, and the first payload segment of every
//! connection it saw open must not begin with it.
//!
//! Run it only inside the test's private network namespace (its `lo` is the test's alone). It
//! needs `CAP_NET_RAW` (root in the namespace). Loopback frames carry a 14-byte Ethernet header
//! of zeros; only IPv4 TCP between the given ports is looked at. Each frame shows up once as
//! outgoing and once as incoming on `lo`: outgoing copies are skipped.

use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The 20 bytes that open a plaintext BitTorrent handshake.
pub const PLAINTEXT_HEADER: &[u8; 20] = b"\x13BitTorrent protocol";

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const ETH_HEADER: usize = 14;
const PACKET_OUTGOING: u8 = 4;
/// No capture runs longer than this, whatever the test does.
const MAX_CAPTURE: Duration = Duration::from_secs(900);
/// How long a stopped capture goes on reading the frames still queued.
const MAX_DRAIN: Duration = Duration::from_secs(5);

/// One direction of a TCP connection: (source, destination).
type Flow = (SocketAddrV4, SocketAddrV4);

/// What a [`LoopbackCapture`] saw.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// TCP segments between the watched ports.
    pub segments: u64,
    /// Their TCP payload bytes.
    pub payload_bytes: u64,
    /// Directions of connections whose SYN was seen.
    pub opened: u64,
    /// Directions whose first payload segment (sequence number ISN + 1) was seen, with its first
    /// bytes (at most 20).
    pub first_payloads: Vec<(Flow, Vec<u8>)>,
    /// Segments holding [`PLAINTEXT_HEADER`] anywhere in their payload, and the flow of the first.
    pub plaintext_headers: u64,
    pub first_plaintext_flow: Option<Flow>,
    /// Frames the kernel dropped from the socket's queue (PACKET_STATISTICS).
    pub kernel_drops: u64,
}

impl Captured {
    /// Directions whose first payload segment starts with the plaintext handshake header.
    pub fn plaintext_openings(&self) -> usize {
        self.first_payloads
            .iter()
            .filter(|(_, b)| b.starts_with(PLAINTEXT_HEADER))
            .count()
    }

    /// Ok when connections were seen opening and carrying payload and none showed the plaintext
    /// header; otherwise why not.
    pub fn ensure_encrypted(&self, min_payload: u64) -> Result<()> {
        if self.first_payloads.is_empty() {
            bail!("the capture saw no connection's first payload segment: {self:?}");
        }
        if self.payload_bytes < min_payload {
            bail!(
                "the capture saw {} payload bytes, fewer than {min_payload}: {self:?}",
                self.payload_bytes
            );
        }
        if self.plaintext_headers > 0 || self.plaintext_openings() > 0 {
            bail!(
                "the plaintext BitTorrent handshake went over the wire ({} segments, first on {:?}; \
                 {} connections opened with it)",
                self.plaintext_headers,
                self.first_plaintext_flow,
                self.plaintext_openings()
            );
        }
        Ok(())
    }
}

/// A running capture on `lo`, in a thread of its own; [`finish`](Self::finish) stops it.
pub struct LoopbackCapture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Captured>>>,
}

/// An owned file descriptor closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and close it once.
        unsafe {
            libc::close(self.0);
        }
    }
}

fn raw_socket_on_lo() -> Result<Fd> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            libc::c_int::from(ETH_P_ALL.to_be()),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("socket(AF_PACKET, SOCK_RAW): needs CAP_NET_RAW (root in the namespace)");
    }
    let fd = Fd(fd);
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if ifindex == 0 {
        bail!("no lo interface: {}", std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a valid sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            fd.0,
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET, lo)");
    }
    // A deep queue, so that bulk transfers at loopback speed drop (almost) nothing; FORCE works as
    // root past rmem_max.
    let rcvbuf: libc::c_int = 64 << 20;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: valid option values of the sizes given.
    unsafe {
        libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::addr_of!(rcvbuf).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
        if libc::setsockopt(
            fd.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error()).context("SO_RCVTIMEO");
        }
    }
    Ok(fd)
}

fn kernel_drops(fd: &Fd) -> u64 {
    // SAFETY: tpacket_stats is plain data; getsockopt writes at most `len` bytes.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as u32;
    let r = unsafe {
        libc::getsockopt(
            fd.0,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            std::ptr::addr_of_mut!(st).cast(),
            &mut len,
        )
    };
    if r == 0 {
        u64::from(st.tp_drops)
    } else {
        0
    }
}

/// The parts of an IPv4 TCP segment the capture looks at.
struct Segment<'a> {
    flow: Flow,
    seq: u32,
    syn: bool,
    payload: &'a [u8],
}

fn parse_frame(frame: &[u8]) -> Option<Segment<'_>> {
    if frame.len() < ETH_HEADER + 20 || frame[12..14] != ETH_P_IP.to_be_bytes() {
        return None;
    }
    let ip = &frame[ETH_HEADER..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    if ip[0] >> 4 != 4 || ip[9] != 6 || ihl < 20 || total < ihl + 20 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let tcp = &ip[ihl..total];
    let doff = usize::from(tcp[12] >> 4) * 4;
    if doff < 20 || doff > tcp.len() {
        return None;
    }
    Some(Segment {
        flow: (
            SocketAddrV4::new(src, u16::from_be_bytes([tcp[0], tcp[1]])),
            SocketAddrV4::new(dst, u16::from_be_bytes([tcp[2], tcp[3]])),
        ),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        syn: tcp[13] & 0x02 != 0,
        payload: &tcp[doff..],
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn capture(fd: Fd, ports: HashSet<u16>, stop: Arc<AtomicBool>) -> Result<Captured> {
    let mut out = Captured::default();
    // Per direction: the ISN, until its first payload segment is seen.
    let mut isn: HashMap<Flow, u32> = HashMap::new();
    let mut buf = vec![0u8; 70_000];
    let t0 = Instant::now();
    // Once told to stop, what is still queued is read too: the loop ends at the first read that
    // finds the queue empty for a whole SO_RCVTIMEO, or after MAX_DRAIN on a busy `lo`.
    let mut drain_until: Option<Instant> = None;
    while t0.elapsed() < MAX_CAPTURE {
        if drain_until.is_none() && stop.load(Ordering::Relaxed) {
            drain_until = Some(Instant::now() + MAX_DRAIN);
        }
        let stopping = drain_until.is_some();
        if drain_until.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buf and from are valid for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                fd.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                std::ptr::addr_of_mut!(from).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut if stopping => break,
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => continue,
                _ => return Err(e).context("recvfrom on the lo capture"),
            }
        }
        if from.sll_pkttype == PACKET_OUTGOING {
            continue;
        }
        let Some(seg) = parse_frame(&buf[..n as usize]) else {
            continue;
        };
        let (src, dst) = seg.flow;
        if !ports.is_empty() && !ports.contains(&src.port()) && !ports.contains(&dst.port()) {
            continue;
        }
        out.segments += 1;
        out.payload_bytes += seg.payload.len() as u64;
        if seg.syn {
            out.opened += 1;
            isn.insert(seg.flow, seg.seq);
            continue;
        }
        if seg.payload.is_empty() {
            continue;
        }
        if isn.get(&seg.flow) == Some(&seg.seq.wrapping_sub(1)) {
            isn.remove(&seg.flow);
            let head = seg.payload[..seg.payload.len().min(20)].to_vec();
            out.first_payloads.push((seg.flow, head));
        }
        if contains(seg.payload, PLAINTEXT_HEADER) {
            out.plaintext_headers += 1;
            out.first_plaintext_flow.get_or_insert(seg.flow);
        }
    }
    out.kernel_drops = kernel_drops(&fd);
    Ok(out)
}

impl LoopbackCapture {
    /// Starts capturing TCP segments to or from any of `ports` (every TCP segment if empty).
    pub fn start(ports: &[u16]) -> Result<Self> {
        let fd = raw_socket_on_lo()?;
        let stop = Arc::new(AtomicBool::new(false));
        let ports: HashSet<u16> = ports.iter().copied().collect();
        let thread = std::thread::Builder::new()
            .name("lo-capture".into())
            .spawn({
                let stop = stop.clone();
                move || capture(fd, ports, stop)
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the capture once the frames already queued are read (the queue empty for 100 ms) and
    /// returns what it saw.
    pub fn finish(mut self) -> Result<Captured> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => bail!("the lo capture thread panicked"),
            None => bail!("the lo capture was already finished"),
        }
    }
}

impl Drop for LoopbackCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
