//! `capwise why`: the decision in force now, in words. Detects the network
//! the way `capwise get` does and reads budget and usage from the store;
//! changes nothing. When an agent runs for the state directory, its own
//! decision is shown instead.

use anyhow::{Context, Result};
use capwise_policy::decision::{decide, Decision, DecisionInput};
use capwise_policy::network::Network;
use capwise_policy::schedule::Schedule;
use capwise_policy::time::Timestamp;
use serde_json::{json, Value};

use super::output::{allowance_json, print_json};
use crate::accounting::Accounting;
use crate::api_types::Why;
use crate::cli_policy::WhyArgs;
use crate::network_source::{detect_once, SourceKind};
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
                print_warnings(&why.warnings);
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
    // Under a VPN, the budget and schedule are those of the billed link.
    let (budget, schedule) = match network.as_ref().map(Network::billed_link) {
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
        print_warnings(&config.warnings);
        return Ok(());
    }
    let mut view = why_view(&decision, network.as_ref(), source);
    view.warnings = config.warnings.clone();
    print_json(&serde_json::to_value(view)?);
    Ok(())
}

/// The configuration's warnings, after the decision.
fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        println!("Warning: {warning}");
    }
}

/// The decision as `why --json` and the API's `GET /v1/why` show it: one
/// shape whether the agent answers or the CLI decides itself.
pub fn why_view(decision: &Decision, network: Option<&Network>, source: SourceKind) -> Why {
    Why {
        reason: format!("{:?}", decision.reason),
        explanation: decision.explanation.clone(),
        seeding: seeding_allowed(decision),
        background_allowed: decision.background_allowed,
        allowances: json!({
            "down_wan": allowance_json(decision.down_wan),
            "down_lan": allowance_json(decision.down_lan),
            "up_wan": allowance_json(decision.up_wan),
            "up_lan": allowance_json(decision.up_lan),
        }),
        counts_against_budget: decision.counts_against_budget,
        network: network.map(network_json),
        source: source.describe().to_string(),
        warnings: Vec::new(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_runtime::{PolicyOptions, PolicyRuntime};
    use capwise_policy::network::NetworkId;

    #[tokio::test]
    async fn the_agents_why_has_the_offline_shape_with_the_network_and_the_users_word() {
        let dir = tempfile::tempdir().unwrap();
        let net_file = dir.path().join("net.toml");
        std::fs::write(
            &net_file,
            "id = \"home\"\nname = \"Home\"\nmetered = \"no\"\n",
        )
        .unwrap();
        let state_dir = dir.path().join("state");
        let runtime = PolicyRuntime::start(
            &PolicyOptions {
                state_dir: state_dir.clone(),
                network_file: Some(net_file),
                settings: Default::default(),
            },
            &capwise_engine::session::Hooks::default(),
        )
        .await
        .unwrap();
        // `capwise network set home --metered yes`, then the reload it sends.
        open_store(&state_dir, Timestamp::now_from_system())
            .unwrap()
            .set_metered_override(&NetworkId::new("home"), Some(true))
            .unwrap();
        let reload = runtime.reloader();
        let decision = reload.reload();
        let (source, network) = reload.network();
        let why = serde_json::to_value(why_view(&decision, network.as_ref(), source)).unwrap();
        let mut keys: Vec<&str> = why
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "allowances",
                "background_allowed",
                "counts_against_budget",
                "explanation",
                "network",
                "reason",
                "seeding",
                "source"
            ]
        );
        assert_eq!(why["source"], "network file");
        assert_eq!(why["counts_against_budget"], true);
        assert_eq!(why["network"]["id"], "home");
        assert_eq!(why["network"]["name"], "Home");
        assert_eq!(why["network"]["metered"], true, "{why}");
        assert_eq!(why["reason"], "Metered");
        // The CLI reads the agent's answer back without losing a field.
        let back: Why = serde_json::from_value(why.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), why);
    }
}
