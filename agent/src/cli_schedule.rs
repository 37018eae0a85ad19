//! `capwise schedule` arguments: weekly time windows with their own rules
//! (free nights, paused business hours, a rate limit), per network.

use clap::{Args, Subcommand, ValueEnum};

use crate::cli_policy::StoreArgs;

/// `capwise schedule`
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// What to do with schedules.
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

/// The schedule subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Add a time window to a network's schedule (the first matching window wins).
    Add(ScheduleAddArgs),
    /// List the windows of one network, or of all.
    List(ScheduleListArgs),
    /// Remove one window (--window N, as `schedule list` numbers them) or all.
    Rm(ScheduleRmArgs),
}

impl ScheduleCommand {
    /// For a command that changes the store: its `--state-dir` (itself optional).
    pub fn edited_state_dir(&self) -> Option<Option<&std::path::Path>> {
        match self {
            ScheduleCommand::Add(a) => Some(a.store.state_dir.as_deref()),
            ScheduleCommand::Rm(a) => Some(a.store.state_dir.as_deref()),
            ScheduleCommand::List(_) => None,
        }
    }
}

/// What a window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuleArg {
    /// No limits, and the traffic does not count against the budget (free nights).
    Free,
    /// All WAN traffic waits (e.g. business hours on a shared link).
    Pause,
    /// Rates capped by --down and/or --up.
    Limit,
}

/// `capwise schedule add`
#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    /// The network's id, as `capwise network list` shows it.
    #[arg(value_parser = crate::cli_policy::parse_network_id)]
    pub network_id: String,
    /// Local start time, HH:MM.
    #[arg(long, value_parser = parse_clock)]
    pub from: u16,
    /// Local end time, HH:MM (24:00 is midnight); at or before --from it ends the next day.
    #[arg(long, value_parser = parse_clock)]
    pub to: u16,
    /// Days the window starts on: every, weekdays, weekend, or days such as
    /// mon,wed,fri or mon-fri.
    #[arg(long, default_value = "every", value_parser = parse_days)]
    pub days: u8,
    /// What the window does.
    #[arg(long, value_enum)]
    pub rule: RuleArg,
    /// With --rule limit: download cap, e.g. 500KB/s.
    #[arg(long, value_parser = crate::cli::parse_rate_arg)]
    pub down: Option<u64>,
    /// With --rule limit: upload cap, e.g. 100KB/s.
    #[arg(long, value_parser = crate::cli::parse_rate_arg)]
    pub up: Option<u64>,
    /// The zone the times are in, as an IANA name (e.g. Europe/Paris); one
    /// zone per network's schedule. Default: the schedule's zone, or for a
    /// new schedule this machine's.
    #[arg(long, conflicts_with = "utc_offset")]
    pub time_zone: Option<String>,
    /// The zone as a fixed offset from UTC, e.g. +02:00; instead of --time-zone.
    #[arg(long, value_parser = crate::cli_policy::parse_utc_offset, allow_hyphen_values = true)]
    pub utc_offset: Option<i32>,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `capwise schedule list`
#[derive(Debug, Args)]
pub struct ScheduleListArgs {
    /// Only this network's windows.
    pub network_id: Option<String>,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `capwise schedule rm`
#[derive(Debug, Args)]
pub struct ScheduleRmArgs {
    /// The network's id.
    #[arg(value_parser = crate::cli_policy::parse_network_id)]
    pub network_id: String,
    /// The window's number in `capwise schedule list` (default: every window).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub window: Option<u16>,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `HH:MM` as minutes after midnight; `24:00` is the end of the day.
pub fn parse_clock(s: &str) -> Result<u16, String> {
    let bad = || format!("`{s}`: expected a local time such as 22:00 or 06:30");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) => Ok(1440),
        (0..=23, 0..=59) if m < 60 => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Days as a bit mask (bit 0 = Monday): `every`, `weekdays`, `weekend`, or a
/// comma list of days and ranges (`mon,wed`, `mon-fri`, `fri-mon`).
pub fn parse_days(s: &str) -> Result<u8, String> {
    let text = s.trim().to_ascii_lowercase();
    match text.as_str() {
        "every" | "daily" | "all" | "every-day" => return Ok(0b111_1111),
        "weekdays" => return Ok(0b001_1111),
        "weekend" | "weekends" => return Ok(0b110_0000),
        _ => {}
    }
    let day = |name: &str| {
        let name = name.trim();
        // `mon`, `monday`, `tues`: a prefix of at least three letters.
        DAY_NAMES
            .iter()
            .position(|full| name.len() >= 3 && full.starts_with(name))
            .ok_or_else(|| format!("`{name}`: not a day; use mon..sun, every, weekdays or weekend"))
    };
    let mut mask = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                // A range may wrap past Sunday (fri-mon).
                let mut d = first;
                for _ in 0..7 {
                    mask |= 1 << d;
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(part)?,
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times() {
        assert_eq!(parse_clock("22:00"), Ok(1320));
        assert_eq!(parse_clock("06:30"), Ok(390));
        assert_eq!(parse_clock("0:05"), Ok(5));
        assert_eq!(parse_clock("24:00"), Ok(1440));
        for bad in ["24:01", "12:60", "noon", "12", "-1:00", "12:5x"] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn day_sets() {
        assert_eq!(parse_days("every"), Ok(0b111_1111));
        assert_eq!(parse_days("weekdays"), Ok(0b001_1111));
        assert_eq!(parse_days("Weekend"), Ok(0b110_0000));
        assert_eq!(parse_days("mon,wed,fri"), Ok(0b001_0101));
        assert_eq!(parse_days("mon-fri"), Ok(0b001_1111));
        assert_eq!(parse_days("fri-mon"), Ok(0b111_0001));
        assert_eq!(parse_days("tuesday"), Ok(0b000_0010));
        for bad in ["", "mo", "funday", "mon-", "mon,,tue", "mondays"] {
            assert!(parse_days(bad).is_err(), "{bad}");
        }
    }
}
