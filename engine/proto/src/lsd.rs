//! Local Service Discovery (BEP 14), sans-IO: `BT-SEARCH` announces
//! multicast on the local network, and what we hear of others'.
//!
//! - [`format`] and [`parse`]: the packet, pure. Packets we send are at most
//!   [`MAX_PACKET`] bytes (many info-hashes are split across packets);
//!   parsing tolerates header-name case and bare LF line ends, refuses
//!   anything else that is not a `BT-SEARCH` with a port and an info-hash,
//!   and never panics.
//! - [`Announcer`]: per torrent and interface ([`Target`]), an announce soon
//!   after the torrent or the interface is added, then every
//!   [`ANNOUNCE_INTERVAL`], and never twice within [`MIN_INTERVAL`];
//!   [`Announcer::poll_timeout`] says when it next has a packet to send. It
//!   takes torrents only with a [`PeerSharing`]: LSD is never used for an
//!   ordinary private torrent (BEP 27); a private channel torrent may use it
//!   (it stays on the LAN, and its peers must prove membership).
//! - [`Receiver`]: drops our own echoes (by cookie), limits how many packets
//!   one source address is heard per minute (in a bounded table), and yields
//!   the peer as the packet's *source* IP with the announced port (an
//!   address inside the packet is never used) for the info-hashes the
//!   announcer has (so never for a private torrent). The caller classifies
//!   that address like any other: hearing a peer over LSD does not make it
//!   a LAN peer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::metainfo::InfoHash;
use crate::privacy::PeerSharing;

/// The UDP port of both groups.
pub const PORT: u16 = 6771;
/// The IPv4 multicast group.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
/// The IPv6 multicast group (site-local scope).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f);
/// Largest packet we send, in bytes (BEP 14).
pub const MAX_PACKET: usize = 1400;
/// Largest packet we parse; longer ones are refused unread.
pub const MAX_PARSE: usize = 2048;
/// Longest cookie we accept, in bytes.
pub const MAX_COOKIE: usize = 64;
/// Time between two announces of one torrent on one interface.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Shortest time between two announces of one torrent on one interface.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// How soon a newly added torrent (or interface) is announced: long enough
/// for the torrents an agent restores together to share packets.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The window in which packets from one source address are counted.
pub const SOURCE_WINDOW: Duration = Duration::from_secs(60);
/// Most packets heard from one source address per [`SOURCE_WINDOW`]; the
/// rest are ignored. An honest peer with 200 torrents sends 8 per interface
/// every 5 minutes.
pub const MAX_PACKETS_PER_SOURCE: u32 = 8;
/// Most source addresses tracked; when full, the one whose window started
/// first is forgotten.
pub const MAX_SOURCES: usize = 256;

const REQUEST_LINE: &str = "BT-SEARCH * HTTP/1.1";
/// `Infohash: ` + 40 hex digits + CRLF.
const INFOHASH_LINE: usize = 10 + 40 + 2;

/// Which multicast group a packet goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// 239.192.152.143:6771
    V4,
    /// [ff15::efc0:988f]:6771
    V6,
}

impl Group {
    /// The group's address and port.
    pub fn addr(self) -> SocketAddr {
        match self {
            Group::V4 => SocketAddr::from((GROUP_V4, PORT)),
            Group::V6 => SocketAddr::from((GROUP_V6, PORT)),
        }
    }

    /// The `Host` header's value.
    pub fn host(self) -> &'static str {
        match self {
            Group::V4 => "239.192.152.143:6771",
            Group::V6 => "[ff15::efc0:988f]:6771",
        }
    }
}

/// Where announces go: an interface (its index, as the caller names it) and a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The interface index (`if_nametoindex`).
    pub ifindex: u32,
    /// The group on that interface.
    pub group: Group,
}

/// The cookie that marks our own packets, so that their echo is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie(String);

impl Cookie {
    /// A random cookie (8 hex digits), one per session.
    pub fn random() -> Cookie {
        Cookie::from_u32(rand::random())
    }

    /// The cookie for `n`, as 8 lower-case hex digits.
    pub fn from_u32(n: u32) -> Cookie {
        Cookie(format!("{n:08x}"))
    }

