//! The `--network-file` source: a small TOML file describing the uplink,
//! re-read whenever it is rewritten. Its directory is watched with inotify
//! (the `notify` crate), so a rewrite in place and an atomic rename over it
//! are both noticed within milliseconds, and an idle agent does not wake up;
//! only if inotify cannot be set up is the file polled.
//!
//! ```toml
//! id = "pixel-hotspot"
//! name = "Pixel hotspot"
//! kind = "wifi"          # wifi, ethernet, cellular, bluetooth, vpn, unknown
//! metered = "yes"        # yes, no, guess-yes, guess-no, unknown (or true/false)
//! roaming = false
//! interface = "wlan0"
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{publish, NetworkWatch};
use crate::error::{PolicyError, Result};
use crate::network::{Metered, MeteredSource, Network, NetworkId, NetworkKind};

/// How often the file is checked when inotify is not available (no
/// inotify instances left, a file system without it): a rewrite is then
/// noticed within this.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    id: String,
    name: Option<String>,
    #[serde(default)]
    kind: NetworkKind,
    metered: Option<MeteredField>,
    #[serde(default)]
    roaming: bool,
    interface: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MeteredField {
    Flag(bool),
    Word(Metered),
}

/// Parses the text of a network file; `path` is for error messages.
pub fn parse_network_file(path: &Path, text: &str) -> Result<Network> {
    let bad = |message: String| PolicyError::NetworkFile {
        path: path.to_owned(),
        message,
    };
    let file: NetworkFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    if file.id.trim().is_empty() {
        return Err(bad("`id` is empty".into()));
    }
    let metered = match file.metered {
        None => Metered::Unknown,
        Some(MeteredField::Flag(true)) => Metered::Yes,
        Some(MeteredField::Flag(false)) => Metered::No,
        Some(MeteredField::Word(m)) => m,
    };
    Ok(Network {
        name: file.name.unwrap_or_else(|| file.id.clone()),
        id: NetworkId(file.id),
        kind: file.kind,
        metered,
        metered_source: MeteredSource::File,
        roaming: file.roaming,
        interface: file.interface,
        underlying: None,
    })
}

/// Reads and parses a network file.
pub fn read_network_file(path: &Path) -> Result<Network> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::io(path, e))?;
    parse_network_file(path, &text)
}

/// Reads the file now (it must be valid) and keeps watching it: every
/// rewrite that parses to a different network is published; one that does
/// not parse is logged and the last good network stays; a deleted file means
/// offline. Inotify on the parent directory tells when to look; `poll` is the
/// period of the fallback used only if inotify cannot be set up.
pub fn watch_network_file(path: PathBuf, poll: Duration) -> Result<(NetworkWatch, JoinHandle<()>)> {
    // Stamped before the read: a rewrite in between is read again, not missed.
    let first_stamp = stamp(&path);
    let first = read_network_file(&path)?;
    let (tx, rx) = watch::channel(Some(first));
    let task = match watch_directory(&path) {
        Ok((watcher, events)) => tokio::spawn(follow_events(path, tx, watcher, events)),
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot watch the network file with inotify; polling it every {poll:?}"
            );
            tokio::spawn(follow_by_polling(path, tx, poll, first_stamp))
        }
    };
    Ok((rx, task))
}

/// What an inotify event says about our file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Written and closed, renamed into place or removed: the file is whole
    /// (or gone), so a parse error is the writer's mistake.
    Settled,
    /// Being written (created, truncated, appended): a parse error may be a
    /// half-written file, and the close that follows will tell.
    InProgress,
}

fn classify(kind: &EventKind) -> Option<Change> {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Change::Settled),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Some(Change::Settled),
        EventKind::Modify(ModifyKind::Metadata(_)) => None,
        _ => Some(Change::InProgress),
    }
}

/// Watches the file's directory rather than the file: an atomic rewrite
/// (write a temporary file, rename it over) replaces the inode a watch on
/// the file itself would follow. Events for other names are dropped here.
fn watch_directory(
    path: &Path,
) -> notify::Result<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<Change>)> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_owned());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let change = match event {
            Ok(event) if event.paths.iter().any(|p| p.file_name() == name.as_deref()) => {
                classify(&event.kind)
            }
            Ok(_) => None,
            // The kernel's queue overflowed or similar: look at the file.
            Err(_) => Some(Change::Settled),
        };
        if let Some(change) = change {
            let _ = tx.send(change);
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

async fn follow_events(
    path: PathBuf,
    tx: watch::Sender<Option<Network>>,
    // Kept alive here: dropping it ends the inotify watch.
    _watcher: notify::RecommendedWatcher,
    mut events: mpsc::UnboundedReceiver<Change>,
) {
    loop {
        let mut change = tokio::select! {
            change = events.recv() => match change {
                Some(change) => change,
                None => return,
            },
            _ = tx.closed() => return,
        };
        // Several events for one rewrite come together: read once.
        while let Ok(more) = events.try_recv() {
            if more == Change::Settled {
                change = Change::Settled;
            }
        }
        reread(&path, &tx, change);
    }
}

/// Reads the file after `change` and publishes what it now says, if that
/// differs from what was published.
fn reread(path: &Path, tx: &watch::Sender<Option<Network>>, change: Change) {
    match std::fs::read_to_string(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if tx.borrow().is_some() {
                tracing::info!(path = %path.display(), "network file removed: offline");
            }
            publish(tx, None);
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the network file")
        }
        Ok(text) => match parse_network_file(path, &text) {
            Ok(network) => publish(tx, Some(network)),
            Err(error) if change == Change::Settled => {
                tracing::warn!(%error, "keeping the previous network")
            }
            Err(error) => tracing::debug!(%error, "network file half written, it seems"),
        },
    }
}

