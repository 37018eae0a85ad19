//! A torrent's file choice: which files are wanted, how soon, and in which
//! order, as the user gave it (priorities, or globs at add time), and each
//! file's progress. The picker works on pieces (`capwise_proto::priority`);
//! this is where files become pieces and skipped files stay off the disk
//! (`storage/parts.rs`).

use std::sync::Arc;
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::torrent::TorrentShared;

use crate::bitfield::Bitfield;
use crate::metainfo::Info;
use crate::priority::{piece_priorities, Priority};
use crate::storage::Layout;
use crate::{Error, Result};

/// Which files a torrent downloads, and how.
#[derive(Debug, Clone, Default)]
pub struct FileChoice {
    /// One per file, in the torrent's order (as [`TorrentHandle::files`]
    /// lists them); empty: every file `Normal`, or as `filter` says.
    ///
    /// [`TorrentHandle::files`]: super::TorrentHandle::files
    pub priorities: Vec<Priority>,
    /// Globs given when the torrent was added, applied once its file list
    /// is known (at once for a .torrent, when the metadata arrives for a
    /// magnet link). Ignored when `priorities` is given.
    pub filter: Option<FileFilter>,
    /// Pieces in order (each wanted file's first and last piece first), for
    /// media played while it downloads.
    pub sequential: bool,
}

impl FileChoice {
    /// Each file's priority for `info`: the explicit list when it fits, else
    /// the filter's, else all `Normal`.
    pub fn resolve(&self, info: &Info) -> Vec<Priority> {
        if self.priorities.len() == info.files.len() {
            return self.priorities.clone();
        }
        match &self.filter {
            Some(f) => f.priorities(info),
            None => vec![Priority::Normal; info.files.len()],
        }
    }
}

/// `--only` and `--exclude` globs over the files' paths inside the torrent
/// (`season 1/*.mkv`; a `*` also crosses `/`, so `*.mkv` finds them in any
/// folder). A file is wanted when it matches an `only` glob (or there are
/// none) and no `exclude` glob.
#[derive(Debug, Clone)]
pub struct FileFilter {
    only: GlobSet,
    exclude: GlobSet,
    has_only: bool,
}

impl FileFilter {
    /// Compiles the globs; a bad one is an [`Error::FileSelection`] naming it.
    pub fn new(only: &[String], exclude: &[String]) -> Result<FileFilter> {
        Ok(FileFilter {
            only: globs(only)?,
            exclude: globs(exclude)?,
            has_only: !only.is_empty(),
        })
    }

    /// Each file's priority: `Normal` when wanted, else `Skip`.
    pub fn priorities(&self, info: &Info) -> Vec<Priority> {
        info.files
            .iter()
            .map(|f| {
                let path = inner_path(info, &f.path);
                let wanted =
                    (!self.has_only || self.only.is_match(&path)) && !self.exclude.is_match(&path);
                if wanted {
                    Priority::Normal
                } else {
                    Priority::Skip
                }
            })
            .collect()
    }
}

fn globs(patterns: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| Error::FileSelection(format!("glob {p:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map_err(|e| Error::FileSelection(format!("globs: {e}")))
}

/// A file's path inside the torrent, `/`-separated, without the torrent's
/// own folder (a multi-file torrent's first component is its name).
fn inner_path(info: &Info, components: &[String]) -> String {
    let skip = usize::from(components.len() > 1 && components[0] == info.name);
    components[skip..].join("/")
}

/// One file of a torrent, as `capwise files` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProgress {
    /// Its path inside the torrent, `/`-separated, without the torrent's folder.
    pub path: String,
    /// Its length in bytes.
    pub length: u64,
    /// Its bytes in verified pieces.
    pub bytes_have: u64,
    /// How much it is wanted.
    pub priority: Priority,
    /// A BEP 47 pad file (filler between files, never on disk).
    pub pad: bool,
}

/// Every file's progress, from the verified pieces.
pub fn file_progress(
    info: &Info,
    layout: &Layout,
    have: &Bitfield,
    priorities: &[Priority],
) -> Vec<FileProgress> {
    info.files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut bytes_have = 0;
            for piece in layout.file_pieces(i).unwrap_or(0..0) {
                if !have.has(piece) {
                    continue;
                }
                if let Ok(r) = layout.piece_range(piece) {
                    let end = (f.offset + f.length).min(r.end);
                    bytes_have += end.saturating_sub(r.start.max(f.offset));
                }
            }
            FileProgress {
                path: inner_path(info, &f.path),
                length: f.length,
                bytes_have,
                priority: priorities.get(i).copied().unwrap_or_default(),
                pad: f.pad,
            }
        })
        .collect()
}

/// The pieces' priorities for `files` (one per file of `info`).
pub(crate) fn pieces_for(info: &Info, files: &[Priority], sequential: bool) -> Vec<Priority> {
    let lengths: Vec<u64> = info.files.iter().map(|f| f.length).collect();
    // Pad files are never wanted on their own; their pieces follow their neighbours.
    let files: Vec<Priority> = info
        .files
        .iter()
        .zip(files)
        .map(|(f, &p)| if f.pad { Priority::Skip } else { p })
        .collect();
    piece_priorities(info.piece_length, &lengths, &files, sequential)
}

/// Which files are skipped (to be kept off the disk when absent).
pub(crate) fn skipped(files: &[Priority]) -> Vec<bool> {
    files.iter().map(|p| !p.is_wanted()).collect()
}

/// A download directory's parts file name for a torrent: its info-hash in hex.
pub(crate) fn parts_name(info_hash: &[u8; 20]) -> String {
    info_hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl TorrentShared {
    /// Each file's priority and whether pieces go in order.
    pub(crate) fn file_state(&self) -> (Vec<Priority>, bool) {
        self.files.lock().expect("files lock").clone()
    }

    /// Each file with its progress.
    pub(crate) fn files(&self) -> Vec<FileProgress> {
        let (priorities, _) = self.file_state();
        let have = self.lock_core().swarm.have().clone();
        file_progress(
            &self.metainfo.info,
            self.storage.layout(),
            &have,
            &priorities,
        )
    }

    /// See [`TorrentHandle::set_files`](super::TorrentHandle::set_files).
    pub(crate) async fn set_files(
        self: &Arc<Self>,
        priorities: Vec<Priority>,
        sequential: bool,
    ) -> Result<()> {
        let info = &self.metainfo.info;
        if priorities.len() != info.files.len() {
            return Err(Error::FileSelection(format!(
                "{} priorities given for {} files",
                priorities.len(),
                info.files.len()
            )));
        }
        let unpark: Vec<usize> = priorities
            .iter()
            .enumerate()
            .filter(|&(f, p)| p.is_wanted() && self.storage.is_parked(f))
            .map(|(f, _)| f)
            .collect();
        if !unpark.is_empty() {
            let me = self.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                // No piece write may land in the parts file while it is copied.
                let _writes = me.write_lock.lock().unwrap_or_else(|e| e.into_inner());
                for f in unpark {
                    me.storage.unpark_file(f)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| Error::Net(std::io::Error::other(e.to_string())))??;
        }
        let pieces = pieces_for(info, &priorities, sequential);
        *self.files.lock().expect("files lock") = (priorities, sequential);
        let mut core = self.lock_core();
        core.swarm
            .set_priorities(&pieces, sequential, Instant::now());
        self.dispatch(core);
        self.publish_now();
        Ok(())
    }
}
