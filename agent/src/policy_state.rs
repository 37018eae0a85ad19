//! What the policy knows at one moment: the store, the current network (the
//! user's word on metering applied), its account and schedule, and the
//! interface meter. Synchronous; the runtime calls it under a mutex.

use std::path::Path;

use capwise_policy::decision::{decide, Decision, DecisionInput, Settings};
use capwise_policy::interface_counters::{
    read_boot_id, read_counters, traffic_while_away, LinkMeter, LinkReading, BOOT_ID_PATH,
};
use capwise_policy::ledger::{DebitError, Direction, PeerClass};
use capwise_policy::network::Network;
use capwise_policy::schedule::Schedule;
use capwise_policy::store::Store;
use capwise_policy::time::Timestamp;
use capwise_policy::PolicyError;

use crate::accounting::Accounting;
use crate::network_source::SourceKind;

/// Where the kernel keeps interface counters.
const SYS_CLASS_NET: &str = "/sys/class/net";

/// The network with the user's stored word on metering applied.
pub fn with_users_word(store: &Store, network: Network) -> Result<Network, PolicyError> {
    let word = store.metered_override(&network.id)?;
    Ok(network.with_user_override(word))
}

/// The policy's state.
#[derive(Debug)]
pub struct PolicyState {
    store: Store,
    source: SourceKind,
    settings: Settings,
    network: Option<Network>,
    account: Option<Accounting>,
    schedule: Schedule,
    meter: LinkMeter,
    metered_interface: Option<String>,
    /// This boot's id: kept with each counter reading (see `traffic_while_away`).
    boot_id: Option<String>,
    /// Whether this run took its first counter reading: only that one may
    /// claim traffic from before the run (later baselines follow a network
    /// change, and the gap belonged to the other network).
    measured_once: bool,
}

impl PolicyState {
    /// A state with no network yet; call [`PolicyState::refresh`].
    pub fn new(store: Store, source: SourceKind, settings: Settings) -> Self {
        PolicyState {
            store,
            source,
            settings,
            network: None,
            account: None,
            schedule: Schedule::default(),
            meter: LinkMeter::new(),
            metered_interface: None,
            boot_id: read_boot_id(Path::new(BOOT_ID_PATH)).ok(),
            measured_once: false,
        }
    }

    /// The database, for tests that look at the ledger.
    #[cfg(test)]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes in what the source reports and re-reads what the user may have
    /// changed meanwhile (metered override, budget, schedule), possibly from
    /// another `capwise` process. Rolls the period over, measures the link
    /// and flushes the ledger.
    pub fn refresh(
        &mut self,
        reported: Option<Network>,
        now: Timestamp,
    ) -> Result<(), PolicyError> {
        let network = match self.source.resolve(reported) {
            Some(n) => Some(with_users_word(&self.store, n)?),
            None => None,
        };
        let same_id = self.network.as_ref().map(|n| &n.id) == network.as_ref().map(|n| &n.id);
        if !same_id {
            if let Some(old) = self.network.as_ref() {
                tracing::info!(from = %old.id, to = ?network.as_ref().map(|n| n.id.to_string()), "network changed");
            }
            self.close_account()?;
        }
        self.network = network;
        let Some(network) = self.network.as_ref() else {
            self.schedule = Schedule::default();
            return Ok(());
        };
        if network.id.as_str() != crate::network_source::UNKNOWN_NETWORK_ID {
            self.store.note_network_seen(network, now)?;
        }
        let id = network.id.clone();
        self.schedule = self.store.schedule(&id)?;
        let reopen = match &self.account {
            Some(account) => !account.matches_budget(&self.store)?,
            None => true,
        };
        if reopen {
            self.close_account()?;
            self.account = Some(Accounting::open(&self.store, &id, now)?);
        }
        if let Some(account) = self.account.as_mut() {
            if account.roll_over(&self.store, now)? {
                tracing::info!(network = %id, "budget period rolled over");
            }
        }
        self.measure_link(now)?;
        if let Some(account) = self.account.as_mut() {
            account.flush(&self.store)?;
        }
        Ok(())
    }

