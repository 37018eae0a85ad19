//! HTTP trackers: BEP 3 announces with compact peer lists (BEP 23) and IPv6
//! peers (BEP 7).
//!
//! [`announce_url`] and [`parse_response`] are pure; [`announce`] does the
//! request with hard limits on time, redirects and reply size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::{truncate_message, AnnounceEvent, AnnounceRequest, AnnounceResponse, TrackerError};

use crate::bencode::{decode, Value};
use crate::egress::Egress;

/// The largest reply body accepted, in bytes after gzip decompression. A
/// compact reply with 50 IPv4 peers is ~400 bytes; even 10,000 peers in the
/// dictionary form stay well under this.
pub const MAX_BODY: usize = 1024 * 1024;

/// How many redirects an announce follows before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// Bytes left unescaped in query values: RFC 3986 "unreserved" characters.
/// Everything else, including every non-ASCII byte of the binary info-hash
/// and peer id, is percent-encoded byte by byte.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Builds the full announce URL for `req` on top of the tracker's `base` URL.
///
/// The base may already carry a query (private trackers put passkeys there);
/// our parameters are appended after it. Any fragment is dropped since it is
/// never sent to a server anyway.
pub fn announce_url(base: &str, req: &AnnounceRequest) -> Result<String, TrackerError> {
    let parsed =
        url::Url::parse(base).map_err(|e| TrackerError::InvalidUrl(format!("{base:?}: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(TrackerError::UnsupportedScheme(other.to_string())),
    }
    if matches!(parsed.host_str(), None | Some("")) {
        return Err(TrackerError::InvalidUrl(format!("{base:?}: no host")));
    }

    // Built by hand rather than with `Url::query_pairs_mut`, which would
    // escape the binary values as UTF-8 text instead of byte-wise.
    let mut query = format!(
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
        percent_encoding::percent_encode(&req.info_hash, QUERY_VALUE),
        percent_encoding::percent_encode(&req.peer_id, QUERY_VALUE),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.key,
    );
    if let Some(n) = req.num_want {
        query.push_str(&format!("&numwant={n}"));
    }
    match req.event {
        AnnounceEvent::None => {}
        AnnounceEvent::Started => query.push_str("&event=started"),
        AnnounceEvent::Completed => query.push_str("&event=completed"),
        AnnounceEvent::Stopped => query.push_str("&event=stopped"),
    }

    let mut out = parsed;
    out.set_fragment(None);
    let full = match out.query() {
        None | Some("") => query,
        Some(existing) if existing.ends_with('&') => format!("{existing}{query}"),
        Some(existing) => format!("{existing}&{query}"),
    };
    // Our query holds only unreserved characters, '%', '=' and '&', which
    // `set_query` leaves untouched.
    out.set_query(Some(&full));
    Ok(out.into())
}

/// Interprets an HTTP tracker's bencoded reply body.
///
/// A `failure reason` wins over everything else. `peers` may be the compact
/// string (6 bytes per IPv4 peer) or the original list of dictionaries;
/// `peers6` is the compact IPv6 string (18 bytes per peer). A missing
/// `interval` defaults to [`super::DEFAULT_INTERVAL`]; present values are
/// kept as they are (see [`AnnounceResponse::interval`]).
pub fn parse_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let value =
        decode(body).map_err(|e| TrackerError::Malformed(format!("invalid bencode: {e}")))?;
    let dict = value
        .as_dict()
        .ok_or_else(|| TrackerError::Malformed("reply is not a dictionary".into()))?;

    if let Some(reason) = dict.get(b"failure reason") {
        let text = reason
            .as_bytes()
            .ok_or_else(|| TrackerError::Malformed("`failure reason` is not a string".into()))?;
        return Err(TrackerError::Failure(truncate_message(text)));
    }

    let interval = match dict.get(b"interval") {
        Some(v) => seconds(v, "interval")?,
        None => super::DEFAULT_INTERVAL,
    };
    let min_interval = dict
        .get(b"min interval")
        .map(|v| seconds(v, "min interval"))
        .transpose()?;
    let warning = match dict.get(b"warning message") {
        Some(v) => Some(truncate_message(v.as_bytes().ok_or_else(|| {
            TrackerError::Malformed("`warning message` is not a string".into())
        })?)),
        None => None,
    };
    // Swarm counts are informational: a negative or absurd count is dropped
    // rather than failing an otherwise usable reply.
    let count = |key: &[u8]| {
        dict.get(key)
            .and_then(|v| v.as_int())
            .and_then(|n| u32::try_from(n).ok())
    };
    let seeders = count(b"complete");
    let leechers = count(b"incomplete");

    let mut peers = Vec::new();
    match dict.get(b"peers") {
        None => {}
        Some(v) => {
            if let Some(compact) = v.as_bytes() {
                parse_compact(compact, 6, &mut peers, "peers")?;
            } else if let Some(list) = v.as_list() {
                parse_peer_dicts(list, &mut peers)?;
            } else {
                return Err(TrackerError::Malformed(
                    "`peers` is neither a string nor a list".into(),
                ));
            }
        }
    }
    if let Some(v) = dict.get(b"peers6") {
        let compact = v
            .as_bytes()
            .ok_or_else(|| TrackerError::Malformed("`peers6` is not a string".into()))?;
        parse_compact(compact, 18, &mut peers, "peers6")?;
    }

    Ok(AnnounceResponse {
        interval,
        min_interval,
        peers,
        seeders,
        leechers,
        warning,
    })
}

/// Reads a non-negative integer number of seconds.
fn seconds(v: &Value<'_>, what: &str) -> Result<Duration, TrackerError> {
    let n = v
        .as_int()
        .ok_or_else(|| TrackerError::Malformed(format!("`{what}` is not an integer")))?;
    let n = u64::try_from(n)
        .map_err(|_| TrackerError::Malformed(format!("`{what}` is negative: {n}")))?;
    Ok(Duration::from_secs(n))
}

/// Appends the peers of a compact string with `entry`-byte entries (6 for
/// IPv4, 18 for IPv6: address then big-endian port). Shared with UDP, whose
/// peer lists use the same layout.
pub(crate) fn parse_compact(
    bytes: &[u8],
    entry: usize,
    out: &mut Vec<SocketAddr>,
    what: &str,
) -> Result<(), TrackerError> {
    // `chunks_exact` would panic on 0; callers pass 6 or 18.
    if entry < 2 {
        return Err(TrackerError::Malformed(format!(
            "bad compact entry size {entry}"
        )));
    }
    let chunks = bytes.chunks_exact(entry);
    // (A remainder check rather than `%` keeps clippy and the MSRV happy.)
    if !chunks.remainder().is_empty() {
        return Err(TrackerError::Malformed(format!(
            "`{what}` is {} bytes, not a multiple of {entry}",
            bytes.len()
        )));
    }
    out.reserve(chunks.len());
    for chunk in chunks {
        let (ip, port) = chunk.split_at(entry - 2);
        let port = u16::from_be_bytes([port[0], port[1]]);
        let ip = match <[u8; 4]>::try_from(ip) {
            Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
            Err(_) => match <[u8; 16]>::try_from(ip) {
                Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
                // Unreachable with entry 6 or 18; erroring keeps it panic-free.
                Err(_) => {
                    return Err(TrackerError::Malformed(format!(
                        "bad compact entry size {entry}"
                    )))
                }
            },
        };
        if port != 0 {
            out.push(SocketAddr::new(ip, port));
        }
    }
    Ok(())
}

/// Appends the peers of the original (non-compact) form: a list of
/// dictionaries with `ip` (a textual address) and `port`.
///
/// Entries whose `ip` is a host name rather than an address literal, or whose
/// port is out of range, are skipped: resolving names handed out by a tracker
/// would let it make us query arbitrary DNS names, and one bad entry should not
/// cost the rest. An entry that is not a dictionary at all means the tracker
/// does not speak the protocol, so that is an error.
fn parse_peer_dicts(list: &[Value<'_>], out: &mut Vec<SocketAddr>) -> Result<(), TrackerError> {
    for item in list {
        let peer = item
            .as_dict()
            .ok_or_else(|| TrackerError::Malformed("a `peers` entry is not a dictionary".into()))?;
        let ip = peer
            .get(b"ip")
            .and_then(|v| v.as_bytes())
            .and_then(|b| std::str::from_utf8(b).ok())
            // BEP 7 trackers may bracket IPv6 literals.
            .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|s| s.parse::<IpAddr>().ok());
        let port = peer
            .get(b"port")
            .and_then(|v| v.as_int())
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0);
        match (ip, port) {
            (Some(ip), Some(port)) => out.push(SocketAddr::new(ip, port)),
            _ => tracing::debug!("skipping unusable peer entry from tracker"),
        }
    }
    Ok(())
}

