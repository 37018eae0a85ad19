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
use crate::time::Timestamp;

/// How often the file is checked when inotify is not available (no
/// inotify instances left, a file system without it): a rewrite is then
/// noticed within this. A directory that does not exist yet is watched
/// through its nearest existing ancestor, not polled.
pub const FALLBACK_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    id: String,
    name: Option<String>,
    /// Checked by hand, for a message naming the words allowed.
    kind: Option<toml::Value>,
    metered: Option<toml::Value>,
    #[serde(default)]
    roaming: bool,
    interface: Option<String>,
}

/// A TOML error on one line: "line 2: unknown field `colour`, expected ...".
fn one_line(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn parse_kind(value: Option<&toml::Value>) -> std::result::Result<NetworkKind, String> {
    let Some(value) = value else {
        return Ok(NetworkKind::Unknown);
    };
    let word = value.as_str().unwrap_or_default();
    let kind = NetworkKind::parse(word);
    if kind.as_str() == word {
        Ok(kind)
    } else {
        Err(format!(
            "`kind = {value}` is not one of wifi, ethernet, cellular, bluetooth, vpn, unknown"
        ))
    }
}

fn parse_metered(value: Option<&toml::Value>) -> std::result::Result<Option<Metered>, String> {
    match value {
        None => Ok(None),
        Some(toml::Value::Boolean(true)) => Ok(Some(Metered::Yes)),
        Some(toml::Value::Boolean(false)) => Ok(Some(Metered::No)),
        Some(value) => {
            let word = value.as_str().unwrap_or_default();
            let metered = Metered::parse(word);
            if metered.as_str() == word {
                Ok(Some(metered))
            } else {
                Err(format!(
                    "`metered = {value}` is not one of yes, no, guess-yes, guess-no, unknown \
                     (or true, false)"
                ))
            }
        }
    }
}

/// What was wrong with a network file, without its path (for sentences
/// that name the path already).
pub fn problem_of(error: &PolicyError) -> String {
    match error {
        PolicyError::NetworkFile { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Parses the text of a network file; `path` is for error messages.
pub fn parse_network_file(path: &Path, text: &str) -> Result<Network> {
    let bad = |message: String| PolicyError::NetworkFile {
        path: path.to_owned(),
        message,
    };
    let file: NetworkFile = toml::from_str(text).map_err(|e| bad(one_line(&e, text)))?;
    if file.id.trim().is_empty() {
        return Err(bad("`id` is empty".into()));
    }
    let kind = parse_kind(file.kind.as_ref()).map_err(bad)?;
    // No `metered` key: the kind's guess, as every source makes it; the
    // file then said nothing about metering, so it is not named as saying so.
    let stated = parse_metered(file.metered.as_ref()).map_err(bad)?;
    let metered_source = if stated.is_some() {
        MeteredSource::File
    } else {
        MeteredSource::Default
    };
    let metered = stated.unwrap_or(Metered::Unknown);
    Ok(Network {
        name: file.name.unwrap_or_else(|| file.id.clone()),
        id: NetworkId(file.id),
        kind,
        metered,
        metered_source,
        roaming: file.roaming,
        interface: file.interface,
        underlying: None,
    }
    .with_kind_guess())
}

/// Reads and parses a network file.
pub fn read_network_file(path: &Path) -> Result<Network> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::io(path, e))?;
    parse_network_file(path, &text)
}

/// How the network file stands, beside the network the source publishes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FileState {
    /// It describes the network published.
    #[default]
    Valid,
    /// It does not exist (yet): offline until it appears.
    Missing,
    /// It cannot be used since `since`; meanwhile the last good network
    /// (or an unknown one) is published, taken as metered: the safer guess.
    Invalid {
        /// When it was first found invalid (when read once: its mtime).
        since: Timestamp,
        /// Why it is invalid.
        error: String,
    },
}

impl FileState {
    /// A sentence for `why` and `net` when the file is not valid: what is
    /// wrong, since when (`clock` formats the time) and what is assumed.
    pub fn sentence(
        &self,
        path: &Path,
        assumed: Option<&Network>,
        clock: impl Fn(Timestamp) -> String,
    ) -> Option<String> {
        match self {
            FileState::Valid => None,
            FileState::Missing => Some(format!(
                "The network file {} does not exist yet: offline until it appears.",
                path.display()
            )),
            FileState::Invalid { since, error } => Some(format!(
                "The network file {} is invalid since {} ({error}); meanwhile {} is assumed \
                 metered.",
                path.display(),
                clock(*since),
                assumed.map_or_else(|| "the network".to_string(), Network::quoted_name),
            )),
        }
    }
}

/// The network assumed while the file is invalid: the last good one (or an
/// unknown one), metered, since being wrong that way costs nothing.
pub fn assumed_while_invalid(last_good: Option<&Network>) -> Network {
    let mut network = last_good.cloned().unwrap_or_else(|| Network {
        id: NetworkId::new(UNKNOWN_ID),
        name: "unknown network".into(),
        ..Network::default()
    });
    network.metered = Metered::Yes;
    network.metered_source = MeteredSource::InvalidFile;
    network
}

/// The id of the network assumed when an invalid file never described one.
pub const UNKNOWN_ID: &str = "unknown";

/// Reads the file once: a missing file is offline, an invalid one gives the
/// assumed network (invalid since its last modification). Only a file that
/// cannot be read at all (permissions, a directory) is an error.
pub fn read_once(path: &Path) -> Result<(Option<Network>, FileState)> {
    match std::fs::read_to_string(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok((None, FileState::Missing))
        }
        Err(error) => Err(PolicyError::io(path, error)),
        Ok(text) => match parse_network_file(path, &text) {
            Ok(network) => Ok((Some(network), FileState::Valid)),
            Err(error) => {
                let since = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map(Timestamp::from_system_time)
                    .unwrap_or_else(|_| Timestamp::now_from_system());
                Ok((
                    Some(assumed_while_invalid(None)),
                    FileState::Invalid {
                        since,
                        error: problem_of(&error),
                    },
                ))
            }
        },
    }
}

