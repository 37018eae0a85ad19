//! A budget's time zone: an IANA name (Europe/Paris), whose offset changes
//! with daylight saving time, or a fixed offset from UTC (the older form,
//! kept for compatibility). Named zones are resolved with jiff from the
//! system's tz database, with a bundled copy for machines without tzdata.
//!
//! [`Zone`] stays `Copy` (the name is held inline) so that a budget remains a
//! plain value; the jiff `TimeZone` is looked up (and cached by jiff) when
//! an instant is converted.

use std::fmt;

use jiff::tz::TimeZone;

use crate::error::{PolicyError, Result};
use crate::time::{
    civil_from_days, days_from_civil, to_local, Date, LocalTime, Timestamp, UtcOffset,
};

/// Longest zone name kept; real IANA names are at most about 32 bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A validated IANA zone name, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZoneName {
    len: u8,
    bytes: [u8; MAX_NAME_LEN],
}

impl ZoneName {
    /// The name, e.g. "Europe/Paris".
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Where a budget's local midnights are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Zone {
    /// A fixed offset from UTC, the same all year.
    Fixed(UtcOffset),
    /// An IANA time zone, with its daylight saving rules.
    Named(ZoneName),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::UTC
    }
}

impl From<UtcOffset> for Zone {
    fn from(offset: UtcOffset) -> Self {
        Zone::Fixed(offset)
    }
}

impl Zone {
    /// UTC, as a fixed offset.
    pub const UTC: Zone = Zone::Fixed(UtcOffset::UTC);

    /// The IANA zone `name`; an error if the tz database does not know it.
    pub fn named(name: &str) -> Result<Zone> {
        let name = name.trim();
        let unknown = || {
            PolicyError::invalid(
                "time zone",
                format!("unknown time zone {name:?}; expected an IANA name such as Europe/Paris"),
            )
        };
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(unknown());
        }
        TimeZone::get(name).map_err(|_| unknown())?;
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Zone::Named(ZoneName {
            len: name.len() as u8,
            bytes,
        }))
    }

    /// The machine's zone: its IANA name when known, else its current
    /// offset, else UTC. Reads the environment (TZ, /etc/localtime), so only
    /// the edges of the program call this.
    pub fn system(now: Timestamp) -> Zone {
        let Ok(tz) = TimeZone::try_system() else {
            return Zone::UTC;
        };
        if let Some(zone) = tz.iana_name().and_then(|name| Zone::named(name).ok()) {
            return zone;
        }
        UtcOffset::from_seconds(offset_of(&tz, now))
            .map(Zone::Fixed)
            .unwrap_or(Zone::UTC)
    }

    /// The IANA name, for a named zone.
    pub fn name(&self) -> Option<&str> {
        match self {
            Zone::Named(name) => Some(name.as_str()),
            Zone::Fixed(_) => None,
        }
    }

    /// The jiff time zone. A name that was valid when stored but that the
    /// tz database no longer knows falls back to UTC rather than failing:
    /// with the bundled database this does not happen in practice.
    pub fn time_zone(&self) -> TimeZone {
        match self {
            Zone::Fixed(offset) => jiff::tz::Offset::from_seconds(offset.seconds())
                .map(TimeZone::fixed)
                .unwrap_or(TimeZone::UTC),
            Zone::Named(name) => TimeZone::get(name.as_str()).unwrap_or(TimeZone::UTC),
        }
    }

    /// The offset from UTC in force at `ts`.
    pub fn offset_at(&self, ts: Timestamp) -> UtcOffset {
        match self {
            Zone::Fixed(offset) => *offset,
            Zone::Named(_) => {
                UtcOffset::from_seconds(offset_of(&self.time_zone(), ts)).unwrap_or_default()
            }
        }
    }

    /// `ts` on this zone's wall clock.
    pub fn to_local(&self, ts: Timestamp) -> LocalTime {
        to_local(ts, self.offset_at(ts))
    }

    /// The instant `date` starts in this zone: local midnight, or where a
    /// DST gap swallows midnight, the first instant after it.
    pub fn midnight(&self, date: Date) -> Timestamp {
        let Zone::Named(_) = self else {
            return Timestamp::from_local_date(date, self.offset_at(Timestamp(0)));
        };
        let civil = i16::try_from(date.year)
            .ok()
            .and_then(|y| jiff::civil::Date::new(y, date.month as i8, date.day as i8).ok());
        // `to_zoned` resolves a gap or fold at midnight to the day's first
        // instant (jiff's "compatible" disambiguation).
        match civil.and_then(|d| d.to_zoned(self.time_zone()).ok()) {
            Some(zoned) => Timestamp(zoned.timestamp().as_second()),
            // Beyond jiff's years ±9999: no DST rules there anyway.
            None => Timestamp::from_local_date(date, UtcOffset::UTC),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(name) => f.write_str(name.as_str()),
            Zone::Fixed(offset) if offset.seconds() == 0 => f.write_str("UTC"),
            Zone::Fixed(offset) => {
                let s = offset.seconds();
                let sign = if s < 0 { '-' } else { '+' };
                let a = s.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
            }
        }
    }
}

