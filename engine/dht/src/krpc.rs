//! KRPC messages (BEP 5, with BEP 43's `ro` flag): a bounded decoder and an
//! encoder over [`capwise_proto::bencode`].
//!
//! Decoding refuses packets above [`MAX_PACKET`], transaction ids above
//! [`MAX_TID`] bytes and tokens above [`MAX_TOKEN`] bytes, and keeps at most
//! [`MAX_NODES`] nodes and [`MAX_VALUES`] peers of a response, so one packet
//! costs a bounded amount of memory whatever it claims. Only IPv4 is read
//! (`nodes`, 6-byte `values`); IPv6 entries are skipped.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use capwise_proto::bencode::{self, Dict, Owned, Value};

use crate::id::NodeId;
use crate::DhtError;

/// Largest datagram read; real KRPC messages are well under 1,500 bytes.
pub const MAX_PACKET: usize = 2048;
/// Longest transaction id accepted (ours are 2 bytes; others use up to 4 or 8).
pub const MAX_TID: usize = 16;
/// Longest write token accepted (libtorrent sends 4 bytes, ours are 8).
pub const MAX_TOKEN: usize = 32;
/// Most nodes read from a response (BEP 5 sends 8).
pub const MAX_NODES: usize = 16;
/// Most peers read from one `values` list.
pub const MAX_VALUES: usize = 200;

/// Longest error text kept, in bytes.
pub const MAX_ERROR_TEXT: usize = 200;

/// The KRPC error code for a malformed or refused query (BEP 5: "Protocol Error").
pub const ERROR_PROTOCOL: i64 = 203;
/// The KRPC error code for an unknown method.
pub const ERROR_METHOD_UNKNOWN: i64 = 204;

/// The `v` of our messages: two letters for the client, two bytes of
/// version (BEP 5's convention; libtorrent sends `LT` and its version).
pub const CLIENT_VERSION: [u8; 4] = [b'C', b'W', 0, 1];

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The transaction id, echoed by the response.
    pub tid: Vec<u8>,
    /// BEP 43: the sender is read-only (answers no queries; keep it out of routing tables).
    pub read_only: bool,
    /// Query, response or error.
    pub body: Body,
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `y: q`.
    Query {
        /// The querying node's id.
        id: NodeId,
        /// The method and its arguments.
        query: Query,
    },
    /// `y: r`.
    Response(Response),
    /// `y: e`.
    Error {
        /// The error code (201 generic, 202 server, 203 protocol, 204 method unknown).
        code: i64,
        /// The error text, lossily decoded.
        message: String,
    },
}

/// A query's method and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `ping`.
    Ping,
    /// `find_node`.
    FindNode {
        /// The id searched for.
        target: NodeId,
    },
    /// `get_peers`.
    GetPeers {
        /// The torrent searched for.
        info_hash: [u8; 20],
    },
    /// `announce_peer`.
    AnnouncePeer {
        /// The torrent announced.
        info_hash: [u8; 20],
        /// The port given (ignored when `implied_port`).
        port: u16,
        /// Use the packet's source port instead of `port`.
        implied_port: bool,
        /// The token from an earlier `get_peers` response.
        token: Vec<u8>,
    },
    /// A method we do not know (answered with error 204).
    Unknown {
        /// Its name.
        method: Vec<u8>,
    },
}

/// A response's fields (which of them are present depends on the query).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The responding node's id.
    pub id: NodeId,
    /// Compact IPv4 nodes (`nodes`), at most [`MAX_NODES`].
    pub nodes: Vec<(NodeId, SocketAddrV4)>,
    /// Peers (`values`), at most [`MAX_VALUES`].
    pub values: Vec<SocketAddrV4>,
    /// The write token (`token`), for `announce_peer`.
    pub token: Option<Vec<u8>>,
}

fn malformed(what: &'static str) -> DhtError {
    DhtError::Malformed(what)
}

fn get<'d, 'a>(dict: &'d Dict<'a>, key: &'static str) -> Result<&'d Value<'a>, DhtError> {
    dict.get(key.as_bytes()).ok_or(malformed(key))
}

fn get_bytes<'a>(dict: &Dict<'a>, key: &'static str) -> Result<&'a [u8], DhtError> {
    get(dict, key)?.as_bytes().ok_or(malformed(key))
}

fn get_20(dict: &Dict<'_>, key: &'static str) -> Result<[u8; 20], DhtError> {
    get_bytes(dict, key)?.try_into().map_err(|_| malformed(key))
}

/// Reads compact IPv4 node info: 26 bytes each (id, address, port).
pub fn decode_nodes(bytes: &[u8], max: usize) -> Vec<(NodeId, SocketAddrV4)> {
    bytes
        .chunks_exact(26)
        .take(max)
        .map(|c| {
            let mut id = [0u8; 20];
            id.copy_from_slice(&c[..20]);
            (NodeId(id), decode_addr(&c[20..26]))
        })
        .collect()
}

