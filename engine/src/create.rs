//! Building .torrent files from a file or directory, hashing on all cores.
//!
//! The files are listed first (a directory is walked recursively and sorted
//! by path bytes, so the same tree always gives the same info-hash), the
//! resulting `info` dictionary is validated with the same rules as
//! [`Metainfo::from_bytes`](crate::metainfo::Metainfo::from_bytes) *before*
//! any hashing, and only then are the pieces hashed: the piece range is split
//! into one contiguous share per core, and each scoped thread reads its share
//! with positional reads in large buffers, crossing file boundaries as the
//! torrent's concatenated layout requires.
//!
//! Symbolic links inside a directory are skipped: following them could leave
//! the directory, loop, or add the same data twice, and BitTorrent v1 cannot
//! describe a link. A symlink given as the root path itself is followed, since
//! the user named it explicitly.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

use crate::bencode::Owned;
use crate::metainfo::{self, Info, MetainfoError, MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};
use crate::Error;

/// Largest piece length [`suggest_piece_length`] picks.
pub const MAX_SUGGESTED_PIECE_LENGTH: u64 = 16 * 1024 * 1024;
/// [`suggest_piece_length`] picks the smallest piece length that keeps the
/// piece count at or below this, so counts land between about 1000 and 2000.
const TARGET_MAX_PIECES: u64 = 2000;
/// Bytes each hashing thread reads at a time (rounded to whole pieces):
/// large enough that syscall overhead vanishes, small enough to stay in cache-friendly territory.
const READ_BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// What to put in a new torrent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// The file or directory to share.
    pub path: PathBuf,
    /// Tracker URLs; each becomes its own tier (BEP 12), the first is also `announce`.
    pub trackers: Vec<String>,
    /// Bytes per piece; `None` picks one with [`suggest_piece_length`].
    pub piece_length: Option<u64>,
    /// Set the BEP 27 private flag (no DHT, PEX or LSD).
    pub private: bool,
    /// Free-text comment.
    pub comment: Option<String>,
    /// Creating program; defaults to `capwise/<version>`.
    pub created_by: Option<String>,
    /// Web seeds (BEP 19 `url-list`). They go outside `info`: adding or
    /// changing them leaves the info-hash as it is.
    pub web_seeds: Vec<String>,
}

/// A piece length for `total` bytes: the smallest power of two in
/// [16 KiB, 16 MiB] giving at most about 2000 pieces (so usually 1000–2000).
pub fn suggest_piece_length(total: u64) -> u64 {
    let mut piece_length = MIN_PIECE_LENGTH;
    while piece_length < MAX_SUGGESTED_PIECE_LENGTH
        && total.div_ceil(piece_length) > TARGET_MAX_PIECES
    {
        piece_length *= 2;
    }
    piece_length
}

/// Builds the .torrent file for `opts.path` and returns its bytes.
pub fn create_torrent(opts: &CreateOptions) -> Result<Vec<u8>, Error> {
    let source = list_files(&opts.path)?;
    let total = source.total_length()?;
    let piece_length = opts
        .piece_length
        .unwrap_or_else(|| suggest_piece_length(total));
    if !piece_length.is_power_of_two()
        || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&piece_length)
    {
        return Err(MetainfoError::PieceLength(piece_length).into());
    }
    let piece_count = total.div_ceil(piece_length);
    let pieces_len = usize::try_from(piece_count.saturating_mul(20)).map_err(|_| {
        MetainfoError::TooManyPieces {
            count: piece_count,
            limit: metainfo::MAX_PIECES,
        }
    })?;

    // Validate names, collisions and counts before spending time on hashing.
    let draft = source.info_dict(piece_length, vec![0; pieces_len], opts.private)?;
    let draft_bytes = draft.to_bytes();
    let parsed = crate::bencode::decode(&draft_bytes)?;
    if let Some(dict) = parsed.as_dict() {
        // Clients load any path, renaming what they cannot create as it is;
        // a torrent we make must need no renaming, so it loads alike everywhere.
        if let Some(note) = Info::from_dict(dict)?.notes.into_iter().next() {
            return Err(MetainfoError::NotPortable(note).into());
        }
    }

    let pieces = hash_pieces(&source.files, total, piece_length, pieces_len)?;
    let info = source.info_dict(piece_length, pieces, opts.private)?;

    let trackers: Vec<&str> = opts
        .trackers
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    let announce_list =
        (trackers.len() > 1).then(|| Owned::list(trackers.iter().map(|t| Owned::list([*t]))));
    let created_by = opts
        .created_by
        .clone()
        .unwrap_or_else(|| concat!("capwise/", env!("CARGO_PKG_VERSION")).to_owned());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let web_seeds: Vec<&str> = opts
        .web_seeds
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    // Always a list (BEP 19 allows a string for one URL; every client reads both).
    let url_list = (!web_seeds.is_empty()).then(|| Owned::list(web_seeds.iter().copied()));
    // The creation date and everything else that varies stay outside `info`,
    // so the same content always gives the same info-hash (channels rely on
    // it: a republished, unchanged file keeps its torrent).
    let torrent = Owned::dict()
        .with_opt("announce", trackers.first().copied())
        .with_opt("announce-list", announce_list)
        .with_opt("comment", opts.comment.as_deref())
        .with("created by", created_by)
        .with("creation date", now)
        .with("info", info)
        .with_opt("url-list", url_list)
        .build();
    Ok(torrent.to_bytes())
}

