//! The command line of the policy commands (`budget`, `network`, `usage`,
//! `why`): clap definitions and the parsers of their values.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Options every policy command takes.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Where the policy database is kept (default: $XDG_STATE_HOME/capwise).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `capwise budget`
#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// What to do with budgets.
    #[command(subcommand)]
    pub command: BudgetCommand,
}

/// The budget subcommands.
#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Set (or replace) the data cap of a network.
    Set(BudgetSetArgs),
    /// List the budgets and how much of each is used this period.
    List(StoreArgs),
    /// Remove the budget of a network.
    Rm(NetworkIdArgs),
}

impl BudgetCommand {
    /// For a command that changes the store: its `--state-dir` (itself
    /// optional).
    pub fn edited_state_dir(&self) -> Option<Option<&std::path::Path>> {
        match self {
            BudgetCommand::Set(a) => Some(a.store.state_dir.as_deref()),
            BudgetCommand::Rm(a) => Some(a.store.state_dir.as_deref()),
            BudgetCommand::List(_) => None,
        }
    }
}

/// How often a budget resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeriodArg {
    /// Every month on --cycle-day (1-31, default 1).
    Monthly,
    /// Every week from --cycle-day (mon..sun or 1-7, default mon).
    Weekly,
    /// Every day at midnight.
    Daily,
    /// Once, from now for --days days; never resets.
    Once,
}

/// Which directions count against a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CountArg {
    /// Downloads and uploads (most carriers).
    Both,
    /// Uploads only.
    Up,
}

/// `capwise budget set`
#[derive(Debug, Args)]
pub struct BudgetSetArgs {
    /// The network's id, as `capwise network list` shows it.
    #[arg(value_parser = parse_network_id)]
    pub network_id: String,
    /// The carrier's cap per period, e.g. 5GB or 500MiB.
    #[arg(long, value_parser = parse_size_arg)]
    pub cap: u64,
    /// When the cap resets.
    #[arg(long, value_enum, default_value_t = PeriodArg::Monthly)]
    pub period: PeriodArg,
    /// Billing-cycle day: 1-31 for monthly; mon..sun or 1-7 (Monday = 1) for weekly.
    #[arg(long)]
    pub cycle_day: Option<String>,
    /// Percent of the cap kept for you, never used by capwise (0-99).
    #[arg(long, default_value = "10", value_parser = parse_reserve)]
    pub reserve: u8,
    /// Which directions the carrier counts.
    #[arg(long, value_enum, default_value_t = CountArg::Both)]
    pub count: CountArg,
    /// Length of a `--period once` allowance, in days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub days: u32,
    /// The carrier's time zone as an IANA name, e.g. Europe/Paris; periods
    /// start at its local midnight, following daylight saving time.
    /// Default: this machine's time zone.
    #[arg(long, conflicts_with = "utc_offset")]
    pub time_zone: Option<String>,
    /// The carrier's time zone as a fixed offset from UTC, e.g. +02:00 or
    /// -05:30 (no daylight saving time); instead of --time-zone.
    #[arg(long, value_parser = parse_utc_offset, allow_hyphen_values = true)]
    pub utc_offset: Option<i32>,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// A command about one network.
#[derive(Debug, Args)]
pub struct NetworkIdArgs {
    /// The network's id.
    #[arg(value_parser = parse_network_id)]
    pub network_id: String,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `capwise network`
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// What to do with networks.
    #[command(subcommand)]
    pub command: NetworkCommand,
}

/// The network subcommands.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// List the networks seen, with your word on metering.
    List(StoreArgs),
    /// Say whether a network is metered, or let detection decide (auto).
    Set(NetworkSetArgs),
}

impl NetworkCommand {
    /// For a command that changes the store: its `--state-dir` (itself
    /// optional).
    pub fn edited_state_dir(&self) -> Option<Option<&std::path::Path>> {
        match self {
            NetworkCommand::Set(a) => Some(a.store.state_dir.as_deref()),
            NetworkCommand::List(_) => None,
        }
    }
}

/// Your word on whether a network is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MeteredArg {
    /// Metered: no seeding to the internet, background waits.
    Yes,
    /// Not metered: no limits.
    No,
    /// Forget your word; trust NetworkManager or the device type.
    Auto,
}

/// `capwise network set`
#[derive(Debug, Args)]
pub struct NetworkSetArgs {
    /// The network's id.
    #[arg(value_parser = parse_network_id)]
    pub network_id: String,
    /// Whether the network is metered.
    #[arg(long, value_enum)]
    pub metered: MeteredArg,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `capwise usage`
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Only this network (default: every network known).
    #[arg(value_parser = parse_network_id)]
    pub network_id: Option<String>,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `capwise why`
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// Describe the uplink with this TOML file instead of detecting it.
    #[arg(long)]
    pub network_file: Option<PathBuf>,
    /// Configuration file whose policy settings (and network file) apply when
    /// no agent runs, as `capwise run` reads it (default:
    /// $XDG_CONFIG_HOME/capwise/config.toml, if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Database and output options.
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    crate::units::parse_size(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_network_id(s: &str) -> Result<String, String> {
    let id = s.trim();
    if id.is_empty() {
        return Err("a network id cannot be empty".into());
    }
    Ok(id.to_string())
}

/// `10` or `10%`, 0 to 99: a reserve of 100% (the whole cap kept for the
/// user) would leave capwise nothing, which is not a budget but a block.
fn parse_reserve(s: &str) -> Result<u8, String> {
    let digits = s.trim().trim_end_matches('%').trim();
    match digits.parse::<u8>() {
        Ok(p) if p < 100 => Ok(p),
        Ok(p) if p >= 100 => Err(format!(
            "`{s}`: a reserve of {p}% keeps the whole cap for you and leaves capwise nothing to use; \
             give 0 to 99 (default 10%)"
        )),
        _ => Err(format!(
            "`{s}`: expected a percentage from 0 to 99, e.g. 10%"
        )),
    }
}

/// `+02:00`, `-05:30`, `+2`, `0`, `UTC` to seconds east of UTC.
pub(crate) fn parse_utc_offset(s: &str) -> Result<i32, String> {
    let bad = || format!("`{s}`: expected an offset from UTC such as +02:00 or -05:30");
    let text = s.trim();
    if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => (1, text),
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let hours: i32 = hours.parse().map_err(|_| bad())?;
    let minutes: i32 = minutes.parse().map_err(|_| bad())?;
    if !(0..=18).contains(&hours) || !(0..60).contains(&minutes) {
        return Err(bad());
    }
    let seconds = sign * (hours * 3600 + minutes * 60);
    capwise_policy::time::UtcOffset::from_seconds(seconds)
        .map(|o| o.seconds())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_and_offset_parse_or_explain() {
        assert_eq!(parse_reserve("10%"), Ok(10));
        assert_eq!(parse_reserve("0"), Ok(0));
        assert_eq!(parse_reserve("99"), Ok(99));
        let e = parse_reserve("100").unwrap_err();
        assert!(e.contains("nothing to use"), "{e}");
        assert!(parse_reserve("101").is_err());
        assert!(parse_reserve("lots").unwrap_err().contains("0 to 99"));
        assert_eq!(parse_utc_offset("+02:00"), Ok(7200));
        assert_eq!(parse_utc_offset("-05:30"), Ok(-(5 * 3600 + 1800)));
        assert_eq!(parse_utc_offset("UTC"), Ok(0));
        assert!(parse_utc_offset("+19:00").is_err());
        assert!(parse_utc_offset("noon").is_err());
        assert!(parse_network_id("  ").is_err());
    }
}
