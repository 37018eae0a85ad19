//! UPower over D-Bus: whether the machine runs on battery (`OnBattery` of
//! `org.freedesktop.UPower`) and the charge left (`Percentage` of the
//! display device, UPower's one battery standing for all of them). Both
//! are followed through PropertiesChanged signals, not polling, and
//! published as a [`Power`] on a watch channel.
//!
//! A desktop's display device exists too, with no battery behind it; that
//! does not matter, since only `OnBattery` says the machine is on battery.

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{PolicyError, Result};
use crate::power::Power;

/// The UPower service name.
pub const SERVICE: &str = "org.freedesktop.UPower";
/// UPower's object.
pub const PATH: &str = "/org/freedesktop/UPower";
/// The composite battery that desktops show.
pub const DISPLAY_DEVICE_PATH: &str = "/org/freedesktop/UPower/devices/DisplayDevice";

/// The receiving end of the power source.
pub type PowerWatch = watch::Receiver<Power>;

#[zbus::proxy(
    interface = "org.freedesktop.UPower",
    default_service = "org.freedesktop.UPower",
    default_path = "/org/freedesktop/UPower"
)]
trait UPower {
    /// Whether the machine runs on battery.
    #[zbus(property)]
    fn on_battery(&self) -> zbus::Result<bool>;
}

#[zbus::proxy(
    interface = "org.freedesktop.UPower.Device",
    default_service = "org.freedesktop.UPower",
    default_path = "/org/freedesktop/UPower/devices/DisplayDevice"
)]
trait Device {
    /// The charge left, 0–100.
    #[zbus(property)]
    fn percentage(&self) -> zbus::Result<f64>;
}

fn upower_error(error: zbus::Error) -> PolicyError {
    PolicyError::UPower(error)
}

/// The power state now. An error when UPower does not answer; a display
/// device that cannot be read is an unknown charge.
pub async fn read_power(conn: &zbus::Connection) -> Result<Power> {
    let upower = UPowerProxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(upower_error)?;
    let device = DeviceProxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(upower_error)?;
    read_with(&upower, &device).await
}

async fn read_with(upower: &UPowerProxy<'_>, device: &DeviceProxy<'_>) -> Result<Power> {
    let on_battery = upower.on_battery().await.map_err(upower_error)?;
    let percentage = match device.percentage().await {
        Ok(p) => Some(p),
        Err(error) => {
            tracing::debug!(%error, "cannot read UPower's display device");
            None
        }
    };
    Ok(Power::from_upower(on_battery, percentage))
}