/// Writes compact IPv4 node info.
pub fn encode_nodes<'n>(nodes: impl IntoIterator<Item = &'n (NodeId, SocketAddrV4)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, addr) in nodes {
        out.extend_from_slice(&id.0);
        out.extend_from_slice(&encode_addr(addr));
    }
    out
}

fn decode_addr(c: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(c[0], c[1], c[2], c[3]),
        u16::from_be_bytes([c[4], c[5]]),
    )
}

/// The 6-byte compact form of an IPv4 address and port.
pub fn encode_addr(addr: &SocketAddrV4) -> [u8; 6] {
    let ip = addr.ip().octets();
    let port = addr.port().to_be_bytes();
    [ip[0], ip[1], ip[2], ip[3], port[0], port[1]]
}

impl Message {
    /// Decodes one datagram.
    pub fn decode(bytes: &[u8]) -> Result<Message, DhtError> {
        if bytes.len() > MAX_PACKET {
            return Err(DhtError::TooLarge(bytes.len()));
        }
        let value = bencode::decode(bytes)?;
        let dict = value.as_dict().ok_or(malformed("message"))?;
        let tid = get_bytes(dict, "t")?;
        if tid.len() > MAX_TID {
            return Err(malformed("t"));
        }
        let read_only = matches!(dict.get(b"ro").and_then(Value::as_int), Some(1));
        let body = match get_bytes(dict, "y")? {
            b"q" => {
                let method = get_bytes(dict, "q")?;
                let args = get(dict, "a")?.as_dict().ok_or(malformed("a"))?;
                let id = NodeId(get_20(args, "id")?);
                let query = match method {
                    b"ping" => Query::Ping,
                    b"find_node" => Query::FindNode {
                        target: NodeId(get_20(args, "target")?),
                    },
                    b"get_peers" => Query::GetPeers {
                        info_hash: get_20(args, "info_hash")?,
                    },
                    b"announce_peer" => {
                        let port = get(args, "port")?.as_int().ok_or(malformed("port"))?;
                        let implied_port =
                            matches!(args.get(b"implied_port").and_then(Value::as_int), Some(1));
                        let port = u16::try_from(port).map_err(|_| malformed("port"))?;
                        let token = get_bytes(args, "token")?;
                        if token.len() > MAX_TOKEN {
                            return Err(malformed("token"));
                        }
                        Query::AnnouncePeer {
                            info_hash: get_20(args, "info_hash")?,
                            port,
                            implied_port,
                            token: token.to_vec(),
                        }
                    }
                    _ => Query::Unknown {
                        method: method.to_vec(),
                    },
                };
                Body::Query { id, query }
            }
            b"r" => {
                let r = get(dict, "r")?.as_dict().ok_or(malformed("r"))?;
                let id = NodeId(get_20(r, "id")?);
                let nodes = match r.get(b"nodes") {
                    None => Vec::new(),
                    Some(v) => decode_nodes(v.as_bytes().ok_or(malformed("nodes"))?, MAX_NODES),
                };
                let values = match r.get(b"values") {
                    None => Vec::new(),
                    Some(v) => v
                        .as_list()
                        .ok_or(malformed("values"))?
                        .iter()
                        .filter_map(Value::as_bytes)
                        .filter(|b| b.len() == 6)
                        .take(MAX_VALUES)
                        .map(decode_addr)
                        .collect(),
                };
                let token = match r.get(b"token") {
                    None => None,
                    Some(v) => {
                        let t = v.as_bytes().ok_or(malformed("token"))?;
                        if t.len() > MAX_TOKEN {
                            return Err(malformed("token"));
                        }
                        Some(t.to_vec())
                    }
                };
                Body::Response(Response {
                    id,
                    nodes,
                    values,
                    token,
                })
            }
            b"e" => {
                let list = get(dict, "e")?.as_list().ok_or(malformed("e"))?;
                let code = list.first().and_then(Value::as_int).ok_or(malformed("e"))?;
                let message = list
                    .get(1)
                    .and_then(Value::as_bytes)
                    .map(short_text)
                    .unwrap_or_default();
                Body::Error { code, message }
            }
            _ => return Err(malformed("y")),
        };
        Ok(Message {
            tid: tid.to_vec(),
            read_only,
            body,
        })
    }

