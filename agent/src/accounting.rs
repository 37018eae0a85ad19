//! Where the agent's bytes on the current network are accounted: a
//! [`BudgetAccount`] when the network has a budget (debits before bytes
//! move), else a plain recorder that files usage under the calendar month,
//! so `capwise usage` knows uncapped networks too. Bytes that do not count
//! against a cap (no budget, LAN peers, a free schedule window) are written
//! ahead of the bytes, a chunk at a time, so a kill -9 can make the ledger
//! over-count them by at most [`PLAIN_CHUNK`] per direction and peer class,
//! never under-count; counted bytes have the budget's durable reservations.

use std::collections::BTreeMap;

use capwise_policy::decision::BudgetState;
use capwise_policy::ledger::{BudgetAccount, DebitError, Direction, PeerClass};
use capwise_policy::network::NetworkId;
use capwise_policy::store::Store;
use capwise_policy::time::Timestamp;
use capwise_policy::PolicyError;

use crate::state_db::calendar_month;

/// How far ahead of the bytes uncounted usage is written. Large enough that
/// a fast download writes a ledger row only every few milliseconds.
pub const PLAIN_CHUNK: u64 = 1 << 20;

/// Usage on a network without a budget: recorded, never refused.
#[derive(Debug)]
pub struct PlainUsage {
    period: (Timestamp, Timestamp),
}

/// How the current network's bytes are accounted.
#[derive(Debug)]
enum Kind {
    /// A capped network.
    Budgeted(BudgetAccount),
    /// An uncapped network.
    Plain(PlainUsage),
}

/// The agent's account on the current network.
#[derive(Debug)]
pub struct Accounting {
    network: NetworkId,
    kind: Kind,
    /// Uncounted bytes already in the ledger that have not moved yet.
    recorded_ahead: BTreeMap<(Direction, PeerClass), u64>,
}

impl Accounting {
    /// The account for `network` at `now`: budgeted if it has a budget.
    pub fn open(store: &Store, network: &NetworkId, now: Timestamp) -> Result<Self, PolicyError> {
        let kind = match store.budget(network)? {
            Some(budget) => {
                Kind::Budgeted(BudgetAccount::open(store, network.clone(), budget, now)?)
            }
            None => Kind::Plain(PlainUsage {
                period: calendar_month(now),
            }),
        };
        Ok(Accounting {
            network: network.clone(),
            kind,
            recorded_ahead: BTreeMap::new(),
        })
    }

    /// Whether the stored budget is still the one this account spends;
    /// false after `capwise budget set/rm` from another process.
    pub fn matches_budget(&self, store: &Store) -> Result<bool, PolicyError> {
        let stored = store.budget(&self.network)?;
        Ok(match &self.kind {
            Kind::Budgeted(account) => stored.as_ref() == Some(account.budget()),
            Kind::Plain(_) => stored.is_none(),
        })
    }

    /// The network whose ledger this is.
    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// The current period `[start, end)`.
    pub fn period(&self) -> (Timestamp, Timestamp) {
        match &self.kind {
            Kind::Budgeted(account) => account.period(),
            Kind::Plain(plain) => plain.period,
        }
    }

    /// Debits (budgeted, counted traffic) or records the bytes before they
    /// move. `counted` is false in a schedule's free window.
    pub fn debit(
        &mut self,
        store: &Store,
        direction: Direction,
        class: PeerClass,
        bytes: u64,
        counted: bool,
    ) -> Result<(), DebitError> {
        if let Kind::Budgeted(account) = &mut self.kind {
            if counted && account.counts(direction, class) {
                return account.try_debit(store, direction, class, bytes);
            }
        }
        let period_start = self.period().0;
        let ahead = self.recorded_ahead.entry((direction, class)).or_insert(0);
        if *ahead < bytes {
            let write = (bytes - *ahead).max(PLAIN_CHUNK);
            store
                .add_usage(&self.network, period_start, direction, class, write)
                .map_err(DebitError::Store)?;
            *ahead += write;
        }
        *ahead -= bytes;
        Ok(())
    }

    /// Requested download bytes arrived (see `BudgetAccount::arrived`).
    pub fn arrived(&mut self, class: PeerClass, bytes: u64) {
        if let Kind::Budgeted(account) = &mut self.kind {
            account.arrived(class, bytes);
        }
    }

    /// Gives up on requests that are not being answered.
    pub fn forget_in_flight(&mut self) {
        if let Kind::Budgeted(account) = &mut self.kind {
            account.forget_in_flight();
        }
    }

