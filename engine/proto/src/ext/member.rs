//! `capwise_member`: a peer proves it belongs to a channel before it gets
//! anything of a torrent that requires membership.
//!
//! The channel has a membership key pair (ed25519). Its public key is in the
//! signed manifest; its secret (the *token*) is handed to subscribers out of
//! band. Every member holds the same secret, so the proof says "this peer
//! was given the channel's token", not which machine it is.
//!
//! The exchange, inside BEP 10:
//! 1. Each side's extension handshake names `capwise_member` in `m` and
//!    carries a fresh 32-byte nonce under [`NONCE_KEY`].
//! 2. On the other side's handshake, each side sends a proof message: a
//!    signature with the membership secret over [`CONTEXT`], the info-hash,
//!    the *other side's* nonce and its *own* peer id (from the BitTorrent
//!    handshake).
//! 3. The verifier checks it with the membership public key against its own
//!    nonce and the peer id the other side gave in its handshake. A proof
//!    made for another connection (another nonce), another torrent or another
//!    peer id fails.
//!
//! What this does not stop: a peer that relays a live exchange between two
//! members (a man in the middle) passes, since nothing binds the proof to the
//! transport; binding it to MSE's shared secret would. It gains nothing it
//! could not get by relaying the whole connection.
//!
//! Everything here is pure: parsers over `&[u8]` with a size bound, no panics
//! on hostile input, and [`MemberPeer`], one peer's state on the caller's
//! clock.

use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::bencode::{self, Owned};

/// The extension's name in the BEP 10 `m` dictionary.
pub const EXTENSION_NAME: &str = "capwise_member";
/// The id we ask peers to use for it (ut_pex has 1, ut_metadata 3).
pub const OUR_ID: u8 = 7;
/// The handshake key of the nonce.
pub const NONCE_KEY: &[u8] = b"capwise_member_nonce";
/// Nonce length.
pub const NONCE_LEN: usize = 32;
/// What every signature covers first, so a membership key's signature can
/// never be taken for anything else.
pub const CONTEXT: &[u8] = b"capwise-member-proof/1\n";
/// Largest proof message taken (the real one is about 70 bytes).
pub const MAX_MESSAGE: usize = 256;
/// A peer that has not proven membership this long after connecting is
/// dropped: a stranger holds a connection slot for at most this long.
pub const PROOF_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a peer failed to prove membership (it is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// Its extension handshake does not name `capwise_member` or has no
    /// (well-formed) nonce.
    #[error("peer does not speak capwise_member: it cannot prove channel membership")]
    NoExtension,
    /// The proof message is not a bencoded dictionary with a 64-byte `sig`.
    #[error("malformed membership proof")]
    Malformed,
    /// The proof message is larger than [`MAX_MESSAGE`].
    #[error("membership proof of {0} bytes, above the limit")]
    TooLarge(usize),
    /// The signature does not verify for this torrent, our nonce and its peer id.
    #[error("membership proof does not verify (wrong key, or made for another connection)")]
    BadProof,
    /// A proof before its extension handshake (no nonce of ours was known to it).
    #[error("membership proof before the extension handshake")]
    Early,
    /// [`PROOF_TIMEOUT`] passed without a valid proof.
    #[error("no membership proof within {}s", PROOF_TIMEOUT.as_secs())]
    Timeout,
}

/// The channel's membership secret (the token). Its text form is the
/// 32-byte ed25519 seed as hex; `Debug` never shows it.
#[derive(Clone)]
pub struct MembershipKey(SigningKey);

impl MembershipKey {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        MembershipKey(SigningKey::from_bytes(&seed))
    }

    /// Parses the token: 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            seed[i] = (hi * 16 + lo) as u8;
        }
        Some(Self::from_seed(seed))
    }

    /// The token's text form (64 lower-case hex digits).
    pub fn to_hex(&self) -> String {
        self.0
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The membership public key (what the manifest carries).
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }
}

