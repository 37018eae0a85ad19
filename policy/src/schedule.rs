//! Time windows with their own rules: free nights, business hours. A window
//! may cross midnight (22:00–06:00); it then belongs to the day it starts.
//! Windows are written in local wall-clock time of a zone, so "22:00" stays
//! 22:00 across daylight saving changes when the zone is a named one.

use crate::error::{PolicyError, Result};
use crate::time::{Timestamp, Weekday};
use crate::zone::Zone;

/// A set of weekdays as a bit mask (bit 0 = Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Days(pub u8);

impl Days {
    /// Every day.
    pub const EVERY_DAY: Days = Days(0b111_1111);
    /// Monday to Friday.
    pub const WEEKDAYS: Days = Days(0b001_1111);
    /// Saturday and Sunday.
    pub const WEEKEND: Days = Days(0b110_0000);

    /// True if `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.index()) != 0
    }
}

/// What a window does while it is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Traffic is free (e.g. the carrier's free nights): no limits, and it
    /// does not count against the budget.
    Free,
    /// Everything over the WAN waits (e.g. business hours on a shared link).
    Pause,
    /// Rates capped, in bytes per second; `None` leaves a direction alone.
    Limit {
        /// Download cap.
        down: Option<u64>,
        /// Upload cap.
        up: Option<u64>,
    },
}

/// A weekly time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Days on which the window starts.
    pub days: Days,
    /// Start, minutes after local midnight (0–1439).
    pub start_minute: u16,
    /// End, minutes after local midnight (0–1440); at or before the start
    /// means it ends the next day.
    pub end_minute: u16,
    /// What applies inside.
    pub rule: Rule,
}

impl Window {
    /// Rejects windows outside the day.
    pub fn validate(&self) -> Result<()> {
        if self.start_minute >= 1440 || self.end_minute > 1440 {
            return Err(PolicyError::invalid(
                "schedule window",
                format!(
                    "{}-{} is outside 0-1440 minutes",
                    self.start_minute, self.end_minute
                ),
            ));
        }
        Ok(())
    }

    /// True when the window is active at `minute` of local `day`.
    pub fn is_active(&self, day: Weekday, minute: u16) -> bool {
        let (start, end) = (self.start_minute, self.end_minute);
        if start < end {
            self.days.contains(day) && (start..end).contains(&minute)
        } else {
            // Crosses midnight: the evening part belongs to `day`, the
            // morning part to the day before.
            (self.days.contains(day) && minute >= start)
                || (self.days.contains(day.previous()) && minute < end)
        }
    }
}

/// A network's schedule: the first active window wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// The windows, in priority order.
    pub windows: Vec<Window>,
    /// The time zone the windows are written in.
    pub zone: Zone,
}

impl Schedule {
    /// The window in force at `now`, if any.
    pub fn active_at(&self, now: Timestamp) -> Option<&Window> {
        let local = self.zone.to_local(now);
        let minute = local.minute_of_day() as u16;
        self.windows
            .iter()
            .find(|w| w.is_active(local.weekday, minute))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::days_from_civil;

    fn at(y: i32, m: u32, d: u32, h: i64, min: i64) -> Timestamp {
        Timestamp(days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60)
    }

    fn free_nights_weekdays() -> Schedule {
        Schedule {
            windows: vec![Window {
                days: Days::WEEKDAYS,
                start_minute: 22 * 60,
                end_minute: 6 * 60,
                rule: Rule::Free,
            }],
            zone: Zone::UTC,
        }
    }

    #[test]
    fn window_crossing_midnight_belongs_to_its_start_day() {
        let s = free_nights_weekdays();
        // 2024-12-06 is a Friday, 12-07 a Saturday, 12-09 a Monday.
        assert!(
            s.active_at(at(2024, 12, 6, 23, 0)).is_some(),
            "Friday night"
        );
        assert!(
            s.active_at(at(2024, 12, 7, 5, 59)).is_some(),
            "Friday night, Saturday morning"
        );
        assert!(
            s.active_at(at(2024, 12, 7, 6, 0)).is_none(),
            "ends at 06:00"
        );
        assert!(
            s.active_at(at(2024, 12, 7, 23, 0)).is_none(),
            "Saturday night is not a weekday"
        );
        assert!(
            s.active_at(at(2024, 12, 9, 5, 0)).is_none(),
            "Sunday night not included"
        );
        assert!(s.active_at(at(2024, 12, 9, 21, 59)).is_none());
        assert!(s.active_at(at(2024, 12, 9, 22, 0)).is_some());
    }

    #[test]
    fn business_hours_in_local_time() {
        let s = Schedule {
            windows: vec![Window {
                days: Days::WEEKDAYS,
                start_minute: 9 * 60,
                end_minute: 17 * 60,
                rule: Rule::Pause,
            }],
            zone: Zone::Fixed(crate::time::UtcOffset::from_hm(-5, 0).unwrap()),
        };
        // 14:00Z Thursday is 09:00 at -05:00.
        assert_eq!(
            s.active_at(at(2024, 12, 5, 14, 0)).map(|w| w.rule),
            Some(Rule::Pause)
        );
        assert!(s.active_at(at(2024, 12, 5, 13, 59)).is_none());
        assert!(s.active_at(at(2024, 12, 5, 22, 0)).is_none());
    }

    #[test]
    fn invalid_windows_are_rejected() {
        let w = Window {
            days: Days::EVERY_DAY,
            start_minute: 1440,
            end_minute: 10,
            rule: Rule::Free,
        };
        assert!(w.validate().is_err());
    }

    #[test]
    fn a_named_zone_keeps_windows_on_the_wall_clock_across_daylight_saving() {
        let s = Schedule {
            windows: vec![Window {
                days: Days::EVERY_DAY,
                start_minute: 22 * 60,
                end_minute: 6 * 60,
                rule: Rule::Free,
            }],
            zone: Zone::named("Europe/Paris").unwrap(),
        };
        // Winter (UTC+1): 22:00 local is 21:00Z.
        assert!(s.active_at(at(2024, 1, 15, 21, 0)).is_some());
        assert!(s.active_at(at(2024, 1, 15, 20, 59)).is_none());
        // Summer (UTC+2): 22:00 local is 20:00Z; a fixed +01:00 would say 21:00Z.
        assert!(s.active_at(at(2024, 7, 15, 20, 0)).is_some());
        assert!(s.active_at(at(2024, 7, 15, 19, 59)).is_none());
        assert!(s.active_at(at(2024, 7, 16, 3, 59)).is_some());
        assert!(s.active_at(at(2024, 7, 16, 4, 0)).is_none());
    }
}