    /// Its text, as it appears in the `cookie` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A parsed `BT-SEARCH` packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The `Port` header: where the announcer accepts peer connections.
    pub port: u16,
    /// The well-formed `Infohash` headers, in order (malformed ones are skipped).
    pub info_hashes: Vec<InfoHash>,
    /// The `cookie` header, if any.
    pub cookie: Option<String>,
}

/// Why a packet is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LsdError {
    /// The packet is longer than [`MAX_PARSE`].
    #[error("LSD packet of {len} bytes exceeds {limit} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// [`MAX_PARSE`].
        limit: usize,
    },
    /// The packet is not UTF-8 text.
    #[error("LSD packet is not text")]
    NotText,
    /// The first line is not `BT-SEARCH * HTTP/1.1`.
    #[error("LSD packet does not start with `BT-SEARCH * HTTP/1.1` (got {0:?})")]
    BadRequestLine(String),
    /// A header line has no `:`.
    #[error("LSD header line without a colon: {0:?}")]
    MalformedHeader(String),
    /// There is no `Port` header.
    #[error("LSD packet has no Port header")]
    MissingPort,
    /// The `Port` header appears twice.
    #[error("LSD packet has more than one Port header")]
    DuplicatePort,
    /// The `Port` header is not a number in 1..=65535.
    #[error("LSD Port {0:?} is not a port number")]
    BadPort(String),
    /// The `cookie` header is longer than [`MAX_COOKIE`] bytes, or appears twice.
    #[error("LSD cookie header is too long or repeated")]
    BadCookie,
    /// No `Infohash` header holds 40 hex digits.
    #[error("LSD packet names no info-hash")]
    NoInfohash,
    /// The packet's source cannot be a peer (unspecified or multicast).
    #[error("LSD packet from {0}, which cannot be a peer")]
    BadSource(IpAddr),
}

/// The first 40 characters of `s`, for error messages.
fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

fn header_len(group: Group, port: u16, cookie: &Cookie) -> usize {
    REQUEST_LINE.len() + 2
        + "Host: ".len() + group.host().len() + 2
        + "Port: ".len() + port.to_string().len() + 2
        + "cookie: ".len() + cookie.as_str().len() + 2
        // BEP 14 ends the packet with two empty lines.
        + 4
}

/// How many info-hashes fit in one packet of at most [`MAX_PACKET`] bytes.
pub fn hashes_per_packet(group: Group, port: u16, cookie: &Cookie) -> usize {
    (MAX_PACKET.saturating_sub(header_len(group, port, cookie)) / INFOHASH_LINE).max(1)
}

/// The packets announcing `info_hashes` on `group`, each at most
/// [`MAX_PACKET`] bytes (empty when there is no info-hash).
pub fn format(group: Group, port: u16, info_hashes: &[InfoHash], cookie: &Cookie) -> Vec<Vec<u8>> {
    info_hashes
        .chunks(hashes_per_packet(group, port, cookie))
        .map(|chunk| format_one(group, port, chunk, cookie))
        .collect()
}

fn format_one(group: Group, port: u16, info_hashes: &[InfoHash], cookie: &Cookie) -> Vec<u8> {
    let mut out = String::with_capacity(MAX_PACKET);
    out.push_str(REQUEST_LINE);
    out.push_str("\r\nHost: ");
    out.push_str(group.host());
    out.push_str("\r\nPort: ");
    out.push_str(&port.to_string());
    out.push_str("\r\n");
    for hash in info_hashes {
        out.push_str("Infohash: ");
        out.push_str(&hash.to_hex());
        out.push_str("\r\n");
    }
    out.push_str("cookie: ");
    out.push_str(cookie.as_str());
    out.push_str("\r\n\r\n\r\n");
    out.into_bytes()
}

