//! `capwise why`: the decision in force now, in words. Detects the network
//! the way `capwise get` does and reads budget and usage from the store;
//! changes nothing. When an agent runs for the state directory, its own
//! decision is shown instead.

use anyhow::{Context, Result};
use capwise_policy::decision::{decide, Allowance, Decision, DecisionInput};
use capwise_policy::network::Network;
use capwise_policy::schedule::Schedule;
use capwise_policy::time::Timestamp;
use serde_json::{json, Value};

use super::output::{allowance_json, print_json};
use crate::accounting::Accounting;
use crate::api_types::Why;
use crate::cli_policy::WhyArgs;
use crate::config::RateLimits;
use crate::limits::explain_with;
use crate::network_source::{detect_once, NetworkFile, SourceKind};
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
                super::subscribe::print_windows_holding_back(Some(&dir)).await;
            }
            return Ok(());
        }
    }
    // Without an agent, decide as `capwise run` would: with the same
    // configuration file's settings and network file.
    let config = crate::config::load_warning(args.config.as_deref())?;
    let settings = config.settings()?;
    let network_file =
        NetworkFile::choose(args.network_file.as_deref(), config.network_file.as_deref());
    let store = open_store(&dir, now)?;
    let (source, reported, problem) = detect_once(network_file.as_ref()).await?;
    let network = match reported {
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
            offline: source.offline(),
            budget: budget.as_ref(),
            schedule: Some(&schedule),
            power: crate::power_source::read_once().await,
            settings: &settings,
        },
        now,
    );
    let limits = stored_limits(&dir, &config)?;
    let mut view = why_view(&decision, network.as_ref(), source, &limits, problem);
    view.warnings = config.warnings.clone();
    if args.store.json {
        print_json(&serde_json::to_value(view)?);
    } else {
        println!("{}", view.explanation);
        print_warnings(&view.warnings);
        super::subscribe::print_windows_holding_back(Some(&dir)).await;
    }
    Ok(())
}

/// The configuration's warnings, after the decision.
fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        println!("Warning: {warning}");
    }
}

/// The user's limits as the agent would apply them: the configuration's,
/// with those set at run time (`capwise limits set`) over them.
fn stored_limits(dir: &std::path::Path, config: &crate::config::Config) -> Result<RateLimits> {
    let from_config = config.limits()?;
    let path = dir.join(crate::state_db::DB_FILE);
    if !path.exists() {
        return Ok(from_config);
    }
    match crate::torrent_db::TorrentDb::open(&path) {
        Ok(db) => crate::daemon::control::effective_limits(&from_config, &db),
        Err(error) => {
            tracing::debug!(%error, "cannot read the limits set at run time");
            Ok(from_config)
        }
    }
}

/// The decision as `why --json` and the API's `GET /v1/why` show it: one
/// shape whether the agent answers or the CLI decides itself.
/// The user's own `limits` are named in the sentence, and a missing or
/// invalid network file (`problem`) leads it.
pub fn why_view(
    decision: &Decision,
    network: Option<&Network>,
    source: SourceKind,
    limits: &RateLimits,
    problem: Option<String>,
) -> Why {
    // The user's limits do not matter while everything is paused anyway.
    let all_paused = [
        decision.down_wan,
        decision.down_lan,
        decision.up_wan,
        decision.up_lan,
    ]
    .iter()
    .all(|a| *a == Allowance::Suspended);
    let explanation = if all_paused {
        decision.explanation.clone()
    } else {
        explain_with(&decision.explanation, limits)
    };
    Why {
        reason: format!("{:?}", decision.reason),
        explanation: match &problem {
            Some(problem) => format!("{problem} {explanation}"),
            None => explanation,
        },
        source_problem: problem,
        seeding_wan: decision.up_wan != Allowance::Suspended,
        seeding_lan: decision.up_lan != Allowance::Suspended,
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
        interface: None,
    }
}

