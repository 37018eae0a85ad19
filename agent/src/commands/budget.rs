//! `capwise budget set | list | rm`: the data caps per network.

use anyhow::{bail, Context, Result};
use capwise_policy::budget::{Budget, Counts, Period};
use capwise_policy::ledger::BudgetAccount;
use capwise_policy::network::NetworkId;
use capwise_policy::store::Store;
use capwise_policy::time::{ShortDate, Timestamp, UtcOffset, Weekday};
use capwise_policy::units::HumanBytes;
use capwise_policy::zone::Zone;
use serde_json::{json, Value};

use super::output::{format_timestamp, print_json};
use crate::cli_policy::{
    BudgetArgs, BudgetCommand, BudgetSetArgs, CountArg, NetworkIdArgs, PeriodArg, StoreArgs,
};
use crate::state_db::{open_store, state_dir};

/// Runs a `capwise budget` subcommand.
pub fn run(args: &BudgetArgs) -> Result<()> {
    let now = Timestamp::now_from_system();
    match &args.command {
        BudgetCommand::Set(a) => set(a, now),
        BudgetCommand::List(a) => list(a, now),
        BudgetCommand::Rm(a) => rm(a, now),
    }
}

fn set(args: &BudgetSetArgs, now: Timestamp) -> Result<()> {
    let budget = budget_from_args(args, now)?;
    let store = open_store(&state_dir(args.store.state_dir.as_deref()), now)?;
    let id = NetworkId::new(args.network_id.clone());
    warn_if_unseen(&store, &id, "the budget will apply when it is")?;
    store
        .set_budget(&id, Some(&budget))
        .context("cannot store the budget")?;
    let view = describe(&store, &id, &budget, now)?;
    if args.store.json {
        print_json(&view);
    } else {
        println!(
            "budget for '{id}': {} {} ({}), counting {}; {}% ({}) kept for you, so capwise stops at {}",
            HumanBytes(budget.cap_bytes),
            period_words(&budget),
            budget.zone,
            counts_words(budget.counts),
            budget.reserve_percent,
            HumanBytes(budget.reserve_bytes()),
            HumanBytes(budget.agent_limit()),
        );
    }
    Ok(())
}

fn list(args: &StoreArgs, now: Timestamp) -> Result<()> {
    let store = open_store(&state_dir(args.state_dir.as_deref()), now)?;
    let budgets = store.budgets().context("cannot read the budgets")?;
    let views = budgets
        .iter()
        .map(|(id, budget)| describe(&store, id, budget, now))
        .collect::<Result<Vec<_>>>()?;
    if args.json {
        print_json(&Value::Array(views));
        return Ok(());
    }
    if budgets.is_empty() {
        println!("no budgets; set one with `capwise budget set NETWORK_ID --cap 5GB`");
        return Ok(());
    }
    let rows: Vec<[String; 8]> = budgets
        .iter()
        .zip(&views)
        .map(|((id, budget), view)| {
            let used = view["used_bytes"].as_u64().unwrap_or(0);
            // A one-off allowance never resets.
            let resets = match budget.period {
                Period::OneOff { .. } => "never".to_string(),
                _ => ShortDate(budget.zone.to_local(budget.bounds(now).1).date).to_string(),
            };
            [
                id.as_str().to_string(),
                HumanBytes(budget.cap_bytes).to_string(),
                period_words(budget),
                budget.zone.to_string(),
                counts_words(budget.counts).to_string(),
                format!("{}%", budget.reserve_percent),
                HumanBytes(used).to_string(),
                resets,
            ]
        })
        .collect();
    let header = [
        "NETWORK", "CAP", "PERIOD", "ZONE", "COUNTS", "RESERVE", "USED", "RESETS",
    ]
    .map(String::from);
    // Numbers right-aligned, words left.
    let right = [false, true, false, false, false, true, true, false];
    for line in table(&header, &rows, &right) {
        println!("{line}");
    }
    Ok(())
}