impl std::fmt::Debug for MembershipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MembershipKey(public {:02x?}…)", &self.public()[..4])
    }
}

/// What a swarm needs to require membership: the secret, the torrent and
/// our own peer id.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The channel's membership secret.
    pub key: MembershipKey,
    /// The torrent's info-hash.
    pub info_hash: [u8; 20],
    /// Our peer id, as in our BitTorrent handshake.
    pub peer_id: [u8; 20],
}

/// The bytes a proof signs.
fn signed_bytes(info_hash: &[u8; 20], nonce: &[u8; NONCE_LEN], signer: &[u8; 20]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 20 + NONCE_LEN + 20);
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(info_hash);
    m.extend_from_slice(nonce);
    m.extend_from_slice(signer);
    m
}

/// Our proof for a peer that sent `their_nonce`.
pub fn sign(m: &Membership, their_nonce: &[u8; NONCE_LEN]) -> [u8; 64] {
    m.key
        .0
        .sign(&signed_bytes(&m.info_hash, their_nonce, &m.peer_id))
        .to_bytes()
}

/// Whether `signature` proves membership: made with the secret of `public`
/// over this torrent, our nonce and the signer's peer id (strict ed25519).
pub fn verify(
    public: &[u8; 32],
    info_hash: &[u8; 20],
    our_nonce: &[u8; NONCE_LEN],
    their_peer_id: &[u8; 20],
    signature: &[u8; 64],
) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(&signed_bytes(info_hash, our_nonce, their_peer_id), &sig)
        .is_ok()
}

/// The proof message: `d3:sig64:…e`.
pub fn encode_proof(signature: &[u8; 64]) -> Vec<u8> {
    bencode::encode(&Owned::dict().with("sig", signature.to_vec()).build())
}

/// Parses a proof message (bounded, never panics).
pub fn decode_proof(payload: &[u8]) -> Result<[u8; 64], MemberError> {
    if payload.len() > MAX_MESSAGE {
        return Err(MemberError::TooLarge(payload.len()));
    }
    let value = bencode::decode(payload).map_err(|_| MemberError::Malformed)?;
    let sig = value
        .as_dict()
        .and_then(|d| d.get(b"sig"))
        .and_then(|v| v.as_bytes())
        .ok_or(MemberError::Malformed)?;
    <[u8; 64]>::try_from(sig).map_err(|_| MemberError::Malformed)
}

/// What a peer's extension handshake says about `capwise_member`: the id it
/// wants for it and its nonce, both needed to take part.
pub fn peer_member(payload: &[u8]) -> Result<(u8, [u8; NONCE_LEN]), MemberError> {
    let value = bencode::decode(payload).map_err(|_| MemberError::NoExtension)?;
    let dict = value.as_dict().ok_or(MemberError::NoExtension)?;
    let id = dict
        .get(b"m")
        .and_then(|m| m.as_dict())
        .and_then(|m| m.get(EXTENSION_NAME.as_bytes()))
        .and_then(|v| v.as_int())
        .and_then(|id| u8::try_from(id).ok())
        .filter(|&id| id != 0)
        .ok_or(MemberError::NoExtension)?;
    let nonce = dict
        .get(NONCE_KEY)
        .and_then(|v| v.as_bytes())
        .and_then(|b| <[u8; NONCE_LEN]>::try_from(b).ok())
        .ok_or(MemberError::NoExtension)?;
    Ok((id, nonce))
}

/// Where one peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for its handshake, its proof, or both.
    Pending,
    /// Its proof verified.
    Proven,
}

/// One peer's side of the exchange, for a torrent that requires membership.
#[derive(Debug, Clone)]
pub struct MemberPeer {
    our_nonce: [u8; NONCE_LEN],
    their_peer_id: [u8; 20],
    their_id: Option<u8>,
    stage: Stage,
    deadline: Instant,
}

