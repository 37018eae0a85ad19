//! The policy, live: follows the network and power sources, re-decides on
//! every change and every few seconds, and applies each decision at once to the token
//! buckets and the engine's seeding and WAN switches.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;
use capwise_engine::hooks::{Direction, PeerClass, Switch};
use capwise_engine::session::Hooks;
use capwise_policy::bucket::{Throttle, Throttles};
use capwise_policy::decision::{Allowance, Decision, Reason, Settings};
use capwise_policy::network::Network;
use capwise_policy::store::Store;
use capwise_policy::time::Timestamp;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::network_source::{self, LiveSource, NetworkFile, SourceKind};
use crate::policy_state::{with_users_word, PolicyState};
use crate::power_source::PowerSource;
use crate::state_db::open_store_waiting;
use capwise_policy::source::file::FileStateWatch;

/// How often the decision is recomputed without a network change while
/// capwise moves bytes: budget use, the link's other traffic, schedule
/// windows and other processes' edits are noticed within this.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(2);

/// The same while nothing passed the gate since the last refresh. An idle
/// laptop should not wake every two seconds; the first byte asked for after
/// an idle spell wakes the runtime at once, and the CLI's policy edits ask a
/// running agent to reload ([`PolicyReload`]).
pub const IDLE_REFRESH_PERIOD: Duration = Duration::from_secs(60);

/// What the runtime needs from the command line.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Holds `capwise.db`.
    pub state_dir: PathBuf,
    /// `--network-file` or the configuration's `network_file`, if any.
    pub network_file: Option<NetworkFile>,
    /// The user's changes to the policy defaults.
    pub settings: Settings,
}

/// State shared by the runtime's task and the byte gate.
pub(crate) struct Shared {
    state: Mutex<PolicyState>,
    decision: watch::Sender<Decision>,
    throttles: Throttles,
    seeding: Switch,
    wan: Switch,
    /// The DHT's BEP 43 read-only mode, on while the link costs money.
    dht_read_only: Switch,
    /// The network source's last report, for reloads outside the follower.
    reported: Mutex<Option<Network>>,
    /// Blocks that asked the gate to pass, ever.
    traffic: AtomicU64,
    /// Set while the follower refreshes at the idle pace.
    idle: AtomicBool,
    /// Wakes the follower (first traffic after an idle spell).
    wake: Notify,
    /// Where the network is learnt from, for `why`.
    source: SourceKind,
    /// The network file and how it stands, for `why`.
    file: Option<(NetworkFile, FileStateWatch)>,
    /// A second connection, for the user's word on metering when `why`
    /// shows the network (the state's own is busy deciding).
    words: Mutex<Store>,
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

