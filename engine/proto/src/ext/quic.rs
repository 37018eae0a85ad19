//! capwise_quic: a capwise agent's offer, in its BEP 10 extension
//! handshake, to move the connection onto QUIC.
//!
//! The handshake's top-level key `capwise_quic` holds a dictionary with
//! `port` (the agent's QUIC endpoint, on the IP address the connection
//! comes from) and `fp` (the SHA-256 of its certificate's public key,
//! 32 bytes: its agent id, which the dialler pins). It is a top-level key
//! rather than an `m` entry because it is a fact about the peer, not a
//! message id; other clients ignore keys they do not know (BEP 10).
//!
//! Which side dials is decided here too ([`dials`]): the one with the
//! lower agent id, so that of two agents only one opens a connection.

use crate::bencode::{self, Owned};

/// The top-level key of the extension handshake.
pub const KEY: &[u8] = b"capwise_quic";

/// Length of an agent id (a SHA-256).
pub const FINGERPRINT_LEN: usize = 32;

/// What an agent offers: where its QUIC endpoint listens, and whom to
/// expect there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuicOffer {
    /// The UDP port of its QUIC endpoint (never 0).
    pub port: u16,
    /// The SHA-256 of its certificate's SubjectPublicKeyInfo.
    pub fingerprint: [u8; FINGERPRINT_LEN],
}

impl QuicOffer {
    /// The value under [`KEY`].
    pub fn to_bencode(&self) -> Owned {
        Owned::dict()
            .with("fp", self.fingerprint)
            .with("port", Owned::Int(self.port.into()))
            .build()
    }
}

/// The offer in a peer's extension handshake `payload`, if it holds a
/// well-formed one; anything else (no key, not bencode, a port out of
/// range, a fingerprint of another length) is no offer.
pub fn peer_offer(payload: &[u8]) -> Option<QuicOffer> {
    let value = bencode::decode(payload).ok()?;
    let offer = value.as_dict()?.get(KEY)?.as_dict()?;
    let port = u16::try_from(offer.get(b"port")?.as_int()?)
        .ok()
        .filter(|&p| p != 0)?;
    let fingerprint = offer.get(b"fp")?.as_bytes()?.try_into().ok()?;
    Some(QuicOffer { port, fingerprint })
}

/// Whether we (agent id `ours`) dial the peer whose id is `theirs`: the
/// lower id dials; the same id (ourselves, or a copied key) never does.
pub fn dials(ours: &[u8; FINGERPRINT_LEN], theirs: &[u8; FINGERPRINT_LEN]) -> bool {
    ours < theirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::extension::our_handshake_offering;

    #[test]
    fn an_offer_reads_back_from_our_handshake() {
        let offer = QuicOffer {
            port: 51413,
            fingerprint: [7; 32],
        };
        let payload = our_handshake_offering(6881, 250, None, &[], None, Some(&offer));
        assert_eq!(peer_offer(&payload), Some(offer));
        let without = our_handshake_offering(6881, 250, None, &[], None, None);
        assert_eq!(peer_offer(&without), None);
    }

    #[test]
    fn malformed_offers_are_no_offer() {
        for bad in [
            &b"garbage"[..],
            b"d12:capwise_quici1ee",
            b"d12:capwise_quicd4:porti0e2:fp32:0123456789abcdef0123456789abcdefee",
            b"d12:capwise_quicd4:porti70000e2:fp32:0123456789abcdef0123456789abcdefee",
            b"d12:capwise_quicd4:porti-1e2:fp32:0123456789abcdef0123456789abcdefee",
            b"d12:capwise_quicd4:porti5e2:fp3:abcee",
            b"d12:capwise_quicd2:fp32:0123456789abcdef0123456789abcdefee",
            b"d12:capwise_quicd4:porti5eee",
        ] {
            assert_eq!(peer_offer(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let good = b"d12:capwise_quicd2:fp32:0123456789abcdef0123456789abcdef4:porti5eee";
        assert_eq!(peer_offer(good).map(|o| o.port), Some(5));
    }

    #[test]
    fn only_the_lower_id_dials() {
        assert!(dials(&[1; 32], &[2; 32]));
        assert!(!dials(&[2; 32], &[1; 32]));
        assert!(!dials(&[3; 32], &[3; 32]));
    }
}