impl MemberPeer {
    /// A peer whose BitTorrent handshake gave `their_peer_id`; `our_nonce`
    /// is fresh for this connection ([`fresh_nonce`]).
    pub fn new(our_nonce: [u8; NONCE_LEN], their_peer_id: [u8; 20], now: Instant) -> Self {
        Self {
            our_nonce,
            their_peer_id,
            their_id: None,
            stage: Stage::Pending,
            deadline: now + PROOF_TIMEOUT,
        }
    }

    /// The nonce our extension handshake carries.
    pub fn our_nonce(&self) -> &[u8; NONCE_LEN] {
        &self.our_nonce
    }

    /// Its extension handshake: our proof to send (under the id it gave),
    /// or an error if it cannot take part (drop it). Only the first one is
    /// answered (BEP 10 allows more), so a peer cannot make us sign at will.
    pub fn on_handshake(
        &mut self,
        m: &Membership,
        payload: &[u8],
    ) -> Result<Option<(u8, Vec<u8>)>, MemberError> {
        let (id, their_nonce) = peer_member(payload)?;
        if self.their_id.is_some() {
            return Ok(None);
        }
        self.their_id = Some(id);
        Ok(Some((id, encode_proof(&sign(m, &their_nonce)))))
    }

    /// Its proof message. `Ok` once proven (a second good proof changes
    /// nothing); an error drops it.
    pub fn on_proof(&mut self, m: &Membership, payload: &[u8]) -> Result<(), MemberError> {
        let sig = decode_proof(payload)?;
        if self.their_id.is_none() {
            return Err(MemberError::Early);
        }
        if !verify(
            &m.key.public(),
            &m.info_hash,
            &self.our_nonce,
            &self.their_peer_id,
            &sig,
        ) {
            return Err(MemberError::BadProof);
        }
        self.stage = Stage::Proven;
        Ok(())
    }

    /// Whether it proved membership.
    pub fn is_proven(&self) -> bool {
        self.stage == Stage::Proven
    }

    /// When it must have proven membership by (`None` once proven).
    pub fn deadline(&self) -> Option<Instant> {
        (!self.is_proven()).then_some(self.deadline)
    }

    /// [`MemberError::Timeout`] once the deadline passed unproven.
    pub fn check_deadline(&self, now: Instant) -> Result<(), MemberError> {
        match self.deadline() {
            Some(at) if now >= at => Err(MemberError::Timeout),
            _ => Ok(()),
        }
    }
}

