//! Human-readable byte sizes for the sentences the user reads.

use std::fmt;

/// A byte count shown in decimal units ("1.2 GB", "4.95 GB", "640 kB"), the
/// way carriers write data caps: three significant digits, so that a figure
/// such as a cap minus its reserve reads true (4.95 GB, not 5 GB).
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
        // Three significant digits, trailing zeros dropped; 999.6 kB rounds
        // up into the next unit (1 MB), not to "1000 kB".
        let decimals = |v: f64| {
            if v < 10.0 {
                2
            } else if v < 100.0 {
                1
            } else {
                0
            }
        };
        let round = |v: f64, d: i32| (v * 10f64.powi(d)).round() / 10f64.powi(d);
        let mut shown = round(value, decimals(value));
        if shown >= 1000.0 && unit + 1 < UNITS.len() {
            value /= 1000.0;
            unit += 1;
            shown = round(value, decimals(value));
        }
        let text = format!("{shown:.*}", decimals(shown) as usize);
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.')
        } else {
            &text
        };
        write!(f, "{text} {}", UNITS[unit])
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
        assert_eq!(HumanBytes(12_340_000).to_string(), "12.3 MB");
        assert_eq!(HumanBytes(640_000).to_string(), "640 kB");
        // A 5.5 GB cap less a 10% reserve is 4.95 GB, not "5 GB".
        assert_eq!(HumanBytes(4_950_000_000).to_string(), "4.95 GB");
        assert_eq!(HumanBytes(999_600).to_string(), "1 MB");
        assert_eq!(HumanBytes(20_000_000).to_string(), "20 MB");
        assert_eq!(HumanBytes(1_050).to_string(), "1.05 kB");
        assert_eq!(HumanRate(250_000).to_string(), "250 kB/s");
    }
}