/// The receiving end of the file's state.
pub type FileStateWatch = watch::Receiver<FileState>;

/// Reads the file now and keeps watching it: every rewrite that parses to
/// a different network is published; a missing file (not written yet, or
/// deleted) means offline until it appears; one that does not parse makes
/// the last good network (or an unknown one) assumed metered, and the state
/// says since when. Each change of state is logged once. Inotify on the
/// parent directory (or, until it exists, on its nearest existing ancestor)
/// tells when to look; `poll` is the period of the fallback used only if
/// inotify cannot be set up (no inotify instances left, a file system
/// without it). Only a file that cannot be read at all is an error.
pub fn watch_network_file(
    path: PathBuf,
    poll: Duration,
) -> Result<(NetworkWatch, FileStateWatch, JoinHandle<()>)> {
    // Stamped before the read: a rewrite in between is read again, not missed.
    let first_stamp = stamp(&path);
    let (first, first_state) = read_once(&path)?;
    log_state(&path, &first_state, first.as_ref());
    let last_good = first.clone().filter(|_| first_state == FileState::Valid);
    let (tx, rx) = watch::channel(first);
    let (state_tx, state_rx) = watch::channel(first_state);
    let follower = Follower {
        path,
        tx,
        state: state_tx,
        last_good,
    };
    let watching = inotify_watcher()
        .and_then(|(watcher, events)| Ok((Climber::new(watcher, &follower.path)?, events)));
    let task = match watching {
        Ok((climber, events)) => {
            // The directory may have appeared, and the file in it, between
            // the first read and the watch.
            let mut follower = follower;
            if climber.at_target() && stamp(&follower.path) != first_stamp {
                follower.reread(Change::Settled);
            }
            tokio::spawn(follow_events(follower, climber, events))
        }
        Err(error) => {
            tracing::warn!(
                path = %follower.path.display(),
                %error,
                "cannot watch the network file with inotify; polling it every {poll:?}"
            );
            tokio::spawn(follow_by_polling(follower, poll, first_stamp))
        }
    };
    Ok((rx, state_rx, task))
}

/// Logs a state the file newly entered.
fn log_state(path: &Path, state: &FileState, network: Option<&Network>) {
    match state {
        FileState::Valid => {}
        FileState::Missing => tracing::info!(
            path = %path.display(),
            "the network file does not exist (yet): offline until it appears"
        ),
        FileState::Invalid { error, .. } => tracing::warn!(
            %error,
            assumed = network.map(|n| n.id.as_str()),
            "the network file is invalid: assuming a metered network until it is fixed"
        ),
    }
}