/// Parses a `BT-SEARCH` packet. Header names are matched ignoring case,
/// lines may end in CRLF or LF, unknown headers (`Host` included: the
/// packet's source is what counts) are ignored, and reading stops at the
/// first empty line. Malformed `Infohash` values are skipped, as libtorrent
/// does; a packet with none left is refused.
pub fn parse(packet: &[u8]) -> Result<Announce, LsdError> {
    if packet.len() > MAX_PARSE {
        return Err(LsdError::TooLarge {
            len: packet.len(),
            limit: MAX_PARSE,
        });
    }
    let text = std::str::from_utf8(packet).map_err(|_| LsdError::NotText)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    if !first.trim().eq_ignore_ascii_case(REQUEST_LINE) {
        return Err(LsdError::BadRequestLine(excerpt(first)));
    }
    let mut port = None;
    let mut cookie = None;
    let mut info_hashes = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| LsdError::MalformedHeader(excerpt(line)))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("port") {
            if port.is_some() {
                return Err(LsdError::DuplicatePort);
            }
            let n = value
                .parse::<u16>()
                .ok()
                .filter(|n| *n != 0 && value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| LsdError::BadPort(excerpt(value)))?;
            port = Some(n);
        } else if name.eq_ignore_ascii_case("infohash") {
            if let Some(hash) = InfoHash::from_hex(value) {
                if !info_hashes.contains(&hash) {
                    info_hashes.push(hash);
                }
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            if cookie.is_some() || value.len() > MAX_COOKIE {
                return Err(LsdError::BadCookie);
            }
            cookie = Some(value.to_string());
        }
    }
    let port = port.ok_or(LsdError::MissingPort)?;
    if info_hashes.is_empty() {
        return Err(LsdError::NoInfohash);
    }
    Ok(Announce {
        port,
        info_hashes,
        cookie,
    })
}

/// A packet to send: to `target.group`'s address, out of `target.ifindex`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub target: Target,
    /// The packet, at most [`MAX_PACKET`] bytes.
    pub packet: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    next_due: Instant,
    last_sent: Option<Instant>,
}

/// When to announce which torrent on which interface.
#[derive(Debug)]
pub struct Announcer {
    cookie: Cookie,
    port: u16,
    torrents: BTreeSet<InfoHash>,
    targets: BTreeSet<Target>,
    /// Per target and torrent; a slot whose torrent or target is gone is kept
    /// until [`MIN_INTERVAL`] after its last send, so that removing and
    /// adding again cannot announce more often.
    slots: BTreeMap<(Target, InfoHash), Slot>,
}

impl Announcer {
    /// An announcer for peers listening on `port`, marking packets with `cookie`.
    pub fn new(cookie: Cookie, port: u16) -> Self {
        Self {
            cookie,
            port,
            torrents: BTreeSet::new(),
            targets: BTreeSet::new(),
            slots: BTreeMap::new(),
        }
    }

    /// Our cookie (for the [`Receiver`]).
    pub fn cookie(&self) -> &Cookie {
        &self.cookie
    }

    /// Changes the announced listen port (from the next packet on).
    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    /// Whether `hash` is announced (the torrents a [`Receiver`] yields peers for).
    pub fn announces(&self, hash: &InfoHash) -> bool {
        self.torrents.contains(hash)
    }

    /// Starts announcing a torrent on every target; `sharing` proves it is
    /// not private, or is a channel torrent whose peers prove membership.
    pub fn add_torrent(&mut self, hash: InfoHash, sharing: impl Into<PeerSharing>, now: Instant) {
        let _ = sharing.into();
        if self.torrents.insert(hash) {
            for target in self.targets.clone() {
                self.schedule(target, hash, now);
            }
        }
    }

    /// Stops announcing a torrent.
    pub fn remove_torrent(&mut self, hash: &InfoHash, now: Instant) {
        self.torrents.remove(hash);
        self.purge(now);
    }

    /// Starts announcing every torrent on `target` (an interface came up).
    pub fn add_target(&mut self, target: Target, now: Instant) {
        if self.targets.insert(target) {
            for hash in self.torrents.clone() {
                self.schedule(target, hash, now);
            }
        }
    }

    /// Stops announcing on `target`.
    pub fn remove_target(&mut self, target: &Target, now: Instant) {
        self.targets.remove(target);
        self.purge(now);
    }

    fn schedule(&mut self, target: Target, hash: InfoHash, now: Instant) {
        let slot = self.slots.entry((target, hash)).or_insert(Slot {
            next_due: now,
            last_sent: None,
        });
        let soon = now + FIRST_DELAY;
        slot.next_due = match slot.last_sent {
            Some(last) => soon.max(last + MIN_INTERVAL),
            None => soon,
        };
    }

