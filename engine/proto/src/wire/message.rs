//! Length-prefixed messages: decoding is bounded before any allocation, and
//! piece payloads are split off the read buffer without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WireError;

/// The block size every client uses for requests.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// One block: piece index, offset within the piece, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// Piece index.
    pub index: u32,
    /// Byte offset within the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// A peer wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Zero-length keep-alive.
    KeepAlive,
    /// 0
    Choke,
    /// 1
    Unchoke,
    /// 2
    Interested,
    /// 3
    NotInterested,
    /// 4
    Have(u32),
    /// 5: raw bitfield bytes; checked against the piece count by the swarm.
    Bitfield(Bytes),
    /// 6
    Request(BlockRef),
    /// 7
    Piece {
        /// Piece index.
        index: u32,
        /// Offset within the piece.
        begin: u32,
        /// Block data.
        data: Bytes,
    },
    /// 8
    Cancel(BlockRef),
    /// 9: DHT port.
    Port(u16),
    /// 0x0D (BEP 6)
    SuggestPiece(u32),
    /// 0x0E (BEP 6)
    HaveAll,
    /// 0x0F (BEP 6)
    HaveNone,
    /// 0x10 (BEP 6)
    RejectRequest(BlockRef),
    /// 0x11 (BEP 6)
    AllowedFast(u32),
    /// 20 (BEP 10): extended message id and its payload.
    Extended {
        /// 0 is the extension handshake.
        id: u8,
        /// Bencoded payload (and trailing data for some extensions).
        payload: Bytes,
    },
}

impl Message {
    /// Bytes this message takes on the wire, length prefix included.
    pub fn wire_len(&self) -> usize {
        4 + match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have(_) | Message::SuggestPiece(_) | Message::AllowedFast(_) => 5,
            Message::Port(_) => 3,
            Message::Bitfield(b) => 1 + b.len(),
            Message::Request(_) | Message::Cancel(_) | Message::RejectRequest(_) => 13,
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
        }
    }
}

/// Decode one message from the front of `buf`, or `Ok(None)` if more bytes are
/// needed. A length prefix above `max_len` is refused before anything is
/// buffered for it.
pub fn decode(buf: &mut BytesMut, max_len: u32) -> Result<Option<Message>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > max_len {
        return Err(WireError::TooLong { len, max: max_len });
    }
    if len == 0 {
        buf.advance(4);
        return Ok(Some(Message::KeepAlive));
    }
    if buf.len() < 4 + len as usize {
        buf.reserve(4 + len as usize - buf.len());
        return Ok(None);
    }
    let id = buf[4];
    let payload_len = len - 1;
    let fixed = |want: u32| {
        if payload_len == want {
            Ok(())
        } else {
            Err(WireError::BadLength {
                id,
                len: payload_len,
            })
        }
    };
    // Validate before consuming, so an error leaves nothing half-read.
    match id {
        0..=3 | 0x0E | 0x0F => fixed(0)?,
        4 | 0x0D | 0x11 => fixed(4)?,
        6 | 8 | 0x10 => fixed(12)?,
        7 if payload_len < 8 => {
            return Err(WireError::BadLength {
                id,
                len: payload_len,
            })
        }
        9 => fixed(2)?,
        20 if payload_len < 1 => {
            return Err(WireError::BadLength {
                id,
                len: payload_len,
            })
        }
        5 | 7 | 20 => {}
        other => return Err(WireError::UnknownId(other)),
    }
    buf.advance(5);
    let mut body = buf.split_to(payload_len as usize);
    let block = |b: &mut BytesMut| BlockRef {
        index: b.get_u32(),
        begin: b.get_u32(),
        length: b.get_u32(),
    };
    let msg = match id {
        0 => Message::Choke,
        1 => Message::Unchoke,
        2 => Message::Interested,
        3 => Message::NotInterested,
        4 => Message::Have(body.get_u32()),
        5 => Message::Bitfield(body.freeze()),
        6 => Message::Request(block(&mut body)),
        7 => {
            let index = body.get_u32();
            let begin = body.get_u32();
            Message::Piece {
                index,
                begin,
                data: body.freeze(),
            }
        }
        8 => Message::Cancel(block(&mut body)),
        9 => Message::Port(body.get_u16()),
        0x0D => Message::SuggestPiece(body.get_u32()),
        0x0E => Message::HaveAll,
        0x0F => Message::HaveNone,
        0x10 => Message::RejectRequest(block(&mut body)),
        0x11 => Message::AllowedFast(body.get_u32()),
        _ => {
            let ext = body.get_u8();
            Message::Extended {
                id: ext,
                payload: body.freeze(),
            }
        }
    };
    Ok(Some(msg))
}

