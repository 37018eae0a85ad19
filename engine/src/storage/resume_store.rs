//! Where resume data is kept between runs. The session only hands over and
//! takes back opaque bytes ([`ResumeData::encode`](super::ResumeData::encode));
//! the agent may keep them in its database, the foreground commands in files.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use super::resume::write_atomic;
use crate::Error;

/// Keeps one blob of resume data per torrent.
///
/// Called from blocking threads (never on the async executor), so
/// implementations may do synchronous I/O. A `load` error is logged and the
/// torrent is fully checked, as if there were no resume data.
pub trait ResumeStore: Send + Sync + std::fmt::Debug {
    /// The bytes saved for `info_hash`, if any.
    fn load(&self, info_hash: &[u8; 20]) -> io::Result<Option<Vec<u8>>>;
    /// Replaces what is saved for `info_hash`; must be durable when it returns.
    fn save(&self, info_hash: &[u8; 20], bytes: &[u8]) -> io::Result<()>;
    /// Forgets `info_hash` (resume data and journal); forgetting what is not
    /// there is not an error.
    fn remove(&self, info_hash: &[u8; 20]) -> io::Result<()>;
    /// The verified-piece journal saved for `info_hash`, if any (the bytes of
    /// [`PieceJournal::encode`](super::PieceJournal::encode)).
    fn load_journal(&self, info_hash: &[u8; 20]) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the journal of `info_hash`. Called many times a second while
    /// downloading; it must survive the death of the process, not a power
    /// loss (the journal is trusted on the same boot only), so no fsync.
    fn save_journal(&self, info_hash: &[u8; 20], bytes: &[u8]) -> io::Result<()>;
}

/// Resume data as files `<dir>/<info-hash hex>.resume`, each replaced
/// atomically (temporary file, fsync, rename, fsync of the directory); the
/// journal as `<hex>.journal`, replaced by a rename without fsync.
#[derive(Debug, Clone)]
pub struct FileResumeStore {
    dir: PathBuf,
}

/// Far above any real torrent's resume data (a bit per piece and 20 bytes per
/// file), so a stray huge file cannot exhaust memory.
const MAX_RESUME_BYTES: u64 = 64 << 20;

impl FileResumeStore {
    /// A store in `dir`, created on the first save.
    pub fn new(dir: PathBuf) -> FileResumeStore {
        FileResumeStore { dir }
    }

    /// Where the data of `info_hash` is kept.
    pub fn path(&self, info_hash: &[u8; 20]) -> PathBuf {
        self.dir.join(format!("{}.resume", hex(info_hash)))
    }

    /// Where the journal of `info_hash` is kept.
    pub fn journal_path(&self, info_hash: &[u8; 20]) -> PathBuf {
        self.dir.join(format!("{}.journal", hex(info_hash)))
    }
}

fn hex(info_hash: &[u8; 20]) -> String {
    info_hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_capped(path: &std::path::Path) -> io::Result<Option<Vec<u8>>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    f.take(MAX_RESUME_BYTES).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

fn remove_if_there(path: &std::path::Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn into_io(e: Error) -> io::Error {
    match e {
        Error::Io { path, source } => {
            io::Error::new(source.kind(), format!("{}: {source}", path.display()))
        }
        other => io::Error::other(other.to_string()),
    }
}

impl ResumeStore for FileResumeStore {
    fn load(&self, info_hash: &[u8; 20]) -> io::Result<Option<Vec<u8>>> {
        read_capped(&self.path(info_hash))
    }

    fn save(&self, info_hash: &[u8; 20], bytes: &[u8]) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        write_atomic(&self.path(info_hash), bytes).map_err(into_io)
    }

    fn remove(&self, info_hash: &[u8; 20]) -> io::Result<()> {
        remove_if_there(&self.journal_path(info_hash))?;
        remove_if_there(&self.path(info_hash))
    }

    fn load_journal(&self, info_hash: &[u8; 20]) -> io::Result<Option<Vec<u8>>> {
        read_capped(&self.journal_path(info_hash))
    }

    fn save_journal(&self, info_hash: &[u8; 20], bytes: &[u8]) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.journal_path(info_hash);
        let tmp = self.dir.join(format!(".{}.journal.tmp", hex(info_hash)));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileResumeStore::new(dir.path().join("resume"));
        let key = [7u8; 20];
        assert_eq!(store.load(&key).unwrap(), None);
        store.save(&key, b"first").unwrap();
        store.save(&key, b"second").unwrap();
        assert_eq!(store.load(&key).unwrap().as_deref(), Some(&b"second"[..]));
        assert!(store
            .path(&key)
            .ends_with(format!("{}.resume", "07".repeat(20))));
        store.save_journal(&key, b"j1").unwrap();
        store.save_journal(&key, b"j2").unwrap();
        assert_eq!(
            store.load_journal(&key).unwrap().as_deref(),
            Some(&b"j2"[..])
        );
        store.remove(&key).unwrap();
        assert_eq!(store.load(&key).unwrap(), None);
        assert_eq!(store.load_journal(&key).unwrap(), None);
        store.remove(&key).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("resume"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "no temporary files left behind");
    }
}
