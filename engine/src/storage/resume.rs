//! Resume data: which pieces were verified, and the file stamps they were
//! verified against, so a restart re-hashes only files that changed.
//!
//! Format (little-endian), version 1:
//!
//! ```text
//! magic "CWRESUME" | version u16 | info_hash [20] | pieces u32 | files u32
//! | bitfield [ceil(pieces/8)] | files x (length u64, mtime_secs i64, mtime_nanos u32)
//! | SHA-1 of everything before [20]
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::{io_err, Layout, Storage};
use crate::bitfield::{Bitfield, BitfieldLengthError};
use crate::Error;

const MAGIC: &[u8; 8] = b"CWRESUME";
const VERSION: u16 = 1;
const HEADER: usize = 8 + 2 + 20 + 4 + 4;
const STAMP: usize = 8 + 8 + 4;
const CHECKSUM: usize = 20;

/// A file's size and modification time, used to notice changes between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Size in bytes.
    pub length: u64,
    /// Modification time, whole seconds since the Unix epoch.
    pub mtime_secs: i64,
    /// Nanoseconds past `mtime_secs`, below 1e9.
    pub mtime_nanos: u32,
}

impl FileStamp {
    /// Stands for a file that does not exist.
    pub const MISSING: FileStamp = FileStamp {
        length: 0,
        mtime_secs: 0,
        mtime_nanos: 0,
    };
}

/// What a torrent's data looked like when last saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeData {
    /// The torrent these belong to.
    pub info_hash: [u8; 20],
    /// Pieces verified good.
    pub pieces: Bitfield,
    /// Stamps of every file, in torrent order, taken after the data was synced.
    pub files: Vec<FileStamp>,
}

/// Why resume bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// Fewer bytes than even the header.
    #[error("resume data truncated ({0} bytes)")]
    TooShort(usize),
    /// Not a capwise resume file.
    #[error("not capwise resume data")]
    BadMagic,
    /// Written by an incompatible version.
    #[error("unsupported resume data version {0}")]
    Version(u16),
    /// Saved for a torrent with another number of pieces.
    #[error("resume data has {got} pieces, torrent has {expected}")]
    PieceCount {
        /// Pieces in the torrent.
        expected: u32,
        /// Pieces in the data.
        got: u32,
    },
    /// Saved for a torrent with another number of files.
    #[error("resume data has {got} files, torrent has {expected}")]
    FileCount {
        /// Files in the torrent.
        expected: usize,
        /// Files in the data.
        got: u32,
    },
    /// Total length does not match the counts.
    #[error("resume data is {got} bytes, expected {expected}")]
    Length {
        /// Length the counts imply.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// The checksum does not match: the bytes were damaged.
    #[error("resume data checksum mismatch")]
    Checksum,
    /// The piece bitfield has spare bits set.
    #[error(transparent)]
    Bitfield(#[from] BitfieldLengthError),
    /// A stamp with nanoseconds out of range.
    #[error("file {0} has an invalid modification time")]
    Stamp(usize),
    /// Saved for another torrent.
    #[error("resume data belongs to another torrent")]
    InfoHash,
}

impl ResumeData {
    /// The binary form described in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER + self.pieces.as_bytes().len() + self.files.len() * STAMP + CHECKSUM,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.info_hash);
        out.extend_from_slice(&self.pieces.len().to_le_bytes());
        // More than u32::MAX files cannot come from a parsed torrent; saturating
        // makes such data undecodable rather than silently wrong.
        let files = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&files.to_le_bytes());
        out.extend_from_slice(self.pieces.as_bytes());
        for f in &self.files {
            out.extend_from_slice(&f.length.to_le_bytes());
            out.extend_from_slice(&f.mtime_secs.to_le_bytes());
            out.extend_from_slice(&f.mtime_nanos.to_le_bytes());
        }
        let sum: [u8; 20] = Sha1::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Parses resume bytes for a torrent of `expected_pieces` pieces and
    /// `expected_files` files. Never reads past `bytes`, never panics.
    pub fn decode(
        bytes: &[u8],
        expected_pieces: u32,
        expected_files: usize,
    ) -> Result<ResumeData, ResumeError> {
        let mut r = Reader(bytes);
        let (Some(magic), Some(version)) = (r.take(8), r.u16()) else {
            return Err(ResumeError::TooShort(bytes.len()));
        };
        if magic != MAGIC {
            return Err(ResumeError::BadMagic);
        }
        if version != VERSION {
            return Err(ResumeError::Version(version));
        }
        let (Some(hash), Some(pieces), Some(files)) = (r.take(20), r.u32(), r.u32()) else {
            return Err(ResumeError::TooShort(bytes.len()));
        };
        if pieces != expected_pieces {
            return Err(ResumeError::PieceCount {
                expected: expected_pieces,
                got: pieces,
            });
        }
        if usize::try_from(files).ok() != Some(expected_files) {
            return Err(ResumeError::FileCount {
                expected: expected_files,
                got: files,
            });
        }
        let bf_len = (pieces as usize).div_ceil(8);
        let expected = expected_files
            .checked_mul(STAMP)
            .and_then(|n| n.checked_add(HEADER + CHECKSUM))
            .and_then(|n| n.checked_add(bf_len))
            .unwrap_or(usize::MAX);
        if bytes.len() != expected {
            return Err(ResumeError::Length {
                expected,
                got: bytes.len(),
            });
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM);
        if Sha1::digest(body).as_slice() != sum {
            return Err(ResumeError::Checksum);
        }
        let info_hash: [u8; 20] = hash
            .try_into()
            .map_err(|_| ResumeError::TooShort(bytes.len()))?;
        let bf = r.take(bf_len).ok_or(ResumeError::TooShort(bytes.len()))?;
        let pieces = Bitfield::from_bytes(bf, pieces)?;
        let mut stamps = Vec::with_capacity(expected_files);
        for i in 0..expected_files {
            let (Some(length), Some(secs), Some(nanos)) = (r.u64(), r.u64(), r.u32()) else {
                return Err(ResumeError::TooShort(bytes.len()));
            };
            if nanos >= 1_000_000_000 {
                return Err(ResumeError::Stamp(i));
            }
            stamps.push(FileStamp {
                length,
                mtime_secs: i64::from_le_bytes(secs.to_le_bytes()),
                mtime_nanos: nanos,
            });
        }
        Ok(ResumeData {
            info_hash,
            pieces,
            files: stamps,
        })
    }
}