/// Append `msg` in wire form to `out`.
pub fn encode(msg: &Message, out: &mut BytesMut) {
    out.reserve(msg.wire_len());
    out.put_u32((msg.wire_len() - 4) as u32);
    let put_block = |out: &mut BytesMut, b: &BlockRef| {
        out.put_u32(b.index);
        out.put_u32(b.begin);
        out.put_u32(b.length);
    };
    match msg {
        Message::KeepAlive => {}
        Message::Choke => out.put_u8(0),
        Message::Unchoke => out.put_u8(1),
        Message::Interested => out.put_u8(2),
        Message::NotInterested => out.put_u8(3),
        Message::Have(i) => {
            out.put_u8(4);
            out.put_u32(*i);
        }
        Message::Bitfield(b) => {
            out.put_u8(5);
            out.put_slice(b);
        }
        Message::Request(b) => {
            out.put_u8(6);
            put_block(out, b);
        }
        Message::Piece { index, begin, data } => {
            out.put_u8(7);
            out.put_u32(*index);
            out.put_u32(*begin);
            out.put_slice(data);
        }
        Message::Cancel(b) => {
            out.put_u8(8);
            put_block(out, b);
        }
        Message::Port(p) => {
            out.put_u8(9);
            out.put_u16(*p);
        }
        Message::SuggestPiece(i) => {
            out.put_u8(0x0D);
            out.put_u32(*i);
        }
        Message::HaveAll => out.put_u8(0x0E),
        Message::HaveNone => out.put_u8(0x0F),
        Message::RejectRequest(b) => {
            out.put_u8(0x10);
            put_block(out, b);
        }
        Message::AllowedFast(i) => {
            out.put_u8(0x11);
            out.put_u32(*i);
        }
        Message::Extended { id, payload } => {
            out.put_u8(20);
            out.put_u8(*id);
            out.put_slice(payload);
        }
    }
}

/// Write only the 13-byte header of a piece message whose `length` data bytes
/// the caller appends itself (straight from disk, without an extra copy).
pub fn encode_piece_header(block: &BlockRef, out: &mut BytesMut) {
    out.put_u32(9 + block.length);
    out.put_u8(7);
    out.put_u32(block.index);
    out.put_u32(block.begin);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_messages() -> Vec<Message> {
        let b = BlockRef {
            index: 7,
            begin: 16384,
            length: 16384,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(42),
            Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
            Message::Request(b),
            Message::Piece {
                index: 1,
                begin: 0,
                data: Bytes::from(vec![9u8; 100]),
            },
            Message::Cancel(b),
            Message::Port(6881),
            Message::SuggestPiece(3),
            Message::HaveAll,
            Message::HaveNone,
            Message::RejectRequest(b),
            Message::AllowedFast(5),
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"d1:md6:ut_pexi1eee"),
            },
        ]
    }

    #[test]
    fn round_trip_byte_by_byte() {
        let mut wire = BytesMut::new();
        for m in all_messages() {
            encode(&m, &mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(m) = decode(&mut buf, 1 << 20).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, all_messages());
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_prefix_refused_before_buffering() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0, 7][..]);
        assert_eq!(
            decode(&mut buf, 32 * 1024),
            Err(WireError::TooLong {
                len: 0xffff_fff0,
                max: 32 * 1024
            })
        );
        assert!(buf.capacity() < 1 << 20);
    }

    #[test]
    fn wrong_fixed_lengths_refused() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 4, 0, 0][..]);
        assert_eq!(
            decode(&mut buf, 1024),
            Err(WireError::BadLength { id: 4, len: 2 })
        );
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 99][..]);
        assert_eq!(decode(&mut buf, 1024), Err(WireError::UnknownId(99)));
        let mut buf = BytesMut::from(&[0, 0, 0, 5, 7, 0, 0, 0, 1][..]);
        assert_eq!(
            decode(&mut buf, 1024),
            Err(WireError::BadLength { id: 7, len: 4 })
        );
    }

    #[test]
    fn piece_header_matches_full_encoding() {
        let data = Bytes::from(vec![1u8; 10]);
        let mut full = BytesMut::new();
        encode(
            &Message::Piece {
                index: 3,
                begin: 4,
                data: data.clone(),
            },
            &mut full,
        );
        let mut split = BytesMut::new();
        encode_piece_header(
            &BlockRef {
                index: 3,
                begin: 4,
                length: 10,
            },
            &mut split,
        );
        split.put_slice(&data);
        assert_eq!(full, split);
    }
}
