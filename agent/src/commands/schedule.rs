//! `capwise schedule add | list | rm`: time windows with their own rules,
//! per network, in the network's schedule zone.

use anyhow::{bail, Context, Result};
use capwise_policy::network::NetworkId;
use capwise_policy::schedule::{Days, Rule, Schedule, Window};
use capwise_policy::time::Timestamp;
use capwise_policy::units::HumanRate;
use serde_json::{json, Value};

use super::budget::{warn_if_unseen, zone_from_args};
use super::output::print_json;
use crate::cli_schedule::{
    RuleArg, ScheduleAddArgs, ScheduleArgs, ScheduleCommand, ScheduleListArgs, ScheduleRmArgs,
};
use crate::state_db::{open_store, state_dir};

/// Runs a `capwise schedule` subcommand.
pub fn run(args: &ScheduleArgs) -> Result<()> {
    let now = Timestamp::now_from_system();
    match &args.command {
        ScheduleCommand::Add(a) => add(a, now),
        ScheduleCommand::List(a) => list(a, now),
        ScheduleCommand::Rm(a) => rm(a, now),
    }
}

fn add(args: &ScheduleAddArgs, now: Timestamp) -> Result<()> {
    let rule = match (args.rule, args.down, args.up) {
        (RuleArg::Limit, None, None) => {
            bail!("--rule limit needs --down RATE, --up RATE or both (e.g. --up 100KB/s)")
        }
        (RuleArg::Limit, down, up) => Rule::Limit { down, up },
        (RuleArg::Free, None, None) => Rule::Free,
        (RuleArg::Pause, None, None) => Rule::Pause,
        _ => bail!("--down and --up only go with --rule limit"),
    };
    if args.days == 0 {
        bail!("--days names no day");
    }
    if args.from >= 1440 {
        bail!("--from 24:00: a window starts at 23:59 at the latest (use 00:00 and the next day)");
    }
    let window = Window {
        days: Days(args.days),
        start_minute: args.from,
        end_minute: args.to,
        rule,
    };
    window.validate().context("invalid window")?;

    let mut store = open_store(&state_dir(args.store.state_dir.as_deref()), now)?;
    let id = NetworkId::new(args.network_id.clone());
    warn_if_unseen(&store, &id, "the schedule will apply when it is")?;
    let mut schedule = store.schedule(&id).context("cannot read the schedule")?;
    let asked = match (&args.time_zone, args.utc_offset) {
        (None, None) => None,
        (name, offset) => Some(zone_from_args(name.as_deref(), offset, now)?),
    };
    match asked {
        Some(zone) if !schedule.windows.is_empty() && zone != schedule.zone => bail!(
            "the schedule of '{id}' is in {}; its windows share one zone \
             (leave the zone out to use it, or remove them first with `capwise schedule rm {id}`)",
            schedule.zone
        ),
        Some(zone) => schedule.zone = zone,
        None if schedule.windows.is_empty() => {
            schedule.zone = zone_from_args(None, None, now)?;
        }
        None => {}
    }
    schedule.windows.push(window);
    store
        .set_schedule(&id, &schedule)
        .context("cannot store the schedule")?;
    let number = schedule.windows.len();
    if args.store.json {
        print_json(&window_json(&id, number, &window, &schedule));
    } else {
        println!(
            "schedule of '{id}', window {number}: {} ({})",
            window_words(&window),
            schedule.zone
        );
        if schedule.windows.len() > 1 {
            println!("the first window that matches wins (see `capwise schedule list {id}`)");
        }
    }
    Ok(())
}

