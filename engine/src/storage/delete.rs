//! Deleting a torrent's data: its own files and nothing else.
//!
//! Paths are walked the way they were created (see `open.rs`): each directory
//! opened relative to its parent with `O_NOFOLLOW`, so a symlink planted in the
//! download directory cannot steer the deletion elsewhere. Only regular files
//! at the torrent's own paths are unlinked; directories named by the torrent's
//! layout are removed afterwards only if they are empty, deepest first; the
//! download directory itself is never removed.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{io_err, Storage};
use crate::Error;

/// What [`Storage::delete_files`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Files unlinked.
    pub files: Vec<PathBuf>,
    /// Directories removed because they were left empty.
    pub dirs: Vec<PathBuf>,
    /// Paths left alone: not a regular file, or behind a symlink.
    pub skipped: Vec<PathBuf>,
}

fn open_dir_at(at: &OwnedFd, name: &str) -> Result<Option<OwnedFd>, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(at, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the directory `dirs` below `root`; `None` if it is missing or a
/// component is not a real directory (a symlink, a file).
fn walk(root: &OwnedFd, dirs: &[String]) -> Result<Option<OwnedFd>, Errno> {
    let mut fd = rustix::fs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for d in dirs {
        match open_dir_at(&fd, d) {
            Ok(Some(next)) => fd = next,
            Ok(None) | Err(Errno::LOOP | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(fd))
}

fn join(root: &Path, components: &[String]) -> PathBuf {
    components.iter().fold(root.to_path_buf(), |p, c| p.join(c))
}

impl Storage {
    /// Deletes the torrent's files below the download directory, then the
    /// torrent's directories that are left empty. Missing files are fine;
    /// anything that is not a regular file at a torrent path (a symlink, a
    /// directory, a FIFO) is left in place and reported as skipped.
    pub fn delete_files(&self) -> Result<Deleted, Error> {
        let mut done = Deleted::default();
        let root = match rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(done),
            Err(e) => return Err(io_err(&self.root, e.into())),
        };
        let mut dirs: BTreeSet<Vec<String>> = BTreeSet::new();
        for components in &self.components {
            let Some((name, parents)) = components.split_last() else {
                continue;
            };
            for depth in 1..=parents.len() {
                dirs.insert(parents[..depth].to_vec());
            }
            let path = join(&self.root, components);
            let Some(parent) = walk(&root, parents).map_err(|e| io_err(&path, e.into()))? else {
                continue;
            };
            let kind = match rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io_err(&path, e.into())),
            };
            if kind != FileType::RegularFile {
                done.skipped.push(path);
                continue;
            }
            match rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::empty()) {
                Ok(()) => done.files.push(path),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err(&path, e.into())),
            }
        }
        self.remove_parts(&root)?;
        // Deepest first, so a parent is tried after its children.
        let mut dirs: Vec<Vec<String>> = dirs.into_iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
        for components in dirs {
            let Some((name, parents)) = components.split_last() else {
                continue;
            };
            let path = join(&self.root, &components);
            let Some(parent) = walk(&root, parents).map_err(|e| io_err(&path, e.into()))? else {
                continue;
            };
            match rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::REMOVEDIR) {
                Ok(()) => done.dirs.push(path),
                // Someone else's files live there too, or it is gone already.
                Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT | Errno::NOTDIR) => {}
                Err(e) => return Err(io_err(&path, io::Error::from(e))),
            }
        }
        Ok(done)
    }
}
