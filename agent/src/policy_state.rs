//! What the policy knows at one moment: the store, the current network (the
//! user's word on metering applied), its account and schedule, and the
//! interface meter. Synchronous; the runtime calls it under a mutex.
//!
//! Under a VPN the carrier bills the link the tunnel runs over, so the
//! account, schedule and interface counters are that link's: connecting a
//! VPN must not get around a cap.

use std::path::PathBuf;

use capwise_policy::decision::{decide, Decision, DecisionInput, Settings};
use capwise_policy::interface_counters::{
    current_boot_id, read_counters, traffic_while_away, LinkMeter, LinkReading,
};
use capwise_policy::ledger::{BudgetAccount, DebitError, Direction, PeerClass};
use capwise_policy::network::{Network, NetworkId};
use capwise_policy::power::Power;
use capwise_policy::schedule::Schedule;
use capwise_policy::store::Store;
use capwise_policy::time::Timestamp;
use capwise_policy::PolicyError;

use crate::accounting::Accounting;
use crate::network_source::SourceKind;

/// Where the kernel keeps interface counters.
const SYS_CLASS_NET: &str = "/sys/class/net";

/// The network with the user's stored word on metering applied, to the VPN
/// and to every link under it.
pub fn with_users_word(store: &Store, network: Network) -> Result<Network, PolicyError> {
    network.with_user_overrides(&mut |id| store.metered_override(id))
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
    /// Where interface counters are read; a fake tree in tests.
    sys_class_net: PathBuf,
    /// On AC or on battery, as the power source last said.
    power: Power,
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
            boot_id: current_boot_id().ok(),
            measured_once: false,
            sys_class_net: PathBuf::from(SYS_CLASS_NET),
            power: Power::Ac,
        }
    }

    /// Reads interface counters under `dir` instead of `/sys/class/net`.
    #[cfg(test)]
    pub fn with_sys_class_net(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sys_class_net = dir.into();
        self
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
        let network = match reported {
            Some(n) => Some(with_users_word(&self.store, n)?),
            None => None,
        };
        let billed = |n: &Option<Network>| n.as_ref().map(|n| n.billed_link().id.clone());
        if self.network.as_ref().map(|n| &n.id) != network.as_ref().map(|n| &n.id) {
            if let Some(old) = self.network.as_ref() {
                tracing::info!(from = %old.id, to = ?network.as_ref().map(|n| n.id.to_string()), "network changed");
            }
        }
        // A VPN coming up or going down over the same link keeps the account.
        if billed(&self.network) != billed(&network) {
            self.close_account()?;
        }
        self.network = network;
        let Some(network) = self.network.as_ref() else {
            self.schedule = Schedule::default();
            return Ok(());
        };
        // Both the VPN and the link it runs over, so each can be given a
        // budget or the user's word by the id `capwise net` shows.
        for level in network.path() {
            if level.id.as_str() != crate::network_source::UNKNOWN_NETWORK_ID {
                self.store.note_network_seen(level, now)?;
            }
        }
        let id = network.billed_link().id.clone();
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

    /// Feeds the billed link's interface counters (all programs' traffic,
    /// a VPN's included with its overhead) to the ledger, and keeps the
    /// reading: the first one of a run adds what the link carried since the
    /// last run's. An unreadable counter is not fatal: the agent's own debits
    /// still bound what it spends.
    fn measure_link(&mut self, now: Timestamp) -> Result<(), PolicyError> {
        let interface = self
            .network
            .as_ref()
            .and_then(|n| n.billed_link().interface.clone());
        if interface != self.metered_interface {
            self.meter.reset();
            self.metered_interface = interface.clone();
        }
        let (Some(interface), Some(account)) = (interface, self.account.as_mut()) else {
            return Ok(());
        };
        let counters = match read_counters(&self.sys_class_net, &interface) {
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

    /// The network whose ledger bytes go to now (the link the carrier
    /// bills), and its budget account if it has a budget: for the metrics.
    pub fn billed(&self) -> Option<(NetworkId, Option<&BudgetAccount>)> {
        let network = self.network.as_ref()?;
        let account = self.account.as_ref();
        let id = account.map_or_else(|| network.billed_link().id.clone(), |a| a.network().clone());
        Some((id, account.and_then(Accounting::budget_account)))
    }

    /// Takes in the power source's word (decided with at the next
    /// [`PolicyState::decide`]).
    pub fn set_power(&mut self, power: Power) {
        self.power = power;
    }

    /// The decision at `now` from what is known.
    pub fn decide(&self, now: Timestamp) -> Decision {
        let budget = self.account.as_ref().and_then(Accounting::budget_state);
        decide(
            &DecisionInput {
                network: self.network.as_ref(),
                offline: self.source.offline(),
                budget: budget.as_ref(),
                schedule: Some(&self.schedule),
                power: self.power,
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
            // Offline: with no route nothing can be billed, and a network
            // file describing none suspends everything: nothing to account.
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

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_policy::budget::Budget;
    use capwise_policy::decision::Reason;
    use capwise_policy::network::{Metered, MeteredSource, NetworkId, NetworkKind};
    use capwise_policy::time::UtcOffset;

    use crate::state_db::{calendar_month, open_store};

    const MB: u64 = 1_000_000;

    /// The work VPN (wg0) over a phone's hotspot (wlan0) that NetworkManager
    /// knows is metered.
    fn vpn_over_hotspot() -> Network {
        Network {
            id: NetworkId::new("work-vpn"),
            name: "work".into(),
            kind: NetworkKind::Vpn,
            metered: Metered::Unknown,
            metered_source: MeteredSource::NetworkManager,
            interface: Some("wg0".into()),
            underlying: Some(Box::new(Network {
                id: NetworkId::new("hotspot"),
                name: "Pixel hotspot".into(),
                kind: NetworkKind::Wifi,
                metered: Metered::Yes,
                metered_source: MeteredSource::NetworkManager,
                interface: Some("wlan0".into()),
                ..Network::default()
            })),
            ..Network::default()
        }
    }

    fn set_counters(sys: &std::path::Path, interface: &str, rx: u64, tx: u64) {
        let dir = sys.join(interface).join("statistics");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rx_bytes"), format!("{rx}\n")).unwrap();
        std::fs::write(dir.join("tx_bytes"), format!("{tx}\n")).unwrap();
    }

    #[test]
    fn a_vpn_over_a_capped_hotspot_spends_the_hotspots_budget_and_word() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys-class-net");
        let now = Timestamp(1_790_000_000);
        let store = open_store(dir.path(), now).unwrap();
        let hotspot = NetworkId::new("hotspot");
        let vpn = NetworkId::new("work-vpn");
        let cap = 10 * MB;
        store
            .set_budget(&hotspot, Some(&Budget::monthly(cap, 1, UtcOffset::UTC)))
            .unwrap();
        set_counters(&sys, "wlan0", 1_000, 2_000);
        set_counters(&sys, "wg0", 500, 700);
        let mut state = PolicyState::new(store, SourceKind::NetworkManager, Settings::default())
            .with_sys_class_net(&sys);

        state.refresh(Some(vpn_over_hotspot()), now).unwrap();
        let d = state.decide(now);
        assert_eq!(d.reason, Reason::Metered, "{}", d.explanation);
        assert!(
            d.explanation
                .contains("'Pixel hotspot' (under VPN 'work') is metered"),
            "{}",
            d.explanation
        );
        assert!(
            d.explanation.contains(" of 10 MB used"),
            "the hotspot's budget applies: {}",
            d.explanation
        );
        let seen: Vec<_> = state.store().networks().unwrap();
        for id in [&vpn, &hotspot] {
            assert!(seen.iter().any(|n| &n.id == id), "{id} noted as seen");
        }

        // "Unmetered" on the tunnel cannot hide the metered hotspot...
        state
            .store()
            .set_metered_override(&vpn, Some(false))
            .unwrap();
        state.refresh(Some(vpn_over_hotspot()), now).unwrap();
        assert_eq!(state.decide(now).reason, Reason::Metered);
        // ...but the user's `--metered no` on the hotspot holds.
        state
            .store()
            .set_metered_override(&hotspot, Some(false))
            .unwrap();
        state.refresh(Some(vpn_over_hotspot()), now).unwrap();
        let d = state.decide(now);
        assert_eq!(d.reason, Reason::Unmetered, "{}", d.explanation);

        // A "LAN" peer through the tunnel is debited as WAN, on the hotspot.
        state
            .debit(Direction::Down, PeerClass::Lan, 1_000, true)
            .unwrap();
        state.arrived(PeerClass::Lan, 1_000);
        state.close().unwrap();
        let period = calendar_month(now).0;
        let down_wan: u64 = state
            .store()
            .usage(&hotspot, period)
            .unwrap()
            .iter()
            .filter(|r| r.direction == Direction::Down && r.peer_class == PeerClass::Wan)
            .map(|r| r.bytes)
            .sum();
        assert_eq!(down_wan, 1_000, "debited to the hotspot as WAN");
        assert!(state.store().usage(&vpn, period).unwrap().is_empty());

        // Other programs use 9.5 MB on the hotspot's interface (the tunnel's
        // own counters say something else): the hotspot reaches its limit.
        set_counters(&sys, "wlan0", 1_000 + 9_500_000, 2_000);
        set_counters(&sys, "wg0", 500 + 40 * MB, 700);
        state.refresh(Some(vpn_over_hotspot()), now).unwrap();
        assert_eq!(
            state.store().link_usage(&hotspot, period).unwrap(),
            (9_500_000, 0),
            "counters read from wlan0, not wg0"
        );
        assert_eq!(state.store().link_usage(&vpn, period).unwrap(), (0, 0));
        let d = state.decide(now);
        assert_eq!(d.reason, Reason::AtCap, "{}", d.explanation);
        assert!(matches!(
            state.debit(Direction::Down, PeerClass::Wan, 1_000, true),
            Err(DebitError::Exhausted { .. })
        ));
    }

    #[test]
    fn a_restart_counts_what_the_link_carried_while_capwise_was_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys-class-net");
        let hotspot = || vpn_over_hotspot().underlying.map(|n| *n).unwrap();
        let id = NetworkId::new("hotspot");
        let start = Timestamp(1_790_000_000);
        let period = calendar_month(start).0;
        let run = |at: Timestamp| {
            let store = open_store(dir.path(), at).unwrap();
            let mut state =
                PolicyState::new(store, SourceKind::NetworkManager, Settings::default())
                    .with_sys_class_net(&sys);
            state.refresh(Some(hotspot()), at).unwrap();
            state
        };

        set_counters(&sys, "wlan0", 10_000, 20_000);
        let mut first = run(start);
        set_counters(&sys, "wlan0", 10_300, 20_040);
        first.refresh(Some(hotspot()), start.plus_secs(2)).unwrap();
        assert_eq!(first.store().link_usage(&id, period).unwrap(), (300, 40));
        first.close().unwrap();
        drop(first);

        // Stopped for five minutes while other programs used the link.
        set_counters(&sys, "wlan0", 710_300, 80_040);
        let second = run(start.plus_secs(302));
        assert_eq!(
            second.store().link_usage(&id, period).unwrap(),
            (700_300, 60_040),
            "the gap counts"
        );
        drop(second);

        // Away for twenty minutes: the interface may have been elsewhere.
        set_counters(&sys, "wlan0", 5_710_300, 80_040);
        let third = run(start.plus_secs(302 + 1_200));
        assert_eq!(
            third.store().link_usage(&id, period).unwrap(),
            (700_300, 60_040),
            "a long gap is not claimed"
        );
    }
}
