//! `capwise network list | set`: the networks seen and the user's word on
//! whether each is metered.

use anyhow::{Context, Result};
use capwise_policy::network::{Metered, NetworkId};
use capwise_policy::store::SeenNetwork;
use capwise_policy::time::Timestamp;
use serde_json::{json, Value};

use super::budget::warn_if_unseen;
use super::output::{format_timestamp, print_json};
use crate::cli_policy::{MeteredArg, NetworkArgs, NetworkCommand, NetworkSetArgs, StoreArgs};
use crate::state_db::{open_store, state_dir};

/// Runs a `capwise network` subcommand.
pub fn run(args: &NetworkArgs) -> Result<()> {
    let now = Timestamp::now_from_system();
    match &args.command {
        NetworkCommand::List(a) => list(a, now),
        NetworkCommand::Set(a) => set(a, now),
    }
}

/// The user's word as the command line spells it.
fn metered_word(word: Option<bool>) -> &'static str {
    match word {
        Some(true) => "yes",
        Some(false) => "no",
        None => "auto",
    }
}

/// Whether capwise takes the network as metered: the user's word when
/// given, else what was detected when it was last seen.
fn metered_state(n: &SeenNetwork) -> Metered {
    match (n.metered_override, &n.last_metered) {
        (Some(true), _) => Metered::Yes,
        (Some(false), _) => Metered::No,
        (None, Some((metered, _))) => *metered,
        (None, None) => Metered::Unknown,
    }
}

/// The METERED column: "yes", "no", "probably", "probably not", "unknown".
fn metered_column(metered: Metered) -> &'static str {
    match metered {
        Metered::Yes => "yes",
        Metered::No => "no",
        Metered::GuessYes => "probably",
        Metered::GuessNo => "probably not",
        Metered::Unknown => "unknown",
    }
}

/// The networks seen, as `network list --json` prints them (and
/// `GET /v1/networks` serves them).
pub(crate) fn rows(store: &capwise_policy::store::Store) -> Result<(Vec<SeenNetwork>, Vec<Value>)> {
    let networks = store.networks().context("cannot read the networks")?;
    let mut rows = Vec::with_capacity(networks.len());
    for n in &networks {
        rows.push(json!({
            "id": n.id.as_str(),
            "name": n.name,
            "kind": n.kind.as_str(),
            // The user's word, as `network set --metered` takes it.
            "metered": metered_word(n.metered_override),
            // What capwise goes by (when last seen), and who said so.
            "metered_state": metered_state(n).as_str(),
            "metered_source": n.last_metered.as_ref().map(|(_, source)| source.as_str()),
            "has_budget": store.budget(&n.id)?.is_some(),
            "first_seen": n.first_seen.0,
            "last_seen": n.last_seen.0,
        }));
    }
    Ok((networks, rows))
}

fn list(args: &StoreArgs, now: Timestamp) -> Result<()> {
    let store = open_store(&state_dir(args.state_dir.as_deref()), now)?;
    let (networks, rows) = rows(&store)?;
    if args.json {
        print_json(&Value::Array(rows));
        return Ok(());
    }
    if networks.is_empty() {
        println!("no networks seen yet");
        return Ok(());
    }
    // METERED: what capwise goes by (the user's word when given, else the
    // detection's, which only a running source knows); YOUR WORD: the
    // override `network set` stores.
    println!(
        "{:<24} {:<24} {:<10} {:<12} {:<9} {:<7} LAST SEEN",
        "ID", "NAME", "KIND", "METERED", "YOUR WORD", "BUDGET"
    );
    for (n, row) in networks.iter().zip(&rows) {
        println!(
            "{:<24} {:<24} {:<10} {:<12} {:<9} {:<7} {}",
            n.id.as_str(),
            // Set up ahead of time with `network set`: no name known yet.
            if n.last_seen.0 > 0 || !n.name.is_empty() {
                n.name.as_str()
            } else {
                "(not seen yet)"
            },
            n.kind.as_str(),
            metered_column(metered_state(n)),
            metered_word(n.metered_override),
            if row["has_budget"] == true {
                "yes"
            } else {
                "no"
            },
            format_timestamp(n.last_seen),
        );
    }
    Ok(())
}

fn set(args: &NetworkSetArgs, now: Timestamp) -> Result<()> {
    let store = open_store(&state_dir(args.store.state_dir.as_deref()), now)?;
    let id = NetworkId::new(args.network_id.clone());
    // Allowed (a network can be set up before it is first joined), but a
    // typo must not pass silently.
    warn_if_unseen(&store, &id, "the setting will apply when it is")?;
    let word = match args.metered {
        MeteredArg::Yes => Some(true),
        MeteredArg::No => Some(false),
        MeteredArg::Auto => None,
    };
    store
        .set_metered_override(&id, word)
        .context("cannot store your word on metering")?;
    if args.store.json {
        print_json(&json!({ "id": id.as_str(), "metered": metered_word(word) }));
    } else {
        match word {
            Some(true) => println!("'{id}' is now treated as metered"),
            Some(false) => println!("'{id}' is now treated as not metered"),
            None => {
                println!("'{id}': metering is detected again (NetworkManager or the device type)")
            }
        }
    }
    Ok(())
}
