//! The engine follows the machine's addresses and routes. On each of the
//! kernel's rtnetlink notifications (links, addresses, routes: the
//! subscription the sysfs network source uses, heard here whatever the
//! network source is, since a network file or NetworkManager says nothing
//! of addresses), the session is told (`Session::network_changed`): the
//! LAN/WAN classifier reads the interfaces again and connected peers take
//! their new class, connections from an address that is gone close at once
//! and their peers are dialled again, and trackers hear the new address.

use std::time::Duration;

use capwise_engine::session::Session;
use capwise_policy::source::route_events::RouteEvents;
use tokio::task::JoinHandle;

/// Where the kernel's notifications cannot be had, the addresses are
/// looked at this often (an idle agent must not wake often).
const FALLBACK_POLL: Duration = Duration::from_secs(30);

/// Follows the machine's addresses for `session` until the task is aborted.
pub fn follow(session: Session) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut events = match RouteEvents::subscribe() {
            Ok(events) => Some(events),
            Err(error) => {
                tracing::info!(%error, "no routing notifications; looking at the addresses every 30 s");
                None
            }
        };
        loop {
            match events.as_mut() {
                Some(e) => {
                    if let Err(error) = e.changed().await {
                        tracing::warn!(%error, "routing notifications failed; polling the addresses");
                        events = None;
                        continue;
                    }
                }
                None => tokio::time::sleep(FALLBACK_POLL).await,
            }
            session.network_changed();
        }
    })
}
