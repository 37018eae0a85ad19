//! `capwise why`: the decision in force now, in words. Detects the network
//! the way `capwise get` does and reads budget and usage from the store;
//! changes nothing. When an agent runs for the state directory, its own
//! decision is shown instead.

use anyhow::{Context, Result};
use capwise_policy::decision::{decide, DecisionInput};
use capwise_policy::network::Network;
use capwise_policy::schedule::Schedule;
use capwise_policy::time::Timestamp;
use serde_json::{json, Value};

use super::output::{allowance_json, print_json};
use crate::accounting::Accounting;
use crate::cli_policy::WhyArgs;
use crate::network_source::detect_once;
use crate::policy_runtime::seeding_allowed;
use crate::policy_state::with_users_word;
use crate::state_db::{open_store, state_dir};

/// Runs `capwise why`.
pub async fn run(args: &WhyArgs) -> Result<()> {
    let now = Timestamp::now_from_system();
    let dir = state_dir(args.store.state_dir.as_deref());
    // The running agent knows its configuration and the network it follows;
    // ask it unless the user describes another network.
    if args.network_file.is_none() {
        if let Ok(client) = crate::client::AgentClient::connect(&dir) {
            let why: crate::api_types::Why = client.get("/v1/why").await?;
            if args.store.json {
                print_json(&serde_json::to_value(&why)?);
            } else {
                println!("{}", why.explanation);
            }
            return Ok(());
        }
    }
    // Without an agent, decide as `capwise run` would: with the same
    // configuration file's settings and network file.
    let config = crate::config::load_warning(args.config.as_deref())?;
    let settings = config.settings()?;
    let network_file = args.network_file.clone().or(config.network_file.clone());
    let store = open_store(&dir, now)?;
    let (source, reported) = detect_once(network_file.as_ref()).await?;
    let network = match source.resolve(reported) {
        Some(n) => Some(with_users_word(&store, n).context("cannot read your word on metering")?),
        None => None,
    };
    let (budget, schedule) = match &network {
        Some(n) => (
            Accounting::open(&store, &n.id, now)
                .with_context(|| format!("cannot read the budget of '{}'", n.id))?
                .budget_state(),
            store.schedule(&n.id)?,
        ),
        None => (None, Schedule::default()),
    };
    let decision = decide(
        &DecisionInput {
            network: network.as_ref(),
            budget: budget.as_ref(),
            schedule: Some(&schedule),
            settings: &settings,
        },
        now,
    );
    if !args.store.json {
        println!("{}", decision.explanation);
        return Ok(());
    }
    print_json(&json!({
        "network": network.as_ref().map(network_json),
        "source": source.describe(),
        "reason": format!("{:?}", decision.reason),
        "explanation": decision.explanation,
        "allowances": {
            "down_wan": allowance_json(decision.down_wan),
            "down_lan": allowance_json(decision.down_lan),
            "up_wan": allowance_json(decision.up_wan),
            "up_lan": allowance_json(decision.up_lan),
        },
        "seeding": seeding_allowed(&decision),
        "background_allowed": decision.background_allowed,
        "counts_against_budget": decision.counts_against_budget,
    }));
    Ok(())
}

/// A network as JSON, as `why` and `net` print it.
pub fn network_json(n: &Network) -> Value {
    json!({
        "id": n.id.as_str(),
        "name": n.display_name(),
        "kind": n.kind.as_str(),
        "metered": n.is_metered(),
        "metered_source": n.effective_metered().1.says_so(),
        "roaming": n.is_roaming(),
        "interface": n.interface,
    })
}
