//! The session's interface ([`SessionConfig::interface`]): every socket is
//! bound to it (`egress.rs`), and this follows the device itself, so that
//! the caller can say why nothing moves, and so that the long-lived
//! sockets follow a device made anew.
//!
//! A device that goes down keeps its index: the sockets bound to it wait
//! (the kernel refuses to send through it) and go on once it is up again.
//! A device that is deleted takes its index with it, and one made again
//! under the same name (`wg-quick down; wg-quick up`, a VPN reconnecting)
//! has a new one: sockets opened for one dial, announce or request bind it
//! by name and so take the new device, but the TCP listener, the UDP socket
//! uTP and the DHT share and the QUIC endpoint's socket are still bound to
//! the old index and reach nothing. [`BoundInterface::refresh`] binds them
//! to the new device. Linux lets a process move a bound socket only with
//! `CAP_NET_RAW`; without it they stay where they were (nothing leaves by
//! another route either way) and the status says that a restart is needed.
//! A device missing when the session starts is the same case: the
//! long-lived sockets wait on an index no device has (`egress::Device::Missing`).
//!
//! [`Session::network_changed`](super::Session::network_changed) calls
//! [`BoundInterface::refresh`] (the agent calls it on the kernel's link,
//! address and route notifications).
//!
//! [`SessionConfig::interface`]: super::SessionConfig::interface

use std::net::UdpSocket as StdUdpSocket;
use std::sync::{Arc, Mutex, Weak};

use socket2::SockRef;
use tokio::net::{TcpListener, UdpSocket};

use crate::egress::{self, Device};
use crate::netif;

/// `IFF_UP` from `<net/if.h>`.
const IFF_UP: u32 = 0x1;

/// What became of the session's interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceState {
    /// There and up: traffic goes through it.
    Up,
    /// There but down: nothing moves until it is up again.
    Down,
    /// No such device: nothing moves until it is back.
    Missing,
    /// Back as a new device, but the listening sockets could not be moved
    /// onto it (the error; moving a bound socket needs `CAP_NET_RAW`):
    /// nothing reaches them until capwise restarts.
    Stale(String),
}

/// The session's interface and its state, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    /// The device's name.
    pub name: String,
    /// Its state.
    pub state: InterfaceState,
}

impl InterfaceStatus {
    /// "up", "down", "missing" or "stale".
    pub fn state_word(&self) -> &'static str {
        match self.state {
            InterfaceState::Up => "up",
            InterfaceState::Down => "down",
            InterfaceState::Missing => "missing",
            InterfaceState::Stale(_) => "stale",
        }
    }

    /// Why no traffic moves, in words; `None` while the interface is up.
    pub fn problem(&self) -> Option<String> {
        let name = &self.name;
        match &self.state {
            InterfaceState::Up => None,
            InterfaceState::Down => Some(format!(
                "Interface {name} is down: no BitTorrent traffic moves until it is up again \
                 (nothing is sent by another route)."
            )),
            InterfaceState::Missing => Some(format!(
                "Interface {name} is missing: no BitTorrent traffic moves until it is back \
                 (nothing is sent by another route)."
            )),
            InterfaceState::Stale(error) => Some(format!(
                "Interface {name} came back as a new device, but capwise's listening sockets \
                 cannot be moved onto it ({error}); restart capwise to use it (nothing is sent \
                 by another route meanwhile)."
            )),
        }
    }
}

/// A long-lived socket to move onto a new device.
enum Held {
    /// The TCP listener (its accept loop owns it).
    Listener(Weak<TcpListener>),
    /// The UDP socket uTP and the DHT share.
    Udp(Weak<UdpSocket>),
    /// A duplicate of the QUIC endpoint's socket (quinn owns it; the
    /// duplicate lives as long as the session, as the endpoint does).
    Socket(StdUdpSocket),
}

impl Held {
    /// Binds it to `name`; `None` when the socket is gone.
    fn rebind(&self, name: &str) -> Option<std::io::Result<()>> {
        match self {
            Held::Listener(l) => l
                .upgrade()
                .map(|l| egress::rebind(SockRef::from(&*l), name)),
            Held::Udp(u) => u
                .upgrade()
                .map(|u| egress::rebind(SockRef::from(&*u), name)),
            Held::Socket(s) => Some(egress::rebind(SockRef::from(s), name)),
        }
    }
}

struct Tracked {
    /// The index the long-lived sockets are bound to (`None`: to no device).
    bound: Option<u32>,
    state: InterfaceState,
    sockets: Vec<Held>,
}

/// The session's interface, its state and the sockets bound to it.
pub(crate) struct BoundInterface {
    name: Arc<str>,
    tracked: Mutex<Tracked>,
}

