//! The `--network-file` source: a small TOML file describing the uplink,
//! re-read whenever it is rewritten (mtime and size polled).
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

use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{publish, NetworkWatch};
use crate::error::{PolicyError, Result};
use crate::network::{Metered, MeteredSource, Network, NetworkId, NetworkKind};

/// How often the file is checked: a rewrite is noticed within this.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

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
/// rewrite that parses is published; one that does not is logged and the
/// last good network stays; a deleted file means offline.
pub fn watch_network_file(path: PathBuf, poll: Duration) -> Result<(NetworkWatch, JoinHandle<()>)> {
    let first = read_network_file(&path)?;
    let (tx, rx) = watch::channel(Some(first));
    let mut last_stamp = stamp(&path);
    let task = tokio::spawn(async move {
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
            if now_stamp.is_none() {
                tracing::info!(path = %path.display(), "network file removed: offline");
                publish(&tx, None);
                continue;
            }
            match read_network_file(&path) {
                Ok(network) => publish(&tx, Some(network)),
                Err(error) => tracing::warn!(%error, "keeping the previous network"),
            }
        }
    });
    Ok((rx, task))
}

/// What tells a rewrite: modification time and size.
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

    #[tokio::test]
    async fn rewriting_the_file_is_a_network_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.toml");
        std::fs::write(&path, "id = \"home\"\nmetered = \"no\"").unwrap();
        let (mut rx, task) = watch_network_file(path.clone(), Duration::from_millis(20)).unwrap();
        assert_eq!(rx.borrow_and_update().as_ref().unwrap().id.as_str(), "home");

        std::fs::write(
            &path,
            "id = \"hotspot\"\nmetered = \"yes\"\nkind = \"wifi\"",
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        let n = rx.borrow_and_update().clone().unwrap();
        assert_eq!((n.id.as_str(), n.metered), ("hotspot", Metered::Yes));

        // A broken rewrite keeps the last good network.
        std::fs::write(&path, "id = ").unwrap();
        let outcome = tokio::time::timeout(Duration::from_millis(300), rx.changed()).await;
        assert!(outcome.is_err(), "no change published for a broken file");
        assert_eq!(rx.borrow().as_ref().unwrap().id.as_str(), "hotspot");

        std::fs::remove_file(&path).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(rx.borrow().is_none(), "deleted file means offline");
        task.abort();
    }
}
