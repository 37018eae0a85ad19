//! Data-cap budgets: how much, over which period, what counts, and what is
//! kept back for the user. [`period_bounds`] is pure calendar arithmetic.

use crate::error::{PolicyError, Result};
use crate::time::{days_in_month, Date, Timestamp, Weekday};
use crate::zone::{add_days, Zone};

/// How often a budget resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Every month on `cycle_day` (1–31); in shorter months the last day.
    Monthly {
        /// Billing-cycle day of the month.
        cycle_day: u8,
    },
    /// Every week, starting on `starts_on`.
    Weekly {
        /// First day of the billing week.
        starts_on: Weekday,
    },
    /// Every local day at midnight.
    Daily,
    /// Once, between two instants; never resets.
    OneOff {
        /// Start of the allowance.
        start: Timestamp,
        /// End of the allowance.
        end: Timestamp,
    },
}

/// Which directions a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counts {
    /// Download and upload both count (most carriers).
    #[default]
    DownAndUp,
    /// Only upload counts (some satellite and business plans).
    UpOnly,
}

impl Counts {
    /// Stable name for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Counts::DownAndUp => "down+up",
            Counts::UpOnly => "up",
        }
    }

    /// Parses [`Counts::as_str`]'s output.
    pub fn parse(text: &str) -> Option<Counts> {
        match text {
            "down+up" => Some(Counts::DownAndUp),
            "up" => Some(Counts::UpOnly),
            _ => None,
        }
    }
}

/// The reserve kept for the user when none is configured: 10%.
pub const DEFAULT_RESERVE_PERCENT: u8 = 10;

/// A data cap on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The carrier's cap in bytes for one period.
    pub cap_bytes: u64,
    /// When the cap resets.
    pub period: Period,
    /// Which directions count.
    pub counts: Counts,
    /// Percent of the cap the agent never touches, kept for the user.
    pub reserve_percent: u8,
    /// The carrier's time zone: periods start at its local midnight.
    pub zone: Zone,
}

impl Budget {
    /// A monthly budget with the default reserve, counting both directions.
    pub fn monthly(cap_bytes: u64, cycle_day: u8, zone: impl Into<Zone>) -> Budget {
        Budget {
            cap_bytes,
            period: Period::Monthly { cycle_day },
            counts: Counts::DownAndUp,
            reserve_percent: DEFAULT_RESERVE_PERCENT,
            zone: zone.into(),
        }
    }

    /// Rejects budgets that cannot mean anything.
    pub fn validate(&self) -> Result<()> {
        if self.reserve_percent > 100 {
            return Err(PolicyError::invalid("budget", "reserve above 100%"));
        }
        match self.period {
            Period::Monthly { cycle_day } if !(1..=31).contains(&cycle_day) => Err(
                PolicyError::invalid("budget", format!("cycle day {cycle_day} is not 1-31")),
            ),
            Period::OneOff { start, end } if end <= start => Err(PolicyError::invalid(
                "budget",
                "one-off period ends before it starts",
            )),
            _ => Ok(()),
        }
    }

    /// Bytes kept back for the user.
    pub fn reserve_bytes(&self) -> u64 {
        // u128 so that huge caps cannot overflow.
        (self.cap_bytes as u128 * self.reserve_percent.min(100) as u128 / 100) as u64
    }

    /// The most the agent's own traffic may ever use: cap − reserve.
    pub fn agent_limit(&self) -> u64 {
        self.cap_bytes - self.reserve_bytes()
    }

    /// Whether traffic in `direction_is_up` counts against this budget.
    pub fn counts_direction(&self, is_upload: bool) -> bool {
        is_upload || self.counts == Counts::DownAndUp
    }

    /// The current period's bounds at `now`.
    pub fn bounds(&self, now: Timestamp) -> (Timestamp, Timestamp) {
        period_bounds(now, self.period, self.zone)
    }
}

