//! Message Stream Encryption / Protocol Encryption (MSE/PE), the handshake
//! the Azureus and uTorrent developers agreed on, sans IO.
//!
//! ```text
//! 1 A->B: Ya, PadA
//! 2 B->A: Yb, PadB
//! 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5 A->B: ENCRYPT2(payload)
//! ```
//!
//! A is the [`Initiator`] (it dials and knows the info-hash, SKEY), B the
//! [`Responder`] (it learns the info-hash from req2 by a [`SkeyLookup`]).
//! ENCRYPT is RC4 keyed with SHA1("keyA"|S|SKEY) from A and
//! SHA1("keyB"|S|SKEY) from B, 1024 keystream bytes discarded; ENCRYPT2 is
//! what B selected: the same RC4 streams, or plaintext.
//!
//! Both roles are state machines: bytes in ([`Initiator::handle_input`],
//! `handle_eof`), bytes out (`poll_transmit`), and when done an
//! [`Outcome`]: the method, the info-hash, the payload that came after the
//! handshake (decrypted) and the two [`Cipher`]s. The costly step, a
//! 768-bit modular exponentiation, never runs inside `handle_input`: when
//! `wants_dh()` says so the caller runs `compute_dh()`, so the I/O layer
//! can bound that work for half-open handshakes (a semaphore, or a budget
//! per second). [`Responder::new`] does none; its `compute_dh` does two
//! (its public key and S). [`Initiator::new`] does one (its public key),
//! its `compute_dh` one more (S).
//!
//! Bounds: the peer's bytes before the sync point (its public key and
//! padding) are at most [`MAX_BEFORE_SYNC`]; the responder looks for
//! HASH('req1', S) within the first 96 + 512 + 20 bytes and the initiator
//! for ENCRYPT(VC) within 96 + 512 + 8; PadC and PadD are at most 512 bytes
//! and the initial payload at most 65535, so a half-open handshake holds
//! at most about 67 KiB plus what one `handle_input` brings. The time
//! limit on the whole handshake is the I/O layer's.

mod cipher;
mod dh;
mod handshake;

pub use cipher::{Cipher, DISCARD};
pub use dh::{PrivateKey, PUBLIC_KEY_LEN};
pub use handshake::{Initiator, InitiatorConfig, Responder, ResponderConfig};

use std::sync::Arc;

use sha1::{Digest, Sha1};

/// Most padding in PadA to PadD.
pub const MAX_PAD: usize = 512;

/// Most bytes a peer may send before the sync point: its public key and
/// the longest padding.
pub const MAX_BEFORE_SYNC: usize = PUBLIC_KEY_LEN + MAX_PAD;

/// The verification constant: 8 zero bytes, sent encrypted.
pub const VC: [u8; 8] = [0; 8];

/// Most bytes of initial payload (its length is a u16 on the wire).
pub const MAX_INITIAL_PAYLOAD: usize = u16::MAX as usize;

/// What carries the payload after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// The payload is sent in the clear (only the handshake was encrypted).
    Plaintext,
    /// The payload continues the handshake's RC4 streams.
    Rc4,
}

impl Method {
    /// Its bit in crypto_provide / crypto_select.
    pub const fn bit(self) -> u32 {
        match self {
            Method::Plaintext => 0x01,
            Method::Rc4 => 0x02,
        }
    }
}

/// A set of [`Method`]s: crypto_provide, or what a side accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Methods(u32);

impl Methods {
    /// Plaintext only.
    pub const PLAINTEXT: Methods = Methods(0x01);
    /// RC4 only.
    pub const RC4: Methods = Methods(0x02);
    /// Both.
    pub const BOTH: Methods = Methods(0x03);

    /// The set with these wire bits; bits of unknown methods are kept (a
    /// peer may provide them) but never selected.
    pub const fn from_bits(bits: u32) -> Self {
        Methods(bits)
    }

    /// The wire bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether `method` is in the set.
    pub const fn contains(self, method: Method) -> bool {
        self.0 & method.bit() != 0
    }
}

/// Finds the info-hash whose HASH('req2', info-hash) the initiator sent
/// (after the responder undid the xor with HASH('req3', S)); `None`: no
/// torrent of ours. [`skeys_from`] builds one from a list.
pub type SkeyLookup = Arc<dyn Fn(&[u8; 20]) -> Option<[u8; 20]> + Send + Sync>;

/// A [`SkeyLookup`] over these info-hashes, their req2 hashes computed once.
pub fn skeys_from(info_hashes: &[[u8; 20]]) -> SkeyLookup {
    let table: Vec<([u8; 20], [u8; 20])> =
        info_hashes.iter().map(|ih| (req2_hash(ih), *ih)).collect();
    Arc::new(move |req2| table.iter().find(|(h, _)| h == req2).map(|(_, ih)| *ih))
}