/// Lines of a table whose columns are as wide as their widest cell (a
/// `--period once` budget's "once, until 2026-11-29 10:35 UTC" included),
/// two spaces apart, without trailing blanks.
fn table<const N: usize>(
    header: &[String; N],
    rows: &[[String; N]],
    right: &[bool; N],
) -> Vec<String> {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    std::iter::once(header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if right[i] {
                        format!("{cell:>w$}", w = widths[i])
                    } else {
                        format!("{cell:<w$}", w = widths[i])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// Says on stderr that `id` was never seen (a typo, or a network set up
/// ahead of time), then goes on: what was asked applies once it is seen.
pub(crate) fn warn_if_unseen(store: &Store, id: &NetworkId, consequence: &str) -> Result<()> {
    if !network_seen(store, id)? {
        eprintln!("capwise: warning: network '{id}' has not been seen yet; {consequence}");
    }
    Ok(())
}

/// Whether the agent (or `capwise get`) was ever on network `id`; a row
/// written only by `network set` has never been seen.
pub(crate) fn network_seen(store: &Store, id: &NetworkId) -> Result<bool> {
    Ok(store
        .networks()
        .context("cannot read the networks")?
        .iter()
        .any(|n| &n.id == id && n.last_seen.0 > 0))
}

fn rm(args: &NetworkIdArgs, now: Timestamp) -> Result<()> {
    let store = open_store(&state_dir(args.store.state_dir.as_deref()), now)?;
    let id = NetworkId::new(args.network_id.clone());
    if store.budget(&id)?.is_none() {
        bail!("'{id}' has no budget (see `capwise budget list`)");
    }
    store
        .set_budget(&id, None)
        .context("cannot remove the budget")?;
    if args.store.json {
        print_json(&json!({ "removed": id.as_str() }));
    } else {
        println!("removed the budget of '{id}'; usage history is kept");
    }
    Ok(())
}

/// Builds and checks the budget the arguments describe.
fn budget_from_args(args: &BudgetSetArgs, now: Timestamp) -> Result<Budget> {
    let period = match args.period {
        PeriodArg::Monthly => {
            let day = match args.cycle_day.as_deref() {
                None => 1,
                Some(text) => match text.trim().parse::<u8>() {
                    Ok(day @ 1..=31) => day,
                    _ => bail!("--cycle-day `{text}`: a monthly budget needs a day of the month, 1-31"),
                },
            };
            Period::Monthly { cycle_day: day }
        }
        PeriodArg::Weekly => Period::Weekly {
            starts_on: match args.cycle_day.as_deref() {
                None => Weekday::Mon,
                Some(text) => parse_weekday(text).with_context(|| {
                    format!("--cycle-day `{text}`: a weekly budget needs a weekday, mon..sun or 1-7 (Monday = 1)")
                })?,
            },
        },
        PeriodArg::Daily | PeriodArg::Once if args.cycle_day.is_some() => {
            bail!("--cycle-day only applies to monthly and weekly budgets")
        }
        PeriodArg::Daily => Period::Daily,
        PeriodArg::Once => Period::OneOff {
            start: now,
            end: now.plus_secs(i64::from(args.days) * 86_400),
        },
    };
    if args.cap == 0 {
        bail!(
            "--cap 0: a budget of 0 bytes would stop every transfer with internet peers on this \
             network; give the carrier's cap, e.g. 5GB or 500MiB"
        );
    }
    let budget = Budget {
        cap_bytes: args.cap,
        period,
        counts: match args.count {
            CountArg::Both => Counts::DownAndUp,
            CountArg::Up => Counts::UpOnly,
        },
        reserve_percent: args.reserve,
        zone: zone_from_args(args.time_zone.as_deref(), args.utc_offset, now)?,
    };
    budget.validate().context("invalid budget")?;
    // With a cap above 0 and a reserve below 100% (the parser's bound),
    // the reserve rounds down: capwise always has at least a byte.
    Ok(budget)
}

/// `--time-zone NAME`, `--utc-offset ±HH:MM` (clap keeps them exclusive),
/// or else this machine's zone.
pub(crate) fn zone_from_args(
    name: Option<&str>,
    offset: Option<i32>,
    now: Timestamp,
) -> Result<Zone> {
    match (name, offset) {
        (Some(name), _) => Zone::named(name).with_context(|| {
            format!("--time-zone `{name}`: not a time zone this machine knows; use an IANA name such as Europe/Paris or America/New_York")
        }),
        (None, Some(seconds)) => Ok(Zone::Fixed(
            UtcOffset::from_seconds(seconds).context("--utc-offset is beyond ±18 hours")?,
        )),
        (None, None) => Ok(Zone::system(now)),
    }
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    let lower = text.trim().to_ascii_lowercase();
    if let Ok(n @ 1..=7) = lower.parse::<u8>() {
        return Some(Weekday::from_index(n - 1));
    }
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    NAMES
        .iter()
        .position(|name| lower.starts_with(name))
        .map(|i| Weekday::ALL[i])
}

fn weekday_name(day: Weekday) -> &'static str {
    [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ][day.index() as usize]
}

/// "monthly from day 5", "weekly from Monday", "daily", "once until …".
fn period_words(budget: &Budget) -> String {
    match budget.period {
        Period::Monthly { cycle_day } => format!("monthly from day {cycle_day}"),
        Period::Weekly { starts_on } => format!("weekly from {}", weekday_name(starts_on)),
        Period::Daily => "daily".into(),
        Period::OneOff { end, .. } => format!("once, until {}", format_timestamp(end)),
    }
}

fn counts_words(counts: Counts) -> &'static str {
    match counts {
        Counts::DownAndUp => "down+up",
        Counts::UpOnly => "up only",
    }
}

/// A budget with where it stands this period, as JSON.
pub(crate) fn describe(
    store: &Store,
    id: &NetworkId,
    budget: &Budget,
    now: Timestamp,
) -> Result<Value> {
    let account = BudgetAccount::open(store, id.clone(), *budget, now)
        .with_context(|| format!("cannot read the usage of '{id}'"))?;
    let (start, end) = account.period();
    let (period, cycle_day, one_off) = match budget.period {
        Period::Monthly { cycle_day } => ("monthly", Some(u32::from(cycle_day)), None),
        Period::Weekly { starts_on } => ("weekly", Some(u32::from(starts_on.index()) + 1), None),
        Period::Daily => ("daily", None, None),
        Period::OneOff { start, end } => ("once", None, Some((start.0, end.0))),
    };
    Ok(json!({
        "network_id": id.as_str(),
        "cap_bytes": budget.cap_bytes,
        "period": period,
        "cycle_day": cycle_day,
        "one_off": one_off.map(|(s, e)| json!({ "start": s, "end": e })),
        "counts": match budget.counts { Counts::DownAndUp => "both", Counts::UpOnly => "up" },
        "reserve_percent": budget.reserve_percent,
        "agent_limit_bytes": budget.agent_limit(),
        "time_zone": budget.zone.to_string(),
        // For a named zone, the offset in force now.
        "utc_offset_seconds": budget.zone.offset_at(now).seconds(),
        "period_start": start.0,
        "period_end": end.0,
        "used_bytes": account.link_used(),
        "agent_used_bytes": account.used(),
        "available_bytes": account.available(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let header = ["ID", "PERIOD", "USED"].map(String::from);
        let rows = vec![
            ["home", "monthly from day 1", "1 GB"].map(String::from),
            ["trip", "once, until 2026-11-29 10:35 UTC", "12.5 GB"].map(String::from),
        ];
        let lines = table(&header, &rows, &[false, false, true]);
        assert_eq!(
            lines,
            [
                "ID    PERIOD                               USED",
                "home  monthly from day 1                   1 GB",
                "trip  once, until 2026-11-29 10:35 UTC  12.5 GB",
            ]
        );
    }

    #[test]
    fn a_cap_that_leaves_capwise_nothing_is_refused() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let parse = |args: &[&str]| -> BudgetSetArgs {
            let cli = Cli::try_parse_from(["capwise", "budget", "set", "home"].iter().chain(args))
                .unwrap();
            match cli.command {
                Command::Budget(BudgetArgs {
                    command: BudgetCommand::Set(a),
                }) => a,
                other => panic!("{other:?}"),
            }
        };
        let now = Timestamp(1_750_000_000);
        let e = budget_from_args(&parse(&["--cap", "0"]), now).unwrap_err();
        assert!(format!("{e:#}").contains("--cap 0"), "{e:#}");
        // 1 byte with 50% kept: the reserve rounds to 0, capwise may use 1.
        assert!(budget_from_args(&parse(&["--cap", "1", "--reserve", "50"]), now).is_ok());
        let e = budget_from_args(&parse(&["--cap", "1", "--reserve", "99"]), now);
        assert!(e.is_ok(), "99% of 1 byte rounds down: capwise may use 1 B");
        let e = budget_from_args(&parse(&["--cap", "5GB", "--reserve", "10"]), now).unwrap();
        assert_eq!(e.agent_limit(), 4_500_000_000);
        assert!(Cli::try_parse_from([
            "capwise",
            "budget",
            "set",
            "x",
            "--cap",
            "1GB",
            "--reserve",
            "100"
        ])
        .is_err());
    }

    #[test]
    fn zone_flags_name_offset_or_machine() {
        let now = Timestamp(1_750_000_000);
        assert_eq!(
            zone_from_args(Some("Europe/Paris"), None, now)
                .unwrap()
                .name(),
            Some("Europe/Paris")
        );
        let err = zone_from_args(Some("Europe/Atlantis"), None, now).unwrap_err();
        assert!(format!("{err:#}").contains("Europe/Atlantis"), "{err:#}");
        assert_eq!(
            zone_from_args(None, Some(-18_000), now).unwrap(),
            Zone::Fixed(UtcOffset::from_hm(-5, 0).unwrap())
        );
        assert!(zone_from_args(None, Some(20 * 3600), now).is_err());
        assert_eq!(zone_from_args(None, None, now).unwrap(), Zone::system(now));
    }
}
