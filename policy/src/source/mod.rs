//! Where the current uplink comes from. Every source publishes on a
//! `tokio::sync::watch` channel: `Some(network)` for the uplink, `None` when
//! offline. A new value is a network change.
//!
//! - [`file`]: `--network-file FILE` (TOML), re-read when rewritten.
//! - [`sysfs`]: Linux without NetworkManager: kernel routes, sysfs, DHCP leases,
//!   re-read on the kernel's [`route_events`].
//! - [`nm`]: NetworkManager over D-Bus, followed through PropertiesChanged.
//!
//! Beside the uplink, [`upower`] follows the power state (on battery, the
//! charge left) the same way, on a channel of its own.

pub mod file;
pub mod nm;
pub mod route_events;
pub mod sysfs;
#[cfg(test)]
mod test_bus;
pub mod upower;

use tokio::sync::watch;

use crate::network::Network;

/// The receiving end of a network source.
pub type NetworkWatch = watch::Receiver<Option<Network>>;

/// Publishes `next` only if it differs, so receivers see real changes only.
pub(crate) fn publish(tx: &watch::Sender<Option<Network>>, next: Option<Network>) {
    tx.send_if_modified(|current| {
        if *current == next {
            false
        } else {
            *current = next;
            true
        }
    });
}
