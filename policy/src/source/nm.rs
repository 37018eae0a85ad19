//! NetworkManager over D-Bus: the primary connection, its type and name,
//! and `Metered` (0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no). Changes
//! are followed through PropertiesChanged signals, not polling, and the
//! connection is re-read when `PrimaryConnection` changes.

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zbus::zvariant::OwnedObjectPath;

use super::{publish, NetworkWatch};
use crate::error::Result;
use crate::network::{Metered, MeteredSource, Network, NetworkId, NetworkKind};

/// The NetworkManager service name.
pub const SERVICE: &str = "org.freedesktop.NetworkManager";

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager"
)]
trait NetworkManager {
    /// The active connection carrying the default route ("/" if none).
    #[zbus(property)]
    fn primary_connection(&self) -> zbus::Result<OwnedObjectPath>;

    /// Whether the primary connection is metered (NMMetered).
    #[zbus(property)]
    fn metered(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Connection.Active",
    default_service = "org.freedesktop.NetworkManager"
)]
trait ActiveConnection {
    /// The connection's name (for Wi-Fi usually the SSID).
    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;

    /// The connection profile's UUID: our stable network id.
    #[zbus(property)]
    fn uuid(&self) -> zbus::Result<String>;

    /// The connection type, e.g. "802-11-wireless", "gsm", "vpn".
    #[zbus(property, name = "Type")]
    fn connection_type(&self) -> zbus::Result<String>;

    /// The devices of the connection.
    #[zbus(property)]
    fn devices(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Device",
    default_service = "org.freedesktop.NetworkManager"
)]
trait Device {
    /// The kernel interface name.
    #[zbus(property)]
    fn interface(&self) -> zbus::Result<String>;
}

/// Maps a NetworkManager connection type to a kind.
pub fn kind_from_connection_type(connection_type: &str) -> NetworkKind {
    match connection_type {
        "802-11-wireless" | "wifi" => NetworkKind::Wifi,
        "802-3-ethernet" | "ethernet" | "veth" => NetworkKind::Ethernet,
        "gsm" | "cdma" => NetworkKind::Cellular,
        "bluetooth" => NetworkKind::Bluetooth,
        "vpn" | "wireguard" | "tun" => NetworkKind::Vpn,
        _ => NetworkKind::Unknown,
    }
}

/// Reads the current uplink from NetworkManager; `None` without a primary
/// connection.
pub async fn read_current(conn: &zbus::Connection) -> Result<Option<Network>> {
    let nm = NetworkManagerProxy::new(conn).await?;
    read_with(conn, &nm).await
}

async fn read_with(
    conn: &zbus::Connection,
    nm: &NetworkManagerProxy<'_>,
) -> Result<Option<Network>> {
    let primary = nm.primary_connection().await?;
    if primary.as_str() == "/" {
        return Ok(None);
    }
    let metered = Metered::from_networkmanager(nm.metered().await?);
    let active = ActiveConnectionProxy::builder(conn)
        .path(primary.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let name = active.id().await.unwrap_or_default();
    let uuid = active.uuid().await.unwrap_or_default();
    let kind = kind_from_connection_type(&active.connection_type().await.unwrap_or_default());
    let mut interface = None;
    if let Some(device) = active
        .devices()
        .await
        .unwrap_or_default()
        .into_iter()
        .next()
    {
        let device = DeviceProxy::builder(conn)
            .path(device)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        interface = device.interface().await.ok();
    }
    // Stable id: the UUID; else the name (SSID); else the object path.
    let id = [uuid, name.clone()]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| primary.to_string());
    Ok(Some(Network {
        id: NetworkId(id),
        name,
        kind,
        metered,
        metered_source: MeteredSource::NetworkManager,
        roaming: false,
        interface,
        underlying: None,
    }))
}