/// The shared HTTP client, built on first use so that connection pools and
/// DNS state are reused across announces. A build failure is remembered (as
/// text) rather than panicking.
fn client() -> Result<&'static reqwest::Client, TrackerError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| builder().build().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| TrackerError::Http(format!("cannot build HTTP client: {e}")))
}

/// How every client of ours is set up.
fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        // No keep-alive pool: announces to one tracker are minutes
        // apart, and trackers (opentracker among them) close idle
        // connections, so a pooled one tends to be reset mid-request.
        .pool_max_idle_per_host(0)
        .user_agent(concat!("capwise/", env!("CARGO_PKG_VERSION")))
}

/// The client whose connections leave from `from` (reqwest's
/// `local_address` and, for a device, `interface`: every connection it
/// opens is bound to it, and fails when the device is missing), one per
/// place, kept like the shared one; a session has one, so these are few.
fn client_from(from: &Egress) -> Result<reqwest::Client, TrackerError> {
    if from.is_any() {
        return client().cloned();
    }
    static BOUND: Mutex<Vec<(Egress, reqwest::Client)>> = Mutex::new(Vec::new());
    let mut bound = BOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = bound.iter().find(|(e, _)| e == from) {
        return Ok(c.clone());
    }
    let mut b = builder();
    if let Some(ip) = from.ip {
        b = b.local_address(ip);
    }
    if let Some(device) = &from.device {
        b = b.interface(device);
    }
    let c = b
        .build()
        .map_err(|e| TrackerError::Http(format!("cannot build HTTP client: {e}")))?;
    bound.push((from.clone(), c.clone()));
    Ok(c)
}