    /// Encodes this message (keys sorted, as bencode requires), with our
    /// client version (`v`, BEP 5) so other nodes can tell who sent it.
    pub fn encode(&self) -> Vec<u8> {
        let mut top = Owned::dict()
            .with("t", self.tid.clone())
            .with("v", &CLIENT_VERSION[..]);
        if self.read_only {
            top = top.with("ro", 1);
        }
        let top = match &self.body {
            Body::Query { id, query } => {
                let args = Owned::dict().with("id", id.0);
                let (method, args) = match query {
                    Query::Ping => (&b"ping"[..], args),
                    Query::FindNode { target } => {
                        (&b"find_node"[..], args.with("target", target.0))
                    }
                    Query::GetPeers { info_hash } => {
                        (&b"get_peers"[..], args.with("info_hash", *info_hash))
                    }
                    Query::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => (
                        &b"announce_peer"[..],
                        args.with("info_hash", *info_hash)
                            .with("port", u32::from(*port))
                            .with("implied_port", i32::from(*implied_port))
                            .with("token", token.clone()),
                    ),
                    Query::Unknown { method } => (method.as_slice(), args),
                };
                top.with("y", "q").with("q", method).with("a", args)
            }
            Body::Response(r) => {
                let mut d = Owned::dict().with("id", r.id.0);
                if !r.nodes.is_empty() {
                    d = d.with("nodes", encode_nodes(&r.nodes));
                }
                if !r.values.is_empty() {
                    d = d.with(
                        "values",
                        Owned::List(r.values.iter().map(|a| encode_addr(a).into()).collect()),
                    );
                }
                d = d.with_opt("token", r.token.clone());
                top.with("y", "r").with("r", d)
            }
            Body::Error { code, message } => top.with("y", "e").with(
                "e",
                Owned::List(vec![Owned::Int(*code), message.as_str().into()]),
            ),
        };
        top.build().to_bytes()
    }
}

/// At most [`MAX_ERROR_TEXT`] bytes of `b` as UTF-8 (lossily, cut at a
/// character boundary), so that the text re-encodes to what it decodes from.
fn short_text(b: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&b[..b.len().min(MAX_ERROR_TEXT)]).into_owned();
    let mut end = s.len().min(MAX_ERROR_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// The address as IPv4 if it is one (or an IPv4-mapped IPv6 address).
pub fn as_v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        let bytes = m.encode();
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn messages_round_trip() {
        let id = NodeId([7; 20]);
        for query in [
            Query::Ping,
            Query::FindNode {
                target: NodeId([1; 20]),
            },
            Query::GetPeers { info_hash: [2; 20] },
            Query::AnnouncePeer {
                info_hash: [3; 20],
                port: 6881,
                implied_port: true,
                token: b"tok".to_vec(),
            },
            Query::Unknown {
                method: b"vote".to_vec(),
            },
        ] {
            round_trip(Message {
                tid: b"aa".to_vec(),
                read_only: true,
                body: Body::Query { id, query },
            });
        }
        round_trip(Message {
            tid: b"bb".to_vec(),
            read_only: false,
            body: Body::Response(Response {
                id,
                nodes: vec![(NodeId([9; 20]), "10.0.0.1:5".parse().unwrap())],
                values: vec!["1.2.3.4:80".parse().unwrap()],
                token: Some(b"xy".to_vec()),
            }),
        });
        round_trip(Message {
            tid: b"cc".to_vec(),
            read_only: false,
            body: Body::Error {
                code: 203,
                message: "bad token".into(),
            },
        });
    }

    #[test]
    fn long_invalid_error_text_decodes_to_what_it_encodes() {
        let mut bytes = b"d1:eli201e300:".to_vec();
        bytes.extend_from_slice(&[0xff; 300]);
        bytes.extend_from_slice(b"e1:t1:x1:y1:ee");
        let m = Message::decode(&bytes).unwrap();
        let Body::Error { message, .. } = &m.body else {
            panic!("not an error")
        };
        assert!(message.len() <= MAX_ERROR_TEXT);
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert!(
            m.encode().windows(9).any(|w| w == b"1:v4:CW\0\x01"),
            "our messages carry our version"
        );
    }

    #[test]
    fn bep5_example_ping_decodes() {
        let m =
            Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe").unwrap();
        assert_eq!(m.tid, b"aa");
        assert!(matches!(
            m.body,
            Body::Query {
                query: Query::Ping,
                ..
            }
        ));
    }

    #[test]
    fn hostile_messages_are_refused_or_bounded() {
        // Wrong types, truncation, a long transaction id, an oversized packet.
        for bad in [
            &b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q"[..],
            b"d1:ai5e1:q4:ping1:t2:aa1:y1:qe",
            b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",
            b"d1:t20:aaaaaaaaaaaaaaaaaaaa1:y1:ee",
            b"le",
            b"d1:t2:aa1:y1:xe",
            b"d1:rd2:id20:abcdefghij01234567895:nodesi3ee1:t2:aa1:y1:re",
        ] {
            assert!(
                Message::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            Message::decode(&[b'x'; MAX_PACKET + 1]),
            Err(DhtError::TooLarge(_))
        ));
        // A response with 70 nodes and 300 values keeps only the bounds.
        let r = Response {
            id: NodeId([1; 20]),
            nodes: (0..70u8)
                .map(|i| {
                    (
                        NodeId([i; 20]),
                        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 1),
                    )
                })
                .collect(),
            values: Vec::new(),
            token: None,
        };
        let bytes = Message {
            tid: b"t".to_vec(),
            read_only: false,
            body: Body::Response(r),
        }
        .encode();
        assert!(bytes.len() <= MAX_PACKET);
        let Body::Response(r) = Message::decode(&bytes).unwrap().body else {
            panic!("not a response")
        };
        assert_eq!(r.nodes.len(), MAX_NODES);
    }
}
