//! Prometheus metrics (`GET /metrics`, docs/api.md): the agent's figures
//! read from what it already keeps (the engine's session counters, the
//! policy's decision and account, the ledger in `capwise.db`, the torrents)
//! at each scrape, written in the OpenMetrics text format by
//! `prometheus-client`. Nothing here steers anything: a scrape only reads.
//!
//! Code map: `attribution.rs` files the engine's byte counters under the
//! network in force; `encode.rs` turns a [`Snapshot`](encode::Snapshot)
//! into text; `http.rs` serves it on the API's listener (read-only metrics
//! token) and on the optional tokenless `[metrics] listen`; `token.rs` the
//! token file and `capwise metrics token`.

mod attribution;
pub mod encode;
pub mod http;
pub mod token;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use capwise_engine::hooks::{Counters, Direction, PeerClass};
use capwise_engine::transport::TransportKind;
use capwise_policy::budget::Budget;
use capwise_policy::decision::Decision;
use capwise_policy::ledger::BudgetAccount;
use capwise_policy::network::NetworkId;
use capwise_policy::store::Store;
use capwise_policy::time::Timestamp;
use tokio::sync::watch;

use crate::daemon::torrents::Torrents;
use crate::policy_runtime::{PolicyRuntime, Shared};
use attribution::{Attribution, Reading};
use encode::{BudgetFigures, DecisionFigures, Snapshot};

/// The `network` label while there is none (offline).
const NO_NETWORK: &str = "none";

/// What a scrape reads, and the per-network byte totals it keeps.
pub struct Metrics {
    torrents: Arc<Torrents>,
    policy: Arc<Shared>,
    decisions: watch::Receiver<Decision>,
    /// Its own connection, for the budgets of networks not in use.
    store: Mutex<Store>,
    attribution: Mutex<Attribution>,
}

impl Metrics {
    /// Metrics over the agent's parts; `state_dir` holds `capwise.db`.
    pub async fn new(
        state_dir: &Path,
        torrents: Arc<Torrents>,
        policy: &PolicyRuntime,
    ) -> Result<Arc<Metrics>> {
        let store = crate::state_db::open_store_waiting(state_dir).await?;
        Ok(Arc::new(Metrics {
            torrents,
            policy: policy.shared(),
            decisions: policy.subscribe(),
            store: Mutex::new(store),
            attribution: Mutex::new(Attribution::default()),
        }))
    }

    /// Files the bytes counted so far under the network in force at every
    /// change of the decision (which a network change brings), so a scrape
    /// after a switch does not give the old network's bytes to the new one.
    /// Ends with the policy.
    pub fn follow_decisions(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        let mut decisions = self.decisions.clone();
        tokio::spawn(async move {
            while decisions.changed().await.is_ok() {
                me.attribute();
            }
        })
    }

    fn attribute(&self) {
        let network = self
            .policy
            .state()
            .billed()
            .map(|(id, _)| id.as_str().to_owned());
        let reading = reading(&self.torrents.session().counters());
        self.attribution
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(network.as_deref().unwrap_or(NO_NETWORK), &reading);
    }

    /// Every figure now. Blocking (SQLite reads): call off the async workers.
    pub fn snapshot(&self) -> Snapshot {
        self.attribute();
        let bytes = self
            .attribution
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .totals()
            .map(|(network, path, bytes)| (network.to_owned(), path, bytes))
            .collect();
        let counters = self.torrents.session().counters();
        Snapshot {
            bytes,
            budgets: self.budgets(),
            decision: decision(&self.decisions.borrow()),
            torrents: self.torrent_states(),
            peers: self.peers(),
            hash_failures: counters.hash_failures(),
            disk_errors: counters.disk_errors(),
            blocked_connections: self.torrents.session().blocked_peers(),
        }
    }

    /// Every budgeted network: the one in use from its live account, the
    /// others as the ledger has them.
    fn budgets(&self) -> Vec<BudgetFigures> {
        let live = {
            let state = self.policy.state();
            state
                .billed()
                .and_then(|(id, account)| account.map(|a| figures(&id, a)))
        };
        let now = Timestamp::now_from_system();
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let stored = match store.budgets() {
            Ok(b) => b,
            Err(error) => {
                tracing::debug!(%error, "metrics: cannot read the budgets");
                Vec::new()
            }
        };
        let mut out = Vec::new();
        for (id, budget) in stored {
            match &live {
                Some(l) if l.network == id.as_str() => out.push(l.clone()),
                _ => {
                    if let Some(f) = stored_figures(&store, &id, budget, now) {
                        out.push(f);
                    }
                }
            }
        }
        out
    }

    fn torrent_states(&self) -> BTreeMap<&'static str, u64> {
        let mut states = BTreeMap::new();
        for view in self.torrents.list() {
            let label = encode::TORRENT_STATES
                .iter()
                .find(|s| s.replace('_', " ") == view.state)
                .copied()
                .unwrap_or("error");
            *states.entry(label).or_insert(0) += 1;
        }
        states
    }

    fn peers(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        let mut peers = BTreeMap::new();
        for handle in self.torrents.session().torrents() {
            for (source, kind) in handle.peer_carriers() {
                *peers
                    .entry((source.name(), transport_name(kind)))
                    .or_insert(0) += 1;
            }
        }
        peers
    }
}

fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Tcp => "tcp",
        TransportKind::Utp => "utp",
        TransportKind::Quic => "quic",
        TransportKind::Memory => "memory",
        _ => "other",
    }
}

const PATHS: [(Direction, PeerClass); 4] = [
    (Direction::Up, PeerClass::Wan),
    (Direction::Up, PeerClass::Lan),
    (Direction::Down, PeerClass::Wan),
    (Direction::Down, PeerClass::Lan),
];

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
    }
}

fn class_name(c: PeerClass) -> &'static str {
    match c {
        PeerClass::Wan => "wan",
        PeerClass::Lan => "lan",
    }
}

/// The session's counters as label values.
fn reading(counters: &Counters) -> Reading {
    let mut r = Reading::new();
    for (direction, class) in PATHS {
        let (d, c) = (direction_name(direction), class_name(class));
        r.insert((d, c, "payload"), counters.payload(direction, class));
        r.insert((d, c, "overhead"), counters.overhead(direction, class));
    }
    r
}

fn decision(d: &Decision) -> DecisionFigures {
    DecisionFigures {
        reason: d.reason.code(),
        allowances: PATHS
            .iter()
            .map(|&(direction, class)| {
                (
                    (direction_name(direction), class_name(class)),
                    crate::policy_gate::allowance(d, direction, class),
                )
            })
            .collect(),
        background_allowed: d.background_allowed,
    }
}

fn figures(id: &NetworkId, account: &BudgetAccount) -> BudgetFigures {
    let budget = account.budget();
    BudgetFigures {
        network: id.as_str().to_owned(),
        cap: budget.cap_bytes,
        reserve: budget.reserve_bytes(),
        used: account.link_used(),
        agent_used: account.used(),
        reserved: account.reserved(),
        in_flight: account.in_flight(),
    }
}

fn stored_figures(
    store: &Store,
    id: &NetworkId,
    budget: Budget,
    now: Timestamp,
) -> Option<BudgetFigures> {
    match BudgetAccount::open(store, id.clone(), budget, now) {
        Ok(account) => Some(figures(id, &account)),
        Err(error) => {
            tracing::debug!(%error, network = %id, "metrics: cannot read a budget's usage");
            None
        }
    }
}
