//! UDP trackers (BEP 15).
//!
//! The packet codec ([`encode_connect`], [`decode_connect`],
//! [`encode_announce`], [`decode_announce`]) is pure; [`announce`] runs the
//! connect/announce exchange with BEP 15 retransmission, capped by the
//! caller's timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::egress::Egress;
use tokio::time::Instant;

use super::{truncate_message, AnnounceEvent, AnnounceRequest, AnnounceResponse, TrackerError};

/// The magic constant that starts every connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// Action codes of BEP 15.
const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_ERROR: u32 = 3;

/// Size of an announce request.
pub const ANNOUNCE_LEN: usize = 98;

/// BEP 15: a connection id may be used for one minute after it was received.
const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// BEP 15: the retransmission exponent `n` in `15 * 2^n` seconds stops at 8.
const MAX_RETRANSMIT: u32 = 8;

/// Replies with someone else's transaction id tolerated per attempt before
/// giving up, so a flood of stray packets cannot keep us looping.
const MAX_STRAY_PACKETS: usize = 64;

/// The largest datagram read; bigger ones are truncated by the kernel and
/// then fail the peer-list length check.
const MAX_DATAGRAM: usize = 64 * 1024;

/// Encodes a connect request.
pub fn encode_connect(transaction_id: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[12..16].copy_from_slice(&transaction_id.to_be_bytes());
    out
}

/// Decodes a connect response and returns the connection id.
///
/// An error packet (action 3) becomes [`TrackerError::Failure`]; a short
/// packet, another action or another transaction id is
/// [`TrackerError::Malformed`].
pub fn decode_connect(buf: &[u8], transaction_id: u32) -> Result<u64, TrackerError> {
    let body = check_header(buf, transaction_id, ACTION_CONNECT)?;
    let id = body
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .ok_or_else(|| TrackerError::Malformed(format!("connect reply is {} bytes", buf.len())))?;
    Ok(u64::from_be_bytes(id))
}

/// Encodes an announce request ([`ANNOUNCE_LEN`] bytes).
///
/// The same layout serves IPv4 and IPv6 trackers: the 4-byte IP field is 0,
/// meaning "the address this packet came from", which works for both
/// families; only the reply's peer entries differ (see [`decode_announce`]).
pub fn encode_announce(connection_id: u64, transaction_id: u32, req: &AnnounceRequest) -> Vec<u8> {
    let event: u32 = match req.event {
        AnnounceEvent::None => 0,
        AnnounceEvent::Completed => 1,
        AnnounceEvent::Started => 2,
        AnnounceEvent::Stopped => 3,
    };
    // -1 asks for the tracker's default; larger wants saturate.
    let num_want: i32 = req
        .num_want
        .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX));
    let mut out = Vec::with_capacity(ANNOUNCE_LEN);
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&req.info_hash);
    out.extend_from_slice(&req.peer_id);
    out.extend_from_slice(&req.downloaded.to_be_bytes());
    out.extend_from_slice(&req.left.to_be_bytes());
    out.extend_from_slice(&req.uploaded.to_be_bytes());
    out.extend_from_slice(&event.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // IP: use the sender's
    out.extend_from_slice(&req.key.to_be_bytes());
    out.extend_from_slice(&num_want.to_be_bytes());
    out.extend_from_slice(&req.port.to_be_bytes());
    out
}

/// Decodes an announce response. Peers are 6-byte entries, or 18-byte entries
/// when the exchange ran over IPv6 (`is_ipv6`), as BEP 15 trackers answer in
/// the family of the socket they were asked on.
///
/// An error packet (action 3) becomes [`TrackerError::Failure`]; a short
/// packet, another action or transaction id, or a peer list that is not a
/// whole number of entries is [`TrackerError::Malformed`].
pub fn decode_announce(
    buf: &[u8],
    transaction_id: u32,
    is_ipv6: bool,
) -> Result<AnnounceResponse, TrackerError> {
    let body = check_header(buf, transaction_id, ACTION_ANNOUNCE)?;
    if body.len() < 12 {
        return Err(TrackerError::Malformed(format!(
            "announce reply is {} bytes, less than 20",
            buf.len()
        )));
    }
    let (fixed, peer_bytes) = body.split_at(12);
    let word = |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let mut peers = Vec::new();
    let entry = if is_ipv6 { 18 } else { 6 };
    super::http::parse_compact(peer_bytes, entry, &mut peers, "peer list")?;
    Ok(AnnounceResponse {
        interval: Duration::from_secs(u64::from(word(0))),
        min_interval: None,
        peers,
        leechers: Some(word(4)),
        seeders: Some(word(8)),
        warning: None,
    })
}

