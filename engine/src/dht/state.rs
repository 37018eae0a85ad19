//! The DHT's state file: the node id and routing table as
//! [`capwise_dht::Dht::save`] encodes them (bencode), written atomically
//! (a temporary file, fsync, rename). A missing file is a first start; one
//! that cannot be read is reported and a fresh node starts, never a panic.

use std::io::{self, Write};
use std::path::Path;

/// The file's bytes; None when it does not exist or cannot be read (the
/// latter with a warning).
pub fn load(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "no saved DHT state; starting with a fresh node id");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the saved DHT state; starting with a fresh node id");
            None
        }
    }
}

/// Replaces the file with `bytes`, atomically.
pub fn store(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_file_loads_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.dat");
        assert_eq!(load(&path), None);
        store(&path, b"d2:id20:aaaaaaaaaaaaaaaaaaaae").unwrap();
        assert_eq!(
            load(&path).as_deref(),
            Some(&b"d2:id20:aaaaaaaaaaaaaaaaaaaae"[..])
        );
        store(&path, b"de").unwrap();
        assert_eq!(load(&path).as_deref(), Some(&b"de"[..]));
        assert!(!dir.path().join("dht.dat.tmp").exists());
    }
}
