//! The uTP packet codec (BEP 29): pure functions over byte slices.
//!
//! A packet is a 20-byte header, a chain of extensions (each: the next
//! extension's type, its length, its bytes) and the payload. Only the
//! selective ACK (extension 1) means something here; other extensions
//! (libutp's extension bits, 2) are skipped, as BEP 29 asks. Decoding never
//! panics: every field is read through bounds-checked slices and a bad
//! datagram is a [`PacketError`].

/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 20;

/// The only uTP version (the low nibble of the first byte).
pub const VERSION: u8 = 1;

/// The selective ACK extension's type.
pub const EXT_SELECTIVE_ACK: u8 = 1;

/// Longest selective ACK bitmask we send or read (bits for 256 packets
/// past `ack_nr + 1`); a longer one is refused rather than walked.
pub const MAX_SACK_BYTES: usize = 32;

/// What went wrong decoding a datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than the header needs.
    #[error("datagram of {0} bytes is shorter than the 20-byte uTP header")]
    TooShort(usize),
    /// The version nibble is not 1.
    #[error("uTP version {0} is not supported (only version 1 is)")]
    Version(u8),
    /// The type nibble names no packet type.
    #[error("packet type {0} is not DATA, FIN, STATE, RESET or SYN (0-4)")]
    Type(u8),
    /// An extension's header or body runs past the datagram's end.
    #[error("extension chain runs past the end of the datagram")]
    TruncatedExtension,
    /// A selective ACK of no bytes.
    #[error("selective ACK of {0} bytes: it needs at least one")]
    SackLength(usize),
    /// Two selective ACK extensions in one packet.
    #[error("two selective ACK extensions in one packet")]
    DuplicateSack,
}

/// The packet types of BEP 29.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// ST_DATA: payload, sequenced.
    Data = 0,
    /// ST_FIN: the sender's last sequence number.
    Fin = 1,
    /// ST_STATE: an ACK, not sequenced.
    State = 2,
    /// ST_RESET: the connection is gone.
    Reset = 3,
    /// ST_SYN: opens a connection.
    Syn = 4,
}

impl PacketType {
    fn from_nibble(n: u8) -> Result<Self, PacketError> {
        Ok(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            other => return Err(PacketError::Type(other)),
        })
    }
}

/// The fixed header's fields (the extension byte is implied by what the
/// packet carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the packet is.
    pub packet_type: PacketType,
    /// The receiver's id for SYN; the id the receiver expects otherwise.
    pub connection_id: u16,
    /// The sender's clock when it sent this, in microseconds (wrapping).
    pub timestamp_us: u32,
    /// The sender's clock minus the timestamp of the last packet it
    /// received (wrapping): the one-way delay of our packets to it, plus
    /// the offset between our clocks.
    pub timestamp_diff_us: u32,
    /// Bytes the sender can still take into its receive buffer.
    pub wnd_size: u32,
    /// This packet's sequence number (STATE: the next one the sender uses).
    pub seq_nr: u16,
    /// The last sequence number the sender received in order.
    pub ack_nr: u16,
}

/// A decoded packet, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The selective ACK bitmask: bit `i` (LSB first in each byte) set means
    /// `ack_nr + 2 + i` arrived. `ack_nr + 1` is implied missing.
    pub selective_ack: Option<&'a [u8]>,
    /// What follows the extensions.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Packet<'a> {
    /// Decodes one datagram.
    pub fn decode(bytes: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(PacketError::TooShort(bytes.len()));
        };
        let version = head[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let packet_type = PacketType::from_nibble(head[0] >> 4)?;
        let header = Header {
            packet_type,
            connection_id: be16(head, 2),
            timestamp_us: be32(head, 4),
            timestamp_diff_us: be32(head, 8),
            wnd_size: be32(head, 12),
            seq_nr: be16(head, 16),
            ack_nr: be16(head, 18),
        };
        let mut next_ext = head[1];
        let mut at = HEADER_LEN;
        let mut selective_ack = None;
        // Each extension takes at least 2 bytes, so the chain ends within
        // the datagram's length.
        while next_ext != 0 {
            let Some(&[following, len]) = bytes.get(at..at + 2) else {
                return Err(PacketError::TruncatedExtension);
            };
            let len = usize::from(len);
            let Some(body) = bytes.get(at + 2..at + 2 + len) else {
                return Err(PacketError::TruncatedExtension);
            };
            if next_ext == EXT_SELECTIVE_ACK {
                // BEP 29 asks for a multiple of 4, but libtorrent sends
                // (span + 7) / 8 bytes, 1 to 32: refusing those dropped
                // every packet it sent once it held one of ours out of
                // order (its ACKs with them), and the connection died.
                // Any non-empty length is read (a u8 bounds it; the walk
                // stops at the sent queue's end).
                if len == 0 {
                    return Err(PacketError::SackLength(len));
                }
                if selective_ack.replace(body).is_some() {
                    return Err(PacketError::DuplicateSack);
                }
            }
            next_ext = following;
            at += 2 + len;
        }
        Ok(Packet {
            header,
            selective_ack,
            payload: &bytes[at..],
        })
    }

    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(&self.header, self.selective_ack, self.payload, &mut out);
        out
    }
}

