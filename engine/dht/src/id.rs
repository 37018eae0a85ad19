//! Node ids and the XOR metric (BEP 5).

use std::fmt;

/// A 160-bit node id (the same space as info-hashes).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    /// A uniformly random id.
    pub fn random() -> NodeId {
        NodeId(rand::random())
    }

    /// The XOR distance to `other`, compared as a big-endian number.
    pub fn distance(&self, other: &NodeId) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        out
    }

    /// How many leading bits `self` and `other` share (160 for equal ids): the
    /// index of the k-bucket `other` falls in, seen from `self`.
    pub fn common_prefix(&self, other: &NodeId) -> usize {
        let d = self.distance(other);
        for (i, byte) in d.iter().enumerate() {
            if *byte != 0 {
                return i * 8 + byte.leading_zeros() as usize;
            }
        }
        160
    }

    /// A random id sharing exactly `prefix` leading bits with `self` (for
    /// refreshing the bucket of that index); `prefix` is capped at 159.
    pub fn random_with_prefix(&self, prefix: usize) -> NodeId {
        let prefix = prefix.min(159);
        let mut out: [u8; 20] = rand::random();
        for bit in 0..=prefix {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let mine = self.0[byte] & mask;
            let want = if bit == prefix { mine ^ mask } else { mine };
            out[byte] = (out[byte] & !mask) | want;
        }
        NodeId(out)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_distance() {
        let a = NodeId([0; 20]);
        let mut b = [0; 20];
        b[1] = 0x10;
        let b = NodeId(b);
        assert_eq!(a.common_prefix(&b), 11);
        assert_eq!(a.common_prefix(&a), 160);
        assert!(a.distance(&b) > a.distance(&a));
    }

    #[test]
    fn random_with_prefix_lands_in_its_bucket() {
        let me = NodeId::random();
        for prefix in [0, 1, 7, 8, 9, 63, 158, 159, 200] {
            let id = me.random_with_prefix(prefix);
            assert_eq!(me.common_prefix(&id), prefix.min(159), "prefix {prefix}");
        }
    }
}
