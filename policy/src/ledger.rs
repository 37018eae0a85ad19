//! The hard-cap promise. Budget is taken from SQLite in durable chunks
//! before any byte is sent or requested, then spent in memory. A crash or
//! power cut can over-count by at most one chunk, never under-count, and the
//! agent's own traffic never passes cap − reserve.
//!
//! Downloads are debited when requested but move later. So that a crash
//! over-counts by no more than one chunk, a new chunk is reserved only up to
//! one chunk beyond what has *arrived* ([`BudgetAccount::arrived`]): while
//! more than half a chunk of requests is still outstanding, further requests
//! wait ([`DebitError::InFlight`]) instead of being debited far ahead.

use std::collections::BTreeMap;

use crate::budget::Budget;
use crate::error::PolicyError;
use crate::network::NetworkId;
use crate::store::Store;
use crate::time::Timestamp;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Received from peers.
    Down,
    /// Sent to peers.
    Up,
}

impl Direction {
    /// Stable name for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
        }
    }

    /// Parses [`Direction::as_str`]'s output.
    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "down" => Some(Direction::Down),
            "up" => Some(Direction::Up),
            _ => None,
        }
    }
}

/// Where the peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerClass {
    /// Beyond the local network: costs data.
    Wan,
    /// On the local network (and not reached through a VPN): free.
    Lan,
}

impl PeerClass {
    /// Stable name for storage.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerClass::Wan => "wan",
            PeerClass::Lan => "lan",
        }
    }

    /// Parses [`PeerClass::as_str`]'s output.
    pub fn parse(text: &str) -> Option<PeerClass> {
        match text {
            "wan" => Some(PeerClass::Wan),
            "lan" => Some(PeerClass::Lan),
            _ => None,
        }
    }
}

/// Why a debit was refused.
#[derive(Debug, thiserror::Error)]
pub enum DebitError {
    /// The bytes would take the link past cap − reserve.
    #[error("budget exhausted: {requested} bytes requested, {available} available")]
    Exhausted {
        /// Bytes asked for.
        requested: u64,
        /// Bytes still available to the agent.
        available: u64,
    },
    /// The reservation could not be made durable; nothing was spent
    /// (failing closed keeps the promise).
    #[error("could not reserve budget durably: {0}")]
    Store(#[from] PolicyError),
    /// Too many requested bytes have not arrived yet: reserving more now
    /// would let a crash over-count by more than one chunk. Retry once
    /// bytes arrive (or give the outstanding ones up with
    /// [`BudgetAccount::forget_in_flight`]).
    #[error("{in_flight} requested bytes still on their way")]
    InFlight {
        /// Debited bytes that have not arrived.
        in_flight: u64,
    },
}

/// Smallest reservation chunk: 64 KiB.
pub const MIN_CHUNK: u64 = 64 * 1024;
/// Largest reservation chunk: 1 MiB.
pub const MAX_CHUNK: u64 = 1024 * 1024;

/// The reservation chunk for a cap: 1% of it, between 64 KiB and 1 MiB.
/// Small enough that a crash over-counts little, large enough that durable
/// commits stay rare.
pub fn chunk_size(cap_bytes: u64) -> u64 {
    (cap_bytes / 100).clamp(MIN_CHUNK, MAX_CHUNK)
}

/// The agent's spending account on one capped network for one period.
#[derive(Debug)]
pub struct BudgetAccount {
    network: NetworkId,
    budget: Budget,
    period: (Timestamp, Timestamp),
    chunk: u64,
    /// Durably reserved in SQLite; always ≥ `spent`.
    reserved: u64,
    /// Counted bytes the agent spent (after a restart: everything reserved).
    spent: u64,
    /// The part of `spent` known to have moved: uploads when debited,
    /// downloads when they arrive. `spent - moved` is in flight.
    moved: u64,
    /// Counted bytes the whole link carried in the period (all programs).
    link_used: u64,
    /// Ledger bytes not yet written to the usage table.
    unflushed: BTreeMap<(Direction, PeerClass), u64>,
}

impl BudgetAccount {
    /// Opens the account for the period containing `now`. Whatever was
    /// reserved before a crash is taken as spent: we may over-count by the
    /// unspent part of one chunk, but never under-count.
    pub fn open(
        store: &Store,
        network: NetworkId,
        budget: Budget,
        now: Timestamp,
    ) -> Result<Self, PolicyError> {
        budget.validate()?;
        let period = budget.bounds(now);
        let reserved = store.reserved(&network, period.0)?;
        let (rx, tx) = store.link_usage(&network, period.0)?;
        let mut account = BudgetAccount {
            network,
            budget,
            period,
            chunk: chunk_size(budget.cap_bytes),
            reserved,
            spent: reserved,
            moved: reserved,
            link_used: 0,
            unflushed: BTreeMap::new(),
        };
        account.set_link_usage(rx, tx);
        Ok(account)
    }