/// Appends a packet to `out`. A selective ACK of a length `decode` would
/// refuse is the caller's bug; it is cut or padded to a valid length here
/// so that what goes on the wire always decodes.
pub fn encode_into(
    header: &Header,
    selective_ack: Option<&[u8]>,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let sack = selective_ack.map(|s| &s[..s.len().min(MAX_SACK_BYTES)]);
    out.reserve(HEADER_LEN + sack.map_or(0, |s| 2 + s.len().max(4)) + payload.len());
    out.push(((header.packet_type as u8) << 4) | VERSION);
    out.push(if sack.is_some() { EXT_SELECTIVE_ACK } else { 0 });
    out.extend_from_slice(&header.connection_id.to_be_bytes());
    out.extend_from_slice(&header.timestamp_us.to_be_bytes());
    out.extend_from_slice(&header.timestamp_diff_us.to_be_bytes());
    out.extend_from_slice(&header.wnd_size.to_be_bytes());
    out.extend_from_slice(&header.seq_nr.to_be_bytes());
    out.extend_from_slice(&header.ack_nr.to_be_bytes());
    if let Some(s) = sack {
        let padded = s.len().div_ceil(4).max(1) * 4;
        out.push(0);
        out.push(padded as u8);
        out.extend_from_slice(s);
        out.resize(out.len() + padded - s.len(), 0);
    }
    out.extend_from_slice(payload);
}

/// `a` comes before `b` in 16-bit sequence space (a window of 2^15).
pub fn seq_lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

/// `a` is `b` or comes before it.
pub fn seq_le(a: u16, b: u16) -> bool {
    a == b || seq_lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(t: PacketType) -> Header {
        Header {
            packet_type: t,
            connection_id: 0xbeef,
            timestamp_us: 0x0102_0304,
            timestamp_diff_us: 0x0506_0708,
            wnd_size: 0x0009_0a0b,
            seq_nr: 0x0c0d,
            ack_nr: 0x0e0f,
        }
    }

    #[test]
    fn header_layout_is_bep29s() {
        let bytes = Packet {
            header: header(PacketType::Syn),
            selective_ack: None,
            payload: b"",
        }
        .encode();
        assert_eq!(
            bytes,
            [0x41, 0, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 10, 11, 12, 13, 14, 15]
        );
    }

    #[test]
    fn selective_ack_and_unknown_extensions() {
        // A STATE with extension 2 (8 bytes, skipped) then a 4-byte SACK.
        let mut bytes = Packet {
            header: header(PacketType::State),
            selective_ack: None,
            payload: b"",
        }
        .encode();
        bytes[1] = 2;
        bytes.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 4, 0b101, 0, 0, 0x80]);
        bytes.extend_from_slice(b"tail");
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.selective_ack, Some(&[0b101, 0, 0, 0x80][..]));
        assert_eq!(p.payload, b"tail");
        // libtorrent's lengths are not multiples of 4: (span + 7) / 8 bytes.
        let mut lt = Packet {
            header: header(PacketType::State),
            selective_ack: None,
            payload: b"",
        }
        .encode();
        lt[1] = 1;
        lt.extend_from_slice(&[0, 3, 0b11, 0, 0x40]);
        let p = Packet::decode(&lt).unwrap();
        assert_eq!(p.selective_ack, Some(&[0b11, 0, 0x40][..]));
        assert!(p.payload.is_empty());
        // Sent on, it is padded to 4 bytes, and that form is canonical.
        let again = p.encode();
        let q = Packet::decode(&again).unwrap();
        assert_eq!(q.selective_ack, Some(&[0b11, 0, 0x40, 0][..]));
        assert_eq!(q.encode(), again);
    }

    #[test]
    fn bad_datagrams_are_errors() {
        let good = Packet {
            header: header(PacketType::Data),
            selective_ack: Some(&[1, 2, 3, 4]),
            payload: b"x",
        }
        .encode();
        assert_eq!(Packet::decode(&good[..19]), Err(PacketError::TooShort(19)));
        let mut v2 = good.clone();
        v2[0] = 0x02;
        assert_eq!(Packet::decode(&v2), Err(PacketError::Version(2)));
        let mut t5 = good.clone();
        t5[0] = 0x51;
        assert_eq!(Packet::decode(&t5), Err(PacketError::Type(5)));
        assert_eq!(
            Packet::decode(&good[..23]),
            Err(PacketError::TruncatedExtension)
        );
        let mut len0 = good.clone();
        len0[21] = 0;
        len0.truncate(22);
        assert_eq!(Packet::decode(&len0), Err(PacketError::SackLength(0)));
        let mut twice = good.clone();
        twice[20] = 1;
        twice.truncate(26);
        twice.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
        assert_eq!(Packet::decode(&twice), Err(PacketError::DuplicateSack));
    }

    #[test]
    fn sequence_space_wraps() {
        assert!(seq_lt(65535, 0));
        assert!(seq_lt(1, 2));
        assert!(!seq_lt(2, 1));
        assert!(!seq_lt(5, 5));
        assert!(seq_le(5, 5));
        assert!(seq_lt(65000, 100));
    }
}
