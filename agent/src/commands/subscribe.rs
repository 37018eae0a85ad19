//! `capwise subscribe | unsubscribe`, and the subscriptions part of
//! `capwise channel list`: the subscriber's side. The running agent owns
//! the subscriptions and polls them; these commands only ask it.

use std::path::Path;

use anyhow::{Context, Result};

use super::output::print_json;
use crate::api_types::{SubscribeRequest, SubscriptionView};
use crate::cli_channel::{SubscribeArgs, UnsubscribeArgs};
use crate::client::AgentClient;
use crate::state_db::state_dir;

fn connect(dir: Option<&Path>) -> Result<AgentClient> {
    AgentClient::connect(&state_dir(dir))
        .context("subscriptions are kept and polled by the agent (`capwise run`)")
}

/// `capwise subscribe URL --key KEY`
pub async fn subscribe(args: &SubscribeArgs) -> Result<()> {
    let client = connect(args.agent.state_dir.as_deref())?;
    let download_dir = match &args.dir {
        Some(dir) => Some(
            std::path::absolute(dir)
                .with_context(|| format!("cannot resolve {}", dir.display()))?
                .to_str()
                .context("the directory's name is not UTF-8")?
                .to_owned(),
        ),
        None => None,
    };
    let request = SubscribeRequest {
        url: args.url.clone(),
        key: args.key.clone(),
        download_dir,
        background: args.background,
        interval_secs: Some(args.interval),
        token: args.token.clone(),
        wan_window: args.wan_window.clone(),
    };
    let view: SubscriptionView = client
        .post("/v1/subscriptions", &request)
        .await
        .with_context(|| format!("cannot subscribe to {}", args.url))?;
    if args.agent.json {
        print_json(&serde_json::to_value(&view)?);
    } else {
        println!(
            "subscribed to {} (polled every {} s; `capwise channel list` shows what it holds)",
            view.url, view.interval_secs
        );
        if let Some(window) = &view.wan_window {
            match &view.wan_held {
                Some(why) => println!("WAN window {window}: held back now, {why}"),
                None => println!("WAN window {window}: open now"),
            }
        }
    }
    Ok(())
}

/// `capwise unsubscribe URL [--delete-data]`
pub async fn unsubscribe(args: &UnsubscribeArgs) -> Result<()> {
    let client = connect(args.agent.state_dir.as_deref())?;
    let mut path = String::from("/v1/subscriptions?url=");
    path.push_str(&encode(&args.url));
    if args.delete_data {
        path.push_str("&delete_data=true");
    }
    client
        .delete(&path)
        .await
        .with_context(|| format!("cannot unsubscribe from {}", args.url))?;
    if args.agent.json {
        print_json(&serde_json::json!({ "unsubscribed": args.url }));
    } else {
        println!("unsubscribed from {}", args.url);
    }
    Ok(())
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The subscriptions, from the running agent, or with none running from
/// the database as it was left (read-only).
pub async fn list(state: Option<&Path>) -> Result<Vec<SubscriptionView>> {
    let dir = state_dir(state);
    if let Ok(client) = AgentClient::connect(&dir) {
        return client.get("/v1/subscriptions").await;
    }
    let stored =
        crate::subscriptions::store::all_without_agent(&dir.join(crate::state_db::DB_FILE))?;
    Ok(stored.iter().map(crate::subscriptions::view).collect())
}

/// For `capwise why`: each channel subscription whose own WAN window holds
/// its traffic back now (the network's decision above still comes first).
pub async fn print_windows_holding_back(state: Option<&Path>) {
    let Ok(subs) = list(state).await else {
        return;
    };
    for s in subs {
        if let Some(why) = &s.wan_held {
            println!("Channel {}: its WAN traffic waits, {why}.", s.url);
        }
    }
}

/// The subscriptions as `channel list` prints them.
pub fn print(subs: &[SubscriptionView]) {
    if subs.is_empty() {
        println!("no subscriptions");
        return;
    }
    for s in subs {
        println!("subscribed {}", s.url);
        println!("  key       {}", s.key);
        println!(
            "  sequence  {}",
            s.last_sequence
                .map_or_else(|| "none accepted yet".to_owned(), |n| n.to_string())
        );
        let when = s.polled_at.map_or_else(
            || "never".to_owned(),
            |t| super::output::local_clock(capwise_policy::time::Timestamp(t)),
        );
        println!("  last poll {when}: {}", s.result);
        if let Some(window) = &s.wan_window {
            match &s.wan_held {
                Some(why) => println!("  WAN       held back: {why}"),
                None => println!("  WAN       open (window {window})"),
            }
        }
        println!("  items     {}", s.items.len());
        for item in &s.items {
            println!(
                "    {} {}",
                &item.info_hash[..item.info_hash.len().min(8)],
                item.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            super::encode("http://h:8/a b?c=d&e"),
            "http%3A%2F%2Fh%3A8%2Fa%20b%3Fc%3Dd%26e"
        );
    }
}
