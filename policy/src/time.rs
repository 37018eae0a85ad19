//! Wall-clock time as plain numbers, and the civil calendar arithmetic the
//! budgets and schedules need. Time is always passed in (`now`), never read
//! here, so every decision can be replayed and tested.

use std::fmt;

/// Seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// This instant plus `secs` seconds (saturating).
    pub fn plus_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }

    /// The current wall-clock time. Only the edges of the program call this;
    /// the logic takes `now` as an argument.
    pub fn now_from_system() -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now())
    }

    /// A wall-clock time (a file's mtime); 0 before the epoch.
    pub fn from_system_time(time: std::time::SystemTime) -> Timestamp {
        let secs = time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Timestamp(secs)
    }

    /// The UTC timestamp of local midnight starting `date` at `offset`.
    pub fn from_local_date(date: Date, offset: UtcOffset) -> Timestamp {
        Timestamp(
            days_from_civil(date.year, date.month, date.day) * 86_400 - offset.seconds() as i64,
        )
    }
}

/// A fixed offset from UTC, in seconds east of Greenwich.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UtcOffset(i32);

impl UtcOffset {
    /// UTC itself.
    pub const UTC: UtcOffset = UtcOffset(0);

    /// An offset in seconds; offsets beyond ±18 h do not exist on Earth.
    pub fn from_seconds(seconds: i32) -> Option<UtcOffset> {
        (seconds.abs() <= 18 * 3600).then_some(UtcOffset(seconds))
    }

    /// An offset in whole hours and minutes (e.g. `-3, 30` is -03:30).
    pub fn from_hm(hours: i32, minutes: i32) -> Option<UtcOffset> {
        let sign = if hours < 0 { -1 } else { 1 };
        UtcOffset::from_seconds(hours * 3600 + sign * minutes.abs() * 60)
    }

    /// Seconds east of UTC.
    pub fn seconds(self) -> i32 {
        self.0
    }
}

/// Day of the week, Monday first (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// All days, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// 0 for Monday … 6 for Sunday.
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The day for an index 0 (Monday) … 6 (Sunday); wraps modulo 7.
    pub fn from_index(index: u8) -> Weekday {
        Weekday::ALL[(index % 7) as usize]
    }

    /// The day before.
    pub fn previous(self) -> Weekday {
        Weekday::from_index(self.index() + 6)
    }
}

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, e.g. 2024.
    pub year: i32,
    /// Month 1–12.
    pub month: u32,
    /// Day of the month 1–31.
    pub day: u32,
}

/// A moment as seen on a local wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// The local date.
    pub date: Date,
    /// The local day of the week.
    pub weekday: Weekday,
    /// Seconds since local midnight, 0–86399.
    pub second_of_day: u32,
}

impl LocalTime {
    /// Minutes since local midnight, 0–1439.
    pub fn minute_of_day(&self) -> u32 {
        self.second_of_day / 60
    }
}

/// Converts a UTC timestamp to local wall-clock time at `offset`.
pub fn to_local(ts: Timestamp, offset: UtcOffset) -> LocalTime {
    let local = ts.0.saturating_add(offset.seconds() as i64);
    let days = local.div_euclid(86_400);
    let second_of_day = local.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3).
    let weekday = Weekday::from_index((days + 3).rem_euclid(7) as u8);
    LocalTime {
        date: Date { year, month, day },
        weekday,
        second_of_day,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = year as i64 - if month <= 2 { 1 } else { 0 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `days` after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as i32;
    (year, month, day)
}

/// Number of days in `month` of `year`.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            if leap {
                29
            } else {
                28
            }
        }
    }
}

/// Short month names for sentences ("resets 5 Dec").
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A date as a person reads it in a sentence: "5 Dec".
pub struct ShortDate(pub Date);

impl fmt::Display for ShortDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let month = MONTHS
            .get((self.0.month as usize).wrapping_sub(1))
            .copied()
            .unwrap_or("?");
        write!(f, "{} {}", self.0.day, month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [-800_000, -1, 0, 59, 11_016, 19_782, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn local_time_applies_offset_and_weekday() {
        // 2024-12-05T23:30:00Z is a Thursday; at +01:00 it is Friday 00:30.
        let ts = Timestamp(days_from_civil(2024, 12, 5) * 86_400 + 23 * 3600 + 1800);
        let utc = to_local(ts, UtcOffset::UTC);
        assert_eq!(utc.weekday, Weekday::Thu);
        let paris = to_local(ts, UtcOffset::from_hm(1, 0).unwrap());
        assert_eq!(
            paris.date,
            Date {
                year: 2024,
                month: 12,
                day: 6
            }
        );
        assert_eq!(paris.weekday, Weekday::Fri);
        assert_eq!(paris.minute_of_day(), 30);
    }

    #[test]
    fn february_lengths() {
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        assert_eq!(days_in_month(1900, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
    }

    #[test]
    fn short_date_reads_like_a_person_writes() {
        let d = Date {
            year: 2024,
            month: 12,
            day: 5,
        };
        assert_eq!(ShortDate(d).to_string(), "5 Dec");
    }

    #[test]
    fn offsets_beyond_18_hours_are_rejected() {
        assert!(UtcOffset::from_seconds(19 * 3600).is_none());
        assert_eq!(
            UtcOffset::from_hm(-3, 30).unwrap().seconds(),
            -(3 * 3600 + 1800)
        );
    }
}