/// A bounds-checked little-endian cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
}

/// Which pieces resume data lets us trust, and which must be hashed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecheckPlan {
    /// Pieces present per the resume data that touch only unchanged files.
    pub trusted: Bitfield,
    /// Pieces touching a changed file, present or not: data may have arrived
    /// after the resume data was saved, or been damaged since.
    pub rehash: Vec<u32>,
}

/// Compares saved stamps with `now`; pure. Shapes that do not match the
/// layout trust nothing and re-hash everything.
pub fn recheck_plan(layout: &Layout, resume: &ResumeData, now: &[FileStamp]) -> RecheckPlan {
    let count = layout.piece_count();
    let files = layout.file_count();
    if resume.pieces.len() != count || resume.files.len() != files || now.len() != files {
        return RecheckPlan {
            trusted: Bitfield::new(count),
            rehash: (0..count).collect(),
        };
    }
    let mut dirty = Bitfield::new(count);
    for (f, (old, new)) in resume.files.iter().zip(now).enumerate() {
        if old != new {
            for p in layout.file_pieces(f).unwrap_or(0..0) {
                dirty.set(p);
            }
        }
    }
    let mut trusted = Bitfield::new(count);
    for p in resume.pieces.ones().filter(|&p| !dirty.has(p)) {
        trusted.set(p);
    }
    RecheckPlan {
        trusted,
        rehash: dirty.ones().collect(),
    }
}

/// Which pieces are present, hashing only what resume data cannot vouch for:
/// pieces touching files whose size or mtime changed. Without resume data (or
/// with data of the wrong shape) every piece is hashed.
///
/// The caller must have checked `resume.info_hash` (as [`load_resume`] does).
pub fn resume_check(
    storage: &Storage,
    resume: Option<&ResumeData>,
    threads: usize,
) -> Result<Bitfield, Error> {
    let layout = storage.layout();
    let Some(resume) = resume else {
        return storage.verify_all(threads);
    };
    if resume.pieces.len() != layout.piece_count() || resume.files.len() != layout.file_count() {
        tracing::warn!("resume data does not fit the torrent; checking all pieces");
        return storage.verify_all(threads);
    }
    let plan = recheck_plan(layout, resume, &storage.stamps()?);
    if !plan.rehash.is_empty() {
        tracing::info!(
            pieces = plan.rehash.len(),
            "files changed since resume data; re-hashing"
        );
    }
    let mut have = storage.verify_pieces(&plan.rehash, threads)?;
    for p in plan.trusted.ones() {
        have.set(p);
    }
    Ok(have)
}

