//! `GET /v1/networks`, `PUT /v1/networks/{id}` and `GET /v1/usage`: what
//! `capwise network list`, `network set`, `budget set --cap`, `schedule list` and `usage`
//! read and write, for the page. Edits go to the same database and are
//! applied at once through the same reload as the CLI's.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use capwise_policy::budget::Budget;
use capwise_policy::network::NetworkId;
use capwise_policy::time::Timestamp;
use serde_json::Value;

use super::api_error;
use crate::daemon::api::ApiState;
use crate::state_db::open_store;

fn state_dir(s: &ApiState) -> PathBuf {
    PathBuf::from(s.control.info().state_dir)
}

/// Runs a store read off the async workers; its error is a JSON 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e:#}"),
        )),
        Err(_) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store read failed",
        )),
    }
}

/// The networks, each with its budget (`budget list --json`'s shape) or null.
pub(crate) fn networks_json(state_dir: &std::path::Path) -> Result<Vec<Value>> {
    let now = Timestamp::now_from_system();
    let store = open_store(state_dir, now)?;
    let (seen, mut rows) = crate::commands::network::rows(&store)?;
    for (n, row) in seen.iter().zip(rows.iter_mut()) {
        row["budget"] = match store.budget(&n.id)? {
            Some(b) => crate::commands::budget::describe(&store, &n.id, &b, now)?,
            None => Value::Null,
        };
        // Its schedule windows in words, as `schedule list` shows them: what
        // would change the decision, and when.
        let schedule = store.schedule(&n.id)?;
        row["schedule"] = schedule
            .windows
            .iter()
            .map(|w| {
                Value::String(format!(
                    "{} ({})",
                    crate::commands::schedule::window_words(w),
                    schedule.zone
                ))
            })
            .collect();
    }
    Ok(rows)
}

/// This period's usage of every known network (`usage --json`'s shape).
pub(crate) fn usage_json(state_dir: &std::path::Path) -> Result<Vec<Value>> {
    let now = Timestamp::now_from_system();
    let store = open_store(state_dir, now)?;
    crate::commands::usage::known_networks(&store)?
        .iter()
        .map(|id| crate::commands::usage::report(&store, id, now))
        .collect()
}

/// How many past periods `GET /v1/history` gives by default, and at most.
const HISTORY_PERIODS: usize = 12;
const HISTORY_PERIODS_MAX: usize = 120;
/// How many past days (with any use) it gives by default, and at most.
const HISTORY_DAYS: usize = 31;
const HISTORY_DAYS_MAX: usize = 366;

/// capwise's bytes in `rows` per direction and peer class, as JSON.
fn agent_totals(rows: &[capwise_policy::store::UsageRow]) -> Value {
    use capwise_policy::ledger::{Direction, PeerClass};
    let sum = |direction: Direction, class: PeerClass| -> u64 {
        rows.iter()
            .filter(|r| r.direction == direction && r.peer_class == class)
            .map(|r| r.bytes)
            .sum()
    };
    serde_json::json!({
        "down_wan": sum(Direction::Down, PeerClass::Wan),
        "down_lan": sum(Direction::Down, PeerClass::Lan),
        "up_wan": sum(Direction::Up, PeerClass::Wan),
        "up_lan": sum(Direction::Up, PeerClass::Lan),
    })
}

/// The last periods' and days' usage of every known network, oldest
/// first: the ledger's totals per period (direction and peer class, and
/// the whole link's) and capwise's per local day.
pub(crate) fn history_json(
    state_dir: &std::path::Path,
    (periods, days): (usize, usize),
) -> Result<Vec<Value>> {
    let now = Timestamp::now_from_system();
    let store = open_store(state_dir, now)?;
    crate::commands::usage::known_networks(&store)?
        .iter()
        .map(|id| {
            let rows = store
                .recent_periods(id, periods)
                .with_context(|| format!("cannot read the history of '{id}'"))?;
            let periods: Vec<Value> = rows
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "period_start": p.period_start.0,
                        "agent": agent_totals(&p.rows),
                        "link": { "down": p.link.0, "up": p.link.1 },
                    })
                })
                .collect();
            let days: Vec<Value> = store
                .recent_days(id, days)
                .with_context(|| format!("cannot read the days of '{id}'"))?
                .iter()
                .map(|d| serde_json::json!({ "day": d.day, "agent": agent_totals(&d.rows) }))
                .collect();
            Ok(serde_json::json!({ "network_id": id.as_str(), "periods": periods, "days": days }))
        })
        .collect()
}

/// The `periods` parameter of `GET /v1/history`.
fn periods_of(query: Option<&str>) -> Result<usize, String> {
    count_of(query, "periods", HISTORY_PERIODS, HISTORY_PERIODS_MAX)
}

/// Parameter `name` of a query: a count from 1 to `max`, else `default`.
fn count_of(query: Option<&str>, name: &str, default: usize, max: usize) -> Result<usize, String> {
    let prefix = format!("{name}=");
    let Some(value) = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix(prefix.as_str()))
    else {
        return Ok(default);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{name}' is a whole number from 1 to {max}, not '{value}'"
        )),
    }
}