    fn active(&self, target: &Target, hash: &InfoHash) -> bool {
        self.targets.contains(target) && self.torrents.contains(hash)
    }

    /// Forgets inactive slots that no longer restrain anything.
    fn purge(&mut self, now: Instant) {
        let (targets, torrents) = (&self.targets, &self.torrents);
        self.slots.retain(|(target, hash), slot| {
            targets.contains(target) && torrents.contains(hash)
                || slot
                    .last_sent
                    .is_some_and(|last| now.saturating_duration_since(last) < MIN_INTERVAL)
        });
    }

    /// When [`Announcer::poll_transmit`] next has a packet (`None`: nothing to announce).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter(|((target, hash), _)| self.active(target, hash))
            .map(|(_, slot)| slot.next_due)
            .min()
    }

    /// The next packet due at `now`, if any; call until `None`. A packet
    /// carries the torrents due on its target, topped up with those due
    /// within [`MIN_INTERVAL`] that were last sent at least that long ago,
    /// so that torrents come to share packets and wake-ups.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.purge(now);
        let target = self
            .slots
            .iter()
            .filter(|((t, h), slot)| self.active(t, h) && slot.next_due <= now)
            .map(|((t, _), _)| *t)
            .next()?;
        let room = hashes_per_packet(target.group, self.port, &self.cookie);
        let mut due: Vec<(Instant, InfoHash)> = self
            .slots
            .range((target, InfoHash([0; 20]))..=(target, InfoHash([0xff; 20])))
            .filter(|((t, h), slot)| {
                self.active(t, h)
                    && (slot.next_due <= now
                        || slot.next_due <= now + MIN_INTERVAL
                            && !matches!(slot.last_sent, Some(last) if now.saturating_duration_since(last) < MIN_INTERVAL))
            })
            .map(|((_, h), slot)| (slot.next_due, *h))
            .collect();
        // The most overdue first; early ones only fill what room is left.
        due.sort();
        due.truncate(room);
        let hashes: Vec<InfoHash> = due.iter().map(|(_, h)| *h).collect();
        for hash in &hashes {
            if let Some(slot) = self.slots.get_mut(&(target, *hash)) {
                slot.last_sent = Some(now);
                slot.next_due = now + ANNOUNCE_INTERVAL;
            }
        }
        Some(Transmit {
            target,
            packet: format_one(target.group, self.port, &hashes, &self.cookie),
        })
    }
}

/// What a received packet amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A peer to dial: the packet's source IP with its `Port`, for these of our torrents.
    Peer {
        /// Source IP (with its IPv6 scope) and announced port.
        addr: SocketAddr,
        /// The announced info-hashes we announce too.
        info_hashes: Vec<InfoHash>,
    },
    /// Our own packet, looped back.
    OwnEcho,
    /// None of the info-hashes is one of ours.
    Unwanted,
    /// The source sent more than [`MAX_PACKETS_PER_SOURCE`] in [`SOURCE_WINDOW`].
    RateLimited,
}

#[derive(Debug, Clone, Copy)]
struct SourceWindow {
    start: Instant,
    count: u32,
}

/// Reads what others announce.
#[derive(Debug)]
pub struct Receiver {
    cookie: Cookie,
    sources: HashMap<IpAddr, SourceWindow>,
}

impl Receiver {
    /// A receiver that drops packets carrying `cookie` (ours).
    pub fn new(cookie: Cookie) -> Self {
        Self {
            cookie,
            sources: HashMap::new(),
        }
    }

