//! .torrent files (BEP 3, v1): parsing, validation and the info-hash.
//!
//! [`Metainfo::from_bytes`] is a pure function over the file's bytes. It refuses
//! anything that could hurt the machine that later writes the files: paths that
//! escape the download directory or mean something special on Windows,
//! duplicate or colliding paths, lengths that overflow, and piece tables that do
//! not match the data. Every error names the field at fault, e.g.
//! `info.files[3].path: component ".." is not allowed`.

use std::collections::HashSet;
use std::fmt;

use sha1::{Digest, Sha1};

use crate::bencode::{self, BencodeError, Dict, Value};

/// Smallest accepted piece length, 16 KiB (one request block).
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;
/// Largest accepted piece length, 64 MiB.
pub const MAX_PIECE_LENGTH: u64 = 64 * 1024 * 1024;
/// Most files a torrent may list; beyond this it is a denial-of-service attempt.
pub const MAX_FILES: usize = 1_000_000;
/// Most pieces a torrent may have (as libtorrent's default limit, doubled).
pub const MAX_PIECES: u64 = 1 << 22;

/// The SHA-1 of a torrent's bencoded `info` dictionary, as it appeared in the file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<InfoHash> {
        let bytes = hex.as_bytes();
        if bytes.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            // from_str_radix accepts a leading '+', which is not a hex digit.
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            *byte = u8::from_str_radix(text, 16).ok()?;
        }
        Some(InfoHash(out))
    }

    /// The SHA-1 of `info_bytes`.
    pub fn of(info_bytes: &[u8]) -> InfoHash {
        InfoHash(Sha1::digest(info_bytes).into())
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
    /// The file is not valid bencode.
    #[error("{0}")]
    Bencode(#[from] BencodeError),
    /// A required field is absent.
    #[error("{0}: missing")]
    Missing(String),
    /// A field has the wrong bencode type.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        /// The field, e.g. `info.files[2].length`.
        field: String,
        /// The type it should have.
        expected: &'static str,
        /// The type it has.
        found: &'static str,
    },
    /// A length is negative.
    #[error("{field}: negative value {value}")]
    Negative {
        /// The field.
        field: String,
        /// The value found.
        value: i64,
    },
    /// A path component (or the name) is unsafe or unusable.
    #[error("{field}: component {component:?} {reason}")]
    BadPath {
        /// The field, e.g. `info.files[3].path` or `info.name`.
        field: String,
        /// The component, lossily decoded for display.
        component: String,
        /// Why it is refused, e.g. "is not allowed".
        reason: &'static str,
    },
    /// A file's path list has no components.
    #[error("{0}: path is empty")]
    EmptyPath(String),
    /// The piece length is not a power of two in [16 KiB, 64 MiB].
    #[error("info.piece length: {0} is not a power of two between 16 KiB and 64 MiB")]
    PieceLength(u64),
    /// `pieces` is not a whole number of 20-byte hashes.
    #[error("info.pieces: length {len} is not a multiple of 20")]
    PiecesLength {
        /// Bytes in `pieces`.
        len: usize,
    },
    /// `pieces` holds a different number of hashes than the data needs.
    #[error("info.pieces: {got} piece hashes but the total length needs {expected}")]
    PieceCount {
        /// ceil(total length / piece length).
        expected: u64,
        /// Hashes present.
        got: u64,
    },
    /// More pieces than [`MAX_PIECES`].
    #[error("info.pieces: {count} pieces is more than the limit of {limit}")]
    TooManyPieces {
        /// Pieces the torrent needs.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// More files than [`MAX_FILES`].
    #[error("info.files: {count} files is more than the limit of {limit}")]
    TooManyFiles {
        /// Files listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// `files` is an empty list.
    #[error("info.files: list is empty")]
    NoFiles,
    /// Both `length` (single-file) and `files` (multi-file) are present.
    #[error("info: has both `length` and `files`")]
    LengthAndFiles,
    /// All files are empty, so there is nothing to share.
    #[error("info: total length is zero")]
    ZeroTotal,
    /// A sum of lengths overflows 64 bits.
    #[error("{field}: total length overflows 64 bits")]
    Overflow {
        /// The field whose addition overflowed.
        field: String,
    },
    /// Two files have the same path (compared case-insensitively, as on Windows and macOS).
    #[error("info.files: duplicate path {0:?}")]
    DuplicatePath(String),
    /// A file's path is also used as a directory by another file (`a` and `a/b`).
    #[error("info.files: {0:?} is both a file and a directory")]
    FileIsDirectory(String),
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
        // Validation caps the count at MAX_PIECES, far below u32::MAX.
        u32::try_from(self.piece_hashes.len()).unwrap_or(u32::MAX)
    }

    /// Length of piece `index` (the last one may be short; 0 past the end).
    pub fn piece_size(&self, index: u32) -> u64 {
        let start = u64::from(index).saturating_mul(self.piece_length);
        self.total_length
            .saturating_sub(start)
            .min(self.piece_length)
    }

    /// The expected SHA-1 of piece `index`.
    pub fn piece_hash(&self, index: u32) -> Option<&[u8; 20]> {
        self.piece_hashes.get(usize::try_from(index).ok()?)
    }

    /// Byte range `start..end` of piece `index` in the concatenated data.
    pub fn piece_range(&self, index: u32) -> Option<std::ops::Range<u64>> {
        if index >= self.piece_count() {
            return None;
        }
        let start = u64::from(index) * self.piece_length;
        Some(start..start + self.piece_size(index))
    }

    /// Whether this is a multi-file torrent (files live under a directory `name`).
    pub fn is_multi_file(&self) -> bool {
        self.files.len() != 1 || self.files.iter().any(|f| f.path.len() > 1)
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

impl Metainfo {
    /// Parses and validates a .torrent file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let root = bencode::decode(bytes)?;
        let root = expect_dict(&root, "torrent")?;
        let info_value = root.get(b"info").ok_or_else(|| missing("info"))?;
        let info_dict = expect_dict(info_value, "info")?;
        let info = Info::from_dict(info_dict)?;
        Ok(Metainfo {
            // Hash the bytes as they were: a re-encoding would differ for
            // unsorted keys and the swarm would not recognise the torrent.
            info_hash: InfoHash::of(info_dict.raw),
            info,
            info_bytes: info_dict.raw.to_vec(),
            trackers: trackers(root),
            comment: text_field(root, "comment"),
            created_by: text_field(root, "created by"),
            creation_date: root.get(b"creation date").and_then(Value::as_int),
        })
    }

    /// Parses a BEP 9 metadata blob (the bare `info` dictionary), checking it against `expected`.
    ///
    /// Returns `Ok(None)` when the bytes are valid but hash to something else.
    pub fn info_from_metadata(
        info_bytes: &[u8],
        expected: InfoHash,
    ) -> Result<Option<Info>, MetainfoError> {
        if InfoHash::of(info_bytes) != expected {
            return Ok(None);
        }
        let value = bencode::decode(info_bytes)?;
        Info::from_dict(expect_dict(&value, "info")?).map(Some)
    }

    /// The expected SHA-1 of piece `index`.
    pub fn piece_hash(&self, index: u32) -> Option<&[u8; 20]> {
        self.info.piece_hash(index)
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.info.piece_count()
    }

    /// Sum of all file lengths.
    pub fn total_length(&self) -> u64 {
        self.info.total_length
    }

    /// The torrent's name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// All tracker URLs, tiers flattened, in order, without repeats.
    pub fn tracker_urls(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.trackers
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|url| seen.insert(*url))
            .collect()
    }
}

impl Info {
    /// Validates an `info` dictionary.
    pub fn from_dict(info: &Dict<'_>) -> Result<Info, MetainfoError> {
        let name =
            text_or_utf8_variant(info, "name", "info.name")?.ok_or_else(|| missing("info.name"))?;
        validate_component(&name, "info.name")?;

        let piece_length = non_negative(info, "piece length", "info.piece length")?
            .ok_or_else(|| missing("info.piece length"))?;
        if !piece_length.is_power_of_two()
            || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&piece_length)
        {
            return Err(MetainfoError::PieceLength(piece_length));
        }

        let pieces = match info.get(b"pieces") {
            None => return Err(missing("info.pieces")),
            Some(v) => v
                .as_bytes()
                .ok_or_else(|| wrong_type("info.pieces", "byte string", v))?,
        };
        if pieces.len() % 20 != 0 {
            return Err(MetainfoError::PiecesLength { len: pieces.len() });
        }

        let files = match (info.get(b"length"), info.get(b"files")) {
            (Some(_), Some(_)) => return Err(MetainfoError::LengthAndFiles),
            (None, None) => return Err(missing("info.length or info.files")),
            (Some(_), None) => {
                let length = non_negative(info, "length", "info.length")?.unwrap_or(0);
                vec![FileEntry {
                    path: vec![name.clone()],
                    length,
                    offset: 0,
                }]
            }
            (None, Some(files)) => multi_files(&name, files)?,
        };
        let total_length = files
            .last()
            .map_or(0, |f| f.offset.saturating_add(f.length));
        if total_length == 0 {
            return Err(MetainfoError::ZeroTotal);
        }

        let expected = total_length.div_ceil(piece_length);
        if expected > MAX_PIECES {
            return Err(MetainfoError::TooManyPieces {
                count: expected,
                limit: MAX_PIECES,
            });
        }
        let got = (pieces.len() / 20) as u64;
        if got != expected {
            return Err(MetainfoError::PieceCount { expected, got });
        }
        let piece_hashes = pieces
            .chunks_exact(20)
            .map(|c| <[u8; 20]>::try_from(c).unwrap_or_default())
            .collect();

        Ok(Info {
            name,
            piece_length,
            piece_hashes,
            files,
            total_length,
            private: info.get(b"private").and_then(Value::as_int) == Some(1),
        })
    }
}

