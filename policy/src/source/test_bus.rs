//! A private dbus-daemon for the D-Bus sources' tests: the stand-in
//! services (NetworkManager, UPower) are served on it over the real
//! protocol. Without dbus-daemon the tests skip, unless
//! CAPWISE_REQUIRE_TOOLS is set (scripts/test), where that is a failure.

use std::time::Duration;

/// A private dbus-daemon that lives as long as the value.
pub(crate) struct PrivateBus {
    child: std::process::Child,
    /// The bus's address, for `zbus::connection::Builder::address`.
    pub(crate) address: String,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start_private_bus() -> Option<PrivateBus> {
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
            // scripts/test installs it: there a missing one is a failure.
            assert!(
                std::env::var_os("CAPWISE_REQUIRE_TOOLS").is_none(),
                "dbus-daemon not available ({e}) and CAPWISE_REQUIRE_TOOLS is set"
            );
            eprintln!("SKIPPED: dbus-daemon not available ({e}); install the dbus-daemon package");
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
