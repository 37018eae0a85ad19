//! Pieces onto files: reads and writes across file boundaries, verification,
//! resume data. Never touches a path outside the download directory.
//!
//! All I/O is positional (`pread`/`pwrite`), so a [`Storage`] is shared by
//! reference between threads without locks. Errors are the crate's
//! [`Error::Io`] carrying the path concerned; refusals that are not OS errors
//! carry a [`StorageError`] inside the `io::Error` (see [`StorageError::of`]).

mod delete;
mod journal;
mod layout;
mod open;
mod parts;
mod resume;
mod resume_store;
mod vanished;
mod verify;

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use sha1::{Digest, Sha1};

pub use delete::Deleted;
pub use journal::{resume_plan, PieceJournal, MAX_BOOT_ID};
pub use layout::{Layout, LayoutError, Span, Spans};
pub use resume::{
    load_resume, recheck_plan, resume_check, save_resume, FileStamp, RecheckPlan, ResumeData,
    ResumeError,
};
pub use resume_store::{FileResumeStore, ResumeStore};

use crate::metainfo::Info;
use crate::Error;
use open::Access;

/// Refusals by the storage layer, carried inside [`Error::Io`]'s `io::Error`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The torrent's sizes are inconsistent, or a request falls outside the data.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A whole-piece write whose length is not the piece's size.
    #[error("piece {piece} is {expected} bytes, got {got}")]
    PieceLength {
        /// The piece.
        piece: u32,
        /// Its size.
        expected: u64,
        /// Bytes offered.
        got: usize,
    },
    /// A symlink inside the download directory, which could redirect writes.
    #[error("refusing to follow a symlink inside the download directory")]
    Symlink,
    /// Something other than a regular file where a torrent file belongs.
    #[error("not a regular file")]
    NotAFile,
    /// A path component that could escape its directory.
    #[error("unsafe path component {0:?}")]
    UnsafePath(String),
    /// A write to storage opened with [`Storage::open_readonly`].
    #[error("storage is read-only")]
    ReadOnly,
    /// A file that did not exist when opened read-only.
    #[error("file is missing")]
    Missing,
}

impl StorageError {
    /// The storage refusal inside `err`, if that is what it is.
    pub fn of(err: &Error) -> Option<&StorageError> {
        match err {
            Error::Io { source, .. } => source.get_ref()?.downcast_ref(),
            _ => None,
        }
    }
}

