//! The engine's byte gate under the policy. For every block, in order:
//! (a) wait while the decision suspends this direction and class, then
//! debit the ledger before the bytes move (on an exhausted budget, re-decide
//! and wait for the allowance to change: suspended means zero, not a
//! trickle); (b) the policy's token bucket for this direction and class;
//! (c) the user's `--upload-limit`/`--download-limit`.

use std::sync::Arc;
use std::time::Duration;

use capwise_engine::hooks::{ByteGate, Direction, GateFuture, PeerClass};
use capwise_policy::decision::{Allowance, Decision};
use capwise_policy::ledger::{self, DebitError};
use capwise_policy::time::Timestamp;

use crate::limits::LimitGate;
use crate::policy_runtime::{PolicyRuntime, Shared};

/// How long to wait before retrying after the database failed a debit.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// How long requests may go unanswered, while others wait for them, before
/// they are taken as lost (a peer that vanished): spent, and no longer in
/// flight.
const IN_FLIGHT_PATIENCE: Duration = Duration::from_secs(2);

/// The policy's gate, wrapping the user's limits.
pub struct PolicyGate {
    shared: Arc<Shared>,
    limits: LimitGate,
    /// Woken when requested bytes arrive, for requests held while too much
    /// is in flight.
    arrivals: tokio::sync::Notify,
}

impl PolicyGate {
    /// A gate obeying `runtime`'s decisions and then `limits`.
    pub fn new(runtime: &PolicyRuntime, limits: LimitGate) -> Self {
        PolicyGate {
            shared: runtime.shared(),
            limits,
            arrivals: tokio::sync::Notify::new(),
        }
    }

    /// Step (a): returns once the bytes are debited (or recorded).
    async fn debit(&self, direction: Direction, class: PeerClass, bytes: u64) {
        loop {
            // Subscribed before acting, so no change slips between the
            // attempt and the wait.
            let mut decisions = self.shared.subscribe();
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            arrival.as_mut().enable();
            let (allowance, counted) = {
                let d = decisions.borrow_and_update();
                (allowance(&d, direction, class), d.counts_against_budget)
            };
            if allowance == Allowance::Suspended {
                // Debiting now would spend budget on bytes that cannot move.
                wait_for_change(&mut decisions).await;
                continue;
            }
            let outcome = self.shared.state().debit(
                ledger_direction(direction),
                ledger_class(class),
                bytes,
                counted,
            );
            match outcome {
                Ok(()) => return,
                Err(DebitError::Exhausted { .. }) => {
                    self.shared.recompute(Timestamp::now_from_system());
                    wait_for_change(&mut decisions).await;
                }
                Err(DebitError::InFlight { in_flight }) => {
                    tokio::select! {
                        _ = arrival => {}
                        _ = wait_for_change(&mut decisions) => {}
                        _ = tokio::time::sleep(IN_FLIGHT_PATIENCE) => {
                            tracing::debug!(in_flight, "requests unanswered; taking them as spent");
                            self.shared.state().forget_in_flight();
                        }
                    }
                }
                Err(DebitError::Store(error)) => {
                    tracing::warn!(%error, "cannot debit the budget; holding traffic");
                    tokio::select! {
                        _ = wait_for_change(&mut decisions) => {}
                        _ = tokio::time::sleep(STORE_RETRY) => {}
                    }
                }
            }
        }
    }
}

impl ByteGate for PolicyGate {
    fn acquire(&self, direction: Direction, class: PeerClass, bytes: u64) -> GateFuture<'_> {
        Box::pin(async move {
            self.shared.note_traffic();
            self.debit(direction, class, bytes).await;
            self.shared.throttle(direction, class).acquire(bytes).await;
            self.limits.acquire(direction, class, bytes).await;
        })
    }

    fn arrived(&self, class: PeerClass, bytes: u64) {
        self.shared.state().arrived(ledger_class(class), bytes);
        self.arrivals.notify_waiters();
    }

    fn still_admits(&self, direction: Direction, class: PeerClass) -> bool {
        allowance(&self.shared.subscribe().borrow(), direction, class) != Allowance::Suspended
    }
}

