//! The policy, live: follows the network source, re-decides on every change
//! and every few seconds, and applies each decision at once to the token
//! buckets and the engine's seeding switch.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;
use capwise_engine::hooks::{Direction, PeerClass, SeedingSwitch};
use capwise_policy::bucket::{Throttle, Throttles};
use capwise_policy::decision::{Allowance, Decision, Settings};
use capwise_policy::time::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::network_source::{self, LiveSource};
use crate::policy_state::PolicyState;
use crate::state_db::open_store;

/// How often the decision is recomputed without a network change: budget
/// use, schedule windows and other processes' edits are noticed within this.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(2);

/// What the runtime needs from the command line.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Holds `capwise.db`.
    pub state_dir: PathBuf,
    /// `--network-file`, if given.
    pub network_file: Option<PathBuf>,
    /// The user's changes to the policy defaults.
    pub settings: Settings,
}

/// State shared by the runtime's task and the byte gate.
pub(crate) struct Shared {
    state: Mutex<PolicyState>,
    decision: watch::Sender<Decision>,
    throttles: Throttles,
    seeding: SeedingSwitch,
}

impl Shared {
    /// The state; a panic elsewhere must not wedge the policy, so a poisoned
    /// lock is taken over (the state is updated in single steps).
    pub(crate) fn state(&self) -> MutexGuard<'_, PolicyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches the decision.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Decision> {
        self.decision.subscribe()
    }

    /// The throttle for one direction and class.
    pub(crate) fn throttle(&self, direction: Direction, class: PeerClass) -> &Throttle {
        match (direction, class) {
            (Direction::Up, PeerClass::Wan) => &self.throttles.up_wan,
            (Direction::Up, PeerClass::Lan) => &self.throttles.up_lan,
            (Direction::Down, PeerClass::Wan) => &self.throttles.down_wan,
            (Direction::Down, PeerClass::Lan) => &self.throttles.down_lan,
        }
    }

    /// Re-decides from what is known now and applies the outcome.
    pub(crate) fn recompute(&self, now: Timestamp) {
        let decision = self.state().decide(now);
        self.apply(decision);
    }

    /// Takes in the source's report, then re-decides.
    fn refresh(&self, reported: Option<capwise_policy::network::Network>, now: Timestamp) {
        let decision = {
            let mut state = self.state();
            if let Err(error) = state.refresh(reported, now) {
                tracing::warn!(%error, "policy refresh failed; keeping what is known");
            }
            state.decide(now)
        };
        self.apply(decision);
    }

    /// Applies a decision live: buckets first, then the seeding switch, then
    /// the watch that wakes waiting gates. Logs changes of what is allowed
    /// (not every change of the usage figures in the sentence).
    fn apply(&self, decision: Decision) {
        self.throttles.apply(&decision);
        self.seeding.set(seeding_allowed(&decision));
        self.decision.send_if_modified(|current| {
            if *current == decision {
                return false;
            }
            if !same_allowances(current, &decision) {
                tracing::info!(reason = ?decision.reason, "policy: {}", decision.explanation);
            }
            *current = decision;
            true
        });
    }
}

/// Seeding stays on while any peer class may receive uploads.
pub fn seeding_allowed(decision: &Decision) -> bool {
    !(decision.up_wan == Allowance::Suspended && decision.up_lan == Allowance::Suspended)
}

fn same_allowances(a: &Decision, b: &Decision) -> bool {
    (
        a.down_wan,
        a.down_lan,
        a.up_wan,
        a.up_lan,
        a.background_allowed,
        a.reason,
    ) == (
        b.down_wan,
        b.down_lan,
        b.up_wan,
        b.up_lan,
        b.background_allowed,
        b.reason,
    )
}

/// The running policy. Dropping it stops following the network.
pub struct PolicyRuntime {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl PolicyRuntime {
    /// Opens the store, starts the network source and decides once before
    /// returning, so the first byte already obeys the policy.
    pub async fn start(options: &PolicyOptions, seeding: SeedingSwitch) -> Result<Self> {
        let now = Timestamp::now_from_system();
        let store = open_store(&options.state_dir, now)?;
        let mut source = network_source::follow(options.network_file.as_deref()).await?;
        tracing::info!(source = source.kind.describe(), "following the network");
        let mut state = PolicyState::new(store, source.kind, options.settings.clone());
        let reported = source.watch.borrow_and_update().clone();
        if let Err(error) = state.refresh(reported, now) {
            tracing::warn!(%error, "cannot read the policy state");
        }
        let decision = state.decide(now);
        tracing::info!(reason = ?decision.reason, "policy: {}", decision.explanation);
        seeding.set(seeding_allowed(&decision));
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            throttles: Throttles::new(&decision),
            decision: watch::Sender::new(decision),
            seeding,
        });
        let task = tokio::spawn(follow(Arc::clone(&shared), source));
        Ok(PolicyRuntime { shared, task })
    }

    /// The state shared with gates.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Watches the decision: every change of it.
    pub fn subscribe(&self) -> watch::Receiver<Decision> {
        self.shared.subscribe()
    }

    /// The decision in force.
    #[cfg(test)]
    pub fn decision(&self) -> Decision {
        self.shared.decision.borrow().clone()
    }

    /// Runs `f` on the state, for tests that look at the ledger.
    #[cfg(test)]
    pub fn with_state<T>(&self, f: impl FnOnce(&PolicyState) -> T) -> T {
        f(&self.shared.state())
    }
}

impl Drop for PolicyRuntime {
    /// Stops following the network and writes the pending ledger rows.
    fn drop(&mut self) {
        self.task.abort();
        if let Err(error) = self.shared.state().flush() {
            tracing::warn!(%error, "cannot write the last usage to the ledger");
        }
    }
}

/// Re-decides on every network change and every [`REFRESH_PERIOD`].
async fn follow(shared: Arc<Shared>, mut source: LiveSource) {
    let mut ticker = tokio::time::interval(REFRESH_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut source_alive = true;
    loop {
        tokio::select! {
            changed = source.watch.changed(), if source_alive => {
                if changed.is_err() {
                    // The source stopped; keep the last network it reported.
                    tracing::warn!(source = source.kind.describe(), "network source stopped");
                    source_alive = false;
                }
            }
            _ = ticker.tick() => {}
        }
        let reported = source.watch.borrow_and_update().clone();
        shared.refresh(reported, Timestamp::now_from_system());
    }
}