/// Reads and validates the `files` list of a multi-file torrent.
fn multi_files(name: &str, files: &Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = files
        .as_list()
        .ok_or_else(|| wrong_type("info.files", "list", files))?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    if list.len() > MAX_FILES {
        return Err(MetainfoError::TooManyFiles {
            count: list.len(),
            limit: MAX_FILES,
        });
    }
    let mut entries = Vec::with_capacity(list.len());
    let mut collisions = PathCollisions::default();
    let mut offset: u64 = 0;
    for (i, file) in list.iter().enumerate() {
        let field = format!("info.files[{i}]");
        let dict = expect_dict(file, &field)?;
        let length = non_negative(dict, "length", &format!("{field}.length"))?
            .ok_or_else(|| missing(&format!("{field}.length")))?;

        let path_field = format!("{field}.path");
        let mut path = vec![name.to_owned()];
        path.extend(path_components(dict, &path_field)?);
        collisions.add(&path)?;

        entries.push(FileEntry {
            path,
            length,
            offset,
        });
        offset = offset.checked_add(length).ok_or(MetainfoError::Overflow {
            field: format!("{field}.length"),
        })?;
    }
    Ok(entries)
}

/// A file's components: `path.utf-8` when present and valid, else `path`.
fn path_components(dict: &Dict<'_>, field: &str) -> Result<Vec<String>, MetainfoError> {
    // Some clients write legacy-encoded names in `path` and the UTF-8 version in
    // `path.utf-8`; prefer the latter but only if it is entirely valid.
    if let Some(list) = dict.get(b"path.utf-8").and_then(Value::as_list) {
        let utf8: Option<Vec<String>> =
            list.iter().map(|c| c.as_str().map(str::to_owned)).collect();
        if let Some(components) = utf8.filter(|c| !c.is_empty()) {
            for c in &components {
                validate_component(c, field)?;
            }
            return Ok(components);
        }
    }
    let value = dict.get(b"path").ok_or_else(|| missing(field))?;
    let list = value
        .as_list()
        .ok_or_else(|| wrong_type(field, "list", value))?;
    if list.is_empty() {
        return Err(MetainfoError::EmptyPath(field.to_owned()));
    }
    let mut components = Vec::with_capacity(list.len());
    for c in list {
        let bytes = c
            .as_bytes()
            .ok_or_else(|| wrong_type(field, "list of byte strings", value))?;
        let text = std::str::from_utf8(bytes).map_err(|_| MetainfoError::BadPath {
            field: field.to_owned(),
            component: String::from_utf8_lossy(bytes).into_owned(),
            reason: "is not valid UTF-8",
        })?;
        validate_component(text, field)?;
        components.push(text.to_owned());
    }
    Ok(components)
}