pub(super) async fn history(
    State(s): State<Arc<ApiState>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let counts = periods_of(query.as_deref()).and_then(|p| {
        count_of(query.as_deref(), "days", HISTORY_DAYS, HISTORY_DAYS_MAX).map(|d| (p, d))
    });
    let counts = match counts {
        Ok(c) => c,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    let dir = state_dir(&s);
    match blocking(move || history_json(&dir, counts)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

pub(super) async fn networks(State(s): State<Arc<ApiState>>) -> Response {
    let dir = state_dir(&s);
    match blocking(move || networks_json(&dir)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

pub(super) async fn usage(State(s): State<Arc<ApiState>>) -> Response {
    let dir = state_dir(&s);
    match blocking(move || usage_json(&dir)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// The body of `PUT /v1/networks/{id}`: the fields given change.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkChange {
    /// "yes", "no" or "auto", as `network set --metered` takes it.
    #[serde(default)]
    metered: Option<String>,
    /// A cap such as "5GB" (a monthly budget from the 1st in this machine's
    /// zone if there is none yet, else only its cap changes), or "none" to
    /// remove the budget.
    #[serde(default)]
    cap: Option<String>,
}

/// What a change means, checked before anything is written.
#[derive(Debug, PartialEq)]
enum Checked {
    Metered(Option<bool>),
    Cap(Option<u64>),
}

fn check(change: &NetworkChange) -> Result<Vec<Checked>, String> {
    let mut out = Vec::new();
    if let Some(word) = &change.metered {
        out.push(Checked::Metered(match word.as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            "auto" => None,
            other => return Err(format!("'metered' is yes, no or auto, not '{other}'")),
        }));
    }
    if let Some(cap) = &change.cap {
        let cap = cap.trim();
        out.push(Checked::Cap(if cap.eq_ignore_ascii_case("none") {
            None
        } else {
            match crate::units::parse_size(cap) {
                Ok(0) => return Err("'cap' 0 would stop every internet transfer; give the carrier's cap, e.g. 5GB, or none".into()),
                Ok(bytes) => Some(bytes),
                Err(e) => return Err(format!("'cap': {e}")),
            }
        }));
    }
    if out.is_empty() {
        return Err("give 'metered' (yes, no, auto) or 'cap' (e.g. 5GB, or none)".into());
    }
    Ok(out)
}

fn apply(state_dir: &std::path::Path, id: &NetworkId, changes: &[Checked]) -> Result<()> {
    let now = Timestamp::now_from_system();
    let store = open_store(state_dir, now)?;
    for change in changes {
        match change {
            Checked::Metered(word) => store
                .set_metered_override(id, *word)
                .context("cannot store your word on metering")?,
            Checked::Cap(None) => store
                .set_budget(id, None)
                .context("cannot remove the budget")?,
            Checked::Cap(Some(bytes)) => {
                let budget = match store.budget(id)? {
                    Some(b) => Budget {
                        cap_bytes: *bytes,
                        ..b
                    },
                    None => Budget::monthly(*bytes, 1, capwise_policy::zone::Zone::system(now)),
                };
                budget.validate().context("invalid budget")?;
                store
                    .set_budget(id, Some(&budget))
                    .context("cannot store the budget")?;
            }
        }
    }
    Ok(())
}

/// `PUT /v1/networks/{id}`: stores the change, re-decides, answers the
/// networks as `GET /v1/networks` does.
pub(super) async fn set_network(
    State(s): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let change: NetworkChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        }
    };
    let changes = match check(&change) {
        Ok(c) => c,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e),
    };
    if id.is_empty() || id.len() > 256 {
        return api_error(StatusCode::BAD_REQUEST, "invalid network id");
    }
    let dir = state_dir(&s);
    let control = s.control.clone();
    let id = NetworkId::new(id);
    let done = blocking(move || {
        apply(&dir, &id, &changes)?;
        tracing::info!(network = %id, "dashboard: network edited");
        // As the CLI's edits: applied at once.
        control.reload_policy();
        networks_json(&dir)
    })
    .await;
    match done {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(metered: Option<&str>, cap: Option<&str>) -> NetworkChange {
        NetworkChange {
            metered: metered.map(String::from),
            cap: cap.map(String::from),
        }
    }

    #[test]
    fn the_history_length_is_checked() {
        assert_eq!(periods_of(None), Ok(HISTORY_PERIODS));
        assert_eq!(periods_of(Some("x=1")), Ok(HISTORY_PERIODS));
        assert_eq!(periods_of(Some("periods=3")), Ok(3));
        assert_eq!(
            count_of(None, "days", HISTORY_DAYS, HISTORY_DAYS_MAX),
            Ok(31)
        );
        assert_eq!(count_of(Some("periods=2&days=7"), "days", 31, 366), Ok(7));
        let e = count_of(Some("days=367"), "days", 31, 366).unwrap_err();
        assert!(e.contains("'days'") && e.contains("366"), "{e}");
        assert!(periods_of(Some("periods=0")).is_err());
        assert!(periods_of(Some("periods=121")).is_err());
        assert!(periods_of(Some("periods=lots"))
            .unwrap_err()
            .contains("lots"));
    }

    #[test]
    fn changes_are_checked_before_anything_is_written() {
        assert_eq!(
            check(&change(Some("yes"), None)),
            Ok(vec![Checked::Metered(Some(true))])
        );
        assert_eq!(
            check(&change(Some("auto"), Some("none"))),
            Ok(vec![Checked::Metered(None), Checked::Cap(None)])
        );
        assert_eq!(
            check(&change(None, Some("5GB"))),
            Ok(vec![Checked::Cap(Some(5_000_000_000))])
        );
        assert!(check(&change(Some("maybe"), None))
            .unwrap_err()
            .contains("yes, no or auto"));
        assert!(check(&change(None, Some("0"))).is_err());
        assert!(check(&change(None, Some("lots"))).is_err());
        assert!(check(&change(None, None)).is_err());
    }
}
