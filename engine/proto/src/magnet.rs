//! Magnet URIs (BEP 9): `xt=urn:btih:` in hex or base32, `dn`, `tr`, `xl`.
//!
//! Parsing is lenient where real links vary (parameter order, case of the
//! prefix and of the hash, numbered `xt.1`/`tr.1` keys, unknown parameters) and
//! strict where a mistake would fetch the wrong torrent (a malformed hash, or
//! two different v1 hashes in one link).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::metainfo::InfoHash;

/// Why a magnet URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// The text does not start with `magnet:?`.
    #[error("not a magnet URI (must start with \"magnet:?\")")]
    NotMagnet,
    /// No `xt=urn:btih:` parameter.
    #[error("no BitTorrent info-hash (xt=urn:btih:...) in the link")]
    MissingInfoHash,
    /// The `urn:btih:` value is neither 40 hex digits nor 32 base32 characters.
    #[error("xt: info-hash {value:?} {reason}")]
    BadInfoHash {
        /// The hash text as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The link names two different v1 info-hashes.
    #[error("xt: the link names two different info-hashes, {first} and {second}")]
    ConflictingInfoHash {
        /// The first hash seen.
        first: InfoHash,
        /// A later, different hash.
        second: InfoHash,
    },
    /// `xl` is not a non-negative decimal integer.
    #[error("xl: {0:?} is not a length in bytes")]
    BadExactLength(String),
    /// A parameter value is not valid UTF-8 after percent-decoding.
    #[error("{0}: not valid UTF-8 after percent-decoding")]
    NotUtf8(&'static str),
}

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info-hash from `xt=urn:btih:`.
    pub info_hash: InfoHash,
    /// `dn`: display name.
    pub display_name: Option<String>,
    /// `tr`: trackers, in order.
    pub trackers: Vec<String>,
    /// `xl`: exact length in bytes.
    pub exact_length: Option<u64>,
    /// `x.pe`: peers to dial, `HOST:PORT` as given (BEP 9).
    pub peers: Vec<String>,
}

/// Characters to escape in values written by [`Magnet::to_uri`]: everything
/// except RFC 3986 unreserved characters, so any URI parser reads them back.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Magnet {
    /// A magnet link for `info_hash` with nothing else.
    pub fn new(info_hash: InfoHash) -> Magnet {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            exact_length: None,
            peers: Vec::new(),
        }
    }

    /// Parses `magnet:?xt=urn:btih:...&dn=...&tr=...&xl=...`.
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        let uri = uri.trim();
        let query = match uri.get(..8) {
            Some(prefix) if prefix.eq_ignore_ascii_case("magnet:?") => uri.get(8..).unwrap_or(""),
            _ => return Err(MagnetError::NotMagnet),
        };
        let mut info_hash: Option<InfoHash> = None;
        let mut display_name = None;
        let mut trackers = Vec::new();
        let mut exact_length = None;
        let mut peers = Vec::new();
        for pair in query.split('&') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if key == "x.pe" {
                let peer = decode(value, "x.pe")?;
                if !peer.is_empty() && !peers.contains(&peer) {
                    peers.push(peer);
                }
                continue;
            }
            // BEP 9 allows numbered keys (`xt.1`, `tr.2`) for several values.
            let key = key.split_once('.').map_or(key, |(base, _)| base);
            match key {
                "xt" => {
                    let value = decode(value, "xt")?;
                    let Some(hash) = btih(&value)? else {
                        continue; // urn:btmh: (v2) and other URNs are not ours
                    };
                    match info_hash {
                        Some(first) if first != hash => {
                            return Err(MagnetError::ConflictingInfoHash {
                                first,
                                second: hash,
                            })
                        }
                        _ => info_hash = Some(hash),
                    }
                }
                "dn" => display_name = Some(decode(&value.replace('+', " "), "dn")?),
                "tr" => {
                    let tracker = decode(value, "tr")?;
                    if !tracker.is_empty() && !trackers.contains(&tracker) {
                        trackers.push(tracker);
                    }
                }
                "xl" => {
                    let text = decode(value, "xl")?;
                    let length = text
                        .parse::<u64>()
                        .ok()
                        .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or(MagnetError::BadExactLength(text))?;
                    exact_length = Some(length);
                }
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::MissingInfoHash)?,
            display_name,
            trackers,
            exact_length,
            peers,
        })
    }

    /// Writes the link back as a URI with the hash in lower-case hex.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(name) = &self.display_name {
            uri.push_str("&dn=");
            uri.extend(utf8_percent_encode(name, VALUE));
        }
        if let Some(length) = self.exact_length {
            uri.push_str(&format!("&xl={length}"));
        }
        for tracker in &self.trackers {
            uri.push_str("&tr=");
            uri.extend(utf8_percent_encode(tracker, VALUE));
        }
        for peer in &self.peers {
            uri.push_str("&x.pe=");
            uri.extend(utf8_percent_encode(peer, VALUE));
        }
        uri
    }
}