    /// Called by the gate for every block: counts traffic, and wakes an
    /// idle follower so the decision is fresh when bytes start to move.
    pub(crate) fn note_traffic(&self) {
        self.traffic.fetch_add(1, Ordering::Relaxed);
        if self.idle.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Re-reads the store (budgets, overrides, schedules) and re-decides,
    /// with the network last reported.
    fn reload(&self, now: Timestamp) {
        let reported = self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.refresh(reported, now);
    }

    /// Takes in the source's report, then re-decides.
    fn refresh(&self, reported: Option<Network>, now: Timestamp) {
        *self.reported.lock().unwrap_or_else(|e| e.into_inner()) = reported.clone();
        let decision = {
            let mut state = self.state();
            if let Err(error) = state.refresh(reported, now) {
                tracing::warn!(%error, "policy refresh failed; keeping what is known");
            }
            state.decide(now)
        };
        self.apply(decision);
    }

    /// Applies a decision live: buckets first, then the seeding and WAN
    /// switches, then the watch that wakes waiting gates. Logs changes of what is allowed
    /// (not every change of the usage figures in the sentence).
    fn apply(&self, decision: Decision) {
        self.throttles.apply(&decision);
        self.seeding.set(seeding_allowed(&decision));
        self.wan.set(wan_allowed(&decision));
        self.dht_read_only.set(dht_read_only(&decision));
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

/// Whether the engine may keep any traffic with the WAN (announces, peer
/// connections): not when both directions are suspended (roaming, a spent
/// budget, no network), where even handshakes and keep-alives must stop.
pub fn wan_allowed(decision: &Decision) -> bool {
    !(decision.up_wan == Allowance::Suspended && decision.down_wan == Allowance::Suspended)
}

/// The DHT is read-only (BEP 43: it asks, never answers) while the link
/// costs money: metered, or near or at a budget's cap.
pub fn dht_read_only(decision: &Decision) -> bool {
    matches!(
        decision.reason,
        Reason::Metered | Reason::NearCap | Reason::AtCap
    )
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
    /// Opens the store, starts the network and power sources and decides
    /// once before returning, so the first byte already obeys the policy.
    /// Steers `hooks`' seeding and WAN switches.
    pub async fn start(options: &PolicyOptions, hooks: &Hooks) -> Result<Self> {
        let power = crate::power_source::follow().await;
        Self::start_with_power(options, hooks, power).await
    }

    /// [`PolicyRuntime::start`] with the power state from `power`.
    pub(crate) async fn start_with_power(
        options: &PolicyOptions,
        hooks: &Hooks,
        mut power: PowerSource,
    ) -> Result<Self> {
        let now = Timestamp::now_from_system();
        let store = open_store_waiting(&options.state_dir).await?;
        let words = open_store_waiting(&options.state_dir).await?;
        let mut source = network_source::follow(options.network_file.as_ref()).await?;
        tracing::info!(source = source.kind.describe(), "following the network");
        let mut state = PolicyState::new(store, source.kind, options.settings.clone());
        state.set_power(*power.watch.borrow_and_update());
        let reported = source.watch.borrow_and_update().clone();
        if let Err(error) = state.refresh(reported.clone(), now) {
            tracing::warn!(%error, "cannot read the policy state");
        }
        let decision = state.decide(now);
        tracing::info!(reason = ?decision.reason, "policy: {}", decision.explanation);
        let (seeding, wan) = (hooks.seeding.clone(), hooks.wan.clone());
        seeding.set(seeding_allowed(&decision));
        wan.set(wan_allowed(&decision));
        let dht_read_only = hooks.dht_read_only.clone();
        dht_read_only.set(self::dht_read_only(&decision));
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            throttles: Throttles::new(&decision),
            decision: watch::Sender::new(decision),
            seeding,
            wan,
            dht_read_only,
            reported: Mutex::new(reported),
            traffic: AtomicU64::new(0),
            idle: AtomicBool::new(false),
            wake: Notify::new(),
            source: source.kind,
            file: source.file.clone(),
            words: Mutex::new(words),
        });
        let task = tokio::spawn(follow(Arc::clone(&shared), source, power));
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

    /// A handle that makes the runtime re-read the store now.
    pub fn reloader(&self) -> PolicyReload {
        PolicyReload(Arc::clone(&self.shared))
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
        if let Err(error) = self.shared.state().close() {
            tracing::warn!(%error, "cannot write the last usage to the ledger");
        }
    }
}

/// Makes a running policy re-read the store: after `capwise budget set` and
/// the like, sent through the API, so edits apply at once, not at the next
/// refresh.
#[derive(Clone)]
pub struct PolicyReload(Arc<Shared>);

impl PolicyReload {
    /// Re-reads and re-decides; returns the decision now in force.
    pub fn reload(&self) -> Decision {
        self.0.reload(Timestamp::now_from_system());
        self.0.decision.borrow().clone()
    }

    /// Where the network is learnt from, and the network last reported
    /// with the user's word on metering applied, as the decision sees it.
    pub fn network(&self) -> (SourceKind, Option<Network>) {
        let reported = self
            .0
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let network = reported.map(|n| {
            let words = self.0.words.lock().unwrap_or_else(|e| e.into_inner());
            with_users_word(&words, n.clone()).unwrap_or(n)
        });
        (self.0.source, network)
    }

    /// The sentence saying the network file is missing or invalid, if so;
    /// `network` is the one assumed meanwhile.
    pub fn source_problem(&self, network: Option<&Network>) -> Option<String> {
        let (file, state) = self.0.file.as_ref()?;
        let state = state.borrow().clone();
        file.problem(&state, network)
    }
}

/// Re-decides on every network or power change, every [`REFRESH_PERIOD`]
/// while bytes move and every [`IDLE_REFRESH_PERIOD`] while none do.
async fn follow(shared: Arc<Shared>, mut source: LiveSource, mut power: PowerSource) {
    let mut source_alive = true;
    let mut power_alive = true;
    let mut traffic_seen = shared.traffic.load(Ordering::Relaxed);
    loop {
        let period = if shared.idle.load(Ordering::Acquire) {
            IDLE_REFRESH_PERIOD
        } else {
            REFRESH_PERIOD
        };
        tokio::select! {
            changed = source.watch.changed(), if source_alive => {
                if changed.is_err() {
                    // The source stopped; keep the last network it reported.
                    tracing::warn!(source = source.kind.describe(), "network source stopped");
                    source_alive = false;
                }
            }
            changed = power.watch.changed(), if power_alive => {
                if changed.is_err() {
                    // UPower went away: keep the last state it reported.
                    tracing::warn!("power source stopped");
                    power_alive = false;
                }
            }
            () = tokio::time::sleep(period) => {}
            () = shared.wake.notified() => {}
        }
        let reported = source.watch.borrow_and_update().clone();
        let now_power = *power.watch.borrow_and_update();
        shared.state().set_power(now_power);
        shared.refresh(reported, Timestamp::now_from_system());
        let traffic = shared.traffic.load(Ordering::Relaxed);
        shared
            .idle
            .store(traffic == traffic_seen, Ordering::Release);
        traffic_seen = traffic;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_policy::power::Power;

    /// Waits (bounded) until the decision in force satisfies `done`.
    async fn decision_until(runtime: &PolicyRuntime, done: impl Fn(&Decision) -> bool) -> Decision {
        let mut decisions = runtime.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1_500);
        loop {
            let d = decisions.borrow_and_update().clone();
            if done(&d) {
                return d;
            }
            if tokio::time::timeout_at(deadline, decisions.changed())
                .await
                .is_err()
            {
                return d;
            }
        }
    }

    #[tokio::test]
    async fn a_power_change_is_decided_at_once_and_steers_seeding() {
        let dir = tempfile::tempdir().unwrap();
        let net_file = dir.path().join("net.toml");
        std::fs::write(&net_file, "id = \"home\"\nmetered = \"no\"\n").unwrap();
        let (power, set_power) = PowerSource::fixed(Power::Ac);
        let hooks = Hooks::default();
        let runtime = PolicyRuntime::start_with_power(
            &PolicyOptions {
                state_dir: dir.path().join("state"),
                network_file: NetworkFile::choose(Some(&net_file), None),
                settings: Settings::default(),
            },
            &hooks,
            power,
        )
        .await
        .unwrap();
        assert_eq!(runtime.decision().reason, Reason::Unmetered);
        // Within well under REFRESH_PERIOD: the change itself wakes the
        // runtime, not the periodic refresh.
        set_power
            .send(Power::Battery { percent: Some(42) })
            .unwrap();
        let d = decision_until(&runtime, |d| d.reason == Reason::OnBattery).await;
        assert_eq!(d.reason, Reason::OnBattery, "{}", d.explanation);
        assert_eq!(d.up_wan, Allowance::Suspended);
        assert!(d.background_allowed);
        assert!(hooks.seeding.is_on(), "LAN peers are still served");
        set_power
            .send(Power::Battery { percent: Some(20) })
            .unwrap();
        let d = decision_until(&runtime, |d| !d.background_allowed).await;
        assert!(!d.background_allowed, "{}", d.explanation);
        set_power.send(Power::Ac).unwrap();
        let d = decision_until(&runtime, |d| d.reason == Reason::Unmetered).await;
        assert_eq!(d.up_wan, Allowance::Unlimited, "{}", d.explanation);
        assert!(d.background_allowed);
    }
}