/// One file to hash, in torrent order.
#[derive(Debug)]
struct SourceFile {
    /// Where to read it.
    disk_path: PathBuf,
    /// Path components below the torrent's top directory (empty for a single file).
    components: Vec<String>,
    /// Length when listed.
    length: u64,
    /// Offset within the concatenated data.
    offset: u64,
}

/// The files of a torrent-to-be.
#[derive(Debug)]
struct Source {
    name: String,
    multi_file: bool,
    files: Vec<SourceFile>,
}

impl Source {
    fn total_length(&self) -> Result<u64, Error> {
        self.files
            .last()
            .and_then(|f| f.offset.checked_add(f.length))
            .ok_or_else(|| {
                MetainfoError::Overflow {
                    field: "info.files".into(),
                }
                .into()
            })
    }

    fn info_dict(&self, piece_length: u64, pieces: Vec<u8>, private: bool) -> Result<Owned, Error> {
        let int = |n: u64, field: &str| {
            i64::try_from(n).map_err(|_| MetainfoError::Overflow {
                field: field.to_owned(),
            })
        };
        let mut info = Owned::dict()
            .with("name", self.name.as_str())
            .with("piece length", int(piece_length, "info.piece length")?)
            .with("pieces", pieces);
        if private {
            info = info.with("private", 1);
        }
        if self.multi_file {
            let mut files = Vec::with_capacity(self.files.len());
            for f in &self.files {
                files.push(
                    Owned::dict()
                        .with("length", int(f.length, "info.files.length")?)
                        .with("path", Owned::list(f.components.iter()))
                        .build(),
                );
            }
            info = info.with("files", files);
        } else {
            let length = self.files.first().map_or(0, |f| f.length);
            info = info.with("length", int(length, "info.length")?);
        }
        Ok(info.build())
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// A file name as a validated torrent path component.
fn component_name(name: &std::ffi::OsStr, disk_path: &Path) -> Result<String, Error> {
    let field = disk_path.display().to_string();
    let text = name.to_str().ok_or_else(|| MetainfoError::BadPath {
        field: field.clone(),
        component: name.to_string_lossy().into_owned(),
        reason: "is not valid UTF-8",
    })?;
    metainfo::validate_component(text, &field)?;
    Ok(text.to_owned())
}

/// Lists `root` (a file, or a directory walked recursively) in torrent order.
fn list_files(root: &Path) -> Result<Source, Error> {
    let meta = fs::metadata(root).map_err(io_error(root))?;
    let name = match root.file_name() {
        Some(name) => name.to_owned(),
        // `.`, `..` or `/`: name the torrent after what the path resolves to.
        None => fs::canonicalize(root)
            .map_err(io_error(root))?
            .file_name()
            .map(ToOwned::to_owned)
            .ok_or_else(|| Error::Io {
                path: root.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot share the root directory",
                ),
            })?,
    };
    let name = component_name(&name, root)?;

    if !meta.is_dir() {
        let file = SourceFile {
            disk_path: root.to_owned(),
            components: Vec::new(),
            length: meta.len(),
            offset: 0,
        };
        return Ok(Source {
            name,
            multi_file: false,
            files: vec![file],
        });
    }

    let mut files = Vec::new();
    // Explicit stack: deep trees must not exhaust the thread's stack.
    let mut pending: Vec<(PathBuf, Vec<String>)> = vec![(root.to_owned(), Vec::new())];
    while let Some((dir, components)) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            let disk_path = entry.path();
            // file_type() does not follow symlinks, so links are seen as links.
            let file_type = entry.file_type().map_err(io_error(&disk_path))?;
            if file_type.is_symlink() {
                continue;
            }
            let mut child = components.clone();
            child.push(component_name(&entry.file_name(), &disk_path)?);
            if file_type.is_dir() {
                pending.push((disk_path, child));
            } else if file_type.is_file() {
                let length = entry.metadata().map_err(io_error(&disk_path))?.len();
                files.push(SourceFile {
                    disk_path,
                    components: child,
                    length,
                    offset: 0,
                });
            }
            // Sockets, FIFOs and devices have no content to share: skipped.
        }
    }
    if files.is_empty() {
        return Err(Error::Io {
            path: root.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "directory contains no files"),
        });
    }
    // Byte order of the components, so the info-hash does not depend on the file system's listing order.
    files.sort_by(|a, b| {
        let a = a.components.iter().map(String::as_bytes);
        let b = b.components.iter().map(String::as_bytes);
        a.cmp(b)
    });
    let mut offset: u64 = 0;
    for file in &mut files {
        file.offset = offset;
        offset = offset
            .checked_add(file.length)
            .ok_or(MetainfoError::Overflow {
                field: "info.files".into(),
            })?;
    }
    Ok(Source {
        name,
        multi_file: true,
        files,
    })
}

