//! A fixed-length bit set of pieces, in wire order (high bit of byte 0 is piece 0).

/// Which pieces are present; length fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

/// A wire bitfield had the wrong length or set spare bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bitfield of {got} bytes does not fit {pieces} pieces")]
pub struct BitfieldLengthError {
    /// Bytes received.
    pub got: usize,
    /// Pieces in the torrent.
    pub pieces: u32,
}

impl Bitfield {
    /// All zero, `len` bits.
    pub fn new(len: u32) -> Self {
        Self {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }
    /// All one, `len` bits.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }
    /// From wire bytes; refuses a wrong length or set spare bits.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Self, BitfieldLengthError> {
        let err = BitfieldLengthError {
            got: bytes.len(),
            pieces: len,
        };
        if bytes.len() != (len as usize).div_ceil(8) {
            return Err(err);
        }
        let spare = (bytes.len() * 8) as u32 - len;
        if spare > 0 && bytes[bytes.len() - 1] & ((1u8 << spare) - 1) != 0 {
            return Err(err);
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Self {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }
    /// Wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Number of bits.
    pub fn len(&self) -> u32 {
        self.len
    }
    /// Whether it has no bits at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether bit `i` is set; false when out of range.
    pub fn has(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }
    /// Set bit `i`; ignored when out of range.
    pub fn set(&mut self, i: u32) {
        if i < self.len && !self.has(i) {
            self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
            self.ones += 1;
        }
    }
    /// Clear bit `i`; ignored when out of range.
    pub fn clear(&mut self, i: u32) {
        if self.has(i) {
            self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }
    /// Number of set bits.
    pub fn count(&self) -> u32 {
        self.ones
    }
    /// Whether every bit is set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }
    /// Indices of set bits.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.has(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_and_spare_bits() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert!(Bitfield::from_bytes(&[0x80, 0x40], 10).is_ok());
        assert!(
            Bitfield::from_bytes(&[0x80, 0x20], 10).is_err(),
            "spare bit set"
        );
        assert!(Bitfield::from_bytes(&[0x80], 10).is_err(), "too short");
        assert!(!b.has(10), "out of range reads false");
    }
}