    /// Starts a new period if `now` left the current one; true if it did.
    pub fn roll_over(&mut self, store: &Store, now: Timestamp) -> Result<bool, PolicyError> {
        let (start, end) = self.period();
        if now >= start && now < end {
            return Ok(false);
        }
        // What was written ahead belongs to the old period.
        self.take_back_ahead(store)?;
        if let Kind::Budgeted(account) = &mut self.kind {
            return account.roll_over(store, now);
        }
        *self = Accounting::open(store, &self.network.clone(), now)?;
        Ok(true)
    }

    /// Adds whole-link traffic measured on the interface and refreshes the
    /// account's view of it.
    pub fn add_link_usage(&mut self, store: &Store, rx: u64, tx: u64) -> Result<(), PolicyError> {
        let start = self.period().0;
        store.add_link_usage(&self.network, start, rx, tx)?;
        if let Kind::Budgeted(account) = &mut self.kind {
            let (rx_total, tx_total) = store.link_usage(&self.network, start)?;
            account.set_link_usage(rx_total, tx_total);
        }
        Ok(())
    }

    /// Writes the usage kept in memory to the ledger (no fsync needed: the
    /// durable promise is the reservation, not these rows). The plain
    /// recorder has nothing in memory: it writes ahead.
    pub fn flush(&mut self, store: &Store) -> Result<(), PolicyError> {
        match &mut self.kind {
            Kind::Budgeted(account) => account.flush(store),
            Kind::Plain(_) => Ok(()),
        }
    }

    /// [`flush`](Self::flush), and takes back what the plain recorder wrote
    /// ahead of bytes that did not move: for a clean stop or a network
    /// change. The account stays usable.
    pub fn close(&mut self, store: &Store) -> Result<(), PolicyError> {
        self.flush(store)?;
        self.take_back_ahead(store)
    }

    fn take_back_ahead(&mut self, store: &Store) -> Result<(), PolicyError> {
        let period_start = self.period().0;
        while let Some((&(direction, class), &ahead)) = self.recorded_ahead.iter().next() {
            if ahead > 0 {
                store.take_back_usage(&self.network, period_start, direction, class, ahead)?;
            }
            self.recorded_ahead.remove(&(direction, class));
        }
        Ok(())
    }

    /// The budget account, if the network has a budget (for the metrics).
    pub fn budget_account(&self) -> Option<&BudgetAccount> {
        match &self.kind {
            Kind::Budgeted(account) => Some(account),
            Kind::Plain(_) => None,
        }
    }

    /// The budget's state for the decision, if there is a budget.
    pub fn budget_state(&self) -> Option<BudgetState> {
        match &self.kind {
            Kind::Budgeted(account) => Some(budget_state(account)),
            Kind::Plain(_) => None,
        }
    }
}

/// Where a budget account stands, as the decision wants it.
pub fn budget_state(account: &BudgetAccount) -> BudgetState {
    BudgetState {
        budget: *account.budget(),
        agent_used: account.used(),
        link_used: account.link_used(),
        resets_at: account.period().1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_db::open_store;

    fn recorded(store: &Store, id: &NetworkId, now: Timestamp) -> u64 {
        store
            .usage(id, calendar_month(now).0)
            .unwrap()
            .iter()
            .filter(|r| r.direction == Direction::Down && r.peer_class == PeerClass::Lan)
            .map(|r| r.bytes)
            .sum()
    }

    #[test]
    fn plain_usage_is_written_ahead_so_a_kill_never_undercounts_and_a_clean_stop_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp(1_790_000_000);
        let store = open_store(dir.path(), now).unwrap();
        let id = NetworkId::new("home");
        let block = 16 * 1024;
        let mut moved = 0;
        {
            let mut account = Accounting::open(&store, &id, now).unwrap();
            for _ in 0..300 {
                account
                    .debit(&store, Direction::Down, PeerClass::Lan, block, true)
                    .unwrap();
                moved += block;
                let on_disk = recorded(&store, &id, now);
                assert!(on_disk >= moved, "{on_disk} recorded < {moved} moved");
                assert!(on_disk - moved <= PLAIN_CHUNK, "more than a chunk ahead");
            }
            // Dropped without close: what a kill -9 leaves.
        }
        let after_kill = recorded(&store, &id, now);
        assert!(after_kill >= moved && after_kill - moved <= PLAIN_CHUNK);

        let mut account = Accounting::open(&store, &id, now).unwrap();
        account
            .debit(&store, Direction::Down, PeerClass::Lan, block, true)
            .unwrap();
        account.close(&store).unwrap();
        assert_eq!(
            recorded(&store, &id, now),
            after_kill + block,
            "a clean stop takes back what did not move"
        );
    }
}