/// Reads the 8-byte reply header, checks the transaction id and action, and
/// returns the rest. Error packets are turned into `Failure` here so every
/// decoder treats them alike.
fn check_header(buf: &[u8], transaction_id: u32, action: u32) -> Result<&[u8], TrackerError> {
    let (got_action, got_tid) = header(buf)
        .ok_or_else(|| TrackerError::Malformed(format!("reply is {} bytes", buf.len())))?;
    if got_tid != transaction_id {
        return Err(TrackerError::Malformed(format!(
            "transaction id {got_tid:#x}, expected {transaction_id:#x}"
        )));
    }
    let body = &buf[8..];
    if got_action == ACTION_ERROR {
        return Err(TrackerError::Failure(truncate_message(body)));
    }
    if got_action != action {
        return Err(TrackerError::Malformed(format!(
            "action {got_action}, expected {action}"
        )));
    }
    Ok(body)
}

/// The (action, transaction id) of a reply, if it is long enough to have one.
fn header(buf: &[u8]) -> Option<(u32, u32)> {
    let action = u32::from_be_bytes(buf.get(0..4)?.try_into().ok()?);
    let tid = u32::from_be_bytes(buf.get(4..8)?.try_into().ok()?);
    Some((action, tid))
}

/// Splits a `udp://host:port[/...]` URL into host and port.
fn host_port(url: &str) -> Result<(url::Host<String>, u16), TrackerError> {
    let parsed =
        url::Url::parse(url).map_err(|e| TrackerError::InvalidUrl(format!("{url:?}: {e}")))?;
    if parsed.scheme() != "udp" {
        return Err(TrackerError::UnsupportedScheme(parsed.scheme().to_string()));
    }
    let host = parsed
        .host()
        .ok_or_else(|| TrackerError::InvalidUrl(format!("{url:?}: no host")))?
        .to_owned();
    let port = parsed
        .port()
        .ok_or_else(|| TrackerError::InvalidUrl(format!("{url:?}: no port")))?;
    Ok((host, port))
}

/// Announces `req` to the UDP tracker at `url` (`udp://host:port/...`),
/// finishing within `timeout`, name resolution included.
///
/// Requests are retransmitted after 15·2ⁿ seconds as BEP 15 says, which in
/// practice means the caller's timeout decides how long we wait. The
/// connection id is renewed when it is older than one minute.
pub async fn announce(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    announce_from(url, req, timeout, &Egress::any()).await
}

/// As [`announce`], from `from`: its local address when given (a name is
/// resolved to an address of its family), its device when given.
pub async fn announce_from(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
    from: &Egress,
) -> Result<AnnounceResponse, TrackerError> {
    let (host, port) = host_port(url)?;
    tokio::time::timeout(timeout, run(host, port, req, from))
        .await
        .map_err(|_| TrackerError::Timeout)?
}

async fn run(
    host: url::Host<String>,
    port: u16,
    req: &AnnounceRequest,
    from: &Egress,
) -> Result<AnnounceResponse, TrackerError> {
    let family_ok = |a: &SocketAddr| from.ip.is_none_or(|ip| ip.is_ipv4() == a.is_ipv4());
    let addr = match host {
        url::Host::Ipv4(ip) => SocketAddr::new(IpAddr::V4(ip), port),
        url::Host::Ipv6(ip) => SocketAddr::new(IpAddr::V6(ip), port),
        url::Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| TrackerError::Io(format!("resolving {name}: {e}")))?
            .find(family_ok)
            .ok_or_else(|| TrackerError::Io(format!("{name} has no usable address")))?,
    };
    // Bound to the session's address and device, or refused: never unbound.
    let socket = crate::egress::udp_socket_towards(addr, from).map_err(io_error)?;
    // Connecting filters out datagrams from anyone but the tracker.
    socket.connect(addr).await.map_err(io_error)?;
    let is_ipv6 = addr.is_ipv6();

    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut n = 0u32;
    let mut connection: Option<(u64, Instant)> = None;
    // One transaction id per logical request, reused across its
    // retransmissions so a late answer to an earlier copy still counts.
    let mut connect_tid = rand::random::<u32>();
    let announce_tid = rand::random::<u32>();
    loop {
        let wait = Duration::from_secs(15u64 << n);
        let valid = connection.filter(|(_, at)| at.elapsed() < CONNECTION_ID_LIFETIME);
        let (packet, tid) = match valid {
            None => (encode_connect(connect_tid).to_vec(), connect_tid),
            Some((id, _)) => (encode_announce(id, announce_tid, req), announce_tid),
        };
        socket.send(&packet).await.map_err(io_error)?;
        match receive(&socket, &mut buf, tid, Instant::now() + wait).await? {
            Some(len) => match valid {
                None => {
                    let id = decode_connect(&buf[..len], tid)?;
                    connection = Some((id, Instant::now()));
                    connect_tid = rand::random();
                }
                Some(_) => return decode_announce(&buf[..len], tid, is_ipv6),
            },
            None if n >= MAX_RETRANSMIT => return Err(TrackerError::Timeout),
            None => n += 1,
        }
    }
}