impl From<&crate::metainfo::Metainfo> for Magnet {
    /// The magnet link for a torrent: its hash, name, length and trackers.
    fn from(m: &crate::metainfo::Metainfo) -> Self {
        Magnet {
            info_hash: m.info_hash,
            display_name: Some(m.info.name.clone()),
            trackers: m.tracker_urls().into_iter().map(str::to_owned).collect(),
            exact_length: Some(m.info.total_length),
            peers: Vec::new(),
        }
    }
}

impl std::fmt::Display for Magnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl std::str::FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Magnet::parse(s)
    }
}

fn decode(value: &str, field: &'static str) -> Result<String, MagnetError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| MagnetError::NotUtf8(field))
}

/// The v1 hash of an `xt` value, `None` if it is not a `urn:btih:` URN.
fn btih(xt: &str) -> Result<Option<InfoHash>, MagnetError> {
    const PREFIX: &str = "urn:btih:";
    let hash = match xt.get(..PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(PREFIX) => xt.get(PREFIX.len()..).unwrap_or(""),
        _ => return Ok(None),
    };
    let bad = |reason| MagnetError::BadInfoHash {
        value: hash.to_owned(),
        reason,
    };
    match hash.len() {
        40 => InfoHash::from_hex(hash)
            .map(Some)
            .ok_or_else(|| bad("is not valid hex")),
        32 => base32_decode(hash)
            .map(|bytes| Some(InfoHash(bytes)))
            .ok_or_else(|| bad("is not valid base32")),
        _ => Err(bad("must be 40 hex digits or 32 base32 characters")),
    }
}

/// Decodes 32 RFC 4648 base32 characters (A-Z, 2-7, either case, no padding)
/// into 20 bytes: 32 × 5 bits = 160 bits exactly.
fn base32_decode(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    let mut written = 0usize;
    for c in text.bytes() {
        let value = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u64::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(written)? = (buffer >> bits) as u8;
            written += 1;
        }
    }
    (written == 20).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_hex_link() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{}&dn=Some+File%20Name&tr=udp%3A%2F%2Fa.example%3A80&tr=http://b.example/ann&xl=1234&foo=bar&flag",
            HEX.to_uppercase()
        ))
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("Some File Name"));
        assert_eq!(
            m.trackers,
            vec!["udp://a.example:80", "http://b.example/ann"]
        );
        assert_eq!(m.exact_length, Some(1234));
    }

    #[test]
    fn parses_base32_link() {
        // base32 of the 20 bytes 0x00..0x13, checked with Python's base64.b32encode.
        let expected: Vec<u8> = (0u8..20).collect();
        let m = Magnet::parse("MAGNET:?xt=urn:btih:aaaqeayeaudaocajbifqydiob4ibceqt").unwrap();
        assert_eq!(m.info_hash.0.to_vec(), expected);
        let m = Magnet::parse("magnet:?xt=urn:btih:AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT").unwrap();
        assert_eq!(m.info_hash.0.to_vec(), expected);
    }

    #[test]
    fn refuses_bad_links() {
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x"),
            Err(MagnetError::MissingInfoHash)
        );
        assert!(matches!(
            Magnet::parse("magnet:?xt=urn:btih:1234"),
            Err(MagnetError::BadInfoHash { .. })
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{}", "g".repeat(40))),
            Err(MagnetError::BadInfoHash { .. })
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{}", "1".repeat(32))),
            Err(MagnetError::BadInfoHash { .. })
        ));
        let other = "0".repeat(40);
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xt.2=urn:btih:{other}")),
            Err(MagnetError::ConflictingInfoHash { .. })
        ));
        assert!(Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xt.2=urn:btih:{HEX}")).is_ok());
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xl=-1")),
            Err(MagnetError::BadExactLength(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xl=+1")),
            Err(MagnetError::BadExactLength(_))
        ));
    }

    #[test]
    fn ignores_v2_urn() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btmh:1220{}&xt=urn:btih:{HEX}",
            "a".repeat(64)
        ))
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
    }

    #[test]
    fn round_trips() {
        let m = Magnet {
            info_hash: InfoHash::from_hex(HEX).unwrap(),
            display_name: Some("a b&c=d+é".into()),
            trackers: vec!["udp://t.example:6969/announce?x=1&y=2".into()],
            exact_length: Some(99),
            peers: vec!["10.0.0.1:6881".into(), "[::1]:51413".into()],
        };
        let uri = m.to_uri();
        assert!(uri.starts_with(&format!("magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c%3Dd%2B")));
        assert_eq!(Magnet::parse(&uri), Ok(m));
    }

    #[test]
    fn reads_x_pe_peers() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1%3A6881&x.pe=host.example:1&x.pe=127.0.0.1:6881"
        ))
        .unwrap();
        assert_eq!(m.peers, ["127.0.0.1:6881", "host.example:1"]);
    }
}