/// Refuses a path component that could escape the download directory, that
/// Windows would treat specially, or that cannot be a file name at all.
pub fn validate_component(component: &str, field: &str) -> Result<(), MetainfoError> {
    let bad = |reason| {
        Err(MetainfoError::BadPath {
            field: field.to_owned(),
            component: component.to_owned(),
            reason,
        })
    };
    let bytes = component.as_bytes();
    if component.is_empty() {
        return bad("is empty");
    }
    if component == "." || component == ".." {
        return bad("is not allowed");
    }
    if bytes.first() == Some(&b'/') {
        return bad("is an absolute path");
    }
    if bytes.contains(&b'/') {
        return bad("contains the path separator '/'");
    }
    if bytes.contains(&b'\\') {
        return bad("contains a backslash, a path separator on Windows");
    }
    if bytes.contains(&0) {
        return bad("contains a NUL byte");
    }
    if let [letter, b':', ..] = bytes {
        if letter.is_ascii_alphabetic() {
            return bad("looks like a Windows drive letter");
        }
    }
    if is_windows_reserved(component) {
        return bad("is a reserved device name on Windows");
    }
    Ok(())
}

/// CON, PRN, AUX, NUL, COM1-9, LPT1-9, in any case, with or without an
/// extension (`con.txt` opens the console too).
fn is_windows_reserved(component: &str) -> bool {
    let stem = component.split('.').next().unwrap_or(component);
    // Windows ignores trailing spaces in the stem as well ("CON .txt").
    let stem = stem.trim_end_matches(' ').to_ascii_uppercase();
    match stem.as_bytes() {
        b"CON" | b"PRN" | b"AUX" | b"NUL" => true,
        [b'C', b'O', b'M', d] | [b'L', b'P', b'T', d] => (b'1'..=b'9').contains(d),
        _ => false,
    }
}

