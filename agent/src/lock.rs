//! Exclusive locks that keep two processes apart: one capwise (`run`, `get`
//! or `seed`) per state directory, and one writer per torrent's data
//! whatever the state directories (a lock file beside the data).
//!
//! Both are `flock`s (released by the kernel when the process ends, even on
//! kill -9), so a stale file never blocks anyone. The file holds who has it
//! (`{"pid": N, "command": "run"}`) for the refusal's message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

/// The state directory's lock file.
pub const STATE_LOCK_FILE: &str = "capwise.lock";

/// Who holds a lock, as written in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The process id.
    pub pid: u32,
    /// `run`, `get` or `seed`.
    pub command: String,
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
    /// Whether the file goes away with the lock (the data locks do: they
    /// sit in the user's download directory).
    remove_on_drop: bool,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.remove_on_drop {
            // Unlinked while still locked: a process that opened the old file
            // meanwhile sees, once it has the lock, that the path no longer
            // names its file, and starts over (see `acquire`).
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = flock(&self.file, FlockOperation::Unlock);
    }
}

/// Why a lock was not taken.
enum Refusal {
    /// Another process holds it (who, if its file says).
    Held(Option<Holder>),
    /// The file cannot be created or opened.
    Io(std::io::Error),
}

/// Takes the exclusive lock on `path`, creating the file; never waits.
fn acquire(path: &Path, command: &str, remove_on_drop: bool) -> Result<Lock, Refusal> {
    loop {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(Refusal::Io)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(Refusal::Held(read_holder(&mut file)))
            }
            Err(e) => return Err(Refusal::Io(e.into())),
        }
        // The holder before us may have unlinked the file we opened.
        let ours = file.metadata().map_err(Refusal::Io)?;
        match std::fs::symlink_metadata(path) {
            Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
            Ok(_) | Err(_) => continue,
        }
        let holder = Holder {
            pid: std::process::id(),
            command: command.to_string(),
        };
        let json = serde_json::to_vec(&holder).unwrap_or_default();
        // Best effort: the lock itself is what keeps others out.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(&json));
        return Ok(Lock {
            file,
            path: path.to_path_buf(),
            remove_on_drop,
        });
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(4096).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn describe(holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!("another capwise (pid {}, `capwise {}`)", h.pid, h.command),
        None => "another capwise".to_string(),
    }
}

/// Locks `state_dir` for this process (`command`: `run`, `get` or `seed`).
/// Refused, naming the holder, if another capwise uses it; `get` and `seed`
/// beside a running agent are told to add the torrent to it instead.
pub fn lock_state_dir(state_dir: &Path, command: &str) -> Result<Lock> {
    let path = state_dir.join(STATE_LOCK_FILE);
    match acquire(&path, command, false) {
        Ok(lock) => Ok(lock),
        Err(Refusal::Io(e)) => {
            Err(anyhow::Error::new(e)).with_context(|| format!("cannot lock {}", path.display()))
        }
        Err(Refusal::Held(holder)) => {
            let who = describe(holder.as_ref());
            let dir = state_dir.display();
            let hint = match (command, holder.as_ref().map(|h| h.command.as_str())) {
                ("get" | "seed", Some("run")) => {
                    "; the agent runs there: add the torrent to it with `capwise add TORRENT`, \
                     or give `--state-dir DIR` for a separate state directory"
                        .to_string()
                }
                ("get" | "seed", _) => {
                    "; give `--state-dir DIR` for a separate state directory".to_string()
                }
                _ => String::new(),
            };
            bail!("{who} is using {dir}{hint}")
        }
    }
}

/// The data lock's file for a torrent in `download_dir`: hidden, one per
/// info-hash, removed when the lock is let go.
pub fn data_lock_path(download_dir: &Path, info_hash_hex: &str) -> PathBuf {
    download_dir.join(format!(".capwise-{info_hash_hex}.lock"))
}

/// Locks the data of torrent `info_hash_hex` (named `name`) in
/// `download_dir`, so that no other process writes its files while this one
/// has it. `Ok(None)` when the directory takes no new file (read-only):
/// then nothing can write the torrent's files there anyway, unless they are
/// writable themselves, and the lock falls back to the torrent's top entry.
pub fn lock_data(
    download_dir: &Path,
    info_hash_hex: &str,
    name: &str,
    command: &str,
) -> Result<Option<Lock>> {
    let path = data_lock_path(download_dir, info_hash_hex);
    let refused = |holder: Option<Holder>| {
        anyhow::anyhow!(
            "{} is using the data of '{name}' in {}; two processes must not write the same files",
            describe(holder.as_ref()),
            download_dir.display()
        )
    };
    match acquire(&path, command, true) {
        Ok(lock) => Ok(Some(lock)),
        Err(Refusal::Held(holder)) => Err(refused(holder)),
        Err(Refusal::Io(e))
            if matches!(
                e.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
                Some(rustix::io::Errno::ROFS | rustix::io::Errno::ACCESS | rustix::io::Errno::PERM)
            ) =>
        {
            // A directory we cannot write to: lock the torrent's own top
            // entry (file or directory) if there is one; there is no holder
            // to name then.
            let top = download_dir.join(name);
            let Ok(file) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&top)
            else {
                return Ok(None);
            };
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => Ok(Some(Lock {
                    file,
                    path: top,
                    remove_on_drop: false,
                })),
                Err(rustix::io::Errno::WOULDBLOCK) => Err(refused(None)),
                Err(_) => Ok(None),
            }
        }
        Err(Refusal::Io(e)) => Err(anyhow::Error::new(e))
            .with_context(|| format!("cannot lock the data of '{name}' ({})", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_is_locked_once_and_the_refusal_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_state_dir(dir.path(), "run").unwrap();
        // flock locks conflict between open files, even in one process.
        let e = lock_state_dir(dir.path(), "run").unwrap_err().to_string();
        let pid = std::process::id();
        assert!(
            e.contains(&format!(
                "another capwise (pid {pid}, `capwise run`) is using {}",
                dir.path().display()
            )),
            "{e}"
        );
        let e = lock_state_dir(dir.path(), "get").unwrap_err().to_string();
        assert!(
            e.contains("capwise add") && e.contains("--state-dir"),
            "{e}"
        );
        drop(first);
        let again = lock_state_dir(dir.path(), "get").unwrap();
        let e = lock_state_dir(dir.path(), "seed").unwrap_err().to_string();
        assert!(
            e.contains("`capwise get`") && !e.contains("capwise add"),
            "{e}"
        );
        drop(again);
        assert!(
            dir.path().join(STATE_LOCK_FILE).exists(),
            "the state lock file stays"
        );
    }

    #[test]
    fn a_torrent_s_data_is_locked_once_and_its_file_goes_with_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let hash = "ab".repeat(20);
        let lock = lock_data(dir.path(), &hash, "payload", "run")
            .unwrap()
            .unwrap();
        let path = data_lock_path(dir.path(), &hash);
        assert!(path.exists());
        let e = lock_data(dir.path(), &hash, "payload", "get")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is using the data of 'payload'"), "{e}");
        // Another torrent in the same directory is not held up.
        let other = lock_data(dir.path(), &"cd".repeat(20), "other", "run").unwrap();
        assert!(other.is_some());
        drop(lock);
        assert!(!path.exists(), "the data lock file is left behind");
        assert!(lock_data(dir.path(), &hash, "payload", "get")
            .unwrap()
            .is_some());
    }
}