/// What the watching task keeps.
struct Follower {
    path: PathBuf,
    tx: watch::Sender<Option<Network>>,
    state: watch::Sender<FileState>,
    /// The network the file last described validly.
    last_good: Option<Network>,
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

/// The file's directory, which is watched rather than the file: an atomic
/// rewrite (write a temporary file, rename it over) replaces the inode a
/// watch on the file itself would follow.
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The directory to watch now: the file's own directory if it exists, else
/// its nearest existing ancestor (`/run` before anything made
/// `/run/capwise`), whose events tell when the next level appears. Polling
/// instead would wake an idle agent four times a second.
fn nearest_existing(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.is_dir())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Sets up inotify (the error, e.g. no instances left, means polling).
/// Events are forwarded raw: which ones matter depends on the directory
/// watched at the time, which [`Climber`] knows.
fn inotify_watcher() -> notify::Result<(
    notify::RecommendedWatcher,
    mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    Ok((watcher, rx))
}

/// Keeps one inotify watch on the file's directory, or while that does not
/// exist on its nearest existing ancestor, moving down as directories
/// appear and back up as they go.
struct Climber {
    watcher: notify::RecommendedWatcher,
    /// The file's own directory.
    target: PathBuf,
    /// The directory under watch now.
    watched: PathBuf,
}

impl Climber {
    fn new(mut watcher: notify::RecommendedWatcher, file: &Path) -> notify::Result<Self> {
        let target = directory_of(file);
        let watched = nearest_existing(&target);
        watcher.watch(&watched, RecursiveMode::NonRecursive)?;
        Ok(Self {
            watcher,
            target,
            watched,
        })
    }

    fn at_target(&self) -> bool {
        self.watched == self.target
    }

    /// Moves the watch to the nearest existing ancestor of the target (which
    /// may be the target itself); true if it moved.
    fn rewatch(&mut self) -> bool {
        let nearest = nearest_existing(&self.target);
        if nearest == self.watched {
            return false;
        }
        let _ = self.watcher.unwatch(&self.watched);
        match self.watcher.watch(&nearest, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::debug!(dir = %nearest.display(), "watching for the network file");
                self.watched = nearest;
                true
            }
            Err(error) => {
                // Raced with a removal: the next event (or none) tells.
                tracing::debug!(%error, dir = %nearest.display(), "cannot watch yet");
                false
            }
        }
    }

    /// What an event means for the file: a change to read, after moving the
    /// watch if directories on the way appeared or went.
    fn change_for(&mut self, event: notify::Result<notify::Event>, file: &Path) -> Option<Change> {
        let event = match event {
            Ok(event) => event,
            // The kernel's queue overflowed or similar: look again.
            Err(_) => {
                self.rewatch();
                return Some(Change::Settled);
            }
        };
        if self.at_target() {
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name() == file.file_name());
            // The directory itself removed (its watch ends with it): climb.
            if !self.watched.is_dir() && self.rewatch() {
                return Some(Change::Settled);
            }
            return ours.then(|| classify(&event.kind)).flatten();
        }
        // Watching an ancestor: anything there may be the next level coming
        // (or the ancestor going); once at the target, the file may already
        // be in it.
        if self.rewatch() && self.at_target() {
            return Some(Change::Settled);
        }
        None
    }
}

async fn follow_events(
    mut follower: Follower,
    mut climber: Climber,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
            _ = follower.tx.closed() => return,
        };
        let mut change = climber.change_for(event, &follower.path);
        // Several events for one rewrite come together: read once.
        while let Ok(more) = events.try_recv() {
            match climber.change_for(more, &follower.path) {
                Some(Change::Settled) => change = Some(Change::Settled),
                Some(Change::InProgress) if change.is_none() => change = Some(Change::InProgress),
                _ => {}
            }
        }
        if let Some(change) = change {
            follower.reread(change);
        }
    }
}

