//! Where the current uplink comes from. Every source publishes on a
//! `tokio::sync::watch` channel: `Some(network)` for the uplink, `None` when
//! offline. A new value is a network change.
//!
//! - [`file`]: `--network-file FILE` (TOML), re-read when rewritten.
//! - [`sysfs`]: Linux without NetworkManager: kernel routes, sysfs, DHCP leases,
//!   re-read on the kernel's [`route_events`].
//! - [`nm`]: NetworkManager over D-Bus, followed through PropertiesChanged.

pub mod file;
pub mod nm;
pub mod route_events;
pub mod sysfs;

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