/// SHA-1 of every piece, concatenated; `pieces_len` is 20 × the piece count.
fn hash_pieces(
    files: &[SourceFile],
    total: u64,
    piece_length: u64,
    pieces_len: usize,
) -> Result<Vec<u8>, Error> {
    let mut hashes = vec![0u8; pieces_len];
    let piece_count = pieces_len / 20;
    if piece_count == 0 {
        return Ok(hashes);
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, piece_count);
    let pieces_per_thread = piece_count.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = hashes
            .chunks_mut(pieces_per_thread * 20)
            .enumerate()
            .map(|(i, share)| {
                let first_piece = (i * pieces_per_thread) as u64;
                scope.spawn(move || hash_share(files, total, piece_length, first_piece, share))
            })
            .collect();
        for worker in workers {
            worker.join().unwrap_or_else(|_| {
                Err(Error::Net(io::Error::other("a hashing thread panicked")))
            })?;
        }
        Ok::<(), Error>(())
    })?;
    Ok(hashes)
}

/// Hashes consecutive pieces starting at `first_piece` into `out` (20 bytes each).
fn hash_share(
    files: &[SourceFile],
    total: u64,
    piece_length: u64,
    first_piece: u64,
    out: &mut [u8],
) -> Result<(), Error> {
    let batch_pieces = (READ_BATCH_BYTES / piece_length).max(1);
    let batch_bytes = usize::try_from(batch_pieces * piece_length)
        .map_err(|_| MetainfoError::PieceLength(piece_length))?;
    let piece_bytes =
        usize::try_from(piece_length).map_err(|_| MetainfoError::PieceLength(piece_length))?;
    let mut buffer = vec![0u8; batch_bytes];
    let mut reader = SpanReader { files, open: None };
    let mut piece = first_piece;
    for out_batch in out.chunks_mut(batch_bytes / piece_bytes * 20) {
        let count = (out_batch.len() / 20) as u64;
        let start = piece * piece_length;
        let end = ((piece + count) * piece_length).min(total);
        let len = usize::try_from(end - start)
            .unwrap_or(batch_bytes)
            .min(batch_bytes);
        let data = buffer.get_mut(..len).unwrap_or_default();
        reader.read_exact_at(start, data)?;
        for (hash, piece_data) in out_batch.chunks_mut(20).zip(data.chunks(piece_bytes)) {
            hash.copy_from_slice(&Sha1::digest(piece_data));
        }
        piece += count;
    }
    Ok(())
}

/// Reads the torrent's concatenated data across file boundaries, keeping the
/// most recently used file open.
struct SpanReader<'a> {
    files: &'a [SourceFile],
    open: Option<(usize, File)>,
}