/// The `[start, end)` of the period containing `now`, with period
/// boundaries at local midnight in `zone`. In a zone with daylight saving
/// time a daily period is 23 or 25 hours on the days the clocks change.
/// Monthly cycles on a day that a month lacks (31 in February) start on that
/// month's last day.
pub fn period_bounds(
    now: Timestamp,
    period: Period,
    zone: impl Into<Zone>,
) -> (Timestamp, Timestamp) {
    let zone = zone.into();
    let local = zone.to_local(now);
    let midnight = |date: Date| zone.midnight(date);
    match period {
        Period::Daily => (midnight(local.date), midnight(add_days(local.date, 1))),
        Period::Weekly { starts_on } => {
            let back = (local.weekday.index() + 7 - starts_on.index()) % 7;
            let first = add_days(local.date, -(back as i64));
            (midnight(first), midnight(add_days(first, 7)))
        }
        Period::Monthly { cycle_day } => {
            let (y, m) = (local.date.year, local.date.month);
            let this_start = cycle_date(y, m, cycle_day);
            if local.date >= this_start {
                let (ny, nm) = next_month(y, m);
                (
                    midnight(this_start),
                    midnight(cycle_date(ny, nm, cycle_day)),
                )
            } else {
                let (py, pm) = previous_month(y, m);
                (
                    midnight(cycle_date(py, pm, cycle_day)),
                    midnight(this_start),
                )
            }
        }
        Period::OneOff { start, end } => (start, end),
    }
}

