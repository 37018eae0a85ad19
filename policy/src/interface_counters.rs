//! The whole link's traffic, from the kernel's interface byte counters
//! (`/sys/class/net/IF/statistics/{rx,tx}_bytes`). They count every
//! program, so the budget can show the agent's share and everyone else's.
//! The last reading is kept in the database with the kernel's boot id, so
//! that what the link carried while capwise was stopped (an upgrade, a
//! crash) still counts when it starts again.

use std::path::Path;

use crate::error::{PolicyError, Result};
use crate::time::Timestamp;

/// Where the kernel tells which boot this is.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// A reading of an interface's counters, as kept between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReading {
    /// The interface read.
    pub interface: String,
    /// The kernel's boot id: counters compare only within one boot.
    pub boot_id: String,
    /// What the counters said.
    pub counters: Counters,
    /// When.
    pub at: Timestamp,
}

/// Names a file read instead of [`BOOT_ID_PATH`]: tests simulate a reboot
/// with it (the link meter and the agent's piece journal both follow it).
pub const BOOT_ID_FILE_ENV: &str = "CAPWISE_BOOT_ID_FILE";

/// This boot's id: from the file named by [`BOOT_ID_FILE_ENV`] when set,
/// else from [`BOOT_ID_PATH`].
pub fn current_boot_id() -> Result<String> {
    match std::env::var_os(BOOT_ID_FILE_ENV) {
        Some(path) => read_boot_id(Path::new(&path)),
        None => read_boot_id(Path::new(BOOT_ID_PATH)),
    }
}

/// The kernel's boot id, from `path` (normally [`BOOT_ID_PATH`]).
pub fn read_boot_id(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::io(path, e))?;
    let id = text.trim();
    if id.is_empty() || id.len() > 64 {
        return Err(PolicyError::invalid("boot id", format!("{id:?}")));
    }
    Ok(id.to_owned())
}

/// The longest gap between runs whose traffic is claimed: a restart, an
/// upgrade, a crash and its restart. Over a longer one the interface may
/// have joined other networks, whose traffic is not this network's.
pub const MAX_GAP_SECS: i64 = 15 * 60;

/// What the link carried between the reading `kept` from an earlier run and
/// `first`, this run's first reading, for a period that started at
/// `period_start`. Only a recent reading of the same interface in the same
/// boot and the same period can say it; otherwise nothing is claimed.
pub fn traffic_while_away(
    kept: Option<&LinkReading>,
    first: &LinkReading,
    period_start: Timestamp,
) -> Counters {
    match kept {
        Some(kept)
            if kept.interface == first.interface
                && kept.boot_id == first.boot_id
                && kept.at >= period_start
                && kept.at <= first.at
                && first.at.0 - kept.at.0 <= MAX_GAP_SECS =>
        {
            Counters {
                rx: since(kept.counters.rx, first.counters.rx),
                tx: since(kept.counters.tx, first.counters.tx),
            }
        }
        _ => Counters::default(),
    }
}

/// Byte counters of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Bytes received.
    pub rx: u64,
    /// Bytes sent.
    pub tx: u64,
}

/// Reads the counters of `interface` under `sys_class_net` (normally
/// `/sys/class/net`; a directory in tests).
pub fn read_counters(sys_class_net: &Path, interface: &str) -> Result<Counters> {
    if interface.contains('/') || interface.is_empty() {
        return Err(PolicyError::invalid("interface name", interface));
    }
    let stats = sys_class_net.join(interface).join("statistics");
    let read = |name: &str| -> Result<u64> {
        let path = stats.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError::io(&path, e))?;
        text.trim().parse().map_err(|_| {
            PolicyError::invalid("interface counter", format!("{}: {text:?}", path.display()))
        })
    };
    Ok(Counters {
        rx: read("rx_bytes")?,
        tx: read("tx_bytes")?,
    })
}

/// Turns successive counter readings into traffic deltas.
#[derive(Debug, Clone, Default)]
pub struct LinkMeter {
    last: Option<Counters>,
}

impl LinkMeter {
    /// A meter with no baseline yet.
    pub fn new() -> Self {
        LinkMeter::default()
    }