    /// How many source addresses are tracked (at most [`MAX_SOURCES`]).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Takes a packet that arrived from `source` (the datagram's source
    /// address) at `now`. The peer is `source`'s IP with the packet's port;
    /// its info-hashes are kept only if `announcer` announces them.
    /// Garbage is an error, counted against the source like any packet.
    pub fn handle(
        &mut self,
        now: Instant,
        source: SocketAddr,
        packet: &[u8],
        announcer: &Announcer,
    ) -> Result<Heard, LsdError> {
        let parsed = parse(packet);
        if let Ok(announce) = &parsed {
            if announce.cookie.as_deref() == Some(self.cookie.as_str()) {
                return Ok(Heard::OwnEcho);
            }
        }
        if !self.admit(now, source.ip()) {
            return Ok(Heard::RateLimited);
        }
        let announce = parsed?;
        let ip = source.ip();
        let unusable = match ip {
            IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
            IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
        };
        if unusable {
            return Err(LsdError::BadSource(ip));
        }
        let info_hashes: Vec<InfoHash> = announce
            .info_hashes
            .into_iter()
            .filter(|h| announcer.announces(h))
            .collect();
        if info_hashes.is_empty() {
            return Ok(Heard::Unwanted);
        }
        let mut addr = source;
        addr.set_port(announce.port);
        Ok(Heard::Peer { addr, info_hashes })
    }

    /// Counts a packet from `ip`; false when it is over its budget.
    fn admit(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            self.sources
                .retain(|_, w| now.saturating_duration_since(w.start) < SOURCE_WINDOW);
            if self.sources.len() >= MAX_SOURCES {
                if let Some(oldest) = self
                    .sources
                    .iter()
                    .min_by_key(|(_, w)| w.start)
                    .map(|(ip, _)| *ip)
                {
                    self.sources.remove(&oldest);
                }
            }
        }
        let window = self.sources.entry(ip).or_insert(SourceWindow {
            start: now,
            count: 0,
        });
        if now.saturating_duration_since(window.start) >= SOURCE_WINDOW {
            *window = SourceWindow {
                start: now,
                count: 0,
            };
        }
        window.count += 1;
        window.count <= MAX_PACKETS_PER_SOURCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> InfoHash {
        let mut h = [n; 20];
        h[0] = 0xab;
        InfoHash(h)
    }

    fn public() -> crate::privacy::PublicTorrent {
        crate::privacy::PublicTorrent::check(false).unwrap()
    }

    const T4: Target = Target {
        ifindex: 2,
        group: Group::V4,
    };
    const T6: Target = Target {
        ifindex: 2,
        group: Group::V6,
    };

    #[test]
    fn format_then_parse_round_trips_on_both_groups() {
        let cookie = Cookie::from_u32(0xdead_beef);
        for group in [Group::V4, Group::V6] {
            let packets = format(group, 51413, &[hash(1), hash(2)], &cookie);
            assert_eq!(packets.len(), 1);
            let text = String::from_utf8(packets[0].clone()).unwrap();
            assert!(text.starts_with("BT-SEARCH * HTTP/1.1\r\nHost: "));
            assert!(text.contains(group.host()));
            assert!(text.ends_with("\r\n\r\n\r\n"));
            let a = parse(&packets[0]).unwrap();
            assert_eq!(a.port, 51413);
            assert_eq!(a.info_hashes, vec![hash(1), hash(2)]);
            assert_eq!(a.cookie.as_deref(), Some("deadbeef"));
        }
    }

    #[test]
    fn many_hashes_split_into_packets_of_at_most_1400_bytes() {
        let cookie = Cookie::from_u32(1);
        let hashes: Vec<InfoHash> = (0..100).map(hash).collect();
        let packets = format(Group::V6, 65535, &hashes, &cookie);
        assert!(packets.len() >= 4, "{} packets", packets.len());
        let mut seen = Vec::new();
        for p in &packets {
            assert!(p.len() <= MAX_PACKET, "{} bytes", p.len());
            seen.extend(parse(p).unwrap().info_hashes);
        }
        assert_eq!(seen, hashes);
        // The split is tight: one more hash would not have fit.
        let full = &packets[0];
        assert!(full.len() + INFOHASH_LINE > MAX_PACKET);
    }

    #[test]
    fn parse_tolerates_case_lf_and_unknown_headers() {
        let text = format!(
            "bt-search * http/1.1\nHOST: 239.192.152.143:6771\nport: 6881\nX-Other: 1\ninfoHASH: {}\nInfohash: nothex\nCookie: abc\n\n",
            hash(7).to_hex().to_uppercase()
        );
        let a = parse(text.as_bytes()).unwrap();
        assert_eq!(a.port, 6881);
        assert_eq!(a.info_hashes, vec![hash(7)]);
        assert_eq!(a.cookie.as_deref(), Some("abc"));
    }

