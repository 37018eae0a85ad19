//! Which source tells us the current uplink: `--network-file` if given, else
//! NetworkManager on the system bus if it answers, else the kernel (sysfs).
//! The foreground commands follow the source live; `capwise why` asks once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use capwise_policy::decision::Offline;
use capwise_policy::network::Network;
use capwise_policy::source::file::{FileState, FileStateWatch};
use capwise_policy::source::{file, nm, sysfs::SysfsProbe, NetworkWatch};
use tokio::task::JoinHandle;

/// How long NetworkManager may take to answer before we fall back: a bus
/// that hangs must not stall `capwise get`.
const NM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the kernel's routes are re-read without NetworkManager where
/// its routing notifications cannot be had.
const SYSFS_POLL: Duration = Duration::from_secs(5);
/// The id of the network assumed while an invalid network file never
/// described one.
pub const UNKNOWN_NETWORK_ID: &str = file::UNKNOWN_ID;

/// Where the network came from; decides what "no network" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `--network-file`: a removed file means offline, as its docs promise.
    File,
    /// NetworkManager over D-Bus.
    NetworkManager,
    /// The kernel's routes and sysfs.
    Sysfs,
}

impl SourceKind {
    /// What a person calls the source.
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::File => "network file",
            SourceKind::NetworkManager => "NetworkManager",
            SourceKind::Sysfs => "kernel routes (sysfs)",
        }
    }

    /// What "no network" from this source means. From the automatic
    /// sources it is "no default route": nothing can be billed, and LAN or
    /// loopback peers must keep working. From a network file it is the
    /// file's word (removed, or not written yet): everything waits.
    pub fn offline(self) -> Offline {
        match self {
            SourceKind::File => Offline::Told,
            SourceKind::NetworkManager | SourceKind::Sysfs => Offline::NoRoute,
        }
    }

    /// How `capwise net` says "offline" for this source.
    pub fn offline_words(self) -> &'static str {
        match self {
            SourceKind::File => "offline: the network file describes no network",
            SourceKind::NetworkManager | SourceKind::Sysfs => {
                "offline: no default route, nothing can reach the internet"
            }
        }
    }
}

/// The network file to follow, and where its name came from: errors name
/// the flag or the configuration key the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFile {
    /// The file.
    pub path: PathBuf,
    /// `--network-file`, or `network_file` in the configuration file.
    pub origin: &'static str,
}

impl NetworkFile {
    /// The flag's file if given, else the configuration's.
    pub fn choose(flag: Option<&Path>, config: Option<&Path>) -> Option<NetworkFile> {
        match (flag, config) {
            (Some(path), _) => Some(NetworkFile {
                path: path.to_owned(),
                origin: "--network-file",
            }),
            (None, Some(path)) => Some(NetworkFile {
                path: path.to_owned(),
                origin: "network_file in the configuration file",
            }),
            (None, None) => None,
        }
    }

    fn context(&self) -> String {
        format!(
            "cannot use the network file {} (set by {})",
            self.path.display(),
            self.origin
        )
    }

    /// The sentence `why` and `net` lead with when the file is missing or
    /// invalid; `assumed` is the network published meanwhile.
    pub fn problem(&self, state: &FileState, assumed: Option<&Network>) -> Option<String> {
        state.sentence(&self.path, assumed, crate::commands::output::local_clock)
    }
}

/// A live source: the channel, and the task feeding it (if any).
pub struct LiveSource {
    /// Which source this is.
    pub kind: SourceKind,
    /// Receives each change of uplink.
    pub watch: NetworkWatch,
    /// The network file and how it stands, for the file source.
    pub file: Option<(NetworkFile, FileStateWatch)>,
    /// The task publishing on `watch`; aborted when the source is dropped.
    pub task: JoinHandle<()>,
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts following the uplink. A network file that does not exist yet is
/// offline until it appears, an invalid one is reported by `why` and `net`;
/// one that cannot be read at all is an error naming where it was set. An
/// unreachable NetworkManager silently falls back.
pub async fn follow(network_file: Option<&NetworkFile>) -> Result<LiveSource> {
    if let Some(nf) = network_file {
        let (watch, state, task) = file::watch_network_file(nf.path.clone(), file::FALLBACK_POLL)
            .with_context(|| nf.context())?;
        return Ok(LiveSource {
            kind: SourceKind::File,
            watch,
            file: Some((nf.clone(), state)),
            task,
        });
    }
    match networkmanager_watch().await {
        Ok((watch, task)) => {
            return Ok(LiveSource {
                kind: SourceKind::NetworkManager,
                watch,
                file: None,
                task,
            })
        }
        Err(error) => tracing::debug!(%error, "NetworkManager not reachable; using sysfs"),
    }
    let (watch, task) = SysfsProbe::default().watch(SYSFS_POLL);
    Ok(LiveSource {
        kind: SourceKind::Sysfs,
        watch,
        file: None,
        task,
    })
}

async fn networkmanager_watch() -> Result<(NetworkWatch, JoinHandle<()>)> {
    anyhow::ensure!(system_bus_present(), "no D-Bus system bus");
    tokio::time::timeout(NM_TIMEOUT, async {
        let conn = zbus::Connection::system().await?;
        Ok(nm::watch_networkmanager(conn).await?)
    })
    .await
    .context("NetworkManager did not answer in time")?
}

/// Whether a system bus may answer: its address is set, or its socket is at
/// the well-known path. Without one there is no NetworkManager to ask, and
/// not setting up a D-Bus connection keeps a small agent small.
pub(crate) fn system_bus_present() -> bool {
    std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some()
        || Path::new("/run/dbus/system_bus_socket").exists()
        || Path::new("/var/run/dbus/system_bus_socket").exists()
}

/// The uplink now, asked once, detected the same way as [`follow`]; with a
/// network file, also the sentence saying it is missing or invalid.
pub async fn detect_once(
    network_file: Option<&NetworkFile>,
) -> Result<(SourceKind, Option<Network>, Option<String>)> {
    if let Some(nf) = network_file {
        let (network, state) = file::read_once(&nf.path).with_context(|| nf.context())?;
        let problem = nf.problem(&state, network.as_ref());
        return Ok((SourceKind::File, network, problem));
    }
    let from_nm = tokio::time::timeout(NM_TIMEOUT, async {
        anyhow::ensure!(system_bus_present(), "no D-Bus system bus");
        let conn = zbus::Connection::system().await?;
        anyhow::Ok(nm::read_current(&conn).await?)
    })
    .await;
    match from_nm {
        Ok(Ok(network)) => return Ok((SourceKind::NetworkManager, network, None)),
        Ok(Err(error)) => tracing::debug!(%error, "NetworkManager not reachable; using sysfs"),
        Err(_) => tracing::debug!("NetworkManager did not answer in time; using sysfs"),
    }
    let network = SysfsProbe::default().probe().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the default route");
        None
    });
    Ok((SourceKind::Sysfs, network, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_holds_nothing_back_but_a_file_describing_none_does() {
        assert_eq!(SourceKind::Sysfs.offline(), Offline::NoRoute);
        assert_eq!(SourceKind::NetworkManager.offline(), Offline::NoRoute);
        assert_eq!(SourceKind::File.offline(), Offline::Told);
    }
}