/// Catches two files with the same path (case-insensitively) and a file that is
/// also another file's directory; either would make one file overwrite or
/// block another on disk.
#[derive(Default)]
struct PathCollisions {
    files: HashSet<String>,
    dirs: HashSet<String>,
}

impl PathCollisions {
    fn add(&mut self, path: &[String]) -> Result<(), MetainfoError> {
        let mut key = String::new();
        for (i, component) in path.iter().enumerate() {
            if i > 0 {
                key.push('/');
            }
            key.push_str(&component.to_lowercase());
            let is_last = i + 1 == path.len();
            if is_last {
                if self.dirs.contains(&key) {
                    return Err(MetainfoError::FileIsDirectory(path.join("/")));
                }
                if !self.files.insert(key.clone()) {
                    return Err(MetainfoError::DuplicatePath(path.join("/")));
                }
            } else {
                if self.files.contains(&key) {
                    return Err(MetainfoError::FileIsDirectory(
                        path.get(..=i).unwrap_or_default().join("/"),
                    ));
                }
                self.dirs.insert(key.clone());
            }
        }
        Ok(())
    }
}

/// Tracker tiers from `announce-list`, else `[[announce]]`, else none.
fn trackers(root: &Dict<'_>) -> Vec<Vec<String>> {
    let is_url = |s: &&str| !s.trim().is_empty();
    let tiers: Vec<Vec<String>> = root
        .get(b"announce-list")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_list)
        .map(|tier| {
            tier.iter()
                .filter_map(Value::as_str)
                .filter(is_url)
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect();
    if !tiers.is_empty() {
        return tiers;
    }
    match root.get(b"announce").and_then(Value::as_str).filter(is_url) {
        Some(url) => vec![vec![url.trim().to_owned()]],
        None => Vec::new(),
    }
}

/// A free-text field (`comment`, `created by`): the `.utf-8` variant if valid,
/// else the plain one, lossily decoded since it is only for display.
fn text_field(dict: &Dict<'_>, key: &str) -> Option<String> {
    let utf8_key = format!("{key}.utf-8");
    if let Some(s) = dict.get(utf8_key.as_bytes()).and_then(Value::as_str) {
        return Some(s.to_owned());
    }
    dict.get(key.as_bytes())
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A name-like field: the `.utf-8` variant if valid, else the plain one, which
/// must then be valid UTF-8 (a lossy name would not match the data on disk).
fn text_or_utf8_variant(
    dict: &Dict<'_>,
    key: &str,
    field: &str,
) -> Result<Option<String>, MetainfoError> {
    let utf8_key = format!("{key}.utf-8");
    if let Some(s) = dict.get(utf8_key.as_bytes()).and_then(Value::as_str) {
        return Ok(Some(s.to_owned()));
    }
    let Some(value) = dict.get(key.as_bytes()) else {
        return Ok(None);
    };
    let bytes = value
        .as_bytes()
        .ok_or_else(|| wrong_type(field, "byte string", value))?;
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Some(s.to_owned())),
        Err(_) => Err(MetainfoError::BadPath {
            field: field.to_owned(),
            component: String::from_utf8_lossy(bytes).into_owned(),
            reason: "is not valid UTF-8",
        }),
    }
}