    /// Starts a new period if `now` has left the current one; returns true if
    /// it did. Unflushed ledger rows go to the old period first.
    pub fn roll_over(&mut self, store: &Store, now: Timestamp) -> Result<bool, PolicyError> {
        if now >= self.period.0 && now < self.period.1 {
            return Ok(false);
        }
        self.flush(store)?;
        *self = BudgetAccount::open(store, self.network.clone(), self.budget, now)?;
        Ok(true)
    }

    /// Debits `bytes` before they are sent or requested. Bytes that do not
    /// count (LAN peers, downloads on an upload-only budget) are only
    /// recorded. Counted bytes are refused if they would pass cap − reserve
    /// for the whole link; if the durable reservation does not cover them a
    /// new chunk is committed to disk first.
    pub fn try_debit(
        &mut self,
        store: &Store,
        direction: Direction,
        peer_class: PeerClass,
        bytes: u64,
    ) -> Result<(), DebitError> {
        if self.counts(direction, peer_class) {
            let available = self.available();
            if bytes > available {
                return Err(DebitError::Exhausted {
                    requested: bytes,
                    available,
                });
            }
            let needed = self.spent + bytes;
            if needed > self.reserved {
                // Reserve only when at most half a chunk is in flight, and up
                // to one chunk past what moved: the durable figure then stays
                // within one chunk of the truth, and each fsync buys at least
                // half a chunk.
                let in_flight = self.spent - self.moved;
                if in_flight > self.chunk / 2 {
                    return Err(DebitError::InFlight { in_flight });
                }
                let limit = self.budget.agent_limit();
                let target = (self.moved + self.chunk).min(limit).max(needed);
                self.record(direction, peer_class, bytes);
                let usage: Vec<_> = self
                    .unflushed
                    .iter()
                    .map(|(&(d, c), &b)| (d, c, b))
                    .collect();
                if let Err(error) =
                    store.reserve_with_usage(&self.network, self.period.0, target, &usage)
                {
                    self.unrecord(direction, peer_class, bytes);
                    return Err(error.into());
                }
                self.unflushed.clear();
                self.reserved = target;
                self.spent = needed;
                if direction == Direction::Up {
                    self.moved += bytes;
                }
                return Ok(());
            }
            self.spent = needed;
            if direction == Direction::Up {
                // Sent right after the gate: moved as far as we can know.
                self.moved += bytes;
            }
        }
        self.record(direction, peer_class, bytes);
        Ok(())
    }

    /// Requested (counted) download bytes arrived.
    pub fn arrived(&mut self, peer_class: PeerClass, bytes: u64) {
        if self.counts(Direction::Down, peer_class) {
            self.moved = (self.moved + bytes).min(self.spent);
        }
    }

    /// Takes every outstanding request as moved: for requests that will
    /// never be answered (a peer that vanished), which would otherwise hold
    /// every later one. They stay debited, so this can only over-count.
    pub fn forget_in_flight(&mut self) {
        self.moved = self.spent;
    }

    /// Debited bytes not known to have moved.
    pub fn in_flight(&self) -> u64 {
        self.spent - self.moved
    }

