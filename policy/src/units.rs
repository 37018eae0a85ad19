//! Human-readable byte sizes for the sentences the user reads.

use std::fmt;

/// A byte count shown in decimal units ("1.2 GB", "5 GB", "640 kB"), the way
/// carriers write data caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanBytes(pub u64);

impl fmt::Display for HumanBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1000.0 && unit + 1 < UNITS.len() {
            value /= 1000.0;
            unit += 1;
        }
        if unit == 0 {
            return write!(f, "{} B", self.0);
        }
        // One decimal below 10 (1.2 GB) unless it is whole (5 GB); none above.
        let rounded = (value * 10.0).round() / 10.0;
        if rounded < 10.0 && rounded.fract() != 0.0 {
            write!(f, "{rounded:.1} {}", UNITS[unit])
        } else {
            write!(f, "{:.0} {}", value.round(), UNITS[unit])
        }
    }
}

/// A rate in bytes per second, shown as "250 kB/s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanRate(pub u64);

impl fmt::Display for HumanRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", HumanBytes(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_carrier_writes_them() {
        assert_eq!(HumanBytes(0).to_string(), "0 B");
        assert_eq!(HumanBytes(999).to_string(), "999 B");
        assert_eq!(HumanBytes(1_200_000_000).to_string(), "1.2 GB");
        assert_eq!(HumanBytes(5_000_000_000).to_string(), "5 GB");
        assert_eq!(HumanBytes(12_340_000).to_string(), "12 MB");
        assert_eq!(HumanBytes(640_000).to_string(), "640 kB");
        assert_eq!(HumanRate(250_000).to_string(), "250 kB/s");
    }
}