    /// Feeds a reading; returns the traffic since the previous one. The first
    /// reading only sets the baseline (what came before is not ours to know).
    /// A counter that went backwards was reset (interface re-created, driver
    /// reloaded): everything it shows now is new traffic.
    pub fn observe(&mut self, now: Counters) -> Counters {
        let delta = match self.last {
            None => Counters::default(),
            Some(last) => Counters {
                rx: since(last.rx, now.rx),
                tx: since(last.tx, now.tx),
            },
        };
        self.last = Some(now);
        delta
    }

    /// Forgets the baseline (e.g. the uplink changed to another interface).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

fn since(previous: u64, current: u64) -> u64 {
    if current >= previous {
        current - previous
    } else {
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sysfs_layout() {
        let dir = tempfile::tempdir().unwrap();
        let stats = dir.path().join("wlan0/statistics");
        std::fs::create_dir_all(&stats).unwrap();
        std::fs::write(stats.join("rx_bytes"), "12345\n").unwrap();
        std::fs::write(stats.join("tx_bytes"), "678\n").unwrap();
        assert_eq!(
            read_counters(dir.path(), "wlan0").unwrap(),
            Counters { rx: 12345, tx: 678 }
        );
        assert!(read_counters(dir.path(), "eth9").is_err());
        assert!(read_counters(dir.path(), "../etc").is_err());
        std::fs::write(stats.join("tx_bytes"), "lots").unwrap();
        assert!(read_counters(dir.path(), "wlan0").is_err());
    }

    #[test]
    fn deltas_with_baseline_and_counter_reset() {
        let mut m = LinkMeter::new();
        assert_eq!(
            m.observe(Counters { rx: 1000, tx: 100 }),
            Counters::default()
        );
        assert_eq!(
            m.observe(Counters { rx: 1500, tx: 150 }),
            Counters { rx: 500, tx: 50 }
        );
        // Interface re-created: counters restart from zero.
        assert_eq!(
            m.observe(Counters { rx: 40, tx: 160 }),
            Counters { rx: 40, tx: 10 }
        );
        m.reset();
        assert_eq!(m.observe(Counters { rx: 9, tx: 9 }), Counters::default());
    }

    #[test]
    fn traffic_while_away_counts_only_within_one_boot_interface_and_period() {
        let reading = |interface: &str, boot: &str, rx: u64, tx: u64, at: i64| LinkReading {
            interface: interface.into(),
            boot_id: boot.into(),
            counters: Counters { rx, tx },
            at: Timestamp(at),
        };
        let first = reading("wlan0", "b1", 5_000, 700, 2_000);
        let kept = reading("wlan0", "b1", 1_000, 100, 1_500);
        let period_start = Timestamp(0);
        assert_eq!(
            traffic_while_away(Some(&kept), &first, period_start),
            Counters { rx: 4_000, tx: 600 }
        );
        // Nothing kept, another boot, too long ago, another interface, an
        // earlier period, or a reading from the future (clock stepped back):
        // nothing claimed.
        assert_eq!(
            traffic_while_away(None, &first, period_start),
            Counters::default()
        );
        for other in [
            reading("wlan0", "b0", 1_000, 100, 1_500),
            reading("wlan0", "b1", 1_000, 100, 2_000 - MAX_GAP_SECS - 1),
            reading("usb0", "b1", 1_000, 100, 1_500),
            reading("wlan0", "b1", 1_000, 100, -1),
            reading("wlan0", "b1", 1_000, 100, 2_001),
        ] {
            assert_eq!(
                traffic_while_away(Some(&other), &first, period_start),
                Counters::default(),
                "{other:?}"
            );
        }
        // The interface was re-created meanwhile: all it shows is new.
        let reset = reading("wlan0", "b1", 9_000, 9_000, 1_500);
        assert_eq!(
            traffic_while_away(Some(&reset), &first, period_start),
            Counters { rx: 5_000, tx: 700 }
        );
    }

    #[test]
    fn boot_id_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot_id");
        std::fs::write(&path, "0c5a8f4e-aaaa-bbbb-cccc-0123456789ab\n").unwrap();
        assert_eq!(
            read_boot_id(&path).unwrap(),
            "0c5a8f4e-aaaa-bbbb-cccc-0123456789ab"
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(read_boot_id(&path).is_err());
        assert!(read_boot_id(&dir.path().join("none")).is_err());
    }
}
