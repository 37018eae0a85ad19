//! `capwise limits show|set`: the running agent's own rate limits.

use anyhow::{bail, Result};

use super::output::print_json;
use crate::api_types::Limits;
use crate::cli_agent::{LimitsArgs, LimitsCommand};
use crate::client::AgentClient;
use crate::state_db::state_dir;

fn show(limits: &Limits) {
    println!("{}", shown(limits));
}

/// The limits in words, with the rate formatter every command uses.
fn shown(limits: &Limits) -> String {
    let text = |v: Option<u64>| match v {
        Some(rate) => crate::units::format_rate(rate as f64),
        None => "unlimited".into(),
    };
    format!("up:   {}\ndown: {}", text(limits.up), text(limits.down))
}

/// Runs `capwise limits`.
pub async fn run(args: &LimitsArgs) -> Result<()> {
    let (store, change) = match &args.command {
        LimitsCommand::Show(store) => (store, None),
        LimitsCommand::Set(set) => {
            if set.up.is_none() && set.down.is_none() {
                bail!("give --up RATE and/or --down RATE (\"unlimited\" removes a limit)");
            }
            (
                &set.agent,
                Some(Limits {
                    up: set.up,
                    down: set.down,
                }),
            )
        }
    };
    let client = AgentClient::connect(&state_dir(store.state_dir.as_deref()))?;
    let limits: Limits = match change {
        Some(change) => client.put("/v1/limits", &change).await?,
        None => client.get("/v1/limits").await?,
    };
    if store.json {
        print_json(&serde_json::to_value(limits)?);
    } else {
        show(&limits);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_show_in_the_same_units_as_every_rate() {
        let limits = Limits {
            up: None,
            down: Some(20_000_000),
        };
        assert_eq!(shown(&limits), "up:   unlimited\ndown: 20 MB/s");
    }
}
