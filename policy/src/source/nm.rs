//! NetworkManager over D-Bus: the primary connection, its type and name,
//! and `Metered` (0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no). Changes
//! are followed through PropertiesChanged signals, not polling, and the
//! connection is re-read when `PrimaryConnection` changes.
//!
//! A Wi-Fi link is named by the SSID of its access point (the profile's name
//! if that cannot be read). A cellular link's device is a ModemManager modem
//! (its `Udi`); the modem's 3GPP `RegistrationState` says whether it roams
//! (5), followed through that modem's signals too.

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zbus::zvariant::OwnedObjectPath;

use super::{publish, NetworkWatch};
use crate::error::Result;
use crate::network::{Metered, MeteredSource, Network, NetworkId, NetworkKind};

/// The NetworkManager service name.
pub const SERVICE: &str = "org.freedesktop.NetworkManager";
/// The ModemManager service name.
pub const MM_SERVICE: &str = "org.freedesktop.ModemManager1";
/// Where ModemManager keeps its modems: a device `Udi` under this is one.
const MM_MODEM_PREFIX: &str = "/org/freedesktop/ModemManager1/Modem/";
/// MMModem3gppRegistrationState: registered on a foreign (roaming) network.
pub const MM_REGISTRATION_ROAMING: u32 = 5;

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

    /// For Wi-Fi, the access point in use.
    #[zbus(property)]
    fn specific_object(&self) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.AccessPoint",
    default_service = "org.freedesktop.NetworkManager"
)]
trait AccessPoint {
    /// The SSID, as bytes (not necessarily UTF-8).
    #[zbus(property)]
    fn ssid(&self) -> zbus::Result<Vec<u8>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.ModemManager1.Modem.Modem3gpp",
    default_service = "org.freedesktop.ModemManager1"
)]
trait Modem3gpp {
    /// MMModem3gppRegistrationState (1 home, 5 roaming, ...).
    #[zbus(property)]
    fn registration_state(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Device",
    default_service = "org.freedesktop.NetworkManager"
)]
trait Device {
    /// The kernel interface name.
    #[zbus(property)]
    fn interface(&self) -> zbus::Result<String>;

    /// Who manages the device; for a modem, its ModemManager object path.
    #[zbus(property)]
    fn udi(&self) -> zbus::Result<String>;
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
    Ok(read_with(conn, &nm).await?.0)
}

/// Reads the uplink; also returns the ModemManager modem behind it, if any,
/// so that its roaming state can be followed.
async fn read_with(
    conn: &zbus::Connection,
    nm: &NetworkManagerProxy<'_>,
) -> Result<(Option<Network>, Option<OwnedObjectPath>)> {
    let primary = nm.primary_connection().await?;
    if primary.as_str() == "/" {
        return Ok((None, None));
    }
    let metered = Metered::from_networkmanager(nm.metered().await?);
    let active = ActiveConnectionProxy::builder(conn)
        .path(primary.clone())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let profile_name = active.id().await.unwrap_or_default();
    let uuid = active.uuid().await.unwrap_or_default();
    let kind = kind_from_connection_type(&active.connection_type().await.unwrap_or_default());
    let mut name = profile_name.clone();
    if kind == NetworkKind::Wifi {
        if let Some(ssid) = access_point_ssid(conn, &active).await {
            name = ssid;
        }
    }
    let mut interface = None;
    let mut modem = None;
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
        if kind == NetworkKind::Cellular {
            modem = device
                .udi()
                .await
                .ok()
                .filter(|udi| udi.starts_with(MM_MODEM_PREFIX))
                .and_then(|udi| OwnedObjectPath::try_from(udi).ok());
        }
    }
    let roaming = match &modem {
        Some(modem) => modem_roaming(conn, modem).await,
        None => false,
    };
    // Stable id: the UUID; else the SSID or profile name; else the object path.
    let id = [uuid, name.clone(), profile_name]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| primary.to_string());
    let name = if name.is_empty() { id.clone() } else { name };
    Ok((
        Some(Network {
            id: NetworkId(id),
            name,
            kind,
            metered,
            metered_source: MeteredSource::NetworkManager,
            roaming,
            interface,
            underlying: None,
        }),
        modem,
    ))
}

