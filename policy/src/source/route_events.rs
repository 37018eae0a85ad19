//! The kernel's route, link and address notifications (rtnetlink multicast
//! groups), so the sysfs source re-reads the uplink when something changed
//! instead of polling: an idle laptop should not wake up every few seconds
//! to ask whether its default route moved.

use std::io;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};

/// `RTMGRP_*` from `<linux/rtnetlink.h>`: links, IPv4/IPv6 addresses and routes.
const GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;

/// Notifications that arrive within this of each other are one change (a
/// new uplink brings a link, an address and a route message in a burst).
pub const SETTLE: Duration = Duration::from_millis(150);

/// At most this many messages are drained per change, so a flood of
/// notifications cannot keep the watcher from re-probing.
const DRAIN_LIMIT: usize = 1024;

/// A subscription to the kernel's routing notifications.
pub struct RouteEvents {
    socket: TokioSocket,
}

impl RouteEvents {
    /// Subscribes. Fails where netlink is unavailable (not Linux, seccomp).
    pub fn subscribe() -> io::Result<RouteEvents> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        socket.socket_mut().bind(&SocketAddr::new(0, GROUPS))?;
        Ok(RouteEvents { socket })
    }

    /// Waits for the next change: one notification, then whatever follows
    /// it within [`SETTLE`]. What changed is not decoded: the caller probes
    /// the whole uplink again, which is cheap and cannot miss a field.
    pub async fn changed(&mut self) -> io::Result<()> {
        self.socket.recv_from_full().await?;
        for _ in 0..DRAIN_LIMIT {
            match tokio::time::timeout(SETTLE, self.socket.recv_from_full()).await {
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => return Err(error),
                Err(_elapsed) => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding an address is a change the watcher must see. The test makes
    /// its own network namespace (on its thread only) so it changes nothing
    /// on the machine; without the privilege for that it says so and passes.
    #[test]
    fn an_address_change_is_noticed() {
        let outcome = std::thread::spawn(|| {
            // SAFETY: unshare(2) with CLONE_NEWNET affects only this thread,
            // which no other code shares.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "no private network namespace: {}",
                    io::Error::last_os_error()
                ));
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut events = RouteEvents::subscribe().map_err(|e| e.to_string())?;
                // Children forked from this thread live in its namespace.
                let up = std::process::Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .map_err(|e| format!("no `ip` here: {e}"))?;
                assert!(up.success());
                let seen = tokio::time::timeout(Duration::from_secs(5), events.changed()).await;
                Ok(matches!(seen, Ok(Ok(()))))
            })
        })
        .join()
        .expect("the namespace thread panicked");
        match outcome {
            Ok(seen) => assert!(seen, "bringing loopback up sent no notification"),
            Err(why) => {
                // Where scripts/test runs as root, a namespace must be possible.
                assert!(
                    std::env::var_os("CAPWISE_REQUIRE_TOOLS").is_none(),
                    "cannot test in a namespace ({why}) and CAPWISE_REQUIRE_TOOLS is set"
                );
                eprintln!("skipped: {why}");
            }
        }
    }
}