impl From<StorageError> for io::Error {
    fn from(e: StorageError) -> io::Error {
        let kind = match &e {
            StorageError::Layout(_) | StorageError::PieceLength { .. } => {
                io::ErrorKind::InvalidInput
            }
            StorageError::UnsafePath(_) => io::ErrorKind::InvalidInput,
            StorageError::ReadOnly => io::ErrorKind::PermissionDenied,
            StorageError::Missing => io::ErrorKind::NotFound,
            StorageError::Symlink | StorageError::NotAFile => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Wraps an I/O error with its path.
fn io_err(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How [`Storage::open_allocated`] reserves disk space for new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocation {
    /// Holes, filled as pieces arrive: no space used up front. On ext4 the
    /// first write into a hole costs block allocation, several times slower.
    #[default]
    Sparse,
    /// `fallocate` the whole file at open: disk full shows at open, not
    /// mid-download, and first writes run at page-cache speed. Falls back to
    /// sparse where the file system cannot preallocate.
    Full,
}

/// A torrent's files, open and ready for positional reads and writes.
///
/// Holds one descriptor per file for its whole life; `Send + Sync`.
#[derive(Debug)]
pub struct Storage {
    layout: Layout,
    root: PathBuf,
    paths: Vec<PathBuf>,
    /// Each file's path below `root`, as the metainfo gives it.
    components: Vec<Vec<String>>,
    /// `None` only for files missing when opened read-only. Locked only to
    /// swap in a file recreated after it was deleted under us.
    files: Vec<RwLock<Option<File>>>,
    hashes: Vec<[u8; 20]>,
    /// BEP 47 pad files: never on disk, read as zeros, writes to them dropped.
    pads: Vec<bool>,
    /// Files that were shorter than the torrent says when opened (new, or
    /// truncated since the last run), then grown.
    grown: Vec<bool>,
    /// Skipped files that were not on disk when opened: their bytes (of
    /// pieces shared with a wanted file) live in the parts file instead,
    /// at the same offset as in the torrent's data (`parts.rs`).
    parked: Vec<AtomicBool>,
    /// The parts file: its name in the download directory, and the file
    /// once something was written to it (or found there at open).
    parts_name: Option<String>,
    parts: RwLock<Option<File>>,
    writable: bool,
}

impl Storage {
    /// Creates directories and files below `download_dir` (files sparse, grown
    /// to their length but never truncated) and opens them all read+write.
    ///
    /// Refuses any symlink below `download_dir`, and non-regular files.
    pub fn open(info: &Info, download_dir: &Path) -> Result<Storage, Error> {
        Self::open_with(info, download_dir, Access::Create, Allocation::Sparse, None)
    }

    /// Like [`Storage::open_allocated`], but files marked in `skipped` that
    /// are not on disk yet are neither created nor grown: the bytes of
    /// theirs that pieces shared with wanted files carry go to the parts
    /// file `.<parts_name>.parts` in the download directory. A skipped file
    /// already on disk is used as it is.
    pub fn open_selected(
        info: &Info,
        download_dir: &Path,
        allocation: Allocation,
        skipped: &[bool],
        parts_name: &str,
    ) -> Result<Storage, Error> {
        Self::open_with(
            info,
            download_dir,
            Access::Create,
            allocation,
            Some((skipped, parts_name)),
        )
    }

    /// Like [`Storage::open`], choosing how disk space is reserved.
    pub fn open_allocated(
        info: &Info,
        download_dir: &Path,
        allocation: Allocation,
    ) -> Result<Storage, Error> {
        Self::open_with(info, download_dir, Access::Create, allocation, None)
    }

    /// Opens existing files read-only, creating nothing; missing files read as
    /// absent pieces. For checking or seeding data already on disk.
    pub fn open_readonly(info: &Info, download_dir: &Path) -> Result<Storage, Error> {
        Self::open_with(
            info,
            download_dir,
            Access::ReadOnly,
            Allocation::Sparse,
            None,
        )
    }

    fn open_with(
        info: &Info,
        dir: &Path,
        access: Access,
        allocation: Allocation,
        selection: Option<(&[bool], &str)>,
    ) -> Result<Storage, Error> {
        let layout = Layout::new(info).map_err(|e| io_err(dir, StorageError::Layout(e).into()))?;
        let root = open::open_root(dir, access)?;
        let mut paths = Vec::with_capacity(info.files.len());
        let mut files = Vec::with_capacity(info.files.len());
        let mut grown = vec![false; info.files.len()];
        let mut parked = Vec::with_capacity(info.files.len());
        for (i, (f, grown)) in info.files.iter().zip(&mut grown).enumerate() {
            let skipped = selection.is_some_and(|(s, _)| s.get(i).copied().unwrap_or(false));
            let absent = skipped
                && !f.pad
                && open::open_file(&root, dir, &f.path, 0, Access::ReadOnly, allocation, grown)?
                    .is_none();
            let file = if f.pad || absent {
                None
            } else {
                open::open_file(&root, dir, &f.path, f.length, access, allocation, grown)?
            };
            parked.push(AtomicBool::new(absent));
            files.push(RwLock::new(file));
            paths.push(f.path.iter().fold(dir.to_path_buf(), |p, c| p.join(c)));
        }
        Ok(Storage {
            layout,
            root: dir.to_path_buf(),
            paths,
            components: info.files.iter().map(|f| f.path.clone()).collect(),
            files,
            hashes: info.piece_hashes.clone(),
            pads: info.files.iter().map(|f| f.pad).collect(),
            grown,
            parts: RwLock::new(match selection {
                Some((_, name)) if parked.iter().any(|p| p.load(Ordering::Relaxed)) => {
                    parts::open_existing(&root, dir, name)?
                }
                _ => None,
            }),
            parked,
            parts_name: selection.map(|(_, name)| parts::file_name(name)),
            writable: access == Access::Create,
        })
    }

    /// The torrent's shape.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The download directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Full path of file `file`, if there is one (a pad file has none).
    pub fn file_path(&self, file: usize) -> Option<&Path> {
        if self.is_pad(file) {
            return None;
        }
        self.paths.get(file).map(PathBuf::as_path)
    }

    /// Whether file `file` was shorter than the torrent says when opened
    /// (and then grown): new, or truncated since it was last written.
    pub fn grown_at_open(&self, file: usize) -> bool {
        self.grown.get(file).copied().unwrap_or(false)
    }

    fn is_pad(&self, file: usize) -> bool {
        self.pads.get(file).copied().unwrap_or(false)
    }

    /// Writes a whole piece; `data.len()` must be the piece's size.
    pub fn write_piece(&self, index: u32, data: &[u8]) -> Result<(), Error> {
        let expected = self
            .layout
            .piece_size(index)
            .map_err(|e| self.refuse(e.into()))?;
        if u64::try_from(data.len()).ok() != Some(expected) {
            return Err(self.refuse(StorageError::PieceLength {
                piece: index,
                expected,
                got: data.len(),
            }));
        }
        self.write_block(index, 0, data)
    }

    /// Writes `data` at `begin` within piece `index`, across files as needed.
    pub fn write_block(&self, index: u32, begin: u32, data: &[u8]) -> Result<(), Error> {
        if !self.writable {
            return Err(self.refuse(StorageError::ReadOnly));
        }
        let spans = self.block_spans(index, begin, data.len())?;
        let mut at = 0usize;
        for s in spans {
            // Spans sum to data.len(), so each length fits usize.
            let n = s.len as usize;
            if !self.is_pad(s.file) {
                self.with_file(s.file, s.offset, true, |f, offset| {
                    f.write_all_at(&data[at..at + n], offset)
                })?;
            }
            at += n;
        }
        Ok(())
    }

    /// Fills `buf` from `begin` within piece `index`. A file shorter than the
    /// torrent says is an `UnexpectedEof` error, never zeros.
    pub fn read_block(&self, index: u32, begin: u32, buf: &mut [u8]) -> Result<(), Error> {
        let spans = self.block_spans(index, begin, buf.len())?;
        self.read_spans(spans, buf)
    }

    /// Reads a whole piece.
    pub fn read_piece(&self, index: u32) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; self.piece_len(index)?];
        self.read_block(index, 0, &mut buf)?;
        Ok(buf)
    }

    /// SHA-1 of piece `index` as it is on disk.
    pub fn hash_piece(&self, index: u32) -> Result<[u8; 20], Error> {
        Ok(Sha1::digest(self.read_piece(index)?).into())
    }

    /// Whether piece `index` on disk matches its hash.
    pub fn verify_piece(&self, index: u32) -> Result<bool, Error> {
        let want = self.expected_hash(index)?;
        Ok(self.hash_piece(index)? == want)
    }

    /// Flushes every file's data to disk (`fdatasync`).
    pub fn sync_all(&self) -> Result<(), Error> {
        for (i, slot) in self.files.iter().enumerate() {
            if let Some(f) = &*read_slot(slot) {
                f.sync_data().map_err(|e| self.file_err(i, e))?;
            }
        }
        self.sync_parts()
            .map_err(|e| io_err(&self.parts_path().unwrap_or_default(), e))?;
        Ok(())
    }

    /// Current size and modification time of every file, in torrent order.
    /// A file missing in read-only mode gets [`FileStamp::MISSING`].
    ///
    /// Take these after [`Storage::sync_all`] when saving resume data.
    pub fn stamps(&self) -> Result<Vec<FileStamp>, Error> {
        let mut out = Vec::with_capacity(self.files.len());
        for (i, slot) in self.files.iter().enumerate() {
            if self.is_parked(i) {
                // A parked file's bytes live in the parts file: its changes are theirs.
                match self.parts_metadata() {
                    Some(m) => {
                        let m = m.map_err(|e| self.file_err(i, e))?;
                        out.push(stamp_of(&m));
                    }
                    None => out.push(FileStamp::MISSING),
                }
                continue;
            }
            let m = match &*read_slot(slot) {
                Some(f) => f.metadata().map_err(|e| self.file_err(i, e))?,
                None => {
                    out.push(FileStamp::MISSING);
                    continue;
                }
            };
            out.push(stamp_of(&m));
        }
        Ok(out)
    }

    fn expected_hash(&self, index: u32) -> Result<[u8; 20], Error> {
        self.hashes.get(index as usize).copied().ok_or_else(|| {
            self.refuse(
                LayoutError::PieceOutOfRange {
                    piece: index,
                    count: self.layout.piece_count(),
                }
                .into(),
            )
        })
    }

    fn piece_len(&self, index: u32) -> Result<usize, Error> {
        let size = self
            .layout
            .piece_size(index)
            .map_err(|e| self.refuse(e.into()))?;
        // Piece sizes are at most u32::MAX (checked by Layout).
        usize::try_from(size).map_err(|_| {
            self.refuse(StorageError::PieceLength {
                piece: index,
                expected: size,
                got: 0,
            })
        })
    }

    fn block_spans(&self, index: u32, begin: u32, len: usize) -> Result<Spans<'_>, Error> {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        self.layout
            .block(index, begin, len)
            .map_err(|e| self.refuse(e.into()))
    }

    /// Reads consecutive spans into `buf`, whose length is the spans' total.
    fn read_spans(&self, spans: Spans<'_>, buf: &mut [u8]) -> Result<(), Error> {
        let mut at = 0usize;
        for s in spans {
            let n = s.len as usize; // spans sum to buf.len()
            if self.is_pad(s.file) {
                buf[at..at + n].fill(0);
            } else {
                self.with_file(s.file, s.offset, false, |f, offset| {
                    f.read_exact_at(&mut buf[at..at + n], offset)
                })?;
            }
            at += n;
        }
        Ok(())
    }

    /// Reads data bytes `start..start + buf.len()` into `buf`.
    fn read_range(&self, start: u64, buf: &mut [u8]) -> Result<(), Error> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        let spans = self
            .layout
            .spans(start, len)
            .map_err(|e| self.refuse(e.into()))?;
        self.read_spans(spans, buf)
    }