/// The fallback: mtime and size checked every `poll`.
async fn follow_by_polling(
    path: PathBuf,
    tx: watch::Sender<Option<Network>>,
    poll: Duration,
    mut last_stamp: Option<(SystemTime, u64)>,
) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if tx.is_closed() {
            return;
        }
        let now_stamp = stamp(&path);
        if now_stamp == last_stamp {
            continue;
        }
        last_stamp = now_stamp;
        reread(&path, &tx, Change::Settled);
    }
}

/// What tells a rewrite when polling: modification time and size.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_fields_and_defaults() {
        let p = Path::new("net.toml");
        let n = parse_network_file(
            p,
            r#"id = "hs"
               name = "Pixel hotspot"
               kind = "wifi"
               metered = "guess-yes"
               roaming = true
               interface = "wlan0""#,
        )
        .unwrap();
        assert_eq!(n.id.as_str(), "hs");
        assert_eq!(n.kind, NetworkKind::Wifi);
        assert_eq!(n.metered, Metered::GuessYes);
        assert_eq!(n.metered_source, MeteredSource::File);
        assert!(n.roaming);
        assert_eq!(n.interface.as_deref(), Some("wlan0"));

        let n = parse_network_file(p, "id = \"x\"\nmetered = true").unwrap();
        assert_eq!(
            (n.name.as_str(), n.kind, n.metered),
            ("x", NetworkKind::Unknown, Metered::Yes)
        );
    }

    #[test]
    fn rejects_bad_files_with_the_path_in_the_message() {
        let p = Path::new("/etc/capwise/net.toml");
        for text in [
            "name = \"no id\"",
            "id = \"\"",
            "id = \"a\"\nmetered = \"maybe\"",
            "id = \"a\"\ncolour = 1",
            "not toml =",
        ] {
            let err = parse_network_file(p, text).unwrap_err();
            assert!(err.to_string().contains("/etc/capwise/net.toml"), "{err}");
        }
    }

    /// Waits (bounded) for the next published value.
    async fn next(rx: &mut NetworkWatch) -> Option<Network> {
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("a change within 5 s")
            .expect("source alive");
        rx.borrow_and_update().clone()
    }

    /// Asserts nothing is published for a while.
    async fn quiet(rx: &mut NetworkWatch, what: &str) {
        let outcome = tokio::time::timeout(Duration::from_millis(300), rx.changed()).await;
        assert!(outcome.is_err(), "{what}");
    }

    #[tokio::test]
    async fn rewriting_the_file_is_a_network_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.toml");
        std::fs::write(&path, "id = \"home\"\nmetered = \"no\"").unwrap();
        // An hour's fallback poll: only inotify can tell the changes in time.
        let (mut rx, task) = watch_network_file(path.clone(), Duration::from_secs(3600)).unwrap();
        assert_eq!(rx.borrow_and_update().as_ref().unwrap().id.as_str(), "home");

        // Rewritten in place.
        std::fs::write(
            &path,
            "id = \"hotspot\"\nmetered = \"yes\"\nkind = \"wifi\"",
        )
        .unwrap();
        let n = next(&mut rx).await.unwrap();
        assert_eq!((n.id.as_str(), n.metered), ("hotspot", Metered::Yes));

        // The same content again, and another file in the directory: nothing.
        std::fs::write(
            &path,
            "id = \"hotspot\"\nmetered = \"yes\"\nkind = \"wifi\"",
        )
        .unwrap();
        std::fs::write(dir.path().join("other.toml"), "id = \"other\"").unwrap();
        quiet(&mut rx, "no change published for the same network").await;

        // Replaced atomically (temporary file renamed over it).
        let tmp = dir.path().join(".net.toml.tmp");
        std::fs::write(&tmp, "id = \"office\"\nmetered = \"no\"").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let n = next(&mut rx).await.unwrap();
        assert_eq!((n.id.as_str(), n.metered), ("office", Metered::No));

        // A broken rewrite keeps the last good network.
        std::fs::write(&path, "id = ").unwrap();
        quiet(&mut rx, "no change published for a broken file").await;
        assert_eq!(rx.borrow().as_ref().unwrap().id.as_str(), "office");

        std::fs::remove_file(&path).unwrap();
        assert!(next(&mut rx).await.is_none(), "deleted file means offline");

        // Written again after the removal: online again.
        std::fs::write(&path, "id = \"home\"").unwrap();
        assert_eq!(next(&mut rx).await.unwrap().id.as_str(), "home");
        task.abort();
    }

    #[tokio::test]
    async fn the_fallback_poll_sees_rewrites_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.toml");
        std::fs::write(&path, "id = \"home\"").unwrap();
        let (tx, mut rx) = watch::channel(Some(read_network_file(&path).unwrap()));
        rx.borrow_and_update();
        let task = tokio::spawn(follow_by_polling(
            path.clone(),
            tx,
            Duration::from_millis(20),
            stamp(&path),
        ));
        // A different size, so the stamp differs even within one mtime tick.
        std::fs::write(&path, "id = \"hotspot\"\nmetered = \"yes\"").unwrap();
        assert_eq!(next(&mut rx).await.unwrap().id.as_str(), "hotspot");
        std::fs::remove_file(&path).unwrap();
        assert!(next(&mut rx).await.is_none());
        task.abort();
    }
}