    /// Feeds the interface's counters (all programs' traffic) to the ledger,
    /// and keeps the reading: the first one of a run adds what the link
    /// carried since the last run's. An unreadable counter is not fatal: the
    /// agent's own debits still bound what it spends.
    fn measure_link(&mut self, now: Timestamp) -> Result<(), PolicyError> {
        let interface = self.network.as_ref().and_then(|n| n.interface.clone());
        if interface != self.metered_interface {
            self.meter.reset();
            self.metered_interface = interface.clone();
        }
        let (Some(interface), Some(account)) = (interface, self.account.as_mut()) else {
            return Ok(());
        };
        let counters = match read_counters(Path::new(SYS_CLASS_NET), &interface) {
            Ok(counters) => counters,
            Err(error) => {
                tracing::debug!(%error, "cannot read the interface counters");
                return Ok(());
            }
        };
        let first_of_run = !std::mem::replace(&mut self.measured_once, true);
        let mut delta = self.meter.observe(counters);
        let reading = self.boot_id.clone().map(|boot_id| LinkReading {
            interface,
            boot_id,
            counters,
            at: now,
        });
        if let (true, Some(reading)) = (first_of_run, &reading) {
            let kept = self.store.link_reading(account.network())?;
            let away = traffic_while_away(kept.as_ref(), reading, account.period().0);
            if away.rx > 0 || away.tx > 0 {
                tracing::info!(
                    rx = away.rx,
                    tx = away.tx,
                    "the link carried this while capwise was not measuring"
                );
                delta.rx += away.rx;
                delta.tx += away.tx;
            }
        }
        if delta.rx > 0 || delta.tx > 0 {
            account.add_link_usage(&self.store, delta.rx, delta.tx)?;
        }
        if let Some(reading) = reading {
            self.store.save_link_reading(account.network(), &reading)?;
        }
        Ok(())
    }

    fn close_account(&mut self) -> Result<(), PolicyError> {
        if let Some(mut account) = self.account.take() {
            account.close(&self.store)?;
        }
        Ok(())
    }

    /// Writes pending ledger rows and takes back what was written ahead of
    /// bytes that never moved (at shutdown).
    pub fn close(&mut self) -> Result<(), PolicyError> {
        match self.account.as_mut() {
            Some(account) => account.close(&self.store),
            None => Ok(()),
        }
    }

    /// The decision at `now` from what is known.
    pub fn decide(&self, now: Timestamp) -> Decision {
        let budget = self.account.as_ref().and_then(Accounting::budget_state);
        decide(
            &DecisionInput {
                network: self.network.as_ref(),
                budget: budget.as_ref(),
                schedule: Some(&self.schedule),
                settings: &self.settings,
            },
            now,
        )
    }

    /// Requested download bytes from a peer of `class` arrived.
    pub fn arrived(&mut self, class: PeerClass, bytes: u64) {
        let class = match self.network.as_ref() {
            Some(n) if n.through_vpn() => PeerClass::Wan,
            _ => class,
        };
        if let Some(account) = self.account.as_mut() {
            account.arrived(class, bytes);
        }
    }

    /// Gives up on outstanding requests (see `BudgetAccount::forget_in_flight`).
    pub fn forget_in_flight(&mut self) {
        if let Some(account) = self.account.as_mut() {
            account.forget_in_flight();
        }
    }

    /// Debits or records bytes before they move. LAN peers reached through a
    /// VPN cost what the WAN costs, so they are debited as WAN.
    pub fn debit(
        &mut self,
        direction: Direction,
        class: PeerClass,
        bytes: u64,
        counted: bool,
    ) -> Result<(), DebitError> {
        let class = match self.network.as_ref() {
            Some(n) if n.through_vpn() => PeerClass::Wan,
            _ => class,
        };
        match (self.account.as_mut(), self.network.is_some()) {
            (Some(account), _) => account.debit(&self.store, direction, class, bytes, counted),
            // Offline: the decision suspends everything, nothing to account.
            (None, false) => Ok(()),
            // The account could not be opened (database trouble): we cannot
            // know the budget, so nothing moves. Failing closed keeps the
            // promise.
            (None, true) => Err(DebitError::Store(PolicyError::invalid(
                "budget account",
                "not open; the policy database could not be read",
            ))),
        }
    }
}