/// The date `days` after `date` (negative: before).
pub fn add_days(date: Date, days: i64) -> Date {
    let (year, month, day) =
        civil_from_days(days_from_civil(date.year, date.month, date.day) + days);
    Date { year, month, day }
}

/// Seconds east of UTC of `tz` at `ts`, with `ts` clamped to jiff's range.
fn offset_of(tz: &TimeZone, ts: Timestamp) -> i32 {
    let secs = ts.0.clamp(
        jiff::Timestamp::MIN.as_second(),
        jiff::Timestamp::MAX.as_second(),
    );
    jiff::Timestamp::from_second(secs)
        .map(|t| tz.to_offset(t).seconds())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: i64) -> Timestamp {
        Timestamp(days_from_civil(y, m, d) * 86_400 + h * 3600)
    }

    fn date(year: i32, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn names_are_checked_and_kept() {
        let paris = Zone::named("Europe/Paris").unwrap();
        assert_eq!(paris.name(), Some("Europe/Paris"));
        assert_eq!(paris.to_string(), "Europe/Paris");
        assert!(Zone::named("Mars/Olympus_Mons").is_err());
        assert!(Zone::named("").is_err());
        assert!(Zone::named(&"x".repeat(100)).is_err());
    }

    #[test]
    fn paris_offset_follows_dst() {
        let paris = Zone::named("Europe/Paris").unwrap();
        assert_eq!(paris.offset_at(utc(2025, 1, 15, 12)).seconds(), 3600);
        assert_eq!(paris.offset_at(utc(2025, 7, 15, 12)).seconds(), 7200);
        // 2025-03-30T22:30Z is 31 March 00:30 in Paris (summer time).
        assert_eq!(paris.to_local(utc(2025, 3, 30, 22)).date, date(2025, 3, 31));
        assert_eq!(paris.midnight(date(2025, 7, 1)), utc(2025, 6, 30, 22));
        assert_eq!(paris.midnight(date(2025, 1, 1)), utc(2024, 12, 31, 23));
    }

    #[test]
    fn midnight_inside_a_dst_gap_is_the_first_instant_of_the_day() {
        // Santiago springs forward at 00:00 local: 2024-09-08 has no 00:00,
        // the day starts at 01:00 -03:00, which is 04:00Z.
        let santiago = Zone::named("America/Santiago").unwrap();
        assert_eq!(santiago.midnight(date(2024, 9, 8)), utc(2024, 9, 8, 4));
    }

    #[test]
    fn fixed_offsets_display_and_convert_as_before() {
        let z = Zone::from(UtcOffset::from_hm(-5, 30).unwrap());
        assert_eq!(z.to_string(), "-05:30");
        assert_eq!(Zone::UTC.to_string(), "UTC");
        assert_eq!(
            z.midnight(date(2025, 3, 1)),
            utc(2025, 3, 1, 5).plus_secs(1800)
        );
        assert_eq!(z.name(), None);
    }

    #[test]
    fn add_days_crosses_months_and_years() {
        assert_eq!(add_days(date(2024, 12, 31), 1), date(2025, 1, 1));
        assert_eq!(add_days(date(2024, 3, 1), -1), date(2024, 2, 29));
    }
}
