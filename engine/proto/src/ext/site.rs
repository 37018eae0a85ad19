//! `capwise_site`: the BEP 10 extension message with which capwise peers
//! of one site (a branch office's LAN) tell each other which pieces each is
//! fetching over the WAN right now, so that each piece crosses the branch's
//! WAN link about once. What a member *holds* needs no message of its own:
//! its bitfield and `have`s say it.
//!
//! Pure parts only: the codec ([`SiteMsg`]) and the deterministic split
//! ([`rank`], [`owner`]). The state (whose claims are live, what we
//! announced, when to renew) is the swarm's (`swarm/site.rs`).
//!
//! The message is a bencoded dictionary:
//! - `id`: the sender's member id, 8 bytes, random per torrent and session
//!   (not the peer id, which the session renews when its addresses change;
//!   the split must not move under it);
//! - `ttl`: seconds the claims stay valid unless renewed (at most
//!   [`MAX_TTL`]);
//! - `full`: 1 when `c` replaces every claim of the sender (a renewal or a
//!   greeting), 0 when it adds to them;
//! - `c`: the claimed piece indices, 4-byte big-endian each;
//! - `w` (optional, newer members): 1 while the sender fetches over the
//!   WAN (it has WAN fetches in flight), 0 when it does not: the members
//!   of a site split a site-wide WAN rate cap among those that want WAN
//!   bytes ([`wan_share`]). A message without `w` (an older member) counts
//!   as wanting, so an older member gets an equal share.
//!
//! Bounds: a message over [`MAX_MESSAGE_LEN`] is refused before parsing,
//! one naming more than [`MAX_CLAIMS`] pieces, a piece beyond the torrent,
//! a malformed id or ttl is an error (the caller drops the peer).

use std::time::Duration;

use crate::bencode::{self, BencodeError, Owned};

/// The name of this extension in the BEP 10 handshake's `m` dictionary.
pub const EXTENSION_NAME: &str = "capwise_site";
/// The extended message id we ask peers to use for it.
pub const OUR_ID: u8 = 20;
/// Most pieces one member may claim at once (and name in one message).
pub const MAX_CLAIMS: usize = 4096;
/// Largest message accepted: [`MAX_CLAIMS`] entries and the dictionary.
pub const MAX_MESSAGE_LEN: usize = MAX_CLAIMS * 4 + 128;
/// How long our claims stay valid at the others unless renewed.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);
/// How often live claims are renewed (a full list): well within
/// [`CLAIM_TTL`], so a claim outlives a lost or late renewal.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// After the member set changed, this long each member takes only its own
/// share over the WAN: the others' claims for their new shares arrive
/// meanwhile, so two members do not both grab a piece the change freed.
pub const SETTLE_TIME: Duration = Duration::from_secs(2);
/// After coordination starts, this long WAN sources wait for the site to
/// meet (LSD and the LAN handshakes take well under a second on a branch
/// LAN) while no member is connected: otherwise every machine of a branch
/// that starts at once asks the WAN for the same first pieces, and a web
/// seed for whole spans of them. A machine alone starts its WAN fetch this
/// much later.
pub const MEET_TIME: Duration = Duration::from_secs(2);
/// The longest ttl taken from a peer: a claim that is not renewed frees
/// its piece within this, whatever the sender said.
pub const MAX_TTL: Duration = Duration::from_secs(120);
/// A piece claimed by a member for longer than this without its `have` is
/// taken as free again: a member that claims and never delivers (broken, or
/// hostile) delays a piece by at most this much.
pub const MAX_CLAIM_AGE: Duration = Duration::from_secs(600);

/// A member id.
pub type MemberId = [u8; 8];

/// One `capwise_site` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteMsg {
    /// The sender's member id.
    pub member: MemberId,
    /// How long the claims stay valid, seconds.
    pub ttl_secs: u32,
    /// `claims` replace every earlier claim of the sender.
    pub full: bool,
    /// Pieces the sender fetches over the WAN now.
    pub claims: Vec<u32>,
    /// Whether the sender wants WAN bytes now (`w`); `None` from a member
    /// that does not send it, which counts as wanting.
    pub wants_wan: Option<bool>,
}

