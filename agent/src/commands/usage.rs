//! `capwise usage [NETWORK_ID]`: this period's traffic per network: the
//! agent's share per direction and peer class, and the whole link's (all
//! programs, from the interface counters).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use capwise_policy::ledger::{BudgetAccount, Direction, PeerClass};
use capwise_policy::network::NetworkId;
use capwise_policy::projection::linear;
use capwise_policy::store::Store;
use capwise_policy::time::Timestamp;
use capwise_policy::units::HumanBytes;
use serde_json::{json, Value};

use super::budget::warn_if_unseen;
use super::output::{format_timestamp, print_json};
use crate::cli_policy::UsageArgs;
use crate::state_db::{open_store, state_dir, usage_period};

/// Runs `capwise usage`.
pub fn run(args: &UsageArgs) -> Result<()> {
    let now = Timestamp::now_from_system();
    let store = open_store(&state_dir(args.store.state_dir.as_deref()), now)?;
    let ids: Vec<NetworkId> = match &args.network_id {
        Some(id) => {
            let id = NetworkId::new(id.clone());
            warn_if_unseen(&store, &id, "nothing is recorded for it until it is")?;
            vec![id]
        }
        None => known_networks(&store)?,
    };
    let reports = ids
        .iter()
        .map(|id| report(&store, id, now))
        .collect::<Result<Vec<_>>>()?;
    if args.store.json {
        print_json(&Value::Array(reports));
        return Ok(());
    }
    if reports.is_empty() {
        println!("no usage recorded yet");
    }
    for r in &reports {
        print_text(r);
    }
    Ok(())
}

/// Every network seen or budgeted.
pub(crate) fn known_networks(store: &Store) -> Result<Vec<NetworkId>> {
    let mut ids: BTreeSet<NetworkId> = store
        .networks()
        .context("cannot read the networks")?
        .into_iter()
        .map(|n| n.id)
        .collect();
    ids.extend(store.budgets()?.into_iter().map(|(id, _)| id));
    Ok(ids.into_iter().collect())
}

pub(crate) fn report(store: &Store, id: &NetworkId, now: Timestamp) -> Result<Value> {
    let (start, end) = usage_period(store, id, now)?;
    let rows = store
        .usage(id, start)
        .with_context(|| format!("cannot read the usage of '{id}'"))?;
    let agent = |direction: Direction, class: PeerClass| -> u64 {
        rows.iter()
            .filter(|r| r.direction == direction && r.peer_class == class)
            .map(|r| r.bytes)
            .sum()
    };
    let (rx, tx) = store.link_usage(id, start)?;
    // The whole link's traffic is known only once capwise read the
    // network's interface counters; before that it is unknown, not 0 B.
    let link_known = rx > 0 || tx > 0 || store.link_reading(id)?.is_some();
    let link = if link_known {
        json!({ "down": rx, "up": tx })
    } else {
        Value::Null
    };
    let budget = match store.budget(id)? {
        Some(budget) => {
            let account = BudgetAccount::open(store, id.clone(), budget, now)?;
            let (start, end) = account.period();
            let link = linear(start, end, now, account.link_used(), budget.cap_bytes);
            let agent = linear(start, end, now, account.used(), budget.agent_limit());
            let projection = match (link, agent) {
                (Some(link), Some(agent)) => json!({
                    "method": "linear",
                    "end_bytes": link.end_bytes,
                    "reaches_cap_at": link.reaches_limit_at.map(|t| t.0),
                    "agent_end_bytes": agent.end_bytes,
                    "agent_reaches_limit_at": agent.reaches_limit_at.map(|t| t.0),
                }),
                _ => Value::Null,
            };
            json!({
                "cap_bytes": budget.cap_bytes,
                "agent_limit_bytes": budget.agent_limit(),
                "used_bytes": account.link_used(),
                "agent_used_bytes": account.used(),
                "others_used_bytes": account.others_used(),
                "available_bytes": account.available(),
                "projection": projection,
            })
        }
        None => Value::Null,
    };
    Ok(json!({
        "network_id": id.as_str(),
        "period_start": start.0,
        "period_end": end.0,
        "agent": {
            "down_wan": agent(Direction::Down, PeerClass::Wan),
            "down_lan": agent(Direction::Down, PeerClass::Lan),
            "up_wan": agent(Direction::Up, PeerClass::Wan),
            "up_lan": agent(Direction::Up, PeerClass::Lan),
        },
        "link": link,
        "budget": budget,
    }))
}

fn print_text(r: &Value) {
    let n = |v: &Value| HumanBytes(v.as_u64().unwrap_or(0));
    let a = &r["agent"];
    println!(
        "{} ({} to {})",
        r["network_id"].as_str().unwrap_or(""),
        format_timestamp(Timestamp(r["period_start"].as_i64().unwrap_or(0))),
        format_timestamp(Timestamp(r["period_end"].as_i64().unwrap_or(0))),
    );
    println!(
        "  capwise:    down {} from the internet, {} from the LAN; up {} to the internet, {} to the LAN",
        n(&a["down_wan"]),
        n(&a["down_lan"]),
        n(&a["up_wan"]),
        n(&a["up_lan"]),
    );
    if r["link"].is_null() {
        println!("  whole link: unknown (its interface counters were not read yet)");
    } else {
        println!(
            "  whole link: down {}, up {} (all programs)",
            n(&r["link"]["down"]),
            n(&r["link"]["up"]),
        );
    }
    let b = &r["budget"];
    if !b.is_null() {
        println!(
            "  budget:     {} of {} used; capwise stops at {}, {} left for it",
            n(&b["used_bytes"]),
            n(&b["cap_bytes"]),
            n(&b["agent_limit_bytes"]),
            n(&b["available_bytes"]),
        );
    }
}