fn list(args: &ScheduleListArgs, now: Timestamp) -> Result<()> {
    let store = open_store(&state_dir(args.store.state_dir.as_deref()), now)?;
    let ids: Vec<NetworkId> = match &args.network_id {
        Some(id) => vec![NetworkId::new(id.trim())],
        None => store
            .scheduled_networks()
            .context("cannot read the schedules")?,
    };
    let mut rows = Vec::new();
    for id in &ids {
        let schedule = store.schedule(id).context("cannot read the schedule")?;
        for (i, w) in schedule.windows.iter().enumerate() {
            rows.push((id.clone(), i + 1, *w, schedule.clone()));
        }
    }
    if args.store.json {
        let views = rows
            .iter()
            .map(|(id, n, w, s)| window_json(id, *n, w, s))
            .collect();
        print_json(&Value::Array(views));
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no schedule windows; add one with `capwise schedule add NETWORK_ID --from 22:00 --to 06:00 --rule free`"
        );
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|(id, ..)| id.as_str().chars().count())
        .max()
        .unwrap_or(0)
        .max("NETWORK".len());
    println!("{:<width$}  {:>2}  WINDOW  (ZONE)", "NETWORK", "#");
    for (id, n, w, s) in &rows {
        println!(
            "{:<width$}  {n:>2}  {}  ({})",
            id.as_str(),
            window_words(w),
            s.zone
        );
    }
    Ok(())
}

fn rm(args: &ScheduleRmArgs, now: Timestamp) -> Result<()> {
    let mut store = open_store(&state_dir(args.store.state_dir.as_deref()), now)?;
    let id = NetworkId::new(args.network_id.clone());
    let mut schedule = store.schedule(&id).context("cannot read the schedule")?;
    if schedule.windows.is_empty() {
        bail!("'{id}' has no schedule (see `capwise schedule list`)");
    }
    let removed = match args.window {
        Some(n) => {
            let index = usize::from(n) - 1;
            if index >= schedule.windows.len() {
                bail!(
                    "'{id}' has {} window(s); --window {n} is not one of them",
                    schedule.windows.len()
                );
            }
            schedule.windows.remove(index);
            1
        }
        None => std::mem::take(&mut schedule.windows).len(),
    };
    store
        .set_schedule(&id, &schedule)
        .context("cannot store the schedule")?;
    if args.store.json {
        print_json(&json!({ "network_id": id.as_str(), "removed_windows": removed }));
    } else {
        println!(
            "removed {removed} window(s) from the schedule of '{id}'; {} left",
            schedule.windows.len()
        );
    }
    Ok(())
}

fn window_json(id: &NetworkId, number: usize, w: &Window, schedule: &Schedule) -> Value {
    let (rule, down, up) = match w.rule {
        Rule::Free => ("free", None, None),
        Rule::Pause => ("pause", None, None),
        Rule::Limit { down, up } => ("limit", down, up),
    };
    json!({
        "network_id": id.as_str(),
        "window": number,
        "days": days_words(w.days),
        "from": clock(w.start_minute),
        "to": clock(w.end_minute),
        "rule": rule,
        "down_rate": down,
        "up_rate": up,
        "time_zone": schedule.zone.to_string(),
    })
}

/// "Mon-Fri 22:00-06:00 (to the next day): free, not counted".
pub(crate) fn window_words(w: &Window) -> String {
    let overnight = if w.end_minute <= w.start_minute {
        " (to the next day)"
    } else {
        ""
    };
    let rule = match w.rule {
        Rule::Free => "free, not counted against the budget".to_string(),
        Rule::Pause => "WAN traffic paused".to_string(),
        Rule::Limit { down, up } => {
            let part =
                |label: &str, rate: Option<u64>| rate.map(|r| format!("{label} {}", HumanRate(r)));
            let parts: Vec<String> = [part("down", down), part("up", up)]
                .into_iter()
                .flatten()
                .collect();
            format!("limited to {}", parts.join(", "))
        }
    };
    format!(
        "{} {}-{}{overnight}: {rule}",
        days_words(w.days),
        clock(w.start_minute),
        clock(w.end_minute)
    )
}

fn days_words(days: Days) -> String {
    match days {
        Days::EVERY_DAY => "every day".into(),
        Days::WEEKDAYS => "Mon-Fri".into(),
        Days::WEEKEND => "Sat-Sun".into(),
        Days(mask) => ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}
