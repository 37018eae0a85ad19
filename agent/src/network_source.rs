//! Which source tells us the current uplink: `--network-file` if given, else
//! NetworkManager on the system bus if it answers, else the kernel (sysfs).
//! The foreground commands follow the source live; `capwise why` asks once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use capwise_policy::network::{Metered, MeteredSource, Network, NetworkId, NetworkKind};
use capwise_policy::source::{file, nm, sysfs::SysfsProbe, NetworkWatch};
use tokio::task::JoinHandle;

/// How long NetworkManager may take to answer before we fall back: a bus
/// that hangs must not stall `capwise get`.
const NM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the kernel's routes are re-read without NetworkManager where
/// its routing notifications cannot be had.
const SYSFS_POLL: Duration = Duration::from_secs(5);
/// The id under which an undetectable uplink is known.
pub const UNKNOWN_NETWORK_ID: &str = "unknown";

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

    /// The network the policy works with. From the automatic sources, "no
    /// default route" becomes an unknown, unmetered network rather than
    /// offline: without an uplink no byte can be billed, and LAN or loopback
    /// peers must keep working. From a network file, `None` stays offline.
    pub fn resolve(self, reported: Option<Network>) -> Option<Network> {
        match (self, reported) {
            (_, Some(network)) => Some(network),
            (SourceKind::File, None) => None,
            (_, None) => Some(unknown_network()),
        }
    }
}

/// The stand-in for a network nobody could describe: unmetered defaults.
pub fn unknown_network() -> Network {
    Network {
        id: NetworkId::new(UNKNOWN_NETWORK_ID),
        name: "unknown network".into(),
        kind: NetworkKind::Unknown,
        metered: Metered::Unknown,
        metered_source: MeteredSource::Default,
        ..Network::default()
    }
}

/// A live source: the channel, and the task feeding it (if any).
pub struct LiveSource {
    /// Which source this is.
    pub kind: SourceKind,
    /// Receives each change of uplink.
    pub watch: NetworkWatch,
    /// The task publishing on `watch`; aborted when the source is dropped.
    pub task: JoinHandle<()>,
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts following the uplink. A bad `--network-file` is an error (the user
/// asked for it); an unreachable NetworkManager silently falls back.
pub async fn follow(network_file: Option<&Path>) -> Result<LiveSource> {
    if let Some(path) = network_file {
        let (watch, task) = file::watch_network_file(path.to_path_buf(), file::FALLBACK_POLL)
            .context("cannot use the --network-file")?;
        return Ok(LiveSource {
            kind: SourceKind::File,
            watch,
            task,
        });
    }
    match networkmanager_watch().await {
        Ok((watch, task)) => {
            return Ok(LiveSource {
                kind: SourceKind::NetworkManager,
                watch,
                task,
            })
        }
        Err(error) => tracing::debug!(%error, "NetworkManager not reachable; using sysfs"),
    }
    let (watch, task) = SysfsProbe::default().watch(SYSFS_POLL);
    Ok(LiveSource {
        kind: SourceKind::Sysfs,
        watch,
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
fn system_bus_present() -> bool {
    std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some()
        || Path::new("/run/dbus/system_bus_socket").exists()
        || Path::new("/var/run/dbus/system_bus_socket").exists()
}

/// The uplink now, asked once, detected the same way as [`follow`].
pub async fn detect_once(network_file: Option<&PathBuf>) -> Result<(SourceKind, Option<Network>)> {
    if let Some(path) = network_file {
        let network = file::read_network_file(path).context("cannot use the --network-file")?;
        return Ok((SourceKind::File, Some(network)));
    }
    let from_nm = tokio::time::timeout(NM_TIMEOUT, async {
        anyhow::ensure!(system_bus_present(), "no D-Bus system bus");
        let conn = zbus::Connection::system().await?;
        anyhow::Ok(nm::read_current(&conn).await?)
    })
    .await;
    match from_nm {
        Ok(Ok(network)) => return Ok((SourceKind::NetworkManager, network)),
        Ok(Err(error)) => tracing::debug!(%error, "NetworkManager not reachable; using sysfs"),
        Err(_) => tracing::debug!("NetworkManager did not answer in time; using sysfs"),
    }
    let network = SysfsProbe::default().probe().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the default route");
        None
    });
    Ok((SourceKind::Sysfs, network))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_is_an_unknown_unmetered_network_but_a_removed_file_is_offline() {
        let n = SourceKind::Sysfs.resolve(None).unwrap();
        assert_eq!(n.id.as_str(), UNKNOWN_NETWORK_ID);
        assert!(!n.is_metered());
        assert!(SourceKind::NetworkManager.resolve(None).is_some());
        assert!(SourceKind::File.resolve(None).is_none());
    }
}
