//! .torrent files (BEP 3, v1): parsing, validation and the info-hash.
//!
//! [`Metainfo::from_bytes`] is a pure function over the file's bytes. It loads
//! what other clients load, making every path safe to create below the
//! download directory rather than refusing it (as libtorrent and Transmission
//! do): `.`, `..` and empty components are dropped, a leading `/` is
//! stripped, separators, NUL, control characters and the characters Windows
//! file systems refuse (`<>:"\|?*`) become `_`, reserved device names get a
//! `_` prefix, components longer than 255 bytes are shortened at a UTF-8
//! boundary keeping the extension, and a path already taken (ignoring case)
//! becomes `name (1).ext`. BEP 47 pad files are kept in the layout but never
//! created; symlink entries are skipped (never created, never followed). What
//! was changed is listed in [`Info::notes`]. It refuses lengths that
//! overflow and piece tables that do not match the data; every error names
//! the field at fault, e.g. `info.files[3].length: negative value -1`.

use std::collections::{HashMap, HashSet};
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
/// Longest path component created, in bytes (the limit of ext4, XFS, Btrfs).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most entries kept in [`Info::notes`]; the rest are counted.
const MAX_NOTES: usize = 100;

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
    /// A torrent being created would have a path renamed by clients (e.g.
    /// two files differing only in case).
    #[error("{0}; rename it first so that every client saves the same paths")]
    NotPortable(String),
    /// All files are empty, so there is nothing to share.
    #[error("info: total length is zero")]
    ZeroTotal,
    /// Metadata whose SHA-1 is not the info-hash it was fetched for.
    #[error("info: the metadata's SHA-1 is not the info-hash")]
    InfoHashMismatch,
    /// A sum of lengths overflows 64 bits.
    #[error("{field}: total length overflows 64 bits")]
    Overflow {
        /// The field whose addition overflowed.
        field: String,
    },
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
    /// A BEP 47 pad file (`attr` holds `p`): zeros that align the next file
    /// to a piece, never created on disk. Its `path` may be empty.
    pub pad: bool,
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
    /// What loading changed to make the files safe to create (components
    /// renamed or shortened, duplicates renamed, symlinks skipped), one
    /// sentence each, for the log.
    pub notes: Vec<String>,
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
    /// BEP 19 web seeds (`url-list`): http and https URLs, in order, without repeats.
    pub web_seeds: Vec<String>,
    /// Why `url-list` entries were left out (not http/https, not text), one
    /// sentence each, for the log.
    pub web_seed_notes: Vec<String>,
}

impl Metainfo {
    /// Parses and validates a .torrent file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        // Bytes after the top-level dictionary are ignored, as other
        // clients do; the info-hash covers only `info`'s own bytes anyway.
        let (root, _) = bencode::decode_prefix(bytes)?;
        let root = expect_dict(&root, "torrent")?;
        let info_value = root.get(b"info").ok_or_else(|| missing("info"))?;
        let info_dict = expect_dict(info_value, "info")?;
        let info = Info::from_dict(info_dict)?;
        let (web_seeds, web_seed_notes) = web_seeds(root);
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
            web_seeds,
            web_seed_notes,
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

    /// A metainfo from metadata fetched over BEP 9 (the bare `info`
    /// dictionary) and the trackers a magnet link named. Metadata is
    /// trusted only when its SHA-1 is `expected`:
    /// [`MetainfoError::InfoHashMismatch`] otherwise.
    pub fn from_info_bytes(
        info_bytes: &[u8],
        expected: InfoHash,
        trackers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        let info = Metainfo::info_from_metadata(info_bytes, expected)?
            .ok_or(MetainfoError::InfoHashMismatch)?;
        Ok(Metainfo {
            info_hash: expected,
            info,
            info_bytes: info_bytes.to_vec(),
            trackers,
            comment: None,
            created_by: None,
            creation_date: None,
            web_seeds: Vec::new(),
            web_seed_notes: Vec::new(),
        })
    }

