//! Skipped files kept off the disk. A piece shared by a skipped and a wanted
//! file must be downloaded whole to be verified and served; the skipped
//! file's share of it goes to one sparse parts file per torrent
//! (`.<name>.parts` in the download directory, like libtorrent's), at the
//! bytes' own offset in the torrent's data, so the mapping needs no index
//! and a crash cannot leave it inconsistent. Only the boundary pieces' bytes
//! are ever written there; the rest of it stays a hole.
//!
//! When a parked file becomes wanted, it is created and the bytes of the
//! pieces we have are copied over from the parts file; once no file is
//! parked, the parts file is removed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use rustix::fs::AtFlags;
use rustix::io::Errno;

use super::open::{self, Access};
use super::{io_err, read_slot, Allocation, Storage, StorageError};
use crate::Error;

/// Bytes copied per read when a parked file is filled from the parts file.
const COPY_CHUNK: usize = 1 << 20;

/// The parts file's name for a torrent named `name` (callers pass the
/// info-hash in hex: unique, and a safe path component).
pub(super) fn file_name(name: &str) -> String {
    format!(".{name}.parts")
}

/// The parts file if it is there already (from an earlier run).
pub(super) fn open_existing(
    root: &std::os::fd::OwnedFd,
    dir: &std::path::Path,
    name: &str,
) -> Result<Option<File>, Error> {
    let components = [file_name(name)];
    let mut grown = false;
    let found = open::open_file(
        root,
        dir,
        &components,
        0,
        Access::ReadOnly,
        Allocation::Sparse,
        &mut grown,
    )?;
    if found.is_none() {
        return Ok(None);
    }
    open::open_file(
        root,
        dir,
        &components,
        0,
        Access::Create,
        Allocation::Sparse,
        &mut grown,
    )
}

impl Storage {
    /// Whether file `file` is skipped and kept off the disk.
    pub fn is_parked(&self, file: usize) -> bool {
        self.parked
            .get(file)
            .is_some_and(|p| p.load(Ordering::Acquire))
    }

    /// Files kept off the disk.
    pub fn parked_files(&self) -> Vec<usize> {
        (0..self.parked.len())
            .filter(|&f| self.is_parked(f))
            .collect()
    }

    /// The parts file's path, if this storage may have one.
    pub fn parts_path(&self) -> Option<std::path::PathBuf> {
        self.parts_name.as_ref().map(|n| self.root.join(n))
    }

    /// Runs `op` on the parts file at the place of file `i`'s byte `offset`.
    pub(super) fn with_parts<T>(
        &self,
        i: usize,
        offset: u64,
        write: bool,
        op: impl FnOnce(&File, u64) -> io::Result<T>,
    ) -> Result<T, Error> {
        let path = self.parts_path().unwrap_or_else(|| self.root.clone());
        let at = self
            .layout
            .file_offset(i)
            .and_then(|start| start.checked_add(offset))
            .ok_or_else(|| io_err(&path, StorageError::Missing.into()))?;
        {
            let slot = read_slot(&self.parts);
            if let Some(f) = slot.as_ref() {
                return op(f, at).map_err(|e| io_err(&path, e));
            }
        }
        if !write || !self.writable {
            return Err(io_err(&path, StorageError::Missing.into()));
        }
        let mut slot = self.parts.write().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            let name = self.parts_name.clone().unwrap_or_default();
            let root = open::open_root(&self.root, Access::Create)?;
            *slot = open::open_file(
                &root,
                &self.root,
                &[name],
                0,
                Access::Create,
                Allocation::Sparse,
                &mut false,
            )?;
        }
        let f = slot
            .as_ref()
            .ok_or_else(|| io_err(&path, StorageError::Missing.into()))?;
        op(f, at).map_err(|e| io_err(&path, e))
    }

    /// File `file` is wanted again: create it and copy into it what the
    /// parts file holds of it. Only its first and last pieces can be there
    /// (they alone may be shared with wanted files; its inner pieces were
    /// never wanted while it was parked), so those two ranges are copied,
    /// whether verified yet or not. Nothing else may write the file
    /// meanwhile (the caller holds the torrent's write lock). Removes the
    /// parts file once no file is parked. A no-op for a file on disk.
    pub fn unpark_file(&self, file: usize) -> Result<(), Error> {
        if !self.is_parked(file) {
            return Ok(());
        }
        if !self.writable {
            return Err(self.refuse(StorageError::ReadOnly));
        }
        let (Some(slot), Some(components), Some(length), Some(start)) = (
            self.files.get(file),
            self.components.get(file),
            self.layout.file_length(file),
            self.layout.file_offset(file),
        ) else {
            return Err(self.file_err(file, StorageError::Missing.into()));
        };
        let root = open::open_root(&self.root, Access::Create)?;
        let fresh = open::open_file(
            &root,
            &self.root,
            components,
            length,
            Access::Create,
            Allocation::Sparse,
            &mut false,
        )?
        .ok_or_else(|| self.file_err(file, StorageError::Missing.into()))?;
        let pieces = self.layout.file_pieces(file).unwrap_or(0..0);
        let ends = [pieces.start, pieces.end.saturating_sub(1)];
        let parts_path = self.parts_path().unwrap_or_default();
        if let (false, Some(parts)) = (pieces.is_empty(), read_slot(&self.parts).as_ref()) {
            let mut buf = vec![0u8; COPY_CHUNK];
            for (k, &piece) in ends.iter().enumerate() {
                if k == 1 && ends[0] == ends[1] {
                    break;
                }
                let range = self
                    .layout
                    .piece_range(piece)
                    .map_err(|e| self.refuse(e.into()))?;
                let mut at = range.start.max(start);
                let to = range.end.min(start + length);
                while at < to {
                    let n = ((to - at) as usize).min(COPY_CHUNK);
                    let got =
                        read_up_to(parts, &mut buf[..n], at).map_err(|e| io_err(&parts_path, e))?;
                    if got == 0 {
                        break; // past the parts file's end: nothing was written there
                    }
                    fresh
                        .write_all_at(&buf[..got], at - start)
                        .map_err(|e| self.file_err(file, e))?;
                    at += got as u64;
                }
            }
        }
        fresh.sync_data().map_err(|e| self.file_err(file, e))?;
        {
            let mut slot = slot.write().unwrap_or_else(PoisonError::into_inner);
            *slot = Some(fresh);
            self.parked[file].store(false, Ordering::Release);
        }
        if self.parked_files().is_empty() {
            self.remove_parts(&root)?;
        }
        Ok(())
    }

    /// Deletes the parts file (no file is parked any more, or the torrent's
    /// data is being deleted).
    pub(super) fn remove_parts(&self, root: &std::os::fd::OwnedFd) -> Result<(), Error> {
        let Some(name) = self.parts_name.as_deref() else {
            return Ok(());
        };
        *self.parts.write().unwrap_or_else(PoisonError::into_inner) = None;
        match rustix::fs::unlinkat(root, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err(&self.root.join(name), e.into())),
        }
    }

    /// The parts file's metadata, for a parked file's resume stamp.
    pub(super) fn parts_metadata(&self) -> Option<io::Result<std::fs::Metadata>> {
        read_slot(&self.parts).as_ref().map(File::metadata)
    }

    /// Flushes the parts file.
    pub(super) fn sync_parts(&self) -> io::Result<()> {
        match read_slot(&self.parts).as_ref() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

/// Reads up to `buf.len()` bytes at `offset`, fewer only at the end of the file.
fn read_up_to(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