/// Reads the power state and follows UPower's PropertiesChanged signals for
/// `OnBattery` and the display device's `Percentage`, publishing each
/// change. An error when UPower is not on the bus.
pub async fn watch_upower(conn: zbus::Connection) -> Result<(PowerWatch, JoinHandle<()>)> {
    let upower = UPowerProxy::new(&conn).await.map_err(upower_error)?;
    let device = DeviceProxy::new(&conn).await.map_err(upower_error)?;
    // Subscribe before the first read so no change slips between them.
    let mut battery_changes = upower.receive_on_battery_changed().await;
    let mut percentage_changes = device.receive_percentage_changed().await;
    let first = read_with(&upower, &device).await?;
    let (tx, rx) = watch::channel(first);
    let task = tokio::spawn(async move {
        loop {
            let more = tokio::select! {
                change = battery_changes.next() => change.is_some(),
                change = percentage_changes.next() => change.is_some(),
                _ = tx.closed() => return,
            };
            if !more {
                tracing::warn!("UPower signal stream ended");
                return;
            }
            match read_with(&upower, &device).await {
                Ok(power) => {
                    tx.send_if_modified(|current| {
                        let changed = *current != power;
                        *current = power;
                        changed
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot read UPower's state"),
            }
        }
    });
    Ok((rx, task))
}

#[cfg(test)]
mod tests {
    use super::super::test_bus::{start_private_bus, PrivateBus};
    use super::*;
    use crate::decision::{decide, Allowance, DecisionInput, Offline, Reason, Settings};
    use crate::network::{Metered, Network, NetworkId};
    use crate::time::Timestamp;
    use std::time::Duration;

    struct FakeUPower {
        on_battery: bool,
    }

    #[zbus::interface(name = "org.freedesktop.UPower")]
    impl FakeUPower {
        #[zbus(property)]
        fn on_battery(&self) -> bool {
            self.on_battery
        }
    }

    struct FakeDisplayDevice {
        percentage: f64,
    }

    #[zbus::interface(name = "org.freedesktop.UPower.Device")]
    impl FakeDisplayDevice {
        #[zbus(property)]
        fn percentage(&self) -> f64 {
            self.percentage
        }
    }

    async fn connect(bus: &PrivateBus) -> zbus::Connection {
        zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }

    /// Waits (bounded: 5 s) until the watch shows `want`.
    async fn until(rx: &mut PowerWatch, want: Power) -> Power {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let now = *rx.borrow_and_update();
            if now == want {
                return now;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return now;
            }
        }
    }

    fn decision_on(power: Power) -> crate::decision::Decision {
        let home = Network {
            id: NetworkId::new("home"),
            name: "Home".into(),
            metered: Metered::No,
            ..Network::default()
        };
        decide(
            &DecisionInput {
                network: Some(&home),
                offline: Offline::NoRoute,
                budget: None,
                schedule: None,
                power,
                settings: &Settings::default(),
            },
            Timestamp(1_790_000_000),
        )
    }

    #[tokio::test]
    async fn follows_a_stand_in_upower_from_ac_to_battery_and_back() {
        let Some(bus) = start_private_bus() else {
            return;
        };
        let server = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name(SERVICE)
            .unwrap()
            .serve_at(PATH, FakeUPower { on_battery: false })
            .unwrap()
            .serve_at(DISPLAY_DEVICE_PATH, FakeDisplayDevice { percentage: 80.0 })
            .unwrap()
            .build()
            .await
            .unwrap();
        let (mut rx, task) = watch_upower(connect(&bus).await).await.unwrap();
        let first = *rx.borrow_and_update();
        assert_eq!(first, Power::Ac);
        let d = decision_on(first);
        assert_eq!(
            (d.reason, d.up_wan),
            (Reason::Unmetered, Allowance::Unlimited)
        );

        let upower = server
            .object_server()
            .interface::<_, FakeUPower>(PATH)
            .await
            .unwrap();
        let device = server
            .object_server()
            .interface::<_, FakeDisplayDevice>(DISPLAY_DEVICE_PATH)
            .await
            .unwrap();
        let set_percentage = |p: f64| {
            let device = device.clone();
            async move {
                device.get_mut().await.percentage = p;
                device
                    .get()
                    .await
                    .percentage_changed(device.signal_emitter())
                    .await
                    .unwrap();
            }
        };
        let set_on_battery = |b: bool| {
            let upower = upower.clone();
            async move {
                upower.get_mut().await.on_battery = b;
                upower
                    .get()
                    .await
                    .on_battery_changed(upower.signal_emitter())
                    .await
                    .unwrap();
            }
        };

        // Unplugged at 42%: uploads to the internet pause, background goes on.
        set_percentage(42.0).await;
        set_on_battery(true).await;
        let power = until(&mut rx, Power::Battery { percent: Some(42) }).await;
        assert_eq!(power, Power::Battery { percent: Some(42) });
        let d = decision_on(power);
        assert_eq!(d.reason, Reason::OnBattery);
        assert_eq!(d.up_wan, Allowance::Suspended);
        assert!(d.background_allowed);
        assert!(
            d.explanation
                .starts_with("On battery (42%): uploads to the internet paused"),
            "{}",
            d.explanation
        );

        // Draining under 30%: followed by the display device's own signal.
        set_percentage(27.4).await;
        let power = until(&mut rx, Power::Battery { percent: Some(27) }).await;
        let d = decision_on(power);
        assert!(!d.background_allowed, "{}", d.explanation);
        assert!(
            d.explanation.contains("background torrents wait"),
            "{}",
            d.explanation
        );

        // Plugged in again: nothing held back.
        set_on_battery(false).await;
        let power = until(&mut rx, Power::Ac).await;
        let d = decision_on(power);
        assert_eq!(
            (d.reason, d.up_wan),
            (Reason::Unmetered, Allowance::Unlimited)
        );
        assert!(d.background_allowed);
        task.abort();
    }

    #[tokio::test]
    async fn no_upower_on_the_bus_is_an_error_to_fall_back_on() {
        let Some(bus) = start_private_bus() else {
            return;
        };
        let conn = connect(&bus).await;
        let watched = tokio::time::timeout(Duration::from_secs(5), watch_upower(conn.clone()))
            .await
            .expect("an answer within 5 s");
        let Err(error) = watched else {
            panic!("no UPower on the bus, yet watching it succeeded");
        };
        let error = error.to_string();
        assert!(error.contains("UPower"), "{error}");
        assert!(read_power(&conn).await.is_err());
    }
}