impl Follower {
    /// Reads the file after `change` and publishes what it now says, if
    /// that differs from what was published.
    fn reread(&mut self, change: Change) {
        let path = self.path.as_path();
        match std::fs::read_to_string(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                self.set(None, FileState::Missing);
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the network file")
            }
            Ok(text) => match parse_network_file(path, &text) {
                Ok(network) => {
                    self.last_good = Some(network.clone());
                    self.set(Some(network), FileState::Valid);
                }
                Err(error) if change == Change::Settled => {
                    let since = match &*self.state.borrow() {
                        FileState::Invalid { since, .. } => *since,
                        _ => Timestamp::now_from_system(),
                    };
                    let assumed = assumed_while_invalid(self.last_good.as_ref());
                    let state = FileState::Invalid {
                        since,
                        error: problem_of(&error),
                    };
                    self.set(Some(assumed), state);
                }
                Err(error) => tracing::debug!(%error, "network file half written, it seems"),
            },
        }
    }

    /// Publishes the network and the state, logging a change of state.
    fn set(&mut self, network: Option<Network>, state: FileState) {
        let before = std::mem::discriminant(&*self.state.borrow());
        if before != std::mem::discriminant(&state) {
            let was_missing = *self.state.borrow() == FileState::Missing;
            match (&state, was_missing) {
                (FileState::Valid, true) => {
                    tracing::info!(path = %self.path.display(), "the network file appeared")
                }
                (FileState::Valid, false) => {
                    tracing::info!(path = %self.path.display(), "the network file is valid again")
                }
                _ => log_state(&self.path, &state, network.as_ref()),
            }
        }
        self.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
        publish(&self.tx, network);
    }
}