    fn unrecord(&mut self, direction: Direction, peer_class: PeerClass, bytes: u64) {
        if let Some(b) = self.unflushed.get_mut(&(direction, peer_class)) {
            *b -= bytes;
            if *b == 0 {
                self.unflushed.remove(&(direction, peer_class));
            }
        }
    }

    fn record(&mut self, direction: Direction, peer_class: PeerClass, bytes: u64) {
        *self.unflushed.entry((direction, peer_class)).or_insert(0) += bytes;
    }

    /// Whether traffic of this direction and class counts against the cap.
    /// The caller passes `Wan` for LAN peers reached through a VPN.
    pub fn counts(&self, direction: Direction, peer_class: PeerClass) -> bool {
        peer_class == PeerClass::Wan && self.budget.counts_direction(direction == Direction::Up)
    }

    /// Updates the whole link's traffic in this period, as measured on the
    /// interface (see `interface_counters`). Only counted directions apply.
    pub fn set_link_usage(&mut self, rx_bytes: u64, tx_bytes: u64) {
        self.link_used = if self.budget.counts_direction(false) {
            rx_bytes.saturating_add(tx_bytes)
        } else {
            tx_bytes
        };
    }

    /// Writes the ledger rows accumulated in memory.
    pub fn flush(&mut self, store: &Store) -> Result<(), PolicyError> {
        while let Some((&(direction, class), &bytes)) = self.unflushed.iter().next() {
            store.add_usage(&self.network, self.period.0, direction, class, bytes)?;
            self.unflushed.remove(&(direction, class));
        }
        Ok(())
    }

    /// Counted bytes the agent used (may exceed the truth by < one chunk
    /// after a crash).
    pub fn used(&self) -> u64 {
        self.spent
    }

    /// Counted bytes everyone else on the link used.
    pub fn others_used(&self) -> u64 {
        self.link_used.saturating_sub(self.spent)
    }

    /// Counted bytes on the whole link: the agent's or the interface's
    /// measurement, whichever is larger.
    pub fn link_used(&self) -> u64 {
        self.link_used.max(self.spent)
    }

    /// Bytes durably reserved.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Counted bytes the agent may still use before the link reaches
    /// cap − reserve.
    pub fn available(&self) -> u64 {
        self.budget.agent_limit().saturating_sub(self.link_used())
    }

    /// The reservation chunk size.
    pub fn chunk(&self) -> u64 {
        self.chunk
    }

    /// The current period `[start, end)`.
    pub fn period(&self) -> (Timestamp, Timestamp) {
        self.period
    }

    /// The budget this account spends.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::UtcOffset;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp(1_733_400_000);

    fn budget(cap: u64) -> Budget {
        Budget::monthly(cap, 1, UtcOffset::UTC)
    }

    #[test]
    fn chunk_is_one_percent_between_64k_and_1m() {
        assert_eq!(chunk_size(1_000), MIN_CHUNK);
        assert_eq!(chunk_size(10_000_000), 100_000);
        assert_eq!(chunk_size(5_000_000_000), MAX_CHUNK);
    }

    #[test]
    fn debits_stop_at_cap_minus_reserve() {
        let store = Store::open_in_memory().unwrap();
        let id = NetworkId::new("n");
        let mut acct = BudgetAccount::open(&store, id.clone(), budget(10_000_000), NOW).unwrap();
        assert_eq!(acct.available(), 9_000_000);
        acct.try_debit(&store, Direction::Down, PeerClass::Wan, 8_999_999)
            .unwrap();
        acct.arrived(PeerClass::Wan, 8_999_999);
        acct.try_debit(&store, Direction::Up, PeerClass::Wan, 1)
            .unwrap();
        let err = acct
            .try_debit(&store, Direction::Up, PeerClass::Wan, 1)
            .unwrap_err();
        assert!(matches!(
            err,
            DebitError::Exhausted {
                requested: 1,
                available: 0
            }
        ));
        // LAN traffic is exempt and still recorded.
        acct.try_debit(&store, Direction::Up, PeerClass::Lan, 5_000)
            .unwrap();
        acct.flush(&store).unwrap();
        let rows = store.usage(&id, acct.period().0).unwrap();
        assert!(rows
            .iter()
            .any(|r| r.peer_class == PeerClass::Lan && r.bytes == 5_000));
        assert_eq!(store.reserved(&id, acct.period().0).unwrap(), 9_000_000);
    }