    /// A .torrent file for this metainfo: `announce`, `announce-list` and
    /// the `info` bytes exactly as they are, so it parses back to the same
    /// info-hash.
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        let urls: Vec<&str> = self.tracker_urls();
        let mut out = b"d".to_vec();
        if let Some(first) = urls.first() {
            bencode::Owned::Bytes(b"announce".to_vec()).encode_into(&mut out);
            bencode::Owned::Bytes(first.as_bytes().to_vec()).encode_into(&mut out);
            let tiers = bencode::Owned::List(
                self.trackers
                    .iter()
                    .map(|tier| {
                        bencode::Owned::List(
                            tier.iter()
                                .map(|u| bencode::Owned::Bytes(u.as_bytes().to_vec()))
                                .collect(),
                        )
                    })
                    .collect(),
            );
            bencode::Owned::Bytes(b"announce-list".to_vec()).encode_into(&mut out);
            tiers.encode_into(&mut out);
        }
        // Keys in sorted order: "info" < "url-list".
        let mut tail = Vec::new();
        if !self.web_seeds.is_empty() {
            bencode::Owned::Bytes(b"url-list".to_vec()).encode_into(&mut tail);
            bencode::Owned::List(
                self.web_seeds
                    .iter()
                    .map(|u| bencode::Owned::Bytes(u.as_bytes().to_vec()))
                    .collect(),
            )
            .encode_into(&mut tail);
        }
        bencode::Owned::Bytes(b"info".to_vec()).encode_into(&mut out);
        out.extend_from_slice(&self.info_bytes);
        out.extend_from_slice(&tail);
        out.push(b'e');
        out
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
        let raw_name =
            text_or_utf8_variant(info, "name", "info.name")?.ok_or_else(|| missing("info.name"))?;
        let mut notes = Notes::default();
        let name = match sanitize_component(&raw_name) {
            Some(n) => n,
            // Nothing usable: the info-hash names the torrent's file or directory.
            None => InfoHash::of(info.raw).to_hex(),
        };
        if name != raw_name {
            notes.push(format!("info.name {raw_name:?} is saved as {name:?}"));
        }

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
                    pad: false,
                }]
            }
            (None, Some(files)) => multi_files(&name, files, &mut notes)?,
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
            notes: notes.finish(),
        })
    }
}

/// [`Info::notes`] as they are gathered, bounded.
#[derive(Default)]
struct Notes {
    kept: Vec<String>,
    more: usize,
}

impl Notes {
    fn push(&mut self, note: String) {
        if self.kept.len() < MAX_NOTES {
            self.kept.push(note);
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.kept
                .push(format!("and {} more changes like these", self.more));
        }
        self.kept
    }
}

/// Reads the `files` list of a multi-file torrent, making every path safe.
fn multi_files(
    name: &str,
    files: &Value<'_>,
    notes: &mut Notes,
) -> Result<Vec<FileEntry>, MetainfoError> {
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
    let mut paths = PathCollisions::default();
    let mut offset: u64 = 0;
    for (i, file) in list.iter().enumerate() {
        let field = format!("info.files[{i}]");
        let dict = expect_dict(file, &field)?;
        let length = non_negative(dict, "length", &format!("{field}.length"))?
            .ok_or_else(|| missing(&format!("{field}.length")))?;
        let attr = dict.get(b"attr").and_then(Value::as_bytes).unwrap_or(b"");
        let next = offset.checked_add(length).ok_or(MetainfoError::Overflow {
            field: format!("{field}.length"),
        })?;
        let path_field = format!("{field}.path");
        if attr.contains(&b'p') {
            // Zeros by definition: kept for the layout, never created.
            entries.push(FileEntry {
                path: Vec::new(),
                length,
                offset,
                pad: true,
            });
            offset = next;
            continue;
        }
        let raw = path_components(dict, &path_field)?;
        if attr.contains(&b'l') {
            if length == 0 {
                notes.push(format!(
                    "{field}: skipped the symlink {:?} (capwise never creates or follows symlinks)",
                    raw.join("/")
                ));
                continue;
            }
            notes.push(format!(
                "{field}: the symlink {:?} holds {length} bytes; saved as a regular file",
                raw.join("/")
            ));
        }
        let mut wanted: Vec<String> = raw.iter().filter_map(|c| sanitize_component(c)).collect();
        if wanted.is_empty() {
            wanted.push("_".to_owned());
        }
        let mut path = vec![name.to_owned()];
        path.extend(paths.place(name, &wanted));
        if path[1..] != raw[..] {
            notes.push(format!(
                "{field}: {:?} is saved as {:?}",
                raw.join("/"),
                path[1..].join("/")
            ));
        }
        entries.push(FileEntry {
            path,
            length,
            offset,
            pad: false,
        });
        offset = next;
    }
    Ok(entries)
}