/// Announces `req` to the HTTP(S) tracker at `base`, finishing within
/// `timeout`. The reply body is capped at [`MAX_BODY`] bytes after
/// decompression, checked while it streams in, so neither a huge body nor a
/// gzip bomb can exhaust memory.
pub async fn announce(
    base: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    announce_from(base, req, timeout, &Egress::any()).await
}

/// As [`announce`], the request leaving from `from` (its local address,
/// its device).
pub async fn announce_from(
    base: &str,
    req: &AnnounceRequest,
    timeout: Duration,
    from: &Egress,
) -> Result<AnnounceResponse, TrackerError> {
    let url = announce_url(base, req)?;
    let body = fetch(&url, timeout, MAX_BODY, from).await?;
    parse_response(&body)
}

/// GETs `url` from `from` and returns its body, at most `limit` bytes,
/// within `timeout`.
async fn fetch(
    url: &str,
    timeout: Duration,
    limit: usize,
    from: &Egress,
) -> Result<Vec<u8>, TrackerError> {
    let client = client_from(from)?;
    let exchange = async {
        let mut response = client
            .get(url)
            // reqwest's own timeout covers the body too, but the outer
            // tokio timeout below is what guarantees the bound.
            .timeout(timeout)
            .send()
            .await
            .map_err(map_reqwest)?;
        let status = response.status();
        if !status.is_success() {
            return Err(TrackerError::Http(format!("status {status}")));
        }
        // Content-Length is the compressed size when gzip is used, so this
        // only catches the honest large case early; the loop is the real cap.
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(TrackerError::TooLarge(limit));
        }
        let mut body = Vec::new();
        // Each chunk is bounded by the transport or the decompressor's buffer,
        // so memory stays near `limit` plus one chunk.
        while let Some(chunk) = response.chunk().await.map_err(map_reqwest)? {
            if body.len() + chunk.len() > limit {
                return Err(TrackerError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TrackerError::Timeout)?
}

/// Turns a reqwest error into ours, keeping timeouts distinguishable.
fn map_reqwest(e: reqwest::Error) -> TrackerError {
    if e.is_timeout() {
        TrackerError::Timeout
    } else {
        // `{:#}`-like chain: reqwest's Display hides the underlying cause.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        let mut depth = 0;
        while let (Some(s), true) = (source, depth < 8) {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
            depth += 1;
        }
        TrackerError::Http(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::DEFAULT_INTERVAL;

    fn request() -> AnnounceRequest {
        let mut info_hash = [0u8; 20];
        info_hash[0] = 0x00;
        info_hash[1] = 0xff;
        info_hash[2] = b' ';
        info_hash[3] = b'a';
        info_hash[4] = b'~';
        info_hash[5] = b'%';
        info_hash[6] = b'&';
        AnnounceRequest {
            info_hash,
            peer_id: *b"-CW0001-abcdefghijkl",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: AnnounceEvent::Started,
            num_want: Some(50),
            key: 0xdead_beef,
        }
    }

    #[test]
    fn url_encodes_bytes_and_fields() {
        let url = announce_url("http://127.0.0.1:6969/announce", &request()).unwrap();
        assert_eq!(
            url,
            "http://127.0.0.1:6969/announce?info_hash=%00%FF%20a~%25%26%00%00%00%00%00%00%00%00%00%00%00%00%00\
             &peer_id=-CW0001-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1\
             &key=deadbeef&numwant=50&event=started"
        );
    }

    #[test]
    fn url_appends_to_existing_query_and_omits_none_event() {
        let mut req = request();
        req.event = AnnounceEvent::None;
        req.num_want = None;
        req.key = 1;
        let url = announce_url("http://127.0.0.1/announce?passkey=abc#frag", &req).unwrap();
        assert!(url.starts_with("http://127.0.0.1/announce?passkey=abc&info_hash=%00%FF"));
        assert!(url.ends_with("&compact=1&key=00000001"), "{url}");
        assert!(!url.contains("event="));
        assert!(!url.contains("numwant"));
        assert!(!url.contains('#'));

        let url = announce_url("http://127.0.0.1/a?x=1&", &req).unwrap();
        assert!(url.contains("?x=1&info_hash="), "{url}");
        let url = announce_url("http://127.0.0.1/a?", &req).unwrap();
        assert!(url.contains("/a?info_hash="), "{url}");

        for (event, text) in [
            (AnnounceEvent::Completed, "&event=completed"),
            (AnnounceEvent::Stopped, "&event=stopped"),
        ] {
            req.event = event;
            assert!(announce_url("http://h/a", &req).unwrap().ends_with(text));
        }
    }

    #[test]
    fn url_rejects_bad_bases() {
        let req = request();
        assert!(matches!(
            announce_url("udp://127.0.0.1:1/", &req),
            Err(TrackerError::UnsupportedScheme(s)) if s == "udp"
        ));
        assert!(matches!(
            announce_url("not a url", &req),
            Err(TrackerError::InvalidUrl(_))
        ));
    }

    #[test]
    fn parses_compact_reply() {
        let body = b"d8:completei5e10:incompletei7e8:intervali900e12:min intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e";
        let r = parse_response(body).unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
        assert_eq!(r.seeders, Some(5));
        assert_eq!(r.leechers, Some(7));
        assert_eq!(r.warning, None);
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap()
            ]
        );
    }

    #[test]
    fn parses_dict_peers_and_peers6() {
        let mut body = b"d5:peersl".to_vec();
        body.extend_from_slice(b"d2:ip9:127.0.0.14:porti6881ee");
        body.extend_from_slice(b"d2:ip5:[::1]4:porti80ee");
        // Skipped: host name, port out of range, port 0, missing port.
        body.extend_from_slice(b"d2:ip11:example.com4:porti1ee");
        body.extend_from_slice(b"d2:ip9:127.0.0.14:porti70000ee");
        body.extend_from_slice(b"d2:ip9:127.0.0.14:porti0ee");
        body.extend_from_slice(b"d2:ip9:127.0.0.1e");
        body.extend_from_slice(b"e6:peers618:");
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe2]);
        body.extend_from_slice(b"15:warning message4:slowe");
        let r = parse_response(&body).unwrap();
        assert_eq!(r.interval, DEFAULT_INTERVAL);
        assert_eq!(r.warning.as_deref(), Some("slow"));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "[::1]:80".parse().unwrap(),
                "[::1]:6882".parse().unwrap(),
            ]
        );
        assert_eq!(r.seeders, None);
    }

    #[test]
    fn failure_reason_wins() {
        let r = parse_response(b"d14:failure reason11:not allowed8:intervali5ee");
        assert_eq!(r, Err(TrackerError::Failure("not allowed".into())));
        let long = format!("d14:failure reason5000:{}e", "x".repeat(5000));
        match parse_response(long.as_bytes()) {
            Err(TrackerError::Failure(s)) => assert_eq!(s.len(), crate::tracker::MAX_MESSAGE_LEN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_replies() {
        let cases: &[&[u8]] = &[
            b"",
            b"d8:intervali900e",                  // truncated
            b"d8:intervali900e5:peers7:1234567e", // 7 bytes of peers
            b"d8:intervali900e6:peers65:12345e",  // bad peers6
            b"d8:intervali-1ee",                  // negative interval
            b"d8:interval3:abce",                 // wrong type
            b"d5:peersi1ee",                      // peers wrong type
            b"d5:peersli1eee",                    // list entry not a dict
            b"d14:failure reasoni1ee",            // failure not a string
            b"d15:warning messagei1ee",           // warning not a string
            b"li1ee",                             // not a dict
            b"d8:intervali900ee trailing",        // trailing garbage
            b"5000000000:abc",                    // length beyond input
        ];
        for case in cases {
            assert!(
                matches!(parse_response(case), Err(TrackerError::Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(case),
                parse_response(case)
            );
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let mut body = vec![b'l'; 100_000];
        body.extend_from_slice(&[b'e'; 100_000]);
        assert!(matches!(
            parse_response(&body),
            Err(TrackerError::Malformed(_))
        ));
    }

    #[test]
    fn odd_counts_are_dropped() {
        let r = parse_response(b"d8:completei-1e10:incompletei99999999999ee").unwrap();
        assert_eq!((r.seeders, r.leechers), (None, None));
        assert!(r.peers.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix and a few mutations of a
        // valid reply must produce Ok or Err, never a panic.
        let valid =
            b"d8:intervali900e5:peers6:\x7f\x00\x00\x01\x1a\xe16:peers618:000000000000000000e";
        for end in 0..=valid.len() {
            let _ = parse_response(&valid[..end]);
        }
        for i in 0..valid.len() {
            for b in [0u8, b'e', b'd', b'l', b'i', b'9', b':', 0xff] {
                let mut m = valid.to_vec();
                m[i] = b;
                let _ = parse_response(&m);
            }
        }
    }
}