/// Writes `data` to `path` atomically: a temporary file in the same
/// directory, synced, then renamed over `path`, then the directory synced.
pub fn save_resume(path: &Path, data: &ResumeData) -> Result<(), Error> {
    write_atomic(path, &data.encode())
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new
/// content, never a mix: temporary file, fsync, rename, fsync of the directory.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io_err(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "resume path has no file name"),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{:016x}.tmp", rand::random::<u64>()));
    let tmp = dir.join(tmp_name);
    let result = write_synced(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io_err(path, e)))
        .and_then(|()| {
            // Makes the rename itself durable.
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(&dir, e))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(path, e))
}

/// Reads resume data saved for torrent `info_hash` with `pieces` pieces and
/// `files` files. A missing file is `None`; a damaged or foreign one is logged
/// and `None` too, so the caller falls back to a full check.
pub fn load_resume(
    path: &Path,
    info_hash: &[u8; 20],
    pieces: u32,
    files: usize,
) -> Result<Option<ResumeData>, Error> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    // Read at most one byte more than valid data can be, so a huge file
    // cannot exhaust memory; decode then reports the wrong length.
    let limit = files
        .checked_mul(STAMP)
        .and_then(|n| n.checked_add(HEADER + CHECKSUM + 1 + (pieces as usize).div_ceil(8)))
        .unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    f.take(u64::try_from(limit).unwrap_or(u64::MAX))
        .read_to_end(&mut bytes)
        .map_err(|e| io_err(path, e))?;
    let decoded = ResumeData::decode(&bytes, pieces, files).and_then(|d| {
        if &d.info_hash == info_hash {
            Ok(d)
        } else {
            Err(ResumeError::InfoHash)
        }
    });
    match decoded {
        Ok(d) => Ok(Some(d)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring resume data");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ResumeData {
        let mut pieces = Bitfield::new(11);
        pieces.set(0);
        pieces.set(10);
        ResumeData {
            info_hash: [7; 20],
            pieces,
            files: vec![
                FileStamp {
                    length: 5,
                    mtime_secs: -3,
                    mtime_nanos: 999_999_999,
                },
                FileStamp {
                    length: 0,
                    mtime_secs: 1_700_000_000,
                    mtime_nanos: 0,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let d = sample();
        assert_eq!(ResumeData::decode(&d.encode(), 11, 2), Ok(d));
    }

    #[test]
    fn refuses_mismatches() {
        let bytes = sample().encode();
        assert!(matches!(
            ResumeData::decode(&bytes, 12, 2),
            Err(ResumeError::PieceCount { .. })
        ));
        assert!(matches!(
            ResumeData::decode(&bytes, 11, 3),
            Err(ResumeError::FileCount { .. })
        ));
        assert!(matches!(
            ResumeData::decode(&bytes[..5], 11, 2),
            Err(ResumeError::TooShort(5))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            ResumeData::decode(&longer, 11, 2),
            Err(ResumeError::Length { .. })
        ));
        let mut flipped = bytes.clone();
        flipped[HEADER] ^= 1;
        assert_eq!(
            ResumeData::decode(&flipped, 11, 2),
            Err(ResumeError::Checksum)
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(
            ResumeData::decode(&magic, 11, 2),
            Err(ResumeError::BadMagic)
        );
        let mut version = bytes;
        version[8] = 9;
        assert_eq!(
            ResumeData::decode(&version, 11, 2),
            Err(ResumeError::Version(9))
        );
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let mut bytes = sample().encode();
        bytes[34..38].copy_from_slice(&u32::MAX.to_le_bytes());
        let got = ResumeData::decode(&bytes, 11, u32::MAX as usize);
        assert!(matches!(got, Err(ResumeError::Length { .. })));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                               pieces in 0u32..100, files in 0usize..5) {
            let _ = ResumeData::decode(&bytes, pieces, files);
        }

        #[test]
        fn any_single_byte_change_is_caught(i in 0usize..200, x in 1u8..=255) {
            let bytes = sample().encode();
            let i = i % bytes.len();
            let mut bad = bytes.clone();
            bad[i] ^= x;
            prop_assert!(ResumeData::decode(&bad, 11, 2).is_err());
        }
    }
}
