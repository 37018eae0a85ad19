//! The whole link's traffic, from the kernel's interface byte counters
//! (`/sys/class/net/IF/statistics/{rx,tx}_bytes`). They count every
//! program, so the budget can show the agent's share and everyone else's.

use std::path::Path;

use crate::error::{PolicyError, Result};

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
}