/// A file's components as the torrent gives them: `path.utf-8` when present
/// and valid, else `path` (an absent or empty list is an empty path).
fn path_components(dict: &Dict<'_>, field: &str) -> Result<Vec<String>, MetainfoError> {
    // Some clients write legacy-encoded names in `path` and the UTF-8 version in
    // `path.utf-8`; prefer the latter but only if it is entirely valid.
    if let Some(list) = dict.get(b"path.utf-8").and_then(Value::as_list) {
        let utf8: Option<Vec<String>> =
            list.iter().map(|c| c.as_str().map(str::to_owned)).collect();
        if let Some(components) = utf8.filter(|c| !c.is_empty()) {
            return Ok(components);
        }
    }
    let Some(value) = dict.get(b"path") else {
        return Ok(Vec::new());
    };
    let list = value
        .as_list()
        .ok_or_else(|| wrong_type(field, "list", value))?;
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
        components.push(text.to_owned());
    }
    Ok(components)
}

/// `component` made safe to create inside its parent directory, or `None`
/// when nothing is left of it (empty, `.`, `..`, only slashes). Leading `/`
/// are stripped (an absolute path lands inside the download directory);
/// separators, NUL, control characters and `<>:"|?*` become `_`; a Windows
/// device name (`CON`, `com1.txt`) gets a `_` prefix; a drive letter's `:`
/// becomes `_`; more than [`MAX_COMPONENT_BYTES`] bytes are shortened at a
/// UTF-8 boundary, keeping the extension.
pub fn sanitize_component(component: &str) -> Option<String> {
    let trimmed = component.trim_start_matches('/');
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        return None;
    }
    let mut out: String = trimmed
        .chars()
        .map(|c| {
            let bad =
                c.is_control() || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*');
            if bad {
                '_'
            } else {
                c
            }
        })
        .collect();
    if is_windows_reserved(&out) {
        out.insert(0, '_');
    }
    Some(shorten(&out, MAX_COMPONENT_BYTES))
}

/// `name` in at most `max` bytes, cut at a UTF-8 boundary; a short extension
/// (up to 16 bytes after the last dot) is kept whole.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let ext = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 && name.len() - dot < max => &name[dot..],
        _ => "",
    };
    let stem = &name[..name.len() - ext.len()];
    let mut cut = max - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

/// `name` with ` (n)` before its extension, within [`MAX_COMPONENT_BYTES`].
fn numbered(name: &str, n: usize) -> String {
    let suffix = format!(" ({n})");
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => name.split_at(dot),
        _ => (name, ""),
    };
    let room = MAX_COMPONENT_BYTES.saturating_sub(suffix.len() + ext.len());
    let stem = shorten(stem, room.max(1));
    format!("{stem}{suffix}{ext}")
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

/// Gives every file a path no other file or directory of the torrent has
/// (compared ignoring case, as on Windows and macOS): a later file whose path
/// is taken, or whose directory is another file, is renamed `name (1).ext`.
/// A renamed directory stays renamed for every later file under it.
#[derive(Default)]
struct PathCollisions {
    /// Lowercase keys of the final paths of files.
    files: HashSet<String>,
    /// Lowercase keys of the final paths of directories.
    dirs: HashSet<String>,
    /// A directory wanted under a final parent (lowercase key) -> its final name.
    renamed_dirs: HashMap<String, String>,
    /// The next number to try for a name (lowercase key), so a million
    /// files of one name cost linear time.
    next_number: HashMap<String, usize>,
}

impl PathCollisions {
    fn key(parent: &str, component: &str) -> String {
        format!("{parent}/{}", component.to_lowercase())
    }

