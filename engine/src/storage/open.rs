//! Opening a torrent's files without ever leaving the download directory.
//!
//! Every component is opened relative to its parent's descriptor with
//! `O_NOFOLLOW`, so a symlink planted anywhere below the download directory
//! (even one swapped in between our checks) makes the open fail instead of
//! redirecting writes. The download directory itself may be a symlink: that is
//! the user's choice, not the torrent's.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FallocateFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{io_err, Allocation, StorageError};
use crate::Error;

/// Whether to create what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Create directories and files; open read+write.
    Create,
    /// Open existing files read-only; missing ones are `None`.
    ReadOnly,
}

/// Opens (and with [`Access::Create`], creates) the download directory.
pub(super) fn open_root(dir: &Path, access: Access) -> Result<OwnedFd, Error> {
    if access == Access::Create {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(dir, e.into()))
}

/// Refuses components that could climb out of or alias their parent; the
/// parser already refuses these, this is a second line of defence.
fn check_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\0'])
}

/// Opens the file at `components` below `root`, sized to at least `length`
/// when creating (`grown` tells whether it was shorter). `Ok(None)` only in
/// read-only mode when something is missing.
pub(super) fn open_file(
    root: &OwnedFd,
    root_path: &Path,
    components: &[String],
    length: u64,
    access: Access,
    allocation: Allocation,
    grown: &mut bool,
) -> Result<Option<File>, Error> {
    let mut path = root_path.to_path_buf();
    let Some((name, dirs)) = components.split_last() else {
        return Err(io_err(
            &path,
            StorageError::UnsafePath(String::new()).into(),
        ));
    };
    if let Some(bad) = components.iter().find(|c| !check_component(c)) {
        return Err(io_err(&path, StorageError::UnsafePath(bad.clone()).into()));
    }
    let mut parent: Option<OwnedFd> = None;
    for dir in dirs {
        path.push(dir);
        let at = parent.as_ref().unwrap_or(root);
        match open_dir(at, dir, access) {
            Ok(Some(fd)) => parent = Some(fd),
            Ok(None) => return Ok(None),
            Err(e) => return Err(diagnose(at, dir, &path, e)),
        }
    }
    path.push(name);
    let at = parent.as_ref().unwrap_or(root);
    // NONBLOCK so a FIFO planted at the name cannot hang us before we refuse it.
    let base = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let flags = match access {
        Access::Create => base | OFlags::RDWR | OFlags::CREATE,
        Access::ReadOnly => base | OFlags::RDONLY,
    };
    let fd = match rustix::fs::openat(at, name.as_str(), flags, Mode::from_raw_mode(0o644)) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if access == Access::ReadOnly => return Ok(None),
        Err(e) => return Err(diagnose(at, name, &path, e)),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| io_err(&path, e))?;
    if !meta.is_file() {
        return Err(io_err(&path, StorageError::NotAFile.into()));
    }
    if access == Access::Create {
        *grown = meta.len() < length;
        grow(&file, meta.len(), length, allocation).map_err(|e| io_err(&path, e))?;
    }
    Ok(Some(file))
}

/// Makes `file` at least `length` bytes long. Only ever grows: a longer file
/// may hold someone's data past our end.
fn grow(file: &File, current: u64, length: u64, allocation: Allocation) -> io::Result<()> {
    if current >= length {
        // Even a no-op fallocate bumps mtime, which would void resume data.
        return Ok(());
    }
    if allocation == Allocation::Full {
        // Allocates only the holes; existing data is kept, size never shrinks.
        match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, length) {
            Ok(()) => return Ok(()),
            // Not every file system can; sparse is the fallback, not a failure.
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    file.set_len(length)
}

/// Opens directory `name` under `at`, creating it if allowed.
fn open_dir(at: &OwnedFd, name: &str, access: Access) -> Result<Option<OwnedFd>, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(at, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) if access == Access::ReadOnly => Ok(None),
        Err(Errno::NOENT) => {
            match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            rustix::fs::openat(at, name, flags, Mode::empty()).map(Some)
        }
        Err(e) => Err(e),
    }
}

/// Turns a failed open into an error that says *why*, naming symlinks plainly.
fn diagnose(at: &OwnedFd, name: &str, path: &Path, e: Errno) -> Error {
    let is_link = rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
    if is_link {
        return io_err(path, StorageError::Symlink.into());
    }
    io_err(path, io::Error::from(e))
}
