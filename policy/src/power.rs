//! The machine's power state, as the decision sees it: on AC (or unknown:
//! a desktop, a server, no UPower) or on battery with the charge left.
//! A laptop on battery should not spend its charge seeding to strangers.

use std::fmt;

/// Where the machine's power comes from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Power {
    /// Mains power, or nothing says otherwise.
    #[default]
    Ac,
    /// Running on battery.
    Battery {
        /// The charge left in percent (0–100), if known.
        percent: Option<u8>,
    },
}

impl Power {
    /// From UPower's `OnBattery` and the display device's `Percentage`
    /// (a float 0–100; anything outside that or not a number is unknown).
    pub fn from_upower(on_battery: bool, percentage: Option<f64>) -> Power {
        if !on_battery {
            return Power::Ac;
        }
        let percent = percentage
            .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
            .map(|p| p.round() as u8);
        Power::Battery { percent }
    }

    /// Whether the machine runs on battery.
    pub fn on_battery(self) -> bool {
        matches!(self, Power::Battery { .. })
    }

    /// Whether the battery is below `percent` (false on AC or when the
    /// charge is not known: an unknown charge holds nothing back).
    pub fn below(self, percent: u8) -> bool {
        matches!(self, Power::Battery { percent: Some(p) } if p < percent)
    }
}

impl fmt::Display for Power {
    /// "on AC power", "on battery (42%)", "on battery".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Power::Ac => f.write_str("on AC power"),
            Power::Battery { percent: Some(p) } => write!(f, "on battery ({p}%)"),
            Power::Battery { percent: None } => f.write_str("on battery"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upower_values_map_to_a_power_state() {
        assert_eq!(Power::from_upower(false, Some(12.0)), Power::Ac);
        assert_eq!(
            Power::from_upower(true, Some(41.6)),
            Power::Battery { percent: Some(42) }
        );
        for odd in [f64::NAN, -1.0, 100.5] {
            assert_eq!(
                Power::from_upower(true, Some(odd)),
                Power::Battery { percent: None },
                "{odd}"
            );
        }
        assert_eq!(
            Power::from_upower(true, Some(42.0)).to_string(),
            "on battery (42%)"
        );
        assert!(Power::from_upower(true, Some(29.0)).below(30));
        assert!(!Power::from_upower(true, Some(30.0)).below(30));
        assert!(!Power::from_upower(true, None).below(30));
        assert!(!Power::Ac.below(30));
    }
}