    /// Runs `op` on file `i` at `offset` (or on the parts file, at the
    /// same bytes' place there, while the file is parked), naming the file
    /// in any error. `write`: the parts file may be created for it.
    fn with_file<T>(
        &self,
        i: usize,
        offset: u64,
        write: bool,
        op: impl FnOnce(&File, u64) -> io::Result<T>,
    ) -> Result<T, Error> {
        if self.is_parked(i) {
            return self.with_parts(i, offset, write, op);
        }
        let missing = || self.file_err(i, StorageError::Missing.into());
        let slot = read_slot(self.files.get(i).ok_or_else(missing)?);
        let file = slot.as_ref().ok_or_else(missing)?;
        op(file, offset).map_err(|e| self.file_err(i, e))
    }

    fn file_err(&self, i: usize, e: io::Error) -> Error {
        io_err(self.paths.get(i).unwrap_or(&self.root), e)
    }

    fn refuse(&self, e: StorageError) -> Error {
        io_err(&self.root, e.into())
    }
}

/// A file's size and modification time, as resume data records them.
fn stamp_of(m: &std::fs::Metadata) -> FileStamp {
    FileStamp {
        length: m.len(),
        mtime_secs: m.mtime(),
        // The kernel keeps this in 0..1e9; anything else is meaningless.
        mtime_nanos: u32::try_from(m.mtime_nsec()).unwrap_or(0),
    }
}

