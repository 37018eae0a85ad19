//! .torrent files (BEP 3, v1): parsing, validation and the info-hash.

use std::fmt;

/// The SHA-1 of a torrent's bencoded `info` dictionary, as it appeared in the file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a torrent was refused; every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    /// Placeholder until the parser lands.
    #[error("missing field `{0}`")]
    Missing(&'static str),
}

/// One file of a torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Validated path components relative to the download directory. For a
    /// multi-file torrent the first component is the torrent's name; for a
    /// single-file torrent it is just `[name]`.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Offset of the file's first byte within the torrent's concatenated data.
    pub offset: u64,
}

/// The validated `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Suggested name (file name or top directory), validated as a path component.
    pub name: String,
    /// Bytes per piece (the last piece may be shorter): a power of two in [16 KiB, 64 MiB].
    pub piece_length: u64,
    /// One SHA-1 per piece.
    pub piece_hashes: Vec<[u8; 20]>,
    /// Files in torrent order; a single-file torrent has one.
    pub files: Vec<FileEntry>,
    /// Sum of file lengths.
    pub total_length: u64,
    /// BEP 27 private flag.
    pub private: bool,
}

impl Info {
    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_hashes.len() as u32
    }
    /// Length of piece `index` (the last one may be short).
    pub fn piece_size(&self, index: u32) -> u64 {
        let start = index as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length)
    }
}

/// A parsed, validated .torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the original `info` bytes.
    pub info_hash: InfoHash,
    /// The validated info dictionary.
    pub info: Info,
    /// The exact bytes of the `info` dictionary as they appeared in the file.
    pub info_bytes: Vec<u8>,
    /// Tracker tiers: `announce-list` (BEP 12) if present, else `[[announce]]`.
    pub trackers: Vec<Vec<String>>,
    /// Free-text comment.
    pub comment: Option<String>,
    /// Creating program.
    pub created_by: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}