/// HASH('req2', SKEY): the key a torrent table indexes to answer a
/// [`SkeyLookup`] in one step.
pub fn req2_hash(info_hash: &[u8; 20]) -> [u8; 20] {
    hash(&[b"req2", info_hash])
}

/// The RC4 keys (initiator's sending key "keyA", responder's "keyB") for
/// the shared secret S and the info-hash.
pub fn derive_keys(secret: &[u8; PUBLIC_KEY_LEN], info_hash: &[u8; 20]) -> ([u8; 20], [u8; 20]) {
    (
        hash(&[b"keyA", secret, info_hash]),
        hash(&[b"keyB", secret, info_hash]),
    )
}

pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut sha = Sha1::new();
    for part in parts {
        sha.update(part);
    }
    sha.finalize().into()
}

/// What a finished handshake hands the I/O layer.
#[derive(Debug)]
pub struct Outcome {
    /// The method the responder selected.
    pub method: Method,
    /// SKEY: the torrent (the responder learnt it from req2).
    pub info_hash: [u8; 20],
    /// The peer's payload received after the handshake, decrypted: on the
    /// responder the initial payload (IA) first, then whatever followed.
    pub payload: Vec<u8>,
    /// How many leading bytes of `payload` were the initial payload.
    pub initial_payload_len: usize,
    /// What encrypts what we send next; `None` for plaintext.
    pub send: Option<Cipher>,
    /// What decrypts what we receive next; `None` for plaintext.
    pub receive: Option<Cipher>,
    /// Handshake bytes we sent (keys, padding, hashes, VC, fields): overhead.
    pub overhead_sent: u64,
    /// Handshake bytes we received: overhead.
    pub overhead_received: u64,
}

/// Why a handshake failed; the peer is to be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    /// EOF before the public key was complete.
    #[error("peer closed after {0} bytes, fewer than a 96-byte MSE public key")]
    ShortPublicKey(usize),
    /// EOF later in the handshake.
    #[error("peer closed the MSE handshake while {0}")]
    Closed(&'static str),
    /// More than 96 + 512 bytes before the sync point.
    #[error("peer sent {0} bytes before the MSE sync point, more than 608")]
    TooMuchBeforeSync(usize),
    /// No HASH('req1', S) (responder) or ENCRYPT(VC) (initiator) where the
    /// spec puts it: not MSE, or the wrong key.
    #[error("no MSE sync point ({0}) within the first {1} bytes")]
    NoSync(&'static str, usize),
    /// A public key of 0, 1, P-1 or P and above.
    #[error("peer's MSE public key is out of range")]
    InvalidPublicKey,
    /// The initiator asked for a torrent we do not have.
    #[error("MSE peer asked for a torrent we do not have (req2 matches no info-hash)")]
    UnknownInfoHash,
    /// The responder's VC did not decrypt to zeros: the wrong torrent or key.
    #[error("MSE verification constant is wrong (another torrent or a broken key)")]
    BadVc,
    /// PadC or PadD longer than 512 bytes.
    #[error("MSE padding of {0} bytes, more than 512")]
    PadTooLong(usize),
    /// The initiator provided nothing we accept.
    #[error("MSE peer provides methods {provided:#x}, we accept {accepted:#x}")]
    NoCommonMethod {
        /// crypto_provide.
        provided: u32,
        /// What we accept.
        accepted: u32,
    },
    /// crypto_select is not exactly one of the methods we provided.
    #[error("MSE peer selected {selected:#x}, not one of our {provided:#x}")]
    BadSelect {
        /// crypto_select.
        selected: u32,
        /// Our crypto_provide.
        provided: u32,
    },
    /// Our own initial payload exceeds 65535 bytes.
    #[error("MSE initial payload of {0} bytes, more than 65535")]
    InitialPayloadTooLong(usize),
    /// The initiator was given no method to provide.
    #[error("MSE initiator provides no method")]
    NothingProvided,
    /// Input after the handshake failed or finished.
    #[error("MSE handshake already {0}")]
    Over(&'static str),
}

/// How long PadA to PadD are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// 0 to 512 bytes, drawn for each pad.
    #[default]
    Random,
    /// This many bytes (at most 512: more is clamped) in every pad.
    Exact(u16),
}

impl Padding {
    pub(crate) fn draw<R: rand::RngCore>(self, rng: &mut R) -> usize {
        match self {
            Padding::Random => (rng.next_u32() as usize) % (MAX_PAD + 1),
            Padding::Exact(n) => usize::from(n).min(MAX_PAD),
        }
    }
}