/// A fresh nonce from the thread's CSPRNG.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(seed: u8, peer: u8) -> Membership {
        Membership {
            key: MembershipKey::from_seed([seed; 32]),
            info_hash: [9; 20],
            peer_id: [peer; 20],
        }
    }

    fn handshake(nonce: &[u8]) -> Vec<u8> {
        bencode::encode(
            &Owned::dict()
                .with("m", Owned::dict().with(EXTENSION_NAME, 7i64).build())
                .with(NONCE_KEY, nonce.to_vec())
                .build(),
        )
    }

    #[test]
    fn a_good_proof_is_accepted_both_ways() {
        let t0 = Instant::now();
        let (a, b) = (membership(1, 0xa), membership(1, 0xb));
        let mut a_of_b = MemberPeer::new([1; 32], b.peer_id, t0);
        let mut b_of_a = MemberPeer::new([2; 32], a.peer_id, t0);
        let (_, a_proof) = a_of_b
            .on_handshake(&a, &handshake(b_of_a.our_nonce()))
            .unwrap()
            .unwrap();
        let (_, b_proof) = b_of_a
            .on_handshake(&b, &handshake(a_of_b.our_nonce()))
            .unwrap()
            .unwrap();
        // A second handshake is not answered again.
        assert_eq!(
            a_of_b.on_handshake(&a, &handshake(b_of_a.our_nonce())),
            Ok(None)
        );
        b_of_a.on_proof(&b, &a_proof).unwrap();
        a_of_b.on_proof(&a, &b_proof).unwrap();
        assert!(a_of_b.is_proven() && b_of_a.is_proven());
        assert_eq!(a_of_b.deadline(), None);
        assert!(a_of_b.check_deadline(t0 + PROOF_TIMEOUT * 2).is_ok());
    }

    #[test]
    fn a_wrong_key_another_nonce_or_another_peer_id_fails() {
        let t0 = Instant::now();
        let verifier = membership(1, 0xa);
        let mut peer = MemberPeer::new([1; 32], [0xb; 20], t0);
        peer.on_handshake(&verifier, &handshake(&[5; 32])).unwrap();
        // Another key.
        let stranger = membership(2, 0xb);
        let forged = encode_proof(&sign(&stranger, &[1; 32]));
        assert_eq!(
            peer.on_proof(&verifier, &forged),
            Err(MemberError::BadProof)
        );
        // The right key, made for another connection's nonce (a replay).
        let member = membership(1, 0xb);
        let replay = encode_proof(&sign(&member, &[3; 32]));
        assert_eq!(
            peer.on_proof(&verifier, &replay),
            Err(MemberError::BadProof)
        );
        // The right key and nonce, but another signer's peer id.
        let other = membership(1, 0xc);
        let lent = encode_proof(&sign(&other, &[1; 32]));
        assert_eq!(peer.on_proof(&verifier, &lent), Err(MemberError::BadProof));
        // Another torrent.
        let mut elsewhere = membership(1, 0xb);
        elsewhere.info_hash = [8; 20];
        let moved = encode_proof(&sign(&elsewhere, &[1; 32]));
        assert_eq!(peer.on_proof(&verifier, &moved), Err(MemberError::BadProof));
        assert!(!peer.is_proven());
        // The real one.
        let good = encode_proof(&sign(&member, &[1; 32]));
        peer.on_proof(&verifier, &good).unwrap();
        assert!(peer.is_proven());
    }

    #[test]
    fn without_the_extension_or_in_time_it_fails() {
        let t0 = Instant::now();
        let m = membership(1, 0xa);
        let mut peer = MemberPeer::new([1; 32], [0xb; 20], t0);
        for hs in [
            b"d1:md11:ut_metadatai3eee".to_vec(),
            b"garbage".to_vec(),
            handshake(&[1; 31]),
            b"d1:md14:capwise_memberi0ee20:capwise_member_nonce32:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaae"
                .to_vec(),
        ] {
            assert_eq!(peer.on_handshake(&m, &hs), Err(MemberError::NoExtension));
        }
        let early = encode_proof(&sign(&membership(1, 0xb), &[1; 32]));
        assert_eq!(peer.on_proof(&m, &early), Err(MemberError::Early));
        assert!(peer.check_deadline(t0 + PROOF_TIMEOUT / 2).is_ok());
        assert_eq!(
            peer.check_deadline(t0 + PROOF_TIMEOUT),
            Err(MemberError::Timeout)
        );
    }

    #[test]
    fn hostile_proof_messages_are_errors() {
        assert_eq!(decode_proof(b""), Err(MemberError::Malformed));
        assert_eq!(decode_proof(b"d3:sig3:abce"), Err(MemberError::Malformed));
        assert_eq!(decode_proof(b"li1ee"), Err(MemberError::Malformed));
        assert_eq!(
            decode_proof(&[b'x'; MAX_MESSAGE + 1]),
            Err(MemberError::TooLarge(MAX_MESSAGE + 1))
        );
        let sig = [7u8; 64];
        assert_eq!(decode_proof(&encode_proof(&sig)), Ok(sig));
    }

    #[test]
    fn the_token_round_trips_and_hides_in_debug() {
        let key = MembershipKey::from_seed([0xab; 32]);
        let again = MembershipKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(again.public(), key.public());
        assert!(!format!("{key:?}").contains("abab"));
        assert!(MembershipKey::from_hex("zz").is_none());
        assert!(MembershipKey::from_hex(&"g".repeat(64)).is_none());
    }
}