    #[test]
    fn parse_refuses_garbage() {
        let h = hash(1).to_hex();
        let with = |s: String| parse(s.as_bytes());
        assert!(matches!(
            with("GET / HTTP/1.1\r\n\r\n".into()),
            Err(LsdError::BadRequestLine(_))
        ));
        assert_eq!(parse(b""), Err(LsdError::BadRequestLine(String::new())));
        assert_eq!(
            with(format!("BT-SEARCH * HTTP/1.1\r\nInfohash: {h}\r\n\r\n")),
            Err(LsdError::MissingPort)
        );
        for bad in ["0", "65536", "+80", "-1", "80a", ""] {
            assert!(
                matches!(
                    with(format!(
                        "BT-SEARCH * HTTP/1.1\r\nPort: {bad}\r\nInfohash: {h}\r\n\r\n"
                    )),
                    Err(LsdError::BadPort(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            with(format!(
                "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nPort: 2\r\nInfohash: {h}\r\n\r\n"
            )),
            Err(LsdError::DuplicatePort)
        );
        assert_eq!(
            with("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: 12\r\n\r\n".into()),
            Err(LsdError::NoInfohash)
        );
        assert!(matches!(
            with("BT-SEARCH * HTTP/1.1\r\nPort 1\r\n\r\n".into()),
            Err(LsdError::MalformedHeader(_))
        ));
        assert_eq!(
            with(format!(
                "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: {h}\r\ncookie: {}\r\n\r\n",
                "x".repeat(MAX_COOKIE + 1)
            )),
            Err(LsdError::BadCookie)
        );
        assert_eq!(parse(&[0xff, 0xfe]), Err(LsdError::NotText));
        assert!(matches!(
            parse(&vec![b'a'; MAX_PARSE + 1]),
            Err(LsdError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_new_torrent_announces_soon_then_every_five_minutes() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Cookie::from_u32(9), 6881);
        assert_eq!(a.poll_timeout(), None);
        a.add_target(T4, t0);
        a.add_torrent(hash(1), public(), t0);
        assert_eq!(a.poll_timeout(), Some(t0 + FIRST_DELAY));
        assert!(a.poll_transmit(t0).is_none());
        let t1 = t0 + FIRST_DELAY;
        let tx = a.poll_transmit(t1).unwrap();
        assert_eq!(tx.target, T4);
        assert_eq!(parse(&tx.packet).unwrap().info_hashes, vec![hash(1)]);
        assert!(a.poll_transmit(t1).is_none());
        assert_eq!(a.poll_timeout(), Some(t1 + ANNOUNCE_INTERVAL));

        // A second torrent added 10 s later goes on its own soon after...
        let t2 = t0 + Duration::from_secs(10);
        a.add_torrent(hash(2), public(), t2);
        let tx = a.poll_transmit(t2 + FIRST_DELAY).unwrap();
        assert_eq!(parse(&tx.packet).unwrap().info_hashes, vec![hash(2)]);
        // ...and, 5 minutes on, joins the first one's packet (due within a minute of it).
        let t3 = t1 + ANNOUNCE_INTERVAL;
        let tx = a.poll_transmit(t3).unwrap();
        assert_eq!(
            parse(&tx.packet).unwrap().info_hashes,
            vec![hash(1), hash(2)]
        );
        assert_eq!(a.poll_timeout(), Some(t3 + ANNOUNCE_INTERVAL));
    }

    #[test]
    fn remove_and_add_again_does_not_announce_within_a_minute() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Cookie::from_u32(9), 6881);
        a.add_target(T4, t0);
        a.add_torrent(hash(1), public(), t0);
        let sent = t0 + FIRST_DELAY;
        assert!(a.poll_transmit(sent).is_some());
        for i in 1..5u64 {
            let t = sent + Duration::from_secs(i);
            a.remove_torrent(&hash(1), t);
            assert_eq!(a.poll_timeout(), None);
            a.add_torrent(hash(1), public(), t);
            assert!(a.poll_transmit(t + FIRST_DELAY).is_none());
        }
        assert_eq!(a.poll_timeout(), Some(sent + MIN_INTERVAL));
        // Interfaces flapping are held the same way.
        a.remove_target(&T4, sent + Duration::from_secs(30));
        a.add_target(T4, sent + Duration::from_secs(30));
        assert_eq!(a.poll_timeout(), Some(sent + MIN_INTERVAL));
        assert!(a.poll_transmit(sent + MIN_INTERVAL).is_some());
    }

    #[test]
    fn every_target_gets_its_packets_and_they_stay_small() {
        let t0 = Instant::now();
        let mut a = Announcer::new(Cookie::from_u32(9), 6881);
        a.add_target(T4, t0);
        a.add_target(T6, t0);
        for n in 0..100 {
            a.add_torrent(hash(n), public(), t0);
        }
        let t1 = t0 + FIRST_DELAY;
        let mut per_target: BTreeMap<Target, Vec<InfoHash>> = BTreeMap::new();
        let mut packets = 0;
        while let Some(tx) = a.poll_transmit(t1) {
            assert!(tx.packet.len() <= MAX_PACKET);
            packets += 1;
            per_target
                .entry(tx.target)
                .or_default()
                .extend(parse(&tx.packet).unwrap().info_hashes);
        }
        assert!(packets <= 10, "{packets} packets");
        for target in [T4, T6] {
            let mut got = per_target[&target].clone();
            got.sort();
            assert_eq!(got, (0..100).map(hash).collect::<Vec<_>>());
        }
    }

    fn ours() -> Announcer {
        let mut a = Announcer::new(Cookie::from_u32(1), 6881);
        a.add_torrent(hash(1), public(), Instant::now());
        a
    }

    fn packet_from_other(hashes: &[InfoHash], port: u16) -> Vec<u8> {
        format(Group::V4, port, hashes, &Cookie::from_u32(2)).remove(0)
    }

    #[test]
    fn the_peer_is_the_packet_source_never_its_host_header() {
        let t0 = Instant::now();
        let a = ours();
        let mut r = Receiver::new(a.cookie().clone());
        // An address inside the packet (Host) is ignored.
        let text = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 8.8.8.8:6771\r\nPort: 7000\r\nInfohash: {}\r\nInfohash: {}\r\n\r\n",
            hash(1).to_hex(),
            hash(9).to_hex()
        );
        let heard = r
            .handle(
                t0,
                "192.168.1.20:6771".parse().unwrap(),
                text.as_bytes(),
                &a,
            )
            .unwrap();
        assert_eq!(
            heard,
            Heard::Peer {
                addr: "192.168.1.20:7000".parse().unwrap(),
                info_hashes: vec![hash(1)],
            }
        );
        // Only torrents the announcer has are yielded.
        let pkt = packet_from_other(&[hash(9)], 7000);
        assert_eq!(
            r.handle(t0, "192.168.1.21:6771".parse().unwrap(), &pkt, &a),
            Ok(Heard::Unwanted)
        );
        // Our own echo is dropped.
        let own = format(Group::V4, 6881, &[hash(1)], a.cookie()).remove(0);
        assert_eq!(
            r.handle(t0, "192.168.1.2:6771".parse().unwrap(), &own, &a),
            Ok(Heard::OwnEcho)
        );
        // A multicast source is not a peer.
        assert!(matches!(
            r.handle(t0, "239.1.1.1:6771".parse().unwrap(), &pkt, &a),
            Err(LsdError::BadSource(_))
        ));
    }

    #[test]
    fn one_source_is_rate_limited_and_the_table_is_bounded() {
        let t0 = Instant::now();
        let a = ours();
        let mut r = Receiver::new(a.cookie().clone());
        let pkt = packet_from_other(&[hash(1)], 7000);
        let src: SocketAddr = "10.0.0.5:6771".parse().unwrap();
        for _ in 0..MAX_PACKETS_PER_SOURCE {
            assert!(matches!(
                r.handle(t0, src, &pkt, &a),
                Ok(Heard::Peer { .. })
            ));
        }
        // Garbage counts as well, and is over budget too.
        assert_eq!(r.handle(t0, src, &pkt, &a), Ok(Heard::RateLimited));
        assert_eq!(r.handle(t0, src, b"junk", &a), Ok(Heard::RateLimited));
        // Another source is heard; the first again after the window.
        let other: SocketAddr = "10.0.0.6:6771".parse().unwrap();
        assert!(matches!(
            r.handle(t0, other, &pkt, &a),
            Ok(Heard::Peer { .. })
        ));
        assert!(matches!(
            r.handle(t0 + SOURCE_WINDOW, src, &pkt, &a),
            Ok(Heard::Peer { .. })
        ));
        // Thousands of sources keep the table at its bound.
        for i in 0..5000u32 {
            let ip = Ipv4Addr::from(0x0a01_0000 + i);
            let _ = r.handle(t0, SocketAddr::from((ip, 6771)), b"junk", &a);
            assert!(r.tracked_sources() <= MAX_SOURCES);
        }
    }

    mod schedule {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Wait(u16),
            AddTorrent(u8),
            RemoveTorrent(u8),
            AddTarget(bool),
            RemoveTarget(bool),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u16..400).prop_map(Op::Wait),
                2 => (0u8..40).prop_map(Op::AddTorrent),
                1 => (0u8..40).prop_map(Op::RemoveTorrent),
                1 => any::<bool>().prop_map(Op::AddTarget),
                1 => any::<bool>().prop_map(Op::RemoveTarget),
            ]
        }

        proptest! {
            /// Whatever is added and removed when: no torrent is announced
            /// twice on one target within a minute, no packet exceeds 1400
            /// bytes, and a torrent present on a target all along is
            /// announced at least every 5 minutes (plus the poll's
            /// granularity: we wake exactly at `poll_timeout`).
            #[test]
            fn at_most_once_a_minute_and_at_least_every_five(ops in proptest::collection::vec(op(), 1..120)) {
                let t0 = Instant::now();
                let mut now = t0;
                let mut a = Announcer::new(Cookie::from_u32(3), 6881);
                let mut last: BTreeMap<(Target, InfoHash), Instant> = BTreeMap::new();
                // When each pair became continuously active.
                let mut since: BTreeMap<(Target, InfoHash), Instant> = BTreeMap::new();
                let target = |v6: bool| Target { ifindex: 1, group: if v6 { Group::V6 } else { Group::V4 } };
                let mut torrents = BTreeSet::new();
                let mut targets = BTreeSet::new();
                for op in ops {
                    match op {
                        Op::Wait(secs) => {
                            let end = now + Duration::from_secs(u64::from(secs));
                            // Wake exactly when asked, as the driver does.
                            loop {
                                while let Some(tx) = a.poll_transmit(now) {
                                    prop_assert!(tx.packet.len() <= MAX_PACKET);
                                    for h in parse(&tx.packet).unwrap().info_hashes {
                                        if let Some(prev) = last.insert((tx.target, h), now) {
                                            prop_assert!(now - prev >= MIN_INTERVAL, "twice within {:?}", now - prev);
                                        }
                                    }
                                }
                                for (key, from) in &since {
                                    let seen = last.get(key).copied().unwrap_or(*from).max(*from);
                                    prop_assert!(now - seen <= ANNOUNCE_INTERVAL + MIN_INTERVAL,
                                        "{key:?} silent for {:?}", now - seen);
                                }
                                match a.poll_timeout() {
                                    Some(at) if at <= end => now = at.max(now),
                                    _ => break,
                                }
                            }
                            now = end;
                        }
                        Op::AddTorrent(n) => {
                            a.add_torrent(hash(n), crate::privacy::PublicTorrent::check(false).unwrap(), now);
                            torrents.insert(n);
                        }
                        Op::RemoveTorrent(n) => {
                            a.remove_torrent(&hash(n), now);
                            torrents.remove(&n);
                        }
                        Op::AddTarget(v6) => {
                            a.add_target(target(v6), now);
                            targets.insert(v6);
                        }
                        Op::RemoveTarget(v6) => {
                            a.remove_target(&target(v6), now);
                            targets.remove(&v6);
                        }
                    }
                    let active: BTreeSet<(Target, InfoHash)> = targets
                        .iter()
                        .flat_map(|v6| torrents.iter().map(move |n| (target(*v6), hash(*n))))
                        .collect();
                    since.retain(|k, _| active.contains(k));
                    for k in active {
                        since.entry(k).or_insert(now);
                    }
                }
            }
        }
    }
}