    #[test]
    fn other_programs_traffic_shrinks_what_the_agent_may_use() {
        let store = Store::open_in_memory().unwrap();
        let mut acct =
            BudgetAccount::open(&store, NetworkId::new("n"), budget(10_000_000), NOW).unwrap();
        acct.try_debit(&store, Direction::Down, PeerClass::Wan, 1_000_000)
            .unwrap();
        acct.set_link_usage(4_000_000, 1_000_000); // includes our 1 MB
        assert_eq!(acct.others_used(), 4_000_000);
        assert_eq!(acct.available(), 4_000_000);
        assert!(acct
            .try_debit(&store, Direction::Down, PeerClass::Wan, 4_000_001)
            .is_err());
    }

    #[test]
    fn upload_only_budget_ignores_downloads() {
        let store = Store::open_in_memory().unwrap();
        let b = Budget {
            counts: crate::budget::Counts::UpOnly,
            ..budget(1_000_000)
        };
        let mut acct = BudgetAccount::open(&store, NetworkId::new("n"), b, NOW).unwrap();
        acct.try_debit(&store, Direction::Down, PeerClass::Wan, 50_000_000)
            .unwrap();
        assert_eq!(acct.used(), 0);
        acct.try_debit(&store, Direction::Up, PeerClass::Wan, 1_000)
            .unwrap();
        assert_eq!(acct.used(), 1_000);
    }

    #[test]
    fn a_new_period_starts_fresh() {
        let store = Store::open_in_memory().unwrap();
        let mut acct =
            BudgetAccount::open(&store, NetworkId::new("n"), budget(1_000_000), NOW).unwrap();
        acct.try_debit(&store, Direction::Up, PeerClass::Wan, 900_000)
            .unwrap();
        assert!(!acct.roll_over(&store, NOW.plus_secs(60)).unwrap());
        let next = acct.period().1;
        assert!(acct.roll_over(&store, next).unwrap());
        assert_eq!(acct.used(), 0);
        assert_eq!(acct.period().0, next);
    }