/// Reads the uplink now and follows NetworkManager's PropertiesChanged
/// signals for `Metered` and `PrimaryConnection`, publishing each change.
pub async fn watch_networkmanager(
    conn: zbus::Connection,
) -> Result<(NetworkWatch, JoinHandle<()>)> {
    let nm = NetworkManagerProxy::new(&conn).await?;
    // Subscribe before the first read so no change slips between them.
    let mut metered_changes = nm.receive_metered_changed().await;
    let mut primary_changes = nm.receive_primary_connection_changed().await;
    let (tx, rx) = watch::channel(read_with(&conn, &nm).await?);
    let task = tokio::spawn(async move {
        loop {
            let more = tokio::select! {
                change = metered_changes.next() => change.is_some(),
                change = primary_changes.next() => change.is_some(),
                _ = tx.closed() => return,
            };
            if !more {
                tracing::warn!("NetworkManager signal stream ended");
                return;
            }
            match read_with(&conn, &nm).await {
                Ok(network) => publish(&tx, network),
                Err(error) => tracing::warn!(%error, "cannot read NetworkManager's state"),
            }
        }
    });
    Ok((rx, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use zbus::object_server::SignalEmitter;
    use zbus::zvariant::ObjectPath;

    const NM_PATH: &str = "/org/freedesktop/NetworkManager";
    const AC_PATH: &str = "/org/freedesktop/NetworkManager/ActiveConnection/1";
    const DEV_PATH: &str = "/org/freedesktop/NetworkManager/Devices/3";

    struct FakeNm {
        metered: u32,
        primary: OwnedObjectPath,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager")]
    impl FakeNm {
        #[zbus(property)]
        fn metered(&self) -> u32 {
            self.metered
        }

        #[zbus(property)]
        fn primary_connection(&self) -> OwnedObjectPath {
            self.primary.clone()
        }
    }

    struct FakeActive;

    #[zbus::interface(name = "org.freedesktop.NetworkManager.Connection.Active")]
    impl FakeActive {
        #[zbus(property)]
        fn id(&self) -> String {
            "Pixel hotspot".into()
        }
        #[zbus(property)]
        fn uuid(&self) -> String {
            "0b7a5c1e-1111-2222-3333-444455556666".into()
        }
        #[zbus(property, name = "Type")]
        fn connection_type(&self) -> String {
            "802-11-wireless".into()
        }
        #[zbus(property)]
        fn devices(&self) -> Vec<OwnedObjectPath> {
            vec![ObjectPath::try_from(DEV_PATH).unwrap().into()]
        }
    }

    struct FakeDevice;

    #[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
    impl FakeDevice {
        #[zbus(property)]
        fn interface(&self) -> String {
            "wlan0".into()
        }
    }

    /// A private dbus-daemon that lives as long as the value.
    struct PrivateBus {
        child: std::process::Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn start_private_bus() -> Option<PrivateBus> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>"#,
                socket.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("dbus-daemon")
            .arg("--nofork")
            .arg(format!("--config-file={}", config.display()))
            .stdout(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!(
                    "SKIPPED: dbus-daemon not available ({e}); install the dbus-daemon package"
                );
                return None;
            }
        };
        // Wait for the socket to appear.
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(PrivateBus {
            child,
            address: format!("unix:path={}", socket.display()),
            _dir: dir,
        })
    }

    #[tokio::test]
    async fn follows_metered_changes_from_a_stand_in_networkmanager() {
        let Some(bus) = start_private_bus() else {
            return;
        };
        let server = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name(SERVICE)
            .unwrap()
            .serve_at(
                NM_PATH,
                FakeNm {
                    metered: 2,
                    primary: ObjectPath::try_from(AC_PATH).unwrap().into(),
                },
            )
            .unwrap()
            .serve_at(AC_PATH, FakeActive)
            .unwrap()
            .serve_at(DEV_PATH, FakeDevice)
            .unwrap()
            .build()
            .await
            .unwrap();
        let client = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();

        let (mut rx, task) = watch_networkmanager(client).await.unwrap();
        let first = rx.borrow_and_update().clone().unwrap();
        assert_eq!(first.id.as_str(), "0b7a5c1e-1111-2222-3333-444455556666");
        assert_eq!(first.name, "Pixel hotspot");
        assert_eq!(first.kind, NetworkKind::Wifi);
        assert_eq!(first.interface.as_deref(), Some("wlan0"));
        assert_eq!(first.metered, Metered::No);

        let iface = server
            .object_server()
            .interface::<_, FakeNm>(NM_PATH)
            .await
            .unwrap();
        iface.get_mut().await.metered = 3; // guess-yes
        let emitter: &SignalEmitter<'_> = iface.signal_emitter();
        iface.get().await.metered_changed(emitter).await.unwrap();

        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("change within 5 s")
            .unwrap();
        let changed = rx.borrow_and_update().clone().unwrap();
        assert_eq!(changed.metered, Metered::GuessYes);
        assert!(changed.is_metered());

        // Losing the primary connection means offline.
        iface.get_mut().await.primary = ObjectPath::try_from("/").unwrap().into();
        iface
            .get()
            .await
            .primary_connection_changed(emitter)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("change within 5 s")
            .unwrap();
        assert!(rx.borrow().is_none());
        task.abort();
    }

    #[test]
    fn connection_types_map_to_kinds() {
        assert_eq!(kind_from_connection_type("gsm"), NetworkKind::Cellular);
        assert_eq!(kind_from_connection_type("wireguard"), NetworkKind::Vpn);
        assert_eq!(
            kind_from_connection_type("802-3-ethernet"),
            NetworkKind::Ethernet
        );
        assert_eq!(kind_from_connection_type("loopback"), NetworkKind::Unknown);
    }
}
