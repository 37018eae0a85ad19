//! The RC4 stream of one direction, as MSE keys it: RC4 (RustCrypto `rc4`)
//! with the first 1024 keystream bytes dropped.

use rc4::{KeyInit, Rc4, StreamCipher};

/// Keystream bytes MSE throws away before the first byte it uses.
pub const DISCARD: usize = 1024;

/// One direction's RC4 keystream, past the discarded prefix: a pure
/// function over byte slices that keeps its place in the stream.
pub struct Cipher {
    rc4: Rc4,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(rc4)")
    }
}

impl Cipher {
    /// RC4 keyed with `key` (a SHA-1 of "keyA"/"keyB", S and SKEY), with
    /// [`DISCARD`] bytes of keystream already dropped.
    pub fn new(key: &[u8; 20]) -> Self {
        // RC4 takes keys of 1 to 256 bytes; 20 always fits.
        let mut rc4 = Rc4::new_from_slice(key).expect("a 20-byte RC4 key is valid");
        let mut discard = [0u8; DISCARD];
        rc4.apply_keystream(&mut discard);
        Self { rc4 }
    }

    /// Encrypts or decrypts `data` in place (RC4 is its own inverse) and
    /// moves on in the stream by `data.len()` bytes.
    pub fn apply(&mut self, data: &mut [u8]) {
        self.rc4.apply_keystream(data);
    }
}