/// The SSID of a Wi-Fi connection's access point, if it can be read and is
/// not empty (a hidden network's may be).
async fn access_point_ssid(
    conn: &zbus::Connection,
    active: &ActiveConnectionProxy<'_>,
) -> Option<String> {
    let path = active.specific_object().await.ok()?;
    if path.as_str() == "/" {
        return None;
    }
    let ap = AccessPointProxy::builder(conn)
        .path(path)
        .ok()?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .ok()?;
    let ssid = ap.ssid().await.ok()?;
    let ssid = String::from_utf8_lossy(&ssid).trim().to_owned();
    (!ssid.is_empty()).then_some(ssid)
}

/// Whether ModemManager says `modem` is registered while roaming. If it
/// cannot be asked, not roaming: NetworkManager's own `Metered` still holds.
async fn modem_roaming(conn: &zbus::Connection, modem: &OwnedObjectPath) -> bool {
    let state = async {
        Modem3gppProxy::builder(conn)
            .path(modem.clone())?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?
            .registration_state()
            .await
    }
    .await;
    match state {
        Ok(state) => state == MM_REGISTRATION_ROAMING,
        Err(error) => {
            tracing::debug!(%error, modem = %modem.as_str(), "cannot read the modem's registration");
            false
        }
    }
}

/// Follows a modem's registration state changes (its PropertiesChanged).
async fn modem_changes(
    conn: &zbus::Connection,
    modem: &OwnedObjectPath,
) -> Option<zbus::proxy::PropertyStream<'static, u32>> {
    let proxy = Modem3gppProxy::builder(conn)
        .path(modem.clone())
        .ok()?
        .build()
        .await
        .ok()?;
    Some(proxy.receive_registration_state_changed().await)
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
    let (first, mut modem) = read_with(&conn, &nm).await?;
    // The modem's signals, subscribed to before its state is read again.
    let mut roaming_changes = match &modem {
        Some(path) => modem_changes(&conn, path).await,
        None => None,
    };
    let (tx, rx) = watch::channel(first);
    if roaming_changes.is_some() {
        // A change between the first read and the subscription.
        if let Ok((network, _)) = read_with(&conn, &nm).await {
            publish(&tx, network);
        }
    }
    let task = tokio::spawn(async move {
        loop {
            let roaming_change = async {
                match roaming_changes.as_mut() {
                    Some(stream) => stream.next().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            let more = tokio::select! {
                change = metered_changes.next() => change.is_some(),
                change = primary_changes.next() => change.is_some(),
                alive = roaming_change => {
                    if !alive {
                        roaming_changes = None;
                    }
                    true
                }
                _ = tx.closed() => return,
            };
            if !more {
                tracing::warn!("NetworkManager signal stream ended");
                return;
            }
            match read_with(&conn, &nm).await {
                Ok((mut network, now_modem)) => {
                    if now_modem != modem {
                        roaming_changes = match &now_modem {
                            Some(path) => modem_changes(&conn, path).await,
                            None => None,
                        };
                        modem = now_modem;
                        // Read again: a change before the subscription.
                        if let Ok((again, _)) = read_with(&conn, &nm).await {
                            network = again;
                        }
                    }
                    publish(&tx, network)
                }
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
    const AP_PATH: &str = "/org/freedesktop/NetworkManager/AccessPoint/7";
    const MODEM_PATH: &str = "/org/freedesktop/ModemManager1/Modem/0";

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

    struct FakeActive {
        connection_type: &'static str,
    }

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
            self.connection_type.into()
        }
        #[zbus(property)]
        fn devices(&self) -> Vec<OwnedObjectPath> {
            vec![ObjectPath::try_from(DEV_PATH).unwrap().into()]
        }
        #[zbus(property)]
        fn specific_object(&self) -> OwnedObjectPath {
            ObjectPath::try_from(AP_PATH).unwrap().into()
        }
    }

    struct FakeAccessPoint;

    #[zbus::interface(name = "org.freedesktop.NetworkManager.AccessPoint")]
    impl FakeAccessPoint {
        #[zbus(property)]
        fn ssid(&self) -> Vec<u8> {
            b"Caf\xc3\xa9 Lumi\xc3\xa8re".to_vec()
        }
    }

    struct FakeDevice {
        interface: &'static str,
        udi: &'static str,
    }

    #[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
    impl FakeDevice {
        #[zbus(property)]
        fn interface(&self) -> String {
            self.interface.into()
        }
        #[zbus(property)]
        fn udi(&self) -> String {
            self.udi.into()
        }
    }

    struct FakeModem {
        registration_state: u32,
    }

    #[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Modem3gpp")]
    impl FakeModem {
        #[zbus(property)]
        fn registration_state(&self) -> u32 {
            self.registration_state
        }
    }

    /// Serves a stand-in NetworkManager whose primary connection is of
    /// `connection_type` on `device`.
    async fn serve_nm(
        bus: &PrivateBus,
        connection_type: &'static str,
        device: FakeDevice,
    ) -> zbus::Connection {
        zbus::connection::Builder::address(bus.address.as_str())
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
            .serve_at(AC_PATH, FakeActive { connection_type })
            .unwrap()
            .serve_at(AP_PATH, FakeAccessPoint)
            .unwrap()
            .serve_at(DEV_PATH, device)
            .unwrap()
            .build()
            .await
            .unwrap()
    }

    async fn client(bus: &PrivateBus) -> zbus::Connection {
        zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }

    async fn next(rx: &mut NetworkWatch) -> Option<Network> {
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("change within 5 s")
            .unwrap();
        rx.borrow_and_update().clone()
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
        let device = FakeDevice {
            interface: "wlan0",
            udi: "/sys/devices/pci0000:00/0000:00:14.3/net/wlan0",
        };
        let server = serve_nm(&bus, "802-11-wireless", device).await;
        let (mut rx, task) = watch_networkmanager(client(&bus).await).await.unwrap();
        let first = rx.borrow_and_update().clone().unwrap();
        assert_eq!(first.id.as_str(), "0b7a5c1e-1111-2222-3333-444455556666");
        assert_eq!(
            first.name, "Café Lumière",
            "named by the access point's SSID"
        );
        assert!(!first.roaming);
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

    #[tokio::test]
    async fn cellular_roaming_comes_from_modemmanager_and_is_followed() {
        let Some(bus) = start_private_bus() else {
            return;
        };
        let modem_manager = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name(MM_SERVICE)
            .unwrap()
            .serve_at(
                MODEM_PATH,
                FakeModem {
                    registration_state: 1,
                },
            ) // home
            .unwrap()
            .build()
            .await
            .unwrap();
        let device = FakeDevice {
            interface: "wwan0",
            udi: MODEM_PATH,
        };
        let _nm = serve_nm(&bus, "gsm", device).await;
        let (mut rx, task) = watch_networkmanager(client(&bus).await).await.unwrap();
        let first = rx.borrow_and_update().clone().unwrap();
        assert_eq!(first.kind, NetworkKind::Cellular);
        assert_eq!(first.name, "Pixel hotspot", "not Wi-Fi: the profile's name");
        assert_eq!(first.interface.as_deref(), Some("wwan0"));
        assert!(!first.roaming, "registered at home");

        // The modem registers on a foreign network: a change, by signal.
        let modem = modem_manager
            .object_server()
            .interface::<_, FakeModem>(MODEM_PATH)
            .await
            .unwrap();
        modem.get_mut().await.registration_state = MM_REGISTRATION_ROAMING;
        modem
            .get()
            .await
            .registration_state_changed(modem.signal_emitter())
            .await
            .unwrap();
        let roaming = next(&mut rx).await.unwrap();
        assert!(roaming.roaming && roaming.is_roaming());

        // Back home.
        modem.get_mut().await.registration_state = 1;
        modem
            .get()
            .await
            .registration_state_changed(modem.signal_emitter())
            .await
            .unwrap();
        assert!(!next(&mut rx).await.unwrap().roaming);
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
