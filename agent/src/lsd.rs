//! Local service discovery (BEP 14) for the agent's session: on unless
//! `--no-lsd` or `lsd.enabled = false`, never on a VPN (the interface
//! filter asks the policy's sysfs probe, which also names the uplink's
//! kind; the engine already refuses loopback and point-to-point links such
//! as tun, WireGuard and PPP), and on a metered interface as on any other:
//! LAN traffic is not billed, so a branch on an LTE uplink finds its LAN
//! peers this way. The kernel's link and address notifications make the
//! session pick up interfaces that come and go, without a restart.

use capwise_engine::session::{InterfaceFilter, Session, SessionConfig};
use capwise_policy::source::route_events::RouteEvents;
use capwise_policy::source::sysfs::SysfsProbe;
use tokio::task::JoinHandle;

/// Turns LSD on in `config` when `enabled`, off VPN interfaces.
pub fn configure(config: &mut SessionConfig, enabled: bool) {
    config.lsd = enabled;
    let probe = SysfsProbe::default();
    config.lsd_interfaces = InterfaceFilter::new(move |name| !probe.is_vpn(name));
}

/// Follows the machine's interfaces while it lives (dropping it stops).
pub struct InterfaceFollower(Option<JoinHandle<()>>);

impl Drop for InterfaceFollower {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Re-scans the session's LSD interfaces on every change the kernel
/// reports (a burst counts once); nothing when LSD is off.
pub fn follow_interfaces(session: &Session, enabled: bool) -> InterfaceFollower {
    if !enabled {
        return InterfaceFollower(None);
    }
    let mut events = match RouteEvents::subscribe() {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "no interface notifications: LSD keeps the interfaces it started on");
            return InterfaceFollower(None);
        }
    };
    let session = session.clone();
    InterfaceFollower(Some(tokio::spawn(async move {
        // Whatever changed between the session's start and the subscription.
        session.rescan_lsd();
        while events.changed().await.is_ok() {
            session.rescan_lsd();
        }
    })))
}
