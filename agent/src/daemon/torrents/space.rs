//! The free-space check before a download starts: a torrent whose wanted
//! files cannot fit in the download directory's file system is refused
//! when it is added, with the figures, instead of failing with "disk full"
//! half-way. Files are sparse, so a file already there counts with the
//! blocks it holds; skipped files count nothing. A magnet link is added
//! before its size is known: once its metadata is in, a torrent that does
//! not fit is held (state `error`, with the figures) before its data
//! grows, as is one restored where it no longer fits; `capwise resume`
//! checks again.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use capwise_engine::metainfo::Info;
use capwise_engine::session::FileChoice;

use super::{TorrentError, Torrents};

/// Bytes the wanted files still need below `dir`: each wanted file's
/// length less what it already holds on disk.
pub(super) fn bytes_needed(info: &Info, choice: &FileChoice, dir: &Path) -> u64 {
    let priorities = choice.resolve(info);
    info.files
        .iter()
        .zip(&priorities)
        .filter(|(f, p)| !f.pad && p.is_wanted())
        .map(|(f, _)| {
            let path = f.path.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
            let held = std::fs::symlink_metadata(&path)
                .ok()
                .filter(|m| m.is_file())
                .map_or(0, |m| m.blocks().saturating_mul(512));
            f.length.saturating_sub(held)
        })
        .sum()
}

/// Bytes an unprivileged writer may still use on `dir`'s file system.
fn bytes_available(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Refuses when `needed` bytes do not fit in `dir`; a file system that
/// cannot say is given the benefit of the doubt.
pub(super) fn check_fits(needed: u64, dir: &Path) -> Result<(), TorrentError> {
    let Ok(available) = bytes_available(dir) else {
        return Ok(());
    };
    if needed > available {
        return Err(TorrentError::NoSpace(format!(
            "not enough free space in {}: the download needs {} more, {} are free \
             (free some space, choose another directory with -d, or skip files with --only/--exclude)",
            dir.display(),
            crate::units::format_size(needed),
            crate::units::format_size(available)
        )));
    }
    Ok(())
}

impl Torrents {
    /// Refuses, with the figures, when torrent `id`'s wanted files (its
    /// stored file choice) cannot fit in `dir`.
    pub(super) fn fits(&self, info: &Info, id: &str, dir: &Path) -> Result<(), TorrentError> {
        check_fits(bytes_needed(info, &self.file_choice(id), dir), dir)
    }

    /// Why torrent `id`'s wanted files cannot fit in `dir`, if they cannot.
    pub(super) fn lacks_room(&self, info: &Info, id: &str, dir: &Path) -> Option<String> {
        self.fits(info, id, dir).err().map(|e| e.to_string())
    }

    /// A magnet's metadata is in: the torrent is held if it cannot fit.
    pub(super) async fn hold_unless_it_fits(&self, id: &str, info: &Info) {
        let Some(dir) = self.entries().get(id).map(|e| e.download_dir.clone()) else {
            return;
        };
        let Some(why) = self.lacks_room(info, id, &dir) else {
            return;
        };
        tracing::error!(%id, reason = %why, "held: the torrent does not fit");
        if let Some(entry) = self.entries().get_mut(id) {
            entry.no_space = Some(why);
        }
        self.settle_now().await;
    }

    /// Before a resume: a torrent held for want of room goes on only if
    /// it fits now.
    pub(super) fn room_again(&self, id: &str) -> Result<(), TorrentError> {
        let (handle, dir) = match self.entries().get(id) {
            Some(e) if e.no_space.is_some() => (e.handle.clone(), e.download_dir.clone()),
            _ => return Ok(()),
        };
        if let Some(metainfo) = handle.metainfo() {
            self.fits(&metainfo.info, id, &dir)?;
        }
        if let Some(entry) = self.entries().get_mut(id) {
            entry.no_space = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_engine::metainfo::FileEntry;
    use capwise_engine::priority::Priority;

    fn info(lengths: &[u64]) -> Info {
        let mut offset = 0;
        let files = lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| {
                let f = FileEntry {
                    path: vec!["t".into(), format!("f{i}")],
                    length,
                    offset,
                    pad: false,
                };
                offset += length;
                f
            })
            .collect();
        Info {
            name: "t".into(),
            piece_length: 1 << 20,
            piece_hashes: vec![[0; 20]; offset.div_ceil(1 << 20) as usize],
            files,
            total_length: offset,
            private: false,
            notes: Vec::new(),
        }
    }

    #[test]
    fn skipped_files_and_data_already_there_are_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let info = info(&[1_000_000, 3_000_000, 5_000_000]);
        let all = FileChoice::default();
        assert_eq!(bytes_needed(&info, &all, dir.path()), 9_000_000);
        let skip_last = FileChoice {
            priorities: vec![Priority::Normal, Priority::Normal, Priority::Skip],
            ..FileChoice::default()
        };
        assert_eq!(bytes_needed(&info, &skip_last, dir.path()), 4_000_000);
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/f1"), vec![7u8; 3_000_000]).unwrap();
        assert!(bytes_needed(&info, &skip_last, dir.path()) <= 1_000_000);
    }

    #[test]
    fn a_download_larger_than_the_free_space_is_refused_with_the_figures() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_fits(1, dir.path()).is_ok());
        let err = check_fits(u64::MAX / 2, dir.path()).unwrap_err();
        assert!(matches!(err, TorrentError::NoSpace(_)));
        let text = err.to_string();
        assert!(
            text.contains("not enough free space") && text.contains("are free"),
            "{text}"
        );
    }
}