/// An optional integer field that must not be negative.
fn non_negative(dict: &Dict<'_>, key: &str, field: &str) -> Result<Option<u64>, MetainfoError> {
    let Some(value) = dict.get(key.as_bytes()) else {
        return Ok(None);
    };
    let n = value
        .as_int()
        .ok_or_else(|| wrong_type(field, "integer", value))?;
    u64::try_from(n)
        .map(Some)
        .map_err(|_| MetainfoError::Negative {
            field: field.to_owned(),
            value: n,
        })
}

fn expect_dict<'v, 'a>(value: &'v Value<'a>, field: &str) -> Result<&'v Dict<'a>, MetainfoError> {
    value
        .as_dict()
        .ok_or_else(|| wrong_type(field, "dictionary", value))
}

fn missing(field: &str) -> MetainfoError {
    MetainfoError::Missing(field.to_owned())
}

fn wrong_type(field: &str, expected: &'static str, found: &Value<'_>) -> MetainfoError {
    MetainfoError::WrongType {
        field: field.to_owned(),
        expected,
        found: found.kind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Owned;

    fn single(name: &str, length: i64, piece_length: i64) -> Owned {
        let pieces = (length as u64).div_ceil(piece_length as u64) as usize;
        Owned::dict()
            .with("announce", "http://t.example/announce")
            .with(
                "info",
                Owned::dict()
                    .with("name", name)
                    .with("length", length)
                    .with("piece length", piece_length)
                    .with("pieces", vec![7u8; 20 * pieces]),
            )
            .build()
    }

    fn multi(files: Vec<(Vec<&str>, i64)>) -> Vec<u8> {
        let total = files
            .iter()
            .map(|f| f.1.max(0) as u64)
            .fold(0, u64::saturating_add);
        let pieces = total.div_ceil(16384).min(1000) as usize;
        let list: Vec<Owned> = files
            .into_iter()
            .map(|(path, len)| {
                Owned::dict()
                    .with("length", len)
                    .with("path", Owned::list(path))
                    .build()
            })
            .collect();
        Owned::dict()
            .with(
                "info",
                Owned::dict()
                    .with("name", "top")
                    .with("files", list)
                    .with("piece length", 16384)
                    .with("pieces", vec![1u8; 20 * pieces.max(1)]),
            )
            .build()
            .to_bytes()
    }

    fn err_text(bytes: &[u8]) -> String {
        Metainfo::from_bytes(bytes)
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn single_file() {
        let m = Metainfo::from_bytes(&single("a.bin", 40000, 16384).to_bytes()).unwrap();
        assert_eq!(
            m.info.files,
            vec![FileEntry {
                path: vec!["a.bin".into()],
                length: 40000,
                offset: 0
            }]
        );
        assert_eq!(m.piece_count(), 3);
        assert_eq!(m.info.piece_size(2), 40000 - 32768);
        assert_eq!(m.info.piece_size(3), 0);
        assert_eq!(m.info.piece_range(2), Some(32768..40000));
        assert_eq!(m.info.piece_range(3), None);
        assert_eq!(
            m.trackers,
            vec![vec!["http://t.example/announce".to_string()]]
        );
        assert!(!m.info.is_multi_file());
        let info_raw = crate::bencode::decode(&m.info_bytes).unwrap();
        assert_eq!(info_raw.as_dict().unwrap().raw, &m.info_bytes[..]);
    }

    #[test]
    fn multi_file_offsets() {
        let m = Metainfo::from_bytes(&multi(vec![
            (vec!["a"], 10),
            (vec!["d", "e"], 0),
            (vec!["d", "f"], 20000),
        ]))
        .unwrap();
        let offsets: Vec<u64> = m.info.files.iter().map(|f| f.offset).collect();
        assert_eq!(offsets, vec![0, 10, 10]);
        assert_eq!(m.info.files[2].path, vec!["top", "d", "f"]);
        assert_eq!(m.total_length(), 20010);
        assert!(m.info.is_multi_file());
    }

    #[test]
    fn refuses_unsafe_paths() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[".."],
                r#"info.files[0].path: component ".." is not allowed"#,
            ),
            (&["."], "is not allowed"),
            (&["/etc"], "absolute"),
            (&["a/b"], "separator"),
            (&["a\\b"], "backslash"),
            (&["a\0b"], "NUL"),
            (&[""], "is empty"),
            (&["CON"], "reserved"),
            (&["con.txt"], "reserved"),
            (&["Lpt9"], "reserved"),
            (&["C:"], "drive letter"),
            (&["c:x"], "drive letter"),
        ];
        for (path, want) in cases {
            let text = err_text(&multi(vec![(path.to_vec(), 1)]));
            assert!(text.contains(want), "{path:?}: {text}");
        }
        assert!(
            Metainfo::from_bytes(&multi(vec![(vec!["COM0"], 1), (vec!["console"], 1)])).is_ok()
        );
        assert!(err_text(&single("..", 1, 16384).to_bytes()).contains("info.name"));
    }

    #[test]
    fn refuses_collisions() {
        assert!(err_text(&multi(vec![(vec!["a"], 1), (vec!["A"], 1)])).contains("duplicate path"));
        assert!(err_text(&multi(vec![(vec!["a"], 1), (vec!["a", "b"], 1)]))
            .contains("both a file and a directory"));
        assert!(err_text(&multi(vec![(vec!["a", "b"], 1), (vec!["a"], 1)]))
            .contains("both a file and a directory"));
    }

    #[test]
    fn refuses_bad_numbers() {
        assert!(err_text(&single("x", 1, 16385).to_bytes()).contains("piece length"));
        assert!(err_text(&single("x", 1, 8192).to_bytes()).contains("piece length"));
        assert!(err_text(&single("x", 0, 16384).to_bytes()).contains("total length is zero"));
        assert!(err_text(&multi(vec![(vec!["a"], -1)])).contains("info.files[0].length: negative"));
        assert!(err_text(&multi(vec![
            (vec!["a"], i64::MAX),
            (vec!["b"], i64::MAX),
            (vec!["c"], i64::MAX)
        ]))
        .contains("overflows"));
    }

    #[test]
    fn hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHash::from_hex(&"AB".repeat(20)), Some(h));
        assert_eq!(InfoHash::from_hex("+b"), None);
        assert_eq!(InfoHash::from_hex(&"+b".repeat(20)), None);
    }
}