impl SpanReader<'_> {
    fn read_exact_at(&mut self, mut pos: u64, mut buf: &mut [u8]) -> Result<(), Error> {
        // First file that ends after `pos`; zero-length files are passed over.
        let mut index = self.files.partition_point(|f| f.offset + f.length <= pos);
        while !buf.is_empty() {
            let Some(file) = self.files.get(index) else {
                return Err(Error::Net(io::Error::other(
                    "read past the end of the listed files",
                )));
            };
            let within = pos - file.offset;
            let available = file.length - within;
            let take = usize::try_from(available).map_or(buf.len(), |a| a.min(buf.len()));
            let (chunk, rest) = buf.split_at_mut(take);
            self.read_file_at(index, within, chunk)?;
            buf = rest;
            pos += take as u64;
            index += 1;
        }
        Ok(())
    }

    fn read_file_at(
        &mut self,
        index: usize,
        mut pos: u64,
        mut buf: &mut [u8],
    ) -> Result<(), Error> {
        let Some(entry) = self.files.get(index) else {
            return Ok(());
        };
        let path = &entry.disk_path;
        if !matches!(&self.open, Some((open_index, _)) if *open_index == index) {
            let file = File::open(path).map_err(io_error(path))?;
            self.open = Some((index, file));
        }
        let Some((_, file)) = &self.open else {
            return Ok(());
        };
        while !buf.is_empty() {
            match file.read_at(buf, pos) {
                Ok(0) => {
                    return Err(Error::Io {
                        path: path.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while hashing",
                        ),
                    })
                }
                Ok(n) => {
                    buf = buf.get_mut(n..).unwrap_or_default();
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Io {
                        path: path.clone(),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    #[test]
    fn same_content_same_info_hash_and_web_seeds_outside_info() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.bin");
        let b = dir.path().join("b.bin");
        fs::write(&a, vec![7u8; 100_000]).expect("write");
        fs::write(&b, vec![8u8; 50_000]).expect("write");
        let plain = CreateOptions {
            path: a.clone(),
            ..Default::default()
        };
        let seeded = CreateOptions {
            path: a.clone(),
            trackers: vec!["http://127.0.0.1:6969/announce".into()],
            comment: Some("v2".into()),
            created_by: Some("other".into()),
            web_seeds: vec![
                "http://hq.example/ch/".to_owned(),
                "http://hq.example/m/".to_owned(),
            ],
            ..Default::default()
        };
        let first = create_torrent(&plain).expect("create");
        let with_seeds = create_torrent(&seeded).expect("create");
        assert_ne!(first, with_seeds);
        // Another file of the directory changes; `a` is republished.
        fs::write(&b, vec![9u8; 60_000]).expect("write");
        let again = create_torrent(&plain).expect("create");
        let hash = |bytes: &[u8]| Metainfo::from_bytes(bytes).expect("parses").info_hash;
        assert_eq!(hash(&first), hash(&with_seeds));
        assert_eq!(hash(&first), hash(&again));
        // A changed file does get a new info-hash.
        fs::write(&a, vec![6u8; 100_000]).expect("write");
        assert_ne!(hash(&first), hash(&create_torrent(&plain).expect("create")));

        let decoded = crate::bencode::decode(&with_seeds).expect("bencode");
        let top = decoded.as_dict().expect("dict");
        let urls: Vec<&[u8]> = top
            .get(b"url-list".as_slice())
            .and_then(|v| v.as_list())
            .expect("url-list")
            .iter()
            .filter_map(|v| v.as_bytes())
            .collect();
        assert_eq!(
            urls,
            [&b"http://hq.example/ch/"[..], b"http://hq.example/m/"]
        );
        let info = top
            .get(b"info".as_slice())
            .and_then(|v| v.as_dict())
            .expect("info");
        assert!(info.get(b"creation date".as_slice()).is_none());
        assert!(decoded
            .as_dict()
            .and_then(|d| d.get(b"creation date".as_slice()))
            .is_some());
        assert!(crate::bencode::decode(&first)
            .expect("bencode")
            .as_dict()
            .and_then(|d| d.get(b"url-list".as_slice()))
            .is_none());
    }

    #[test]
    fn suggested_piece_lengths() {
        assert_eq!(suggest_piece_length(0), 16 * 1024);
        assert_eq!(suggest_piece_length(1), 16 * 1024);
        assert_eq!(suggest_piece_length(2000 * 16 * 1024), 16 * 1024);
        assert_eq!(suggest_piece_length(2000 * 16 * 1024 + 1), 32 * 1024);
        assert_eq!(suggest_piece_length(4 << 30), 4 << 20);
        assert_eq!(suggest_piece_length(u64::MAX), 16 << 20);
        for total in [1u64 << 30, 3 << 30, 700 << 20, 20 << 30] {
            let count = total.div_ceil(suggest_piece_length(total));
            assert!((1000..=2000).contains(&count), "{total}: {count}");
        }
    }
}