/// Waits for the next decision. The sender lives as long as the gate's
/// `Shared`, so an error cannot happen; if it did, nothing may move.
async fn wait_for_change(decisions: &mut tokio::sync::watch::Receiver<Decision>) {
    if decisions.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The decision's allowance for one direction and class.
pub fn allowance(decision: &Decision, direction: Direction, class: PeerClass) -> Allowance {
    match (direction, class) {
        (Direction::Up, PeerClass::Wan) => decision.up_wan,
        (Direction::Up, PeerClass::Lan) => decision.up_lan,
        (Direction::Down, PeerClass::Wan) => decision.down_wan,
        (Direction::Down, PeerClass::Lan) => decision.down_lan,
    }
}

fn ledger_direction(direction: Direction) -> ledger::Direction {
    match direction {
        Direction::Up => ledger::Direction::Up,
        Direction::Down => ledger::Direction::Down,
    }
}

fn ledger_class(class: PeerClass) -> ledger::PeerClass {
    match class {
        PeerClass::Wan => ledger::PeerClass::Wan,
        PeerClass::Lan => ledger::PeerClass::Lan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_runtime::PolicyOptions;
    use crate::state_db::open_store;
    use capwise_engine::session::Hooks;
    use capwise_policy::budget::Budget;
    use capwise_policy::decision::Reason;
    use capwise_policy::network::NetworkId;
    use capwise_policy::time::UtcOffset;
    use tokio::time::timeout;

    const BLOCK: u64 = 16 * 1024;

    struct Fixture {
        _dir: tempfile::TempDir,
        net_file: std::path::PathBuf,
        state_dir: std::path::PathBuf,
    }

    fn fixture(network_toml: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let net_file = dir.path().join("net.toml");
        std::fs::write(&net_file, network_toml).unwrap();
        let state_dir = dir.path().join("state");
        Fixture {
            net_file,
            state_dir,
            _dir: dir,
        }
    }

    async fn start(f: &Fixture, hooks: &Hooks) -> (PolicyRuntime, Arc<PolicyGate>) {
        let options = PolicyOptions {
            state_dir: f.state_dir.clone(),
            network_file: crate::network_source::NetworkFile::choose(Some(&f.net_file), None),
            settings: Default::default(),
        };
        let runtime = PolicyRuntime::start(&options, hooks).await.unwrap();
        let gate = Arc::new(PolicyGate::new(&runtime, LimitGate::new(None, None)));
        (runtime, gate)
    }

    #[tokio::test(start_paused = true)]
    async fn metered_network_holds_wan_uploads_only_until_it_is_unmetered() {
        let f = fixture("id = \"hotspot\"\nmetered = \"yes\"\n");
        let hooks = Hooks::default();
        let (runtime, gate) = start(&f, &hooks).await;
        assert_eq!(runtime.decision().reason, Reason::Metered);

        let up_wan = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.acquire(Direction::Up, PeerClass::Wan, BLOCK).await }
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!up_wan.is_finished(), "no WAN upload on a metered network");

        timeout(
            Duration::from_secs(1),
            gate.acquire(Direction::Up, PeerClass::Lan, BLOCK),
        )
        .await
        .expect("LAN uploads are free");
        timeout(
            Duration::from_secs(1),
            gate.acquire(Direction::Down, PeerClass::Wan, BLOCK),
        )
        .await
        .expect("downloads go on");
        assert!(hooks.seeding.is_on(), "LAN peers may still be seeded");
        assert!(hooks.wan.is_on(), "WAN peers stay connected for downloads");

        // The user's word wins: an unmetered rewrite of the file frees uploads.
        std::fs::write(&f.net_file, "id = \"hotspot\"\nmetered = \"no\"\n").unwrap();
        // inotify answers on its own thread, in real time: wait for it
        // (bounded) without letting the paused clock run ahead.
        for _ in 0..200 {
            if runtime.decision().reason == Reason::Unmetered {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            tokio::task::yield_now().await;
        }
        timeout(Duration::from_secs(10), up_wan)
            .await
            .expect("WAN upload released once unmetered")
            .unwrap();
        assert_eq!(runtime.decision().reason, Reason::Unmetered);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_policy_rereads_the_store_when_reloaded_or_used_not_every_two_seconds() {
        use crate::policy_runtime::{IDLE_REFRESH_PERIOD, REFRESH_PERIOD};
        let f = fixture("id = \"home\"\nmetered = \"no\"\n");
        let (runtime, gate) = start(&f, &Hooks::default()).await;
        // Quiet refreshes put the follower at the idle pace.
        tokio::time::sleep(REFRESH_PERIOD * 3).await;
        let mark = |metered: Option<bool>| {
            open_store(&f.state_dir, Timestamp::now_from_system())
                .unwrap()
                .set_metered_override(&NetworkId::new("home"), metered)
                .unwrap();
        };
        // `capwise network set home --metered yes`, written behind its back.
        mark(Some(true));
        tokio::time::sleep(REFRESH_PERIOD * 5).await;
        assert_eq!(
            runtime.decision().reason,
            Reason::Unmetered,
            "idle: no store reads at the busy pace"
        );
        assert_eq!(runtime.reloader().reload().reason, Reason::Metered);

        // Back to unmetered; the first block asked for wakes the follower.
        tokio::time::sleep(REFRESH_PERIOD * 3).await;
        mark(Some(false));
        timeout(
            Duration::from_secs(1),
            gate.acquire(Direction::Down, PeerClass::Wan, BLOCK),
        )
        .await
        .expect("downloads go on either way");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runtime.decision().reason, Reason::Unmetered);

        // And an idle follower still looks at least once a minute.
        tokio::time::sleep(REFRESH_PERIOD * 3).await;
        mark(Some(true));
        tokio::time::sleep(IDLE_REFRESH_PERIOD + REFRESH_PERIOD).await;
        assert_eq!(runtime.decision().reason, Reason::Metered);
    }

    #[tokio::test(start_paused = true)]
    async fn roaming_suspends_everything_and_turns_seeding_and_the_wan_off() {
        let f = fixture("id = \"abroad\"\nkind = \"cellular\"\nroaming = true\n");
        let hooks = Hooks::default();
        let (_runtime, gate) = start(&f, &hooks).await;
        assert!(!hooks.seeding.is_on());
        assert!(
            !hooks.wan.is_on(),
            "no announces or WAN connections while roaming"
        );
        let outcome = timeout(
            Duration::from_secs(600),
            gate.acquire(Direction::Down, PeerClass::Lan, BLOCK),
        )
        .await;
        assert!(outcome.is_err(), "suspended is zero, not a trickle");
    }

    #[tokio::test(start_paused = true)]
    async fn budget_debits_stop_at_cap_minus_reserve_and_are_durably_reserved() {
        let f = fixture("id = \"home\"\nmetered = \"no\"\n");
        let id = NetworkId::new("home");
        let budget = Budget::monthly(1_000_000, 1, UtcOffset::UTC); // 10% reserve
        let now = Timestamp::now_from_system();
        open_store(&f.state_dir, now)
            .unwrap()
            .set_budget(&id, Some(&budget))
            .unwrap();
        let (runtime, gate) = start(&f, &Hooks::default()).await;

        let mut let_through = 0u64;
        for _ in 0..100 {
            let acquire = gate.acquire(Direction::Down, PeerClass::Wan, BLOCK);
            match timeout(Duration::from_secs(120), acquire).await {
                Ok(()) => let_through += BLOCK,
                Err(_) => break,
            }
        }
        assert_eq!(
            let_through,
            (budget.agent_limit() / BLOCK) * BLOCK,
            "every whole block up to cap - reserve, and not one more"
        );
        let reserved = runtime.with_state(|s| {
            s.store()
                .reserved(&id, budget.bounds(Timestamp::now_from_system()).0)
                .unwrap()
        });
        assert!(
            reserved >= let_through,
            "durable reservation {reserved} covers the {let_through} bytes let through"
        );
        assert!(reserved <= budget.agent_limit());

        // LAN traffic costs nothing and still flows.
        timeout(
            Duration::from_secs(1),
            gate.acquire(Direction::Up, PeerClass::Lan, BLOCK),
        )
        .await
        .expect("LAN is exempt from the budget");
    }
}
