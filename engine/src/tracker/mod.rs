//! Trackers: HTTP (BEP 3, 23, 7) and UDP (BEP 15) announces, and tier
//! ordering (BEP 12).
//!
//! Layout: the packet and reply formats are pure functions over bytes
//! ([`http::announce_url`], [`http::parse_response`], [`udp::encode_announce`],
//! [`udp::decode_announce`], ...) so they can be tested exhaustively without a
//! network; [`announce`] and the per-protocol `announce` functions are thin
//! async wrappers that only move bytes and enforce time and size limits.

use std::net::SocketAddr;
use std::time::Duration;

pub mod http;
pub mod tiers;
pub mod udp;

pub use tiers::TrackerTiers;

use crate::egress::Egress;

/// The longest human-readable text (failure reason, warning) kept from a
/// tracker, in bytes; a hostile tracker should not be able to fill our logs.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The re-announce interval assumed when a tracker does not send one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

/// A tracker failed or answered nonsense.
///
/// Holds strings rather than `io::Error`/`reqwest::Error` so that it stays
/// `Clone + PartialEq` and can be stored in per-tracker status and compared in
/// tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The announce URL's scheme is not `http`, `https` or `udp`.
    #[error("unsupported tracker URL scheme {0:?}")]
    UnsupportedScheme(String),
    /// The announce URL could not be parsed or lacks a host or port.
    #[error("invalid tracker URL: {0}")]
    InvalidUrl(String),
    /// The HTTP exchange failed: a non-2xx status, or a transport error.
    #[error("HTTP tracker error: {0}")]
    Http(String),
    /// The tracker answered with a `failure reason` (HTTP) or an error packet
    /// (UDP); the text is the tracker's, cut to [`MAX_MESSAGE_LEN`].
    #[error("tracker failure: {0}")]
    Failure(String),
    /// The reply did not follow the protocol; the text says what was wrong.
    #[error("malformed tracker reply: {0}")]
    Malformed(String),
    /// The reply was larger than the limit of this many bytes (measured after
    /// decompression), so it was abandoned.
    #[error("tracker reply larger than {0} bytes")]
    TooLarge(usize),
    /// No complete answer arrived within the caller's timeout.
    #[error("tracker timed out")]
    Timeout,
    /// A socket or name resolution error.
    #[error("tracker I/O error: {0}")]
    Io(String),
}

pub use capwise_proto::announce::AnnounceEvent;

/// What a client tells a tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// SHA-1 of the bencoded info dictionary.
    pub info_hash: [u8; 20],
    /// This client's peer id.
    pub peer_id: [u8; 20],
    /// The TCP port this client accepts peer connections on.
    pub port: u16,
    /// Payload bytes uploaded since `started`.
    pub uploaded: u64,
    /// Payload bytes downloaded since `started`.
    pub downloaded: u64,
    /// Payload bytes still missing.
    pub left: u64,
    /// Why this announce is sent.
    pub event: AnnounceEvent,
    /// How many peers to ask for; `None` lets the tracker choose.
    pub num_want: Option<u32>,
    /// A random value, stable for the session, that lets a tracker recognise
    /// this client across IP address changes.
    pub key: u32,
}

/// What a tracker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// How long to wait before the next regular announce, exactly as the
    /// tracker sent it (or [`DEFAULT_INTERVAL`] when absent). It is NOT
    /// clamped here: a caller that schedules announces should enforce its own
    /// floor (a hostile tracker may say 0) and ceiling.
    pub interval: Duration,
    /// The minimum time between announces the tracker asks for, if any.
    pub min_interval: Option<Duration>,
    /// Peer addresses, IPv4 and IPv6 mixed, in the tracker's order. Entries
    /// with port 0 are dropped since nobody can connect to them.
    pub peers: Vec<SocketAddr>,
    /// Number of seeders (`complete`), when given and representable.
    pub seeders: Option<u32>,
    /// Number of leechers (`incomplete`), when given and representable.
    pub leechers: Option<u32>,
    /// The tracker's `warning message`, cut to [`MAX_MESSAGE_LEN`].
    pub warning: Option<String>,
}

/// Announces `req` to the tracker at `url`, choosing HTTP(S) or UDP by the URL
/// scheme. The whole exchange, including name resolution and retransmissions,
/// finishes within `timeout`.
pub async fn announce(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    announce_from(url, req, timeout, &Egress::any()).await
}

/// As [`announce`], the request leaving from `from`: its local address when
/// given (the address a session listens on), so that the tracker records
/// the address peers can reach us at, and its device when given (the
/// session's interface; a device that is missing fails the announce). A
/// tracker only reachable over the other address family fails.
pub async fn announce_from(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
    from: &Egress,
) -> Result<AnnounceResponse, TrackerError> {
    // Only the scheme is needed here; the protocol modules validate the rest.
    let scheme = match url.split_once("://") {
        Some((scheme, _)) => scheme.to_ascii_lowercase(),
        None => return Err(TrackerError::InvalidUrl(truncate_message(url.as_bytes()))),
    };
    match scheme.as_str() {
        "http" | "https" => http::announce_from(url, req, timeout, from).await,
        "udp" => udp::announce_from(url, req, timeout, from).await,
        _ => Err(TrackerError::UnsupportedScheme(truncate_message(
            scheme.as_bytes(),
        ))),
    }
}

/// Makes tracker-supplied bytes printable and bounded: invalid UTF-8 is
/// replaced, and the result is cut to [`MAX_MESSAGE_LEN`] bytes on a
/// character boundary.
pub(crate) fn truncate_message(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_MESSAGE_LEN)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    // Lossy replacement can grow the text (U+FFFD is 3 bytes), so cut again.
    if text.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [1; 20],
            peer_id: [2; 20],
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: AnnounceEvent::None,
            num_want: None,
            key: 0,
        }
    }

    #[tokio::test]
    async fn unknown_scheme_is_rejected() {
        let err = announce(
            "wss://127.0.0.1/announce",
            &request(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(err, TrackerError::UnsupportedScheme("wss".into()));
        let err = announce("no scheme", &request(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, TrackerError::InvalidUrl(_)));
    }

    #[test]
    fn messages_are_bounded() {
        assert_eq!(truncate_message(b"hi"), "hi");
        assert_eq!(truncate_message(&[0xff; 5000]).len(), MAX_MESSAGE_LEN - 1);
        assert_eq!(truncate_message(&[b'a'; 5000]).len(), MAX_MESSAGE_LEN);
    }
}