/// Waits until `deadline` for a datagram carrying `tid`, returning its length,
/// or `None` on timeout. Datagrams with other transaction ids (late answers to
/// abandoned requests) are skipped, up to [`MAX_STRAY_PACKETS`].
async fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
    tid: u32,
    deadline: Instant,
) -> Result<Option<usize>, TrackerError> {
    for _ in 0..MAX_STRAY_PACKETS {
        let len = match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
            Err(_) => return Ok(None),
            Ok(result) => result.map_err(io_error)?,
        };
        let packet = &buf[..len];
        match header(packet) {
            Some((_, got)) if got != tid => continue,
            _ => return Ok(Some(len)),
        }
    }
    Err(TrackerError::Malformed(format!(
        "more than {MAX_STRAY_PACKETS} replies with unknown transaction ids"
    )))
}

fn io_error(e: std::io::Error) -> TrackerError {
    TrackerError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [0xaa; 20],
            peer_id: [0xbb; 20],
            port: 0x1ae1,
            uploaded: 3,
            downloaded: 1,
            left: 2,
            event: AnnounceEvent::Started,
            num_want: None,
            key: 0x0102_0304,
        }
    }

    fn reply(action: u32, tid: u32, rest: &[u8]) -> Vec<u8> {
        let mut out = action.to_be_bytes().to_vec();
        out.extend_from_slice(&tid.to_be_bytes());
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn connect_round_trip() {
        let packet = encode_connect(0x1234_5678);
        assert_eq!(
            packet,
            [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]
        );
        let answer = reply(0, 0x1234_5678, &0xdead_beef_0000_0001u64.to_be_bytes());
        assert_eq!(
            decode_connect(&answer, 0x1234_5678),
            Ok(0xdead_beef_0000_0001)
        );
        // Extra trailing bytes are tolerated, as BEP 15 asks clients to.
        let mut longer = answer.clone();
        longer.push(0);
        assert!(decode_connect(&longer, 0x1234_5678).is_ok());
    }

    #[test]
    fn connect_rejects_bad_packets() {
        let good = reply(0, 7, &[1; 8]);
        for bad in [
            &good[..15],
            &good[..7],
            &[][..],
            &reply(0, 8, &[1; 8])[..],
            &reply(1, 7, &[1; 8])[..],
        ] {
            assert!(
                matches!(decode_connect(bad, 7), Err(TrackerError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            decode_connect(&reply(3, 7, b"go away"), 7),
            Err(TrackerError::Failure("go away".into()))
        );
        // An error for somebody else's request is not our failure.
        assert!(matches!(
            decode_connect(&reply(3, 8, b"go away"), 7),
            Err(TrackerError::Malformed(_))
        ));
    }

    #[test]
    fn announce_layout() {
        let p = encode_announce(0x1122_3344_5566_7788, 9, &request());
        assert_eq!(p.len(), ANNOUNCE_LEN);
        assert_eq!(&p[0..8], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(&p[8..12], &[0, 0, 0, 1]);
        assert_eq!(&p[12..16], &[0, 0, 0, 9]);
        assert_eq!(&p[16..36], &[0xaa; 20]);
        assert_eq!(&p[36..56], &[0xbb; 20]);
        assert_eq!(&p[56..64], &1u64.to_be_bytes()); // downloaded
        assert_eq!(&p[64..72], &2u64.to_be_bytes()); // left
        assert_eq!(&p[72..80], &3u64.to_be_bytes()); // uploaded
        assert_eq!(&p[80..84], &[0, 0, 0, 2]); // started
        assert_eq!(&p[84..88], &[0; 4]); // ip
        assert_eq!(&p[88..92], &[1, 2, 3, 4]); // key
        assert_eq!(&p[92..96], &(-1i32).to_be_bytes());
        assert_eq!(&p[96..98], &[0x1a, 0xe1]);

        let mut req = request();
        for (event, code) in [
            (AnnounceEvent::None, 0),
            (AnnounceEvent::Completed, 1),
            (AnnounceEvent::Stopped, 3),
        ] {
            req.event = event;
            assert_eq!(encode_announce(0, 0, &req)[83], code);
        }
        req.num_want = Some(u32::MAX);
        assert_eq!(
            &encode_announce(0, 0, &req)[92..96],
            &i32::MAX.to_be_bytes()
        );
        req.num_want = Some(30);
        assert_eq!(&encode_announce(0, 0, &req)[92..96], &30i32.to_be_bytes());
    }

    #[test]
    fn announce_reply_v4_and_v6() {
        let mut rest = Vec::new();
        rest.extend_from_slice(&1800u32.to_be_bytes());
        rest.extend_from_slice(&4u32.to_be_bytes()); // leechers
        rest.extend_from_slice(&5u32.to_be_bytes()); // seeders
        let mut v4 = rest.clone();
        v4.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 127, 0, 0, 2, 0, 0]);
        let r = decode_announce(&reply(1, 3, &v4), 3, false).unwrap();
        assert_eq!(r.interval, Duration::from_secs(1800));
        assert_eq!((r.seeders, r.leechers), (Some(5), Some(4)));
        // The port-0 entry is dropped.
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);

        let mut v6 = rest.clone();
        let mut entry = [0u8; 18];
        entry[15] = 1;
        entry[16..].copy_from_slice(&6882u16.to_be_bytes());
        v6.extend_from_slice(&entry);
        let r = decode_announce(&reply(1, 3, &v6), 3, true).unwrap();
        assert_eq!(r.peers, vec!["[::1]:6882".parse().unwrap()]);
        // The same 18 bytes read as IPv4 are three entries, two with port 0.
        let as_v4 = decode_announce(&reply(1, 3, &v6), 3, false).unwrap();
        assert_eq!(as_v4.peers, vec!["0.0.0.1:6882".parse().unwrap()]);

        let empty = decode_announce(&reply(1, 3, &rest), 3, true).unwrap();
        assert!(empty.peers.is_empty());
    }

    #[test]
    fn announce_rejects_bad_packets() {
        let mut rest = vec![0u8; 12];
        rest.extend_from_slice(&[127, 0, 0, 1, 0, 1]);
        let good = reply(1, 3, &rest);
        assert!(decode_announce(&good, 3, false).is_ok());
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (good[..19].to_vec(), false), // short header
            (good[..23].to_vec(), false), // partial peer
            (good.clone(), true),         // 6 bytes read as IPv6
            (reply(1, 4, &rest), false),  // transaction id
            (reply(0, 3, &rest), false),  // action
            (Vec::new(), false),          // empty
        ];
        for (bad, v6) in cases {
            assert!(
                matches!(
                    decode_announce(&bad, 3, v6),
                    Err(TrackerError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            decode_announce(&reply(3, 3, &[0xff, b'x']), 3, false),
            Err(TrackerError::Failure("\u{fffd}x".into()))
        );
    }

    #[test]
    fn every_truncation_is_handled() {
        let mut rest = vec![0u8; 12];
        rest.extend_from_slice(&[0u8; 36]);
        let good = reply(1, 3, &rest);
        for end in 0..good.len() {
            let _ = decode_announce(&good[..end], 3, false);
            let _ = decode_announce(&good[..end], 3, true);
            let _ = decode_connect(&good[..end], 3);
        }
    }

    #[test]
    fn url_needs_host_and_port() {
        assert!(matches!(
            host_port("udp://127.0.0.1/announce"),
            Err(TrackerError::InvalidUrl(_))
        ));
        assert!(matches!(
            host_port("http://127.0.0.1:1/"),
            Err(TrackerError::UnsupportedScheme(_))
        ));
        let (host, port) = host_port("udp://[::1]:6969/announce").unwrap();
        assert_eq!(host, url::Host::<String>::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(port, 6969);
    }
}
