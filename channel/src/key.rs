//! Channel keys. A channel *is* its ed25519 public key: subscribers pin it,
//! and only its holder can sign a manifest they accept.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hex::FromHex;

use crate::ChannelError;

/// The public key subscribers pin (`--key`), shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, ChannelError> {
        let bytes = <[u8; 32]>::from_hex(text.trim())
            .ok()
            .ok_or_else(|| ChannelError::Key("a public key is 64 hex digits".into()))?;
        // Refuse points that are not on the curve now, not at the first manifest.
        VerifyingKey::from_bytes(&bytes)
            .map_err(|_| ChannelError::Key("not a valid ed25519 public key".into()))?;
        Ok(PublicKey(bytes))
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `signature` is this key's over `message` (strict: no malleable forms).
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &signature).is_ok()
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The publisher's secret key. Its text form is the 32-byte seed as hex;
/// `Debug` never shows it.
pub struct ChannelKey(SigningKey);

impl ChannelKey {
    /// A key from 32 random bytes (the caller draws them from the OS).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        ChannelKey(SigningKey::from_bytes(&seed))
    }

    /// Parses the key file's text: 64 hex digits of the seed.
    pub fn from_hex(text: &str) -> Result<Self, ChannelError> {
        <[u8; 32]>::from_hex(text.trim())
            .ok()
            .map(Self::from_seed)
            .ok_or_else(|| ChannelError::Key("a secret key file holds 64 hex digits".into()))
    }

    /// The seed as hex, for the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// The channel's public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelKey(public {})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_round_trips() {
        let key = ChannelKey::from_seed([7; 32]);
        let again = ChannelKey::from_hex(&key.to_hex()).expect("parses");
        assert_eq!(key.public(), again.public());
        assert_eq!(
            PublicKey::from_hex(&key.public().to_hex()),
            Ok(key.public())
        );
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(PublicKey::from_hex("abc").is_err());
        assert!(ChannelKey::from_hex("zz").is_err());
        assert!(PublicKey::from_hex(&"g".repeat(64)).is_err());
    }
}