/// `why` with the interface traffic is bound to: its state, and its problem
/// (down, missing) leading the explanation, since nothing moves then.
pub fn with_interface(
    mut why: Why,
    status: Option<capwise_engine::session::InterfaceStatus>,
) -> Why {
    let Some(status) = status else {
        return why;
    };
    let problem = status.problem();
    if let Some(problem) = &problem {
        why.explanation = format!("{problem} {}", why.explanation);
    }
    why.interface = Some(crate::api_types::BoundInterface {
        name: status.name.clone(),
        state: status.state_word().to_string(),
        problem,
    });
    why
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
    use crate::policy_runtime::{PolicyOptions, PolicyReload, PolicyRuntime};
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
                network_file: crate::network_source::NetworkFile::choose(Some(&net_file), None),
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
        let why = serde_json::to_value(why_view(
            &decision,
            network.as_ref(),
            source,
            &RateLimits::default(),
            None,
        ))
        .unwrap();
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
                "seeding_lan",
                "seeding_wan",
                "source",
                "source_problem"
            ]
        );
        assert_eq!(why["source"], "network file");
        assert_eq!(why["counts_against_budget"], true);
        assert_eq!(why["network"]["id"], "home");
        assert_eq!(why["network"]["name"], "Home");
        assert_eq!(why["network"]["metered"], true, "{why}");
        assert_eq!(why["reason"], "Metered");
        // Metered: no uploads to the internet, LAN peers still served, and
        // the sentence says both.
        assert_eq!(
            (why["seeding_wan"].clone(), why["seeding_lan"].clone()),
            (false.into(), true.into())
        );
        let text = why["explanation"].as_str().unwrap();
        assert!(text.starts_with("Uploads to the internet paused"), "{text}");
        assert!(
            text.contains("peers on your LAN are still served"),
            "{text}"
        );
        // The CLI reads the agent's answer back without losing a field.
        let back: Why = serde_json::from_value(why.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), why);
    }

    /// Waits (bounded) until the agent's `why` satisfies `done`.
    async fn why_until(reload: &PolicyReload, done: impl Fn(&Why) -> bool) -> Why {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let decision = reload.reload();
            let (source, network) = reload.network();
            let problem = reload.source_problem(network.as_ref());
            let why = why_view(
                &decision,
                network.as_ref(),
                source,
                &RateLimits::default(),
                problem,
            );
            if done(&why) || tokio::time::Instant::now() > deadline {
                return why;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_agent_starts_offline_on_a_file_not_written_yet_and_says_when_it_turns_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let net_file = dir.path().join("run").join("network.toml");
        let runtime = PolicyRuntime::start(
            &PolicyOptions {
                state_dir: dir.path().join("state"),
                network_file: NetworkFile::choose(None, Some(&net_file)),
                settings: Default::default(),
            },
            &capwise_engine::session::Hooks::default(),
        )
        .await
        .expect("a network file not written yet does not stop the agent");
        let reload = runtime.reloader();
        let why = why_until(&reload, |_| true).await;
        assert_eq!(why.reason, "Offline");
        assert!(why.network.is_none());
        assert!(
            why.explanation
                .contains("does not exist yet: offline until it appears"),
            "{}",
            why.explanation
        );
        // It appears: followed (its directory did not exist: polled).
        std::fs::create_dir_all(net_file.parent().unwrap()).unwrap();
        std::fs::write(&net_file, "id = \"home\"\nmetered = \"no\"\n").unwrap();
        let why = why_until(&reload, |w| w.reason == "Unmetered").await;
        assert_eq!(why.reason, "Unmetered", "{}", why.explanation);
        assert!(why.source_problem.is_none());
        // Rewritten with a bad value: invalid since now, 'home' assumed metered.
        std::fs::write(&net_file, "id = \"home\"\nmetered = \"sometimes\"\n").unwrap();
        let why = why_until(&reload, |w| w.reason == "Metered").await;
        assert_eq!(why.reason, "Metered", "{}", why.explanation);
        let problem = why.source_problem.clone().unwrap_or_default();
        assert!(problem.contains("is invalid since"), "{problem}");
        assert!(
            problem.ends_with("meanwhile 'home' is assumed metered."),
            "{problem}"
        );
        assert!(why.explanation.starts_with(&problem), "{}", why.explanation);
        assert_eq!(why.network.as_ref().unwrap()["id"], "home");
    }
}