/// The fallback: mtime and size checked every `poll`.
async fn follow_by_polling(
    mut follower: Follower,
    poll: Duration,
    mut last_stamp: Option<(SystemTime, u64)>,
) {
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if follower.tx.is_closed() {
            return;
        }
        let now_stamp = stamp(&follower.path);
        if now_stamp == last_stamp {
            continue;
        }
        last_stamp = now_stamp;
        follower.reread(Change::Settled);
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

        // No `metered` key: the same guess from the kind as the kernel's.
        for kind in ["cellular", "bluetooth"] {
            let n = parse_network_file(p, &format!("id = \"x\"\nkind = \"{kind}\"")).unwrap();
            assert_eq!(n.metered, Metered::GuessYes, "{kind}");
            assert_eq!(n.metered_source, MeteredSource::DeviceType);
            assert!(n.is_metered());
        }
        let n = parse_network_file(p, "id = \"x\"\nkind = \"cellular\"\nmetered = \"no\"").unwrap();
        assert_eq!(
            (n.metered, n.metered_source),
            (Metered::No, MeteredSource::File)
        );

        // No `metered` key and a kind with no guess: the file did not say so.
        let n = parse_network_file(p, "id = \"x\"\nkind = \"ethernet\"").unwrap();
        assert_eq!(
            (n.metered, n.metered_source),
            (Metered::Unknown, MeteredSource::Default)
        );

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
            assert!(!problem_of(&err).contains('\n'), "{err}");
        }
        // Bad words are named with the ones allowed.
        let err = parse_network_file(p, "id = \"a\"\nmetered = \"sometimes\"").unwrap_err();
        assert!(
            problem_of(&err).starts_with("`metered = \"sometimes\"` is not one of yes, no"),
            "{err}"
        );
        let err = parse_network_file(p, "id = \"a\"\nkind = \"phone\"").unwrap_err();
        assert!(
            problem_of(&err).starts_with("`kind = \"phone\"` is not one of wifi"),
            "{err}"
        );
        let err = parse_network_file(p, "id = \"a\"\ncolour = 1").unwrap_err();
        assert!(
            problem_of(&err).starts_with("line 2: unknown field `colour`"),
            "{err}"
        );
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
        let (mut rx, state, task) =
            watch_network_file(path.clone(), Duration::from_secs(3600)).unwrap();
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

        // A broken rewrite keeps the last good network, assumed metered,
        // and the state says the file is invalid and since when.
        let before = Timestamp::now_from_system();
        std::fs::write(&path, "id = \"office\"\nmetered = \"sometimes\"").unwrap();
        let n = next(&mut rx).await.unwrap();
        assert_eq!(
            (n.id.as_str(), n.metered, n.metered_source),
            ("office", Metered::Yes, MeteredSource::InvalidFile)
        );
        let FileState::Invalid { since, error } = state.borrow().clone() else {
            panic!("not invalid: {:?}", state.borrow());
        };
        assert!(since >= before, "since {since:?}");
        assert!(error.contains("sometimes"), "{error}");
        let sentence = state
            .borrow()
            .sentence(&path, Some(&n), |_| "10:04".into())
            .unwrap();
        assert!(sentence.contains("is invalid since 10:04"), "{sentence}");
        assert!(
            sentence.ends_with("meanwhile 'office' is assumed metered."),
            "{sentence}"
        );
        // Another bad kind: still invalid since the first failure, still the
        // last good network assumed.
        std::fs::write(&path, "id = \"office\"\nkind = \"phone\"").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rx.borrow().as_ref().unwrap().id.as_str(), "office");
        assert!(
            matches!(&*state.borrow(), FileState::Invalid { since: s, error } if *s == since && error.contains("phone")),
            "{:?}",
            state.borrow()
        );

        std::fs::remove_file(&path).unwrap();
        assert!(next(&mut rx).await.is_none(), "deleted file means offline");
        assert_eq!(*state.borrow(), FileState::Missing);

        // Written again after the removal: online again.
        std::fs::write(&path, "id = \"home\"").unwrap();
        assert_eq!(next(&mut rx).await.unwrap().id.as_str(), "home");
        assert_eq!(*state.borrow(), FileState::Valid);
        task.abort();
    }

    #[tokio::test]
    async fn a_file_not_written_yet_is_offline_until_it_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.toml");
        let (mut rx, state, task) =
            watch_network_file(path.clone(), Duration::from_secs(3600)).unwrap();
        assert!(rx.borrow_and_update().is_none());
        assert_eq!(*state.borrow(), FileState::Missing);
        let sentence = state
            .borrow()
            .sentence(&path, None, |_| String::new())
            .unwrap();
        assert!(
            sentence.ends_with("does not exist yet: offline until it appears."),
            "{sentence}"
        );
        std::fs::write(&path, "id = \"home\"").unwrap();
        assert_eq!(next(&mut rx).await.unwrap().id.as_str(), "home");
        assert_eq!(*state.borrow(), FileState::Valid);
        task.abort();

        // Two levels of its directory do not exist either (/run/capwise
        // before anything made it). The fallback poll is an hour, so only
        // the watch on the nearest existing ancestor can find it, as the
        // levels appear and when they go and come back.
        let path = dir.path().join("later").join("deeper").join("net.toml");
        let (mut rx, _state, task) =
            watch_network_file(path.clone(), Duration::from_secs(3600)).unwrap();
        assert!(rx.borrow_and_update().is_none());
        std::fs::create_dir(dir.path().join("later")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::create_dir(dir.path().join("later").join("deeper")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&path, "id = \"late\"").unwrap();
        assert_eq!(next(&mut rx).await.unwrap().id.as_str(), "late");
        std::fs::remove_dir_all(dir.path().join("later")).unwrap();
        assert!(next(&mut rx).await.is_none(), "gone with its directory");
        std::fs::create_dir_all(dir.path().join("later").join("deeper")).unwrap();
        std::fs::write(&path, "id = \"back\"").unwrap();
        assert_eq!(next(&mut rx).await.unwrap().id.as_str(), "back");
        task.abort();
    }

    #[tokio::test]
    async fn a_directory_made_with_the_file_in_it_at_once_is_read() {
        // mkdir -p and a write racing the watch's move down a level.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("net.toml");
        let (mut rx, _state, task) =
            watch_network_file(path.clone(), Duration::from_secs(3600)).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "id = \"quick\"").unwrap();
        assert_eq!(next(&mut rx).await.unwrap().id.as_str(), "quick");
        task.abort();
    }

    #[test]
    fn read_once_says_missing_and_invalid_and_errs_only_when_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.toml");
        assert_eq!(read_once(&path).unwrap(), (None, FileState::Missing));
        std::fs::write(&path, "id = \"x\"\nmetered = \"sometimes\"").unwrap();
        let (network, state) = read_once(&path).unwrap();
        let network = network.unwrap();
        assert!(network.is_metered());
        assert_eq!(network.metered_source, MeteredSource::InvalidFile);
        assert!(matches!(state, FileState::Invalid { .. }), "{state:?}");
        assert!(read_once(dir.path()).is_err(), "a directory cannot be read");
    }

    #[tokio::test]
    async fn the_fallback_poll_sees_rewrites_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.toml");
        std::fs::write(&path, "id = \"home\"").unwrap();
        let (tx, mut rx) = watch::channel(Some(read_network_file(&path).unwrap()));
        rx.borrow_and_update();
        let follower = Follower {
            path: path.clone(),
            tx,
            state: watch::channel(FileState::Valid).0,
            last_good: None,
        };
        let task = tokio::spawn(follow_by_polling(
            follower,
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