    fn taken(&self, key: &str) -> bool {
        self.files.contains(key) || self.dirs.contains(key)
    }

    /// `name (n).ext` for the first `n` free under `parent`.
    fn numbered_free(&mut self, parent: &str, name: &str) -> String {
        let asked = Self::key(parent, name);
        let mut n = self.next_number.get(&asked).copied().unwrap_or(1);
        loop {
            let c = numbered(name, n);
            n += 1;
            if !self.taken(&Self::key(parent, &c)) {
                self.next_number.insert(asked, n);
                return c;
            }
        }
    }

    /// The final components for a file wanted at `name/wanted...`.
    fn place(&mut self, name: &str, wanted: &[String]) -> Vec<String> {
        let mut parent = name.to_lowercase();
        let mut out = Vec::with_capacity(wanted.len());
        let Some((file, dirs)) = wanted.split_last() else {
            return out;
        };
        for dir in dirs {
            let asked = Self::key(&parent, dir);
            let chosen = match self.renamed_dirs.get(&asked) {
                Some(c) => c.clone(),
                None if !self.files.contains(&asked) => dir.clone(),
                None => {
                    let c = self.numbered_free(&parent, dir);
                    self.renamed_dirs.insert(asked, c.clone());
                    c
                }
            };
            parent = Self::key(&parent, &chosen);
            self.dirs.insert(parent.clone());
            out.push(chosen);
        }
        let chosen = if self.taken(&Self::key(&parent, file)) {
            self.numbered_free(&parent, file)
        } else {
            file.clone()
        };
        self.files.insert(Self::key(&parent, &chosen));
        out.push(chosen);
        out
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

/// Most web seeds kept from one `url-list`; more is a denial-of-service attempt.
pub const MAX_WEB_SEEDS: usize = 64;

/// BEP 19 `url-list`: a string or a list of strings. Only http and https
/// URLs are kept (an ftp or file URL is no source of ours); whatever is
/// left out is named in the notes, never an error: the torrent still loads.
fn web_seeds(root: &Dict<'_>) -> (Vec<String>, Vec<String>) {
    let mut urls = Vec::new();
    let mut notes = Vec::new();
    let entries: Vec<&Value<'_>> = match root.get(b"url-list") {
        None => return (urls, notes),
        Some(v @ Value::Bytes(_)) => vec![v],
        Some(Value::List(list)) => list.iter().collect(),
        Some(other) => {
            notes.push(format!(
                "url-list: ignored, a {} is neither a URL nor a list of URLs",
                other.kind()
            ));
            return (urls, notes);
        }
    };
    for (i, entry) in entries.into_iter().enumerate() {
        let Some(text) = entry.as_str() else {
            notes.push(format!("url-list[{i}]: ignored, not a UTF-8 string"));
            continue;
        };
        let url = text.trim();
        // BEP 19 lets an empty string stand for "no web seed" (mktorrent
        // writes none, some tools write ""): nothing to say about it.
        if url.is_empty() {
            continue;
        }
        if !is_http_url(url) {
            notes.push(format!(
                "url-list[{i}]: ignored {url:?}: only http:// and https:// web seeds are used"
            ));
            continue;
        }
        if urls.len() >= MAX_WEB_SEEDS {
            notes.push(format!(
                "url-list: only the first {MAX_WEB_SEEDS} web seeds are used"
            ));
            break;
        }
        if !urls.iter().any(|u| u == url) {
            urls.push(url.to_owned());
        }
    }
    (urls, notes)
}

/// `http://HOST...` or `https://HOST...` (scheme in any case), with a host,
/// and no whitespace or control character that would make the request line unsafe.
fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("http://") {
        r
    } else if let Some(r) = lower.strip_prefix("https://") {
        r
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
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

    fn with_url_list(url_list: Owned) -> Metainfo {
        let Owned::Dict(mut d) = single("f", 20000, 16384) else {
            unreachable!()
        };
        d.insert(b"url-list".to_vec(), url_list);
        Metainfo::from_bytes(&Owned::Dict(d).to_bytes()).unwrap()
    }

    #[test]
    fn url_list_as_string_or_list_keeps_http_urls_only() {
        let m = with_url_list(Owned::from("http://hq.example/pub/"));
        assert_eq!(m.web_seeds, vec!["http://hq.example/pub/"]);
        assert!(m.web_seed_notes.is_empty());

        let m = with_url_list(Owned::list(vec![
            "https://a.example/x",
            "ftp://b.example/x",
            "",
            "http://",
            "HTTP://c.example/y",
            "https://a.example/x",
            "http://d.example/ z",
        ]));
        assert_eq!(
            m.web_seeds,
            vec!["https://a.example/x", "HTTP://c.example/y"]
        );
        assert_eq!(m.web_seed_notes.len(), 3, "{:?}", m.web_seed_notes);
        assert!(m.web_seed_notes[0].contains("ftp://"));

        let m = with_url_list(Owned::Int(5));
        assert!(m.web_seeds.is_empty());
        assert!(m.web_seed_notes[0].contains("url-list"));

        let m = with_url_list(Owned::List(vec![Owned::Int(1), Owned::Bytes(vec![0xff])]));
        assert!(m.web_seeds.is_empty());
        assert_eq!(m.web_seed_notes.len(), 2);
    }

    #[test]
    fn url_list_survives_to_torrent_bytes() {
        let m = with_url_list(Owned::list(vec![
            "http://hq.example/a",
            "http://hq.example/b",
        ]));
        let again = Metainfo::from_bytes(&m.to_torrent_bytes()).unwrap();
        assert_eq!(again.web_seeds, m.web_seeds);
        assert_eq!(again.info_hash, m.info_hash);
    }

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
                offset: 0,
                pad: false,
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

    fn paths(bytes: &[u8]) -> Vec<String> {
        let m = Metainfo::from_bytes(bytes).expect("loads");
        m.info.files.iter().map(|f| f.path.join("/")).collect()
    }

    #[test]
    fn unsafe_paths_are_sanitized_into_the_directory() {
        let cases: &[(&[&str], &str)] = &[
            (&["..", "etc", "passwd"], "top/etc/passwd"),
            (&["a", ".", "b"], "top/a/b"),
            (&["a", "", "b"], "top/a/b"),
            (&["/etc", "passwd"], "top/etc/passwd"),
            (&["a/../../b"], "top/a_.._.._b"),
            (&["..\\..\\evil.exe"], "top/.._.._evil.exe"),
            (&["a\0b"], "top/a_b"),
            (&["tab\there?<*>|\"q\":"], "top/tab_here______q__"),
            (&["CON"], "top/_CON"),
            (&["con.txt"], "top/_con.txt"),
            (&["C:", "Windows"], "top/C_/Windows"),
            (&[""], "top/_"),
            (&[".."], "top/_"),
        ];
        for (path, want) in cases {
            let bytes = multi(vec![(path.to_vec(), 1)]);
            assert_eq!(paths(&bytes), vec![want.to_string()], "{path:?}");
            let notes = Metainfo::from_bytes(&bytes).unwrap().info.notes;
            assert!(notes[0].contains("is saved as"), "{notes:?}");
        }
        assert_eq!(
            paths(&multi(vec![(vec!["COM0"], 1), (vec!["console"], 1)])),
            vec!["top/COM0", "top/console"]
        );
        let m = Metainfo::from_bytes(&single("..", 1, 16384).to_bytes()).unwrap();
        assert_eq!(m.info.name, m.info_hash.to_hex());
        let m = Metainfo::from_bytes(&single("/etc/passwd", 1, 16384).to_bytes()).unwrap();
        assert_eq!(m.info.files[0].path, vec!["etc_passwd"]);
        assert!(m.info.notes[0].contains("info.name"), "{:?}", m.info.notes);
    }

    #[test]
    fn long_components_are_shortened_keeping_the_extension() {
        // 100 three-byte characters: 300 bytes.
        let long = format!("{}.mkv", "\u{65e5}".repeat(100));
        let got = paths(&multi(vec![(vec![&long], 1), (vec![&long], 1)]));
        for (i, p) in got.iter().enumerate() {
            let name = p.strip_prefix("top/").unwrap();
            assert!(
                name.len() <= MAX_COMPONENT_BYTES,
                "{i}: {} bytes",
                name.len()
            );
            assert!(name.ends_with(".mkv"), "{name}");
            assert!(name.starts_with("\u{65e5}"), "{name}");
        }
        assert!(got[1].ends_with(" (1).mkv"), "{}", got[1]);
        assert_ne!(got[0], got[1]);
        let no_ext = "x".repeat(400);
        assert_eq!(paths(&multi(vec![(vec![&no_ext], 1)]))[0].len(), 4 + 255);
    }

    #[test]
    fn collisions_are_renamed() {
        assert_eq!(
            paths(&multi(vec![
                (vec!["a.txt"], 1),
                (vec!["A.TXT"], 1),
                (vec!["a.txt"], 1)
            ])),
            vec!["top/a.txt", "top/A (1).TXT", "top/a (2).txt"]
        );
        // A file, then a directory of its name: the directory is renamed,
        // for every file under it.
        assert_eq!(
            paths(&multi(vec![
                (vec!["a"], 1),
                (vec!["a", "b"], 1),
                (vec!["A", "c"], 1)
            ])),
            vec!["top/a", "top/a (1)/b", "top/a (1)/c"]
        );
        assert_eq!(
            paths(&multi(vec![(vec!["a", "b"], 1), (vec!["a"], 1)])),
            vec!["top/a/b", "top/a (1)"]
        );
        // Renaming skips names the torrent itself uses.
        assert_eq!(
            paths(&multi(vec![
                (vec!["x (1)"], 1),
                (vec!["x"], 1),
                (vec!["x"], 1)
            ])),
            vec!["top/x (1)", "top/x", "top/x (2)"]
        );
    }

    #[test]
    fn many_files_of_one_name_load_in_linear_time() {
        let files: Vec<(Vec<&str>, i64)> = (0..20_000).map(|_| (vec!["same"], 1)).collect();
        let got = paths(&multi(files));
        assert_eq!(got[19_999], "top/same (19999)");
        let m = Metainfo::from_bytes(&multi(vec![(vec!["same"], 1); 300])).unwrap();
        assert_eq!(m.info.notes.len(), MAX_NOTES + 1);
    }

    fn with_attrs(files: Vec<Owned>) -> Vec<u8> {
        Owned::dict()
            .with(
                "info",
                Owned::dict()
                    .with("name", "top")
                    .with("files", files)
                    .with("piece length", 16384)
                    .with("pieces", vec![1u8; 40]),
            )
            .build()
            .to_bytes()
    }

    #[test]
    fn bep47_pad_files_are_virtual_and_symlinks_skipped() {
        let bytes = with_attrs(vec![
            Owned::dict()
                .with("length", 100)
                .with("path", Owned::list(["a"]))
                .build(),
            // A pad file with no path at all.
            Owned::dict()
                .with("length", 16284)
                .with("attr", "p")
                .build(),
            Owned::dict()
                .with("length", 0)
                .with("attr", "l")
                .with("symlink path", Owned::list(["..", "..", "etc"]))
                .with("path", Owned::list(["link"]))
                .build(),
            Owned::dict()
                .with("length", 10)
                .with("attr", "x")
                .with("path", Owned::list(["b"]))
                .build(),
        ]);
        let m = Metainfo::from_bytes(&bytes).unwrap();
        let f = &m.info.files;
        assert_eq!(f.len(), 3, "{f:?}");
        assert!(!f[0].pad && f[1].pad && !f[2].pad);
        assert!(f[1].path.is_empty());
        assert_eq!((f[2].offset, f[2].path.join("/")), (16384, "top/b".into()));
        assert_eq!(m.total_length(), 16394);
        assert!(
            m.info
                .notes
                .iter()
                .any(|n| n.contains("skipped the symlink")),
            "{:?}",
            m.info.notes
        );
    }

    #[test]
    fn bytes_after_the_torrent_are_ignored() {
        let mut bytes = single("a.bin", 40000, 16384).to_bytes();
        let clean = Metainfo::from_bytes(&bytes).unwrap();
        bytes.extend_from_slice(b"\r\ngarbage d3:fooe");
        assert_eq!(Metainfo::from_bytes(&bytes), Ok(clean));
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