    #[test]
    fn requests_wait_while_half_a_chunk_is_in_flight() {
        let store = Store::open_in_memory().unwrap();
        let id = NetworkId::new("n");
        let mut acct = BudgetAccount::open(&store, id.clone(), budget(10_000_000), NOW).unwrap();
        let chunk = acct.chunk(); // 100 kB
        let block = 10_000;
        // The first reservation covers one chunk: ten blocks requested.
        for _ in 0..10 {
            acct.try_debit(&store, Direction::Down, PeerClass::Wan, block)
                .unwrap();
        }
        assert_eq!(acct.reserved(), chunk);
        // The chunk is spent and all of it in flight: the next request waits.
        let err = acct
            .try_debit(&store, Direction::Down, PeerClass::Wan, block)
            .unwrap_err();
        assert!(
            matches!(err, DebitError::InFlight { in_flight: 100_000 }),
            "{err}"
        );
        // Half of it arrives: a new chunk is reserved past what moved.
        acct.arrived(PeerClass::Wan, 50_000);
        acct.try_debit(&store, Direction::Down, PeerClass::Wan, block)
            .unwrap();
        assert_eq!(acct.reserved(), 50_000 + chunk);
        // The usage rows went to disk with that reservation.
        let rows = store.usage(&id, acct.period().0).unwrap();
        assert_eq!(rows.iter().map(|r| r.bytes).sum::<u64>(), 110_000);
        // LAN arrivals do not count; giving up the outstanding ones does.
        acct.arrived(PeerClass::Lan, 1_000_000);
        assert_eq!(acct.in_flight(), 60_000);
        acct.forget_in_flight();
        assert_eq!(acct.in_flight(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Debit(Direction, PeerClass, u64),
        Arrive(u64),
        Forget,
        Crash,
        Link(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let dir = prop_oneof![Just(Direction::Down), Just(Direction::Up)];
        let class = prop_oneof![4 => Just(PeerClass::Wan), 1 => Just(PeerClass::Lan)];
        prop_oneof![
            // Blocks no larger than half the smallest chunk, as the engine's.
            8 => (dir, class, 0u64..=MIN_CHUNK / 2).prop_map(|(d, c, b)| Op::Debit(d, c, b)),
            4 => (0u64..100_000).prop_map(Op::Arrive),
            1 => Just(Op::Forget),
            1 => Just(Op::Crash),
            1 => (0u64..3_000_000).prop_map(Op::Link),
        ]
    }

    proptest! {
        /// Whatever the sequence of debits, arrivals, crashes and link
        /// measurements: the agent never passes cap − reserve, the durable
        /// record never under-counts what was debited, each crash over-counts
        /// by at most one chunk, and the durable record stays within one
        /// chunk of what moved.
        #[test]
        fn ledger_keeps_the_hard_cap_promise(
            cap in 200_000u64..10_000_000,
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let store = Store::open_in_memory().unwrap();
            let id = NetworkId::new("n");
            let b = budget(cap);
            let mut acct = BudgetAccount::open(&store, id.clone(), b, NOW).unwrap();
            let mut truly_spent = 0u64;
            // What moved: uploads when debited, downloads when they arrive
            // (a crash takes everything reserved as moved, a forget all debited).
            let mut moved = 0u64;
            let mut link = 0u64;
            for op in ops {
                match op {
                    Op::Debit(d, c, bytes) => {
                        let counted = acct.counts(d, c);
                        let before = acct.available();
                        match acct.try_debit(&store, d, c, bytes) {
                            Ok(()) => if counted {
                                truly_spent += bytes;
                                if d == Direction::Up { moved += bytes }
                            },
                            Err(DebitError::Exhausted { available, .. }) => {
                                prop_assert!(counted);
                                prop_assert!(bytes > before);
                                prop_assert_eq!(available, before);
                            }
                            Err(DebitError::InFlight { in_flight }) => {
                                prop_assert!(counted);
                                prop_assert!(in_flight > acct.chunk() / 2);
                            }
                            Err(e) => panic!("store failed: {e}"),
                        }
                    }
                    Op::Arrive(bytes) => {
                        let in_flight = acct.in_flight();
                        acct.arrived(PeerClass::Wan, bytes);
                        if b.counts_direction(false) {
                            moved += bytes.min(in_flight);
                        }
                    }
                    Op::Forget => {
                        moved += acct.in_flight();
                        acct.forget_in_flight();
                    }
                    Op::Crash => {
                        let used_before = acct.used();
                        acct = BudgetAccount::open(&store, id.clone(), b, NOW).unwrap();
                        acct.set_link_usage(link, 0);
                        prop_assert!(acct.used() >= used_before, "never under-count");
                        prop_assert!(acct.used() - used_before <= acct.chunk(), "over-count ≤ one chunk");
                        moved = acct.used();
                    }
                    Op::Link(l) => {
                        link = link.max(l);
                        acct.set_link_usage(link, 0);
                    }
                }
                let durable = store.reserved(&id, acct.period().0).unwrap();
                prop_assert!(truly_spent <= b.agent_limit());
                prop_assert!(durable >= truly_spent, "durable {} < spent {}", durable, truly_spent);
                prop_assert!(acct.used() >= truly_spent);
                prop_assert!(durable - acct.used() <= acct.chunk());
                prop_assert!(durable <= moved + acct.chunk(), "durable {} > moved {} + chunk", durable, moved);
            }
        }
    }
}
