//! Diffie–Hellman over MSE's 768-bit group (generator 2).
//!
//! crypto-bigint rather than num-bigint: its fixed-size `U768` needs no heap,
//! and its Montgomery exponentiation runs in constant time in the (secret)
//! exponent. The exponent is 160 bits, so `pow_bounded_exp` does 160
//! squarings rather than 768.

use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U768};
use rand::{CryptoRng, RngCore};

use super::MseError;

/// Length of a public key and of the shared secret on the wire.
pub const PUBLIC_KEY_LEN: usize = 96;

/// Bits of a private key (the spec's 160).
const PRIVATE_KEY_BITS: u32 = 160;

const PRIME_HEX: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

const PRIME: Odd<U768> = Odd::<U768>::from_be_hex(PRIME_HEX);
const PARAMS: FixedMontyParams<{ U768::LIMBS }> = FixedMontyParams::new(PRIME);

/// A 160-bit private exponent. Each handshake draws a fresh one.
#[derive(Clone)]
pub struct PrivateKey(U768);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl PrivateKey {
    /// A random 160-bit key.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 20];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(&bytes)
    }

    /// The key with these 20 big-endian bytes (known-answer tests).
    pub fn from_bytes(bytes: &[u8; 20]) -> Self {
        let mut wide = [0u8; PUBLIC_KEY_LEN];
        wide[PUBLIC_KEY_LEN - 20..].copy_from_slice(bytes);
        Self(U768::from_be_slice(&wide))
    }

    /// 2^x mod P, big-endian and left-padded to 96 bytes. One 768-bit
    /// modular exponentiation with a 160-bit exponent.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let two = FixedMontyForm::new(&U768::from_u8(2), &PARAMS);
        to_bytes(&two.pow_bounded_exp(&self.0, PRIVATE_KEY_BITS).retrieve())
    }

    /// S = Y^x mod P, the shared secret, from the peer's public key; as
    /// costly as [`public_key`](Self::public_key). Refuses a key outside
    /// 2..P-2: 0, 1 and P-1 would force a secret anyone can guess.
    pub fn shared_secret(
        &self,
        peer_public: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<[u8; PUBLIC_KEY_LEN], MseError> {
        let y = U768::from_be_slice(peer_public);
        let p_minus_1 = PRIME.as_ref().wrapping_sub(&U768::ONE);
        if y <= U768::ONE || y >= p_minus_1 {
            return Err(MseError::InvalidPublicKey);
        }
        let y = FixedMontyForm::new(&y, &PARAMS);
        Ok(to_bytes(
            &y.pow_bounded_exp(&self.0, PRIVATE_KEY_BITS).retrieve(),
        ))
    }
}

fn to_bytes(n: &U768) -> [u8; PUBLIC_KEY_LEN] {
    let mut out = [0u8; PUBLIC_KEY_LEN];
    out.copy_from_slice(n.to_be_bytes().as_slice());
    out
}