/// The cycle day in a given month, clamped to the month's length.
fn cycle_date(year: i32, month: u32, cycle_day: u8) -> Date {
    let day = (cycle_day.max(1) as u32).min(days_in_month(year, month));
    Date { year, month, day }
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

fn previous_month(year: i32, month: u32) -> (i32, u32) {
    if month <= 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{days_from_civil, UtcOffset};

    fn at(y: i32, m: u32, d: u32, h: i64) -> Timestamp {
        Timestamp(days_from_civil(y, m, d) * 86_400 + h * 3600)
    }

    #[test]
    fn monthly_cycle_on_day_31_uses_last_day_of_february() {
        let p = Period::Monthly { cycle_day: 31 };
        // 2025-02-15: period started 31 Jan, ends 28 Feb.
        assert_eq!(
            period_bounds(at(2025, 2, 15, 12), p, UtcOffset::UTC),
            (at(2025, 1, 31, 0), at(2025, 2, 28, 0))
        );
        // 2025-03-01: started 28 Feb, ends 31 Mar.
        assert_eq!(
            period_bounds(at(2025, 3, 1, 0), p, UtcOffset::UTC),
            (at(2025, 2, 28, 0), at(2025, 3, 31, 0))
        );
        // Leap year.
        assert_eq!(
            period_bounds(at(2024, 2, 29, 5), p, UtcOffset::UTC).0,
            at(2024, 2, 29, 0)
        );
    }

    #[test]
    fn monthly_cycle_crosses_the_year() {
        let p = Period::Monthly { cycle_day: 5 };
        assert_eq!(
            period_bounds(at(2025, 1, 3, 0), p, UtcOffset::UTC),
            (at(2024, 12, 5, 0), at(2025, 1, 5, 0))
        );
    }

    #[test]
    fn boundaries_are_local_midnight() {
        let plus2 = UtcOffset::from_hm(2, 0).unwrap();
        let p = Period::Monthly { cycle_day: 1 };
        // 2025-03-31T23:00Z is already 1 April 01:00 at +02:00.
        let (start, end) = period_bounds(at(2025, 3, 31, 23), p, plus2);
        assert_eq!(start, at(2025, 3, 31, 22));
        assert_eq!(end, at(2025, 4, 30, 22));
    }

    #[test]
    fn weekly_and_daily() {
        // 2024-12-05 is a Thursday.
        let p = Period::Weekly {
            starts_on: Weekday::Mon,
        };
        assert_eq!(
            period_bounds(at(2024, 12, 5, 10), p, UtcOffset::UTC),
            (at(2024, 12, 2, 0), at(2024, 12, 9, 0))
        );
        let p = Period::Weekly {
            starts_on: Weekday::Thu,
        };
        assert_eq!(
            period_bounds(at(2024, 12, 5, 10), p, UtcOffset::UTC).0,
            at(2024, 12, 5, 0)
        );
        assert_eq!(
            period_bounds(at(2024, 12, 5, 10), Period::Daily, UtcOffset::UTC),
            (at(2024, 12, 5, 0), at(2024, 12, 6, 0))
        );
    }

    #[test]
    fn every_instant_lies_in_its_period() {
        let periods = [
            Period::Monthly { cycle_day: 31 },
            Period::Monthly { cycle_day: 1 },
            Period::Monthly { cycle_day: 29 },
            Period::Weekly {
                starts_on: Weekday::Sun,
            },
            Period::Daily,
        ];
        let offset = UtcOffset::from_hm(-9, 30).unwrap();
        let mut t = at(2023, 12, 20, 0).0;
        while t < at(2024, 4, 10, 0).0 {
            for p in periods {
                let (s, e) = period_bounds(Timestamp(t), p, offset);
                assert!(s.0 <= t && t < e.0, "{p:?} at {t}: {s:?}..{e:?}");
                // The next period starts exactly where this one ends.
                assert_eq!(period_bounds(e, p, offset).0, e);
            }
            t += 7 * 3600 + 13;
        }
    }

    fn paris() -> Zone {
        Zone::named("Europe/Paris").unwrap()
    }

    #[test]
    fn paris_daily_period_is_23_hours_in_march_and_25_in_october() {
        // 2025-03-30: clocks go 02:00 -> 03:00; the day starts at 00:00+01:00
        // (23:00Z the day before) and ends at 00:00+02:00 (22:00Z).
        let (start, end) = period_bounds(at(2025, 3, 30, 10), Period::Daily, paris());
        assert_eq!((start, end), (at(2025, 3, 29, 23), at(2025, 3, 30, 22)));
        assert_eq!(end.0 - start.0, 23 * 3600);
        // 2025-10-26: clocks go 03:00 -> 02:00; 25 hours.
        let (start, end) = period_bounds(at(2025, 10, 26, 10), Period::Daily, paris());
        assert_eq!((start, end), (at(2025, 10, 25, 22), at(2025, 10, 26, 23)));
        assert_eq!(end.0 - start.0, 25 * 3600);
        // The day after is 24 hours again.
        let (start, end) = period_bounds(at(2025, 10, 27, 10), Period::Daily, paris());
        assert_eq!(end.0 - start.0, 24 * 3600);
    }

    #[test]
    fn paris_weekly_and_monthly_periods_span_the_dst_change() {
        // Week from Monday 24 March (+01:00) to Monday 31 March (+02:00).
        let p = Period::Weekly {
            starts_on: Weekday::Mon,
        };
        let (start, end) = period_bounds(at(2025, 3, 27, 12), p, paris());
        assert_eq!((start, end), (at(2025, 3, 23, 23), at(2025, 3, 30, 22)));
        assert_eq!(end.0 - start.0, 7 * 86_400 - 3600);
        // Monthly from day 15: 15 Oct 00:00+02:00 to 15 Nov 00:00+01:00.
        let p = Period::Monthly { cycle_day: 15 };
        let (start, end) = period_bounds(at(2025, 10, 26, 1), p, paris());
        assert_eq!((start, end), (at(2025, 10, 14, 22), at(2025, 11, 14, 23)));
    }

    #[test]
    fn paris_monthly_cycle_on_day_31_in_february() {
        let p = Period::Monthly { cycle_day: 31 };
        // 2025-02-15: started 31 Jan, ends 28 Feb, both at +01:00 midnight.
        assert_eq!(
            period_bounds(at(2025, 2, 15, 12), p, paris()),
            (at(2025, 1, 30, 23), at(2025, 2, 27, 23))
        );
        // 28 Feb 23:30Z is already 1 March in Paris: 28 Feb .. 31 Mar, the
        // end after the March change (+02:00).
        assert_eq!(
            period_bounds(at(2025, 2, 28, 23).plus_secs(1800), p, paris()),
            (at(2025, 2, 27, 23), at(2025, 3, 30, 22))
        );
        // Leap year: 29 Feb.
        assert_eq!(
            period_bounds(at(2024, 2, 29, 5), p, paris()).0,
            at(2024, 2, 28, 23)
        );
    }

    #[test]
    fn every_instant_lies_in_its_paris_period_across_dst() {
        let periods = [
            Period::Monthly { cycle_day: 31 },
            Period::Weekly {
                starts_on: Weekday::Sun,
            },
            Period::Daily,
        ];
        let zone = paris();
        let mut t = at(2025, 3, 20, 0).0;
        while t < at(2025, 11, 5, 0).0 {
            for p in periods {
                let (s, e) = period_bounds(Timestamp(t), p, zone);
                assert!(s.0 <= t && t < e.0, "{p:?} at {t}: {s:?}..{e:?}");
                assert_eq!(period_bounds(e, p, zone).0, e);
            }
            t += 5 * 3600 + 17 * 60;
        }
    }

    #[test]
    fn reserve_and_limit() {
        let b = Budget::monthly(5_000_000_000, 1, UtcOffset::UTC);
        assert_eq!(b.reserve_bytes(), 500_000_000);
        assert_eq!(b.agent_limit(), 4_500_000_000);
        assert!(Budget {
            reserve_percent: 101,
            ..b
        }
        .validate()
        .is_err());
        assert!(Budget {
            period: Period::Monthly { cycle_day: 0 },
            ..b
        }
        .validate()
        .is_err());
        assert!(!Budget {
            counts: Counts::UpOnly,
            ..b
        }
        .counts_direction(false));
    }
}