/// The device called `name` now: its index and whether it is up; `None`
/// when there is none.
fn look(name: &str) -> Option<(u32, bool)> {
    let all = netif::list().ok()?;
    let found = all.into_iter().find(|i| i.name == name)?;
    Some((found.index, found.flags & IFF_UP != 0))
}

impl BoundInterface {
    /// The interface called `name` as it is now; [`Self::device`] says how
    /// to bind the long-lived sockets.
    pub(crate) fn new(name: &str) -> BoundInterface {
        let now = look(name);
        let state = match now {
            None => InterfaceState::Missing,
            Some((_, true)) => InterfaceState::Up,
            Some((_, false)) => InterfaceState::Down,
        };
        match &state {
            InterfaceState::Up => tracing::info!(interface = name, "all BitTorrent traffic is bound to {name}"),
            _ => tracing::warn!(
                interface = name,
                "all BitTorrent traffic is bound to {name}, which is {}: nothing moves until it is up",
                if state == InterfaceState::Missing { "missing" } else { "down" }
            ),
        }
        BoundInterface {
            name: name.into(),
            tracked: Mutex::new(Tracked {
                bound: now.map(|(index, _)| index),
                state,
                sockets: Vec::new(),
            }),
        }
    }

    /// Its name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// How the long-lived sockets are bound at the start: to the device, or
    /// to no device while it is missing.
    pub(crate) fn device(&self) -> Device<'_> {
        match self.lock().bound {
            Some(_) => Device::Named(&self.name),
            None => Device::Missing,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the TCP listener.
    pub(crate) fn hold_listener(&self, listener: &Arc<TcpListener>) {
        self.lock()
            .sockets
            .push(Held::Listener(Arc::downgrade(listener)));
    }

    /// Follows the shared UDP socket.
    pub(crate) fn hold_udp(&self, socket: &Arc<UdpSocket>) {
        self.lock().sockets.push(Held::Udp(Arc::downgrade(socket)));
    }

    /// Follows a socket handed to another owner, through a duplicate of it.
    pub(crate) fn hold_socket(&self, socket: &StdUdpSocket) {
        match socket.try_clone() {
            Ok(dup) => self.lock().sockets.push(Held::Socket(dup)),
            Err(error) => tracing::warn!(%error, "cannot follow a socket onto a new device"),
        }
    }

    /// The state now.
    pub(crate) fn status(&self) -> InterfaceStatus {
        InterfaceStatus {
            name: self.name.to_string(),
            state: self.lock().state.clone(),
        }
    }

    /// Looks at the device again: a new index moves the long-lived sockets
    /// onto it; a change of state is logged. True when the state changed.
    pub(crate) fn refresh(&self) -> bool {
        let now = look(&self.name);
        let mut t = self.lock();
        let state = match now {
            None => InterfaceState::Missing,
            Some((index, up)) if t.bound != Some(index) => {
                // Made anew: the sockets follow it, or say why not.
                let failed = t
                    .sockets
                    .iter()
                    .filter_map(|s| s.rebind(&self.name))
                    .find_map(Result::err);
                match failed {
                    None => {
                        t.bound = Some(index);
                        tracing::info!(
                            interface = %self.name,
                            index,
                            "the listening sockets are bound to the new {} device",
                            self.name
                        );
                        if up {
                            InterfaceState::Up
                        } else {
                            InterfaceState::Down
                        }
                    }
                    Some(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                        InterfaceState::Stale(
                            "moving a bound socket needs CAP_NET_RAW, which capwise does not have"
                                .into(),
                        )
                    }
                    Some(error) => InterfaceState::Stale(error.to_string()),
                }
            }
            Some((_, true)) => InterfaceState::Up,
            Some((_, false)) => InterfaceState::Down,
        };
        if state == t.state {
            return false;
        }
        let was = std::mem::replace(&mut t.state, state.clone());
        drop(t);
        let status = self.status();
        match status.problem() {
            Some(problem) => tracing::warn!(interface = %self.name, was = ?was, "{problem}"),
            None => tracing::info!(
                interface = %self.name,
                was = ?was,
                "interface {} is up: BitTorrent traffic goes through it again",
                self.name
            ),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_waits_and_says_so() {
        let b = BoundInterface::new("cw-no-such1");
        assert_eq!(b.device(), Device::Missing);
        let status = b.status();
        assert_eq!(status.state, InterfaceState::Missing);
        assert_eq!(status.state_word(), "missing");
        let problem = status.problem().unwrap();
        assert!(
            problem.starts_with("Interface cw-no-such1 is missing"),
            "{problem}"
        );
        assert!(!b.refresh(), "nothing changed");
    }

    #[test]
    fn loopback_is_up_and_has_no_problem() {
        let b = BoundInterface::new("lo");
        assert_eq!(b.device(), Device::Named("lo"));
        assert_eq!(b.status().state, InterfaceState::Up);
        assert_eq!(b.status().problem(), None);
        assert!(!b.refresh());
    }
}
