//! The verified-piece journal: which pieces have been written (handed to the
//! kernel by a completed `pwrite`), recorded between the synced checkpoints
//! of [`ResumeData`], so a crashed process costs no re-hash.
//!
//! A written piece survives the death of the process (it is in the page
//! cache) but not a power loss until it is synced. So the journal carries
//! the kernel's boot id: on the same boot its pieces are trusted as they
//! are; after a reboot only the checkpoint's pieces, which were synced before
//! it was saved, are, and the journal's others are hashed again.
//!
//! Each record also carries a lease: the session writes no data past
//! `lease_until` without committing a record first. A file whose mtime lies
//! between its checkpoint stamp and the lease, at its full length, was
//! changed only by us; one changed later (or shortened) was changed by
//! someone else and all its pieces are hashed, as with a checkpoint alone.
//!
//! Format (little-endian), version 1:
//!
//! ```text
//! magic "CWJOURNL" | version u16 | info_hash [20] | lease_secs i64 | lease_nanos u32
//! | boot_id_len u8 | boot_id [boot_id_len] | pieces u32 | bitfield [ceil(pieces/8)]
//! | SHA-1 of everything before [20]
//! ```

use sha1::{Digest, Sha1};

use super::{FileStamp, Layout, RecheckPlan, ResumeData, ResumeError};
use crate::bitfield::Bitfield;

const MAGIC: &[u8; 8] = b"CWJOURNL";
const VERSION: u16 = 1;
const CHECKSUM: usize = 20;
/// Longest boot id kept; the kernel's is a 36-character UUID.
pub const MAX_BOOT_ID: usize = 64;

/// What the journal says: pieces written, on which boot, and until when the
/// session may write without another record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceJournal {
    /// The torrent these belong to.
    pub info_hash: [u8; 20],
    /// The kernel's boot id when recorded (at most [`MAX_BOOT_ID`] bytes).
    pub boot_id: String,
    /// No write of ours happens after this instant (seconds, nanoseconds
    /// since the Unix epoch) without a newer record.
    pub lease_until: (i64, u32),
    /// Pieces verified and written.
    pub pieces: Bitfield,
}

impl PieceJournal {
    /// The binary form described in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let boot = self.boot_id.as_bytes();
        let boot = &boot[..boot.len().min(MAX_BOOT_ID)];
        let mut out = Vec::with_capacity(80 + boot.len() + self.pieces.as_bytes().len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&self.lease_until.0.to_le_bytes());
        out.extend_from_slice(&self.lease_until.1.to_le_bytes());
        out.push(boot.len() as u8); // at most MAX_BOOT_ID
        out.extend_from_slice(boot);
        out.extend_from_slice(&self.pieces.len().to_le_bytes());
        out.extend_from_slice(self.pieces.as_bytes());
        let sum: [u8; 20] = Sha1::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Parses journal bytes for a torrent of `expected_pieces` pieces. Never
    /// reads past `bytes`, never panics.
    pub fn decode(bytes: &[u8], expected_pieces: u32) -> Result<PieceJournal, ResumeError> {
        let short = || ResumeError::TooShort(bytes.len());
        let body_len = bytes.len().checked_sub(CHECKSUM).ok_or_else(short)?;
        let (body, sum) = bytes.split_at(body_len);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], ResumeError> {
            let part = body.get(at..at.checked_add(n).ok_or_else(short)?);
            let part = part.ok_or_else(short)?;
            at += n;
            Ok(part)
        };
        if take(8)? != MAGIC {
            return Err(ResumeError::BadMagic);
        }
        let version = u16::from_le_bytes(take(2)?.try_into().map_err(|_| short())?);
        if version != VERSION {
            return Err(ResumeError::Version(version));
        }
        let info_hash: [u8; 20] = take(20)?.try_into().map_err(|_| short())?;
        let secs = i64::from_le_bytes(take(8)?.try_into().map_err(|_| short())?);
        let nanos = u32::from_le_bytes(take(4)?.try_into().map_err(|_| short())?);
        let boot_len = usize::from(take(1)?[0]);
        let boot = take(boot_len)?;
        let pieces = u32::from_le_bytes(take(4)?.try_into().map_err(|_| short())?);
        if pieces != expected_pieces {
            return Err(ResumeError::PieceCount {
                expected: expected_pieces,
                got: pieces,
            });
        }
        let bf_len = (pieces as usize).div_ceil(8);
        let bf = take(bf_len)?;
        let expected = 8 + 2 + 20 + 8 + 4 + 1 + boot_len + 4 + bf_len + CHECKSUM;
        if bytes.len() != expected {
            return Err(ResumeError::Length {
                expected,
                got: bytes.len(),
            });
        }
        if Sha1::digest(body).as_slice() != sum {
            return Err(ResumeError::Checksum);
        }
        if boot_len > MAX_BOOT_ID || nanos >= 1_000_000_000 {
            return Err(ResumeError::Stamp(0));
        }
        let boot_id = String::from_utf8(boot.to_vec()).map_err(|_| ResumeError::BadMagic)?;
        Ok(PieceJournal {
            info_hash,
            boot_id,
            lease_until: (secs, nanos),
            pieces: Bitfield::from_bytes(bf, pieces)?,
        })
    }
}