/// A file slot for reading or writing through; a panic elsewhere while it was
/// held for a swap leaves a valid `Option<File>` behind, so poisoning is moot.
fn read_slot(slot: &RwLock<Option<File>>) -> RwLockReadGuard<'_, Option<File>> {
    slot.read().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `err` is the file system running out of space (or of the user's
/// quota): a condition that may pass, unlike a permission or hardware error.
pub fn is_disk_full(err: &Error) -> bool {
    let source = match err {
        Error::Io { source, .. } | Error::Net(source) => source,
        _ => return false,
    };
    matches!(
        rustix::io::Errno::from_io_error(source),
        Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT)
    )
}

/// Whether `err` means "the data is not (all) there" rather than a failure.
fn is_absent(err: &Error) -> bool {
    matches!(err, Error::Io { source, .. }
        if matches!(source.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::NotFound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Storage>();
    }

    #[test]
    fn disk_full_is_told_apart_from_other_write_errors() {
        let errno = |e: rustix::io::Errno| io_err(Path::new("/d"), io::Error::from(e));
        assert!(is_disk_full(&errno(rustix::io::Errno::NOSPC)));
        assert!(is_disk_full(&errno(rustix::io::Errno::DQUOT)));
        assert!(!is_disk_full(&errno(rustix::io::Errno::IO)));
        assert!(!is_disk_full(&errno(rustix::io::Errno::ACCESS)));
        assert!(!is_disk_full(&io_err(
            Path::new("/d"),
            StorageError::ReadOnly.into()
        )));
    }

    #[test]
    fn storage_error_round_trips_through_io_error() {
        let e = io_err(Path::new("/x"), StorageError::Symlink.into());
        assert!(matches!(StorageError::of(&e), Some(StorageError::Symlink)));
        let other = io_err(Path::new("/x"), io::Error::other("boom"));
        assert!(StorageError::of(&other).is_none());
    }
}