/// Why a `capwise_site` message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    /// Larger than [`MAX_MESSAGE_LEN`].
    #[error("capwise_site message of {len} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not bencode.
    #[error("capwise_site message is not bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// A field is missing or malformed.
    #[error("capwise_site message: {0}")]
    Bad(&'static str),
    /// Claims a piece the torrent does not have.
    #[error("capwise_site message claims piece {index} of {count}")]
    OutOfRange {
        /// The piece claimed.
        index: u32,
        /// Pieces in the torrent.
        count: u32,
    },
}

impl SiteMsg {
    /// The bencoded message.
    pub fn encode(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(self.claims.len() * 4);
        for &i in &self.claims {
            c.extend_from_slice(&i.to_be_bytes());
        }
        let mut dict = Owned::dict()
            .with("c", Owned::Bytes(c))
            .with("full", Owned::Int(i64::from(self.full)))
            .with("id", Owned::Bytes(self.member.to_vec()))
            .with("ttl", Owned::Int(i64::from(self.ttl_secs)));
        if let Some(w) = self.wants_wan {
            dict = dict.with("w", Owned::Int(i64::from(w)));
        }
        dict.build().to_bytes()
    }

    /// Parses a message for a torrent of `piece_count` pieces.
    pub fn decode(payload: &[u8], piece_count: u32) -> Result<SiteMsg, SiteError> {
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(SiteError::TooLarge {
                len: payload.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        let value = bencode::decode(payload)?;
        let dict = value.as_dict().ok_or(SiteError::Bad("not a dictionary"))?;
        let member: MemberId = dict
            .get(b"id")
            .and_then(|v| v.as_bytes())
            .and_then(|b| b.try_into().ok())
            .ok_or(SiteError::Bad("`id` is not 8 bytes"))?;
        let ttl_secs = dict
            .get(b"ttl")
            .and_then(|v| v.as_int())
            .and_then(|t| u32::try_from(t).ok())
            .ok_or(SiteError::Bad("`ttl` is not a count of seconds"))?;
        let full = match dict.get(b"full").and_then(|v| v.as_int()) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(SiteError::Bad("`full` is not 0 or 1")),
        };
        let wants_wan = match dict.get(b"w").map(|v| v.as_int()) {
            None => None,
            Some(Some(0)) => Some(false),
            Some(Some(1)) => Some(true),
            Some(_) => return Err(SiteError::Bad("`w` is not 0 or 1")),
        };
        let c = match dict.get(b"c") {
            None => &[][..],
            Some(v) => v.as_bytes().ok_or(SiteError::Bad("`c` is not a string"))?,
        };
        if c.len() % 4 != 0 {
            return Err(SiteError::Bad("`c` is not whole 4-byte indices"));
        }
        if c.len() / 4 > MAX_CLAIMS {
            return Err(SiteError::Bad("more claims than a member may hold"));
        }
        let mut claims = Vec::with_capacity(c.len() / 4);
        for chunk in c.chunks_exact(4) {
            let index = u32::from_be_bytes(chunk.try_into().expect("4 bytes"));
            if index >= piece_count {
                return Err(SiteError::OutOfRange {
                    index,
                    count: piece_count,
                });
            }
            claims.push(index);
        }
        Ok(SiteMsg {
            member,
            ttl_secs,
            full,
            claims,
            wants_wan,
        })
    }
}

/// This machine's share of a site-wide WAN rate cap of `cap` bytes per
/// second, when `others_wanting` other members of the site want WAN bytes
/// now: an equal share among them and us (we count ourselves whether we
/// want or not, so that the moment we start, before the others have heard,
/// the sum stays within the cap on our side). Alone, the whole cap; never
/// below 1 byte per second.
pub fn wan_share(cap: u64, others_wanting: usize) -> u64 {
    (cap / (others_wanting as u64).saturating_add(1)).max(1)
}

/// The rendezvous weight of member `id` for piece `index`: the member with
/// the highest weight among those connected owns the piece. Every machine
/// computes the same weights (a fixed mix, no seed), so members that start
/// at once split the torrent without a word; a member that leaves moves
/// only its own pieces, to the next in line.
pub fn rank(id: MemberId, index: u32) -> u64 {
    // splitmix64 of the id mixed with the index: cheap and well spread.
    let mut z = u64::from_be_bytes(id) ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The owner of piece `index` among `members` (ties go to the larger id).
pub fn owner(members: impl IntoIterator<Item = MemberId>, index: u32) -> Option<MemberId> {
    members.into_iter().max_by_key(|&m| (rank(m, index), m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let msg = SiteMsg {
            member: *b"abcdefgh",
            ttl_secs: 30,
            full: true,
            claims: vec![0, 7, 99],
            wants_wan: Some(true),
        };
        let bytes = msg.encode();
        assert_eq!(SiteMsg::decode(&bytes, 100).unwrap(), msg);
        assert!(matches!(
            SiteMsg::decode(&bytes, 99),
            Err(SiteError::OutOfRange { index: 99, .. })
        ));
        for bad in [
            &b"de"[..],
            b"d2:id3:abc3:ttli1e4:fulli0ee",
            b"d2:id8:abcdefgh3:ttli-1e4:fulli0ee",
            b"d2:id8:abcdefgh3:ttli1e4:fulli2ee",
            b"d1:c3:abc2:id8:abcdefgh3:ttli1e4:fulli0ee",
            b"li1ee",
            b"garbage",
        ] {
            assert!(SiteMsg::decode(bad, 100).is_err(), "{bad:?}");
        }
        let huge = vec![b'x'; MAX_MESSAGE_LEN + 1];
        assert!(matches!(
            SiteMsg::decode(&huge, 100),
            Err(SiteError::TooLarge { .. })
        ));
        let too_many = SiteMsg {
            claims: vec![1; MAX_CLAIMS + 1],
            ..msg
        };
        assert!(SiteMsg::decode(&too_many.encode(), 100).is_err());
    }

    #[test]
    fn the_wan_wish_is_optional_and_strict() {
        // An older member's message has no `w`: it parses, as "unknown".
        let old = SiteMsg::decode(b"d1:c0:4:fulli1e2:id8:abcdefgh3:ttli30ee", 10).unwrap();
        assert_eq!(old.wants_wan, None);
        for w in [false, true] {
            let msg = SiteMsg {
                wants_wan: Some(w),
                ..old.clone()
            };
            assert_eq!(SiteMsg::decode(&msg.encode(), 10).unwrap(), msg);
        }
        // Without `w`, the bytes are exactly an older member's.
        assert_eq!(old.encode(), b"d1:c0:4:fulli1e2:id8:abcdefgh3:ttli30ee");
        assert!(SiteMsg::decode(b"d1:c0:4:fulli1e2:id8:abcdefgh3:ttli30e1:wi2ee", 10).is_err());
        assert!(SiteMsg::decode(b"d1:c0:4:fulli1e2:id8:abcdefgh3:ttli30e1:w1:xe", 10).is_err());
    }

    #[test]
    fn the_cap_is_split_evenly_and_alone_a_member_takes_it_all() {
        assert_eq!(wan_share(2_500_000, 0), 2_500_000);
        assert_eq!(wan_share(2_500_000, 1), 1_250_000);
        assert_eq!(wan_share(3_000_000, 2), 1_000_000);
        assert_eq!(wan_share(1, 5), 1);
        assert_eq!(wan_share(u64::MAX, usize::MAX), 1);
    }

    #[test]
    fn the_split_is_even_and_moves_only_the_leavers_pieces() {
        let ids: Vec<MemberId> = (1u64..=3)
            .map(|i| (i * 0x1234_5678_9abc).to_be_bytes())
            .collect();
        let mut counts = [0u32; 3];
        for index in 0..3000 {
            let o = owner(ids.iter().copied(), index).unwrap();
            counts[ids.iter().position(|&m| m == o).unwrap()] += 1;
            // Without member 2, its pieces move and no other.
            let o2 = owner([ids[0], ids[1]], index).unwrap();
            if o != ids[2] {
                assert_eq!(o2, o);
            }
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }
}
