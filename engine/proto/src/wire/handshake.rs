//! The 68-byte handshake that opens every connection.

use super::WireError;

const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// How every plaintext handshake begins: the protocol name's length and
/// the name. A connection that starts otherwise is an MSE handshake or
/// noise.
pub const PROTOCOL_HEADER: [u8; 20] = *b"\x13BitTorrent protocol";
/// Bytes in a handshake.
pub const HANDSHAKE_LEN: usize = 68;

/// The handshake: reserved bits say which extensions a peer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Extension bits.
    pub reserved: [u8; 8],
    /// Torrent the peer wants.
    pub info_hash: [u8; 20],
    /// The peer's id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Ours: extension protocol (BEP 10) and fast extension (BEP 6).
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Self {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        reserved[7] |= 0x04;
        Self {
            reserved,
            info_hash,
            peer_id,
        }
    }
    /// BEP 10 support.
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }
    /// BEP 6 support.
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }
    /// Wire bytes.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }
    /// Parse exactly [`HANDSHAKE_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() != HANDSHAKE_LEN || bytes[0] != 19 || &bytes[1..20] != PROTOCOL {
            return Err(WireError::BadHandshake);
        }
        let mut hs = Self {
            reserved: [0; 8],
            info_hash: [0; 20],
            peer_id: [0; 20],
        };
        hs.reserved.copy_from_slice(&bytes[20..28]);
        hs.info_hash.copy_from_slice(&bytes[28..48]);
        hs.peer_id.copy_from_slice(&bytes[48..68]);
        Ok(hs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let hs = Handshake::new([1; 20], [2; 20]);
        let bytes = hs.encode();
        assert_eq!(Handshake::decode(&bytes).unwrap(), hs);
        assert!(hs.supports_extensions() && hs.supports_fast());
        let mut bad = bytes;
        bad[3] = b'x';
        assert_eq!(Handshake::decode(&bad), Err(WireError::BadHandshake));
        assert!(Handshake::decode(&bytes[..40]).is_err());
    }
}