/// Which pieces the checkpoint and the journal let us trust, and which must
/// be hashed again; pure. `boot_id` is this boot's (none: unknown, so the
/// journal counts as another boot's). Shapes that do not match the layout
/// are ignored.
///
/// A file is *ours* when its stamp is the checkpoint's, or, with a journal,
/// when it has its full length and its mtime lies between the checkpoint's
/// (if any) and the journal's lease. Pieces touching a file that is not ours
/// are hashed, present or not. Of the rest, the checkpoint's pieces are
/// trusted, and the journal's too on the same boot; after a reboot the
/// journal's pieces that the checkpoint lacks were maybe never synced and are
/// hashed.
pub fn resume_plan(
    layout: &Layout,
    checkpoint: Option<&ResumeData>,
    journal: Option<&PieceJournal>,
    boot_id: Option<&str>,
    now: &[FileStamp],
) -> RecheckPlan {
    let count = layout.piece_count();
    let files = layout.file_count();
    let checkpoint = checkpoint.filter(|c| c.pieces.len() == count && c.files.len() == files);
    let journal = journal.filter(|j| j.pieces.len() == count);
    if now.len() != files || (checkpoint.is_none() && journal.is_none()) {
        return RecheckPlan {
            trusted: Bitfield::new(count),
            rehash: (0..count).collect(),
        };
    }
    let same_boot = journal.is_some_and(|j| boot_id == Some(j.boot_id.as_str()));
    let mut dirty = Bitfield::new(count);
    for (f, stamp) in now.iter().enumerate() {
        let old = checkpoint.map(|c| c.files[f]);
        let ours = old == Some(*stamp)
            || journal.is_some_and(|j| {
                let mtime = (stamp.mtime_secs, stamp.mtime_nanos);
                Some(stamp.length) == layout.file_length(f)
                    && old.is_none_or(|o| {
                        o.length == stamp.length && (o.mtime_secs, o.mtime_nanos) <= mtime
                    })
                    && mtime <= j.lease_until
            });
        if !ours {
            for p in layout.file_pieces(f).unwrap_or(0..0) {
                dirty.set(p);
            }
        }
    }
    let mut trusted = Bitfield::new(count);
    let mut rehash = dirty.clone();
    for p in (0..count).filter(|&p| !dirty.has(p)) {
        let synced = checkpoint.is_some_and(|c| c.pieces.has(p));
        let written = journal.is_some_and(|j| j.pieces.has(p));
        if synced || (written && same_boot) {
            trusted.set(p);
        } else if written {
            rehash.set(p);
        }
    }
    RecheckPlan {
        trusted,
        rehash: rehash.ones().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{FileEntry, Info};

    const P: u64 = 16 * 1024;

    /// Two files of 3 pieces each, so each piece is in one file.
    fn layout() -> Layout {
        let files = vec![
            FileEntry {
                path: vec!["a".into()],
                length: 3 * P,
                offset: 0,
                pad: false,
            },
            FileEntry {
                path: vec!["b".into()],
                length: 3 * P,
                offset: 3 * P,
                pad: false,
            },
        ];
        let info = Info {
            name: "t".into(),
            piece_length: P,
            piece_hashes: vec![[0; 20]; 6],
            files,
            total_length: 6 * P,
            private: false,
            notes: Vec::new(),
        };
        Layout::new(&info).unwrap()
    }

    fn stamp(mtime_secs: i64) -> FileStamp {
        FileStamp {
            length: 3 * P,
            mtime_secs,
            mtime_nanos: 0,
        }
    }

    fn bits(set: &[u32]) -> Bitfield {
        let mut b = Bitfield::new(6);
        for &p in set {
            b.set(p);
        }
        b
    }

    fn checkpoint(pieces: &[u32]) -> ResumeData {
        ResumeData {
            info_hash: [1; 20],
            pieces: bits(pieces),
            files: vec![stamp(100), stamp(100)],
        }
    }

    fn journal(pieces: &[u32], boot: &str, lease: i64) -> PieceJournal {
        PieceJournal {
            info_hash: [1; 20],
            boot_id: boot.into(),
            lease_until: (lease, 0),
            pieces: bits(pieces),
        }
    }

    #[test]
    fn same_boot_trusts_what_was_written_after_the_checkpoint() {
        let c = checkpoint(&[0]);
        let j = journal(&[0, 1, 3], "boot-1", 200);
        // Both files were written after the checkpoint, within the lease.
        let now = [stamp(150), stamp(199)];
        let plan = resume_plan(&layout(), Some(&c), Some(&j), Some("boot-1"), &now);
        assert_eq!(plan.trusted, bits(&[0, 1, 3]));
        assert!(plan.rehash.is_empty(), "{:?}", plan.rehash);
    }

    #[test]
    fn after_a_reboot_only_what_was_not_synced_is_hashed() {
        let c = checkpoint(&[0]);
        let j = journal(&[0, 1, 3], "boot-1", 200);
        let now = [stamp(150), stamp(199)];
        let plan = resume_plan(&layout(), Some(&c), Some(&j), Some("boot-2"), &now);
        assert_eq!(plan.trusted, bits(&[0]));
        assert_eq!(plan.rehash, vec![1, 3]);
        // An unknown boot id is another boot.
        let plan = resume_plan(&layout(), Some(&c), Some(&j), None, &now);
        assert_eq!(plan.rehash, vec![1, 3]);
    }

    #[test]
    fn a_file_changed_after_the_lease_or_shortened_is_hashed_whole() {
        let c = checkpoint(&[0, 3]);
        let j = journal(&[0, 1, 3, 4], "boot-1", 200);
        let later = [stamp(150), stamp(201)];
        let plan = resume_plan(&layout(), Some(&c), Some(&j), Some("boot-1"), &later);
        assert_eq!(plan.trusted, bits(&[0, 1]));
        assert_eq!(plan.rehash, vec![3, 4, 5]);
        let shorter = [
            FileStamp {
                length: 3 * P - 1,
                ..stamp(150)
            },
            stamp(150),
        ];
        let plan = resume_plan(&layout(), Some(&c), Some(&j), Some("boot-1"), &shorter);
        assert_eq!(plan.trusted, bits(&[3, 4]));
        assert_eq!(plan.rehash, vec![0, 1, 2]);
        // An mtime set back before the checkpoint is not ours either.
        let older = [stamp(99), stamp(150)];
        let plan = resume_plan(&layout(), Some(&c), Some(&j), Some("boot-1"), &older);
        assert_eq!(plan.rehash, vec![0, 1, 2]);
    }

    #[test]
    fn without_a_journal_the_checkpoint_rule_is_unchanged() {
        let c = checkpoint(&[0, 3]);
        let now = [stamp(100), stamp(150)];
        let plan = resume_plan(&layout(), Some(&c), None, Some("boot-1"), &now);
        assert_eq!(plan.trusted, bits(&[0]));
        assert_eq!(plan.rehash, vec![3, 4, 5]);
    }

    #[test]
    fn a_journal_alone_is_enough_on_the_same_boot() {
        let j = journal(&[2, 5], "boot-1", 200);
        let now = [stamp(150), stamp(12)];
        let plan = resume_plan(&layout(), None, Some(&j), Some("boot-1"), &now);
        assert_eq!(plan.trusted, bits(&[2, 5]));
        assert!(plan.rehash.is_empty());
        let plan = resume_plan(&layout(), None, Some(&j), Some("boot-2"), &now);
        assert_eq!(plan.rehash, vec![2, 5]);
    }

    #[test]
    fn round_trip_and_damage() {
        let j = journal(&[1, 4], "0b5e3c8e-8f7a-4c55-9a57-3f1d8d0c2b11", -5);
        let bytes = j.encode();
        assert_eq!(PieceJournal::decode(&bytes, 6), Ok(j));
        assert!(PieceJournal::decode(&bytes, 7).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x41;
            assert!(PieceJournal::decode(&bad, 6).is_err(), "byte {i}");
        }
        for n in 0..bytes.len() {
            assert!(PieceJournal::decode(&bytes[..n], 6).is_err());
        }
        let mut longer = bytes;
        longer.insert(40, 0);
        assert!(PieceJournal::decode(&longer, 6).is_err());
    }
}
