//! One torrent's protocol core: its swarm, who may be connected
//! ([`Admission`]), when it announces ([`AnnounceSchedule`]), and whether
//! it runs (active, paused, failed, removed).
//!
//! Sans-IO like the swarm it holds: the I/O layer keeps one of these
//! behind one lock per torrent, drives the swarm through it, and asks it
//! before a peer joins or a dial starts. The run state and the admission
//! table change together here, so no peer can join a paused or failed
//! torrent between two locks.

use std::net::SocketAddr;
use std::time::Instant;

use crate::admission::{Admission, Member, Refusal};
use crate::announce::AnnounceSchedule;
use crate::class::PeerClass;
use crate::picker::PeerKey;
use crate::swarm::{PeerOrigin, Swarm};
use crate::wire::Handshake;

/// Whether a torrent takes part in its swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Peers, announces, downloads and uploads.
    Active,
    /// Kept, but out of the swarm until resumed.
    Paused,
    /// Removed from the session: its tasks end.
    Stopped,
}

/// Why a torrent stopped transferring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What the user is shown.
    pub message: String,
    /// When the torrent tries again by itself (a full disk); `None` waits
    /// for the caller.
    pub retry_at: Option<Instant>,
}

/// A connection that joined: its key, and the connection it replaces
/// (the caller closes that one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub key: PeerKey,
    pub replaces: Option<PeerKey>,
}

/// One torrent's swarm, admission table and run state.
#[derive(Debug)]
pub struct TorrentCore {
    /// The peer-wire state machine; the I/O layer drives it directly.
    pub swarm: Swarm,
    /// When to announce to the trackers; the I/O layer's announce task
    /// sends what it says.
    pub announce: AnnounceSchedule,
    admission: Admission,
    run: RunState,
    fault: Option<Fault>,
    /// Peers the caller named, dialled again after a pause or an error.
    manual_peers: Vec<SocketAddr>,
}

/// Peers remembered for redialling; the caller names a few, not thousands.
pub const MAX_MANUAL_PEERS: usize = 64;

impl TorrentCore {
    /// A torrent over `swarm` allowing `max_peers` connections, starting
    /// in `run`.
    pub fn new(swarm: Swarm, max_peers: usize, run: RunState) -> Self {
        let mut core = Self {
            announce: AnnounceSchedule::new(swarm.is_complete()),
            swarm,
            admission: Admission::new(max_peers),
            run,
            fault: None,
            manual_peers: Vec::new(),
        };
        core.sync_admission();
        core
    }

    fn sync_admission(&mut self) {
        let open = self.takes_peers();
        self.admission.set_open(open);
    }

    pub fn run_state(&self) -> RunState {
        self.run
    }

    pub fn fault(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }

    /// Active and not failed: peers may be connected.
    pub fn takes_peers(&self) -> bool {
        self.run == RunState::Active && self.fault.is_none()
    }

    /// Active → paused; false if it was not active.
    pub fn pause(&mut self) -> bool {
        let paused = self.run == RunState::Active;
        if paused {
            self.run = RunState::Paused;
            self.sync_admission();
        }
        paused
    }

    /// Paused → active, and any fault cleared: `(was paused, had a fault)`.
    pub fn resume(&mut self) -> (bool, bool) {
        let had_fault = self.fault.take().is_some();
        let resumed = self.run == RunState::Paused;
        if resumed {
            self.run = RunState::Active;
        }
        self.sync_admission();
        (resumed, had_fault)
    }

    /// Removed: nothing runs again.
    pub fn stop(&mut self) {
        self.run = RunState::Stopped;
        self.sync_admission();
    }

    /// Stop transferring with `fault`; the caller closes the connections.
    pub fn fail(&mut self, fault: Fault) {
        self.fault = Some(fault);
        self.sync_admission();
    }

    /// When a fault clears by itself, if one is pending.
    pub fn retry_at(&self) -> Option<Instant> {
        self.fault.as_ref()?.retry_at
    }

    /// Clears a fault whose retry time has come; true if it did.
    pub fn retry_if_due(&mut self, now: Instant) -> bool {
        let due = self.retry_at().is_some_and(|at| now >= at);
        if due {
            self.fault = None;
            self.sync_admission();
        }
        due
    }

    /// When the core next needs a wake: the swarm's next timer, or a
    /// fault's retry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.swarm.poll_timeout(), self.retry_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Remember peers the caller named, to dial them again after a pause
    /// or an error (the oldest go beyond [`MAX_MANUAL_PEERS`]).
    pub fn remember_peers(&mut self, peers: &[SocketAddr]) {
        for &addr in peers {
            if !self.manual_peers.contains(&addr) {
                if self.manual_peers.len() >= MAX_MANUAL_PEERS {
                    self.manual_peers.remove(0);
                }
                self.manual_peers.push(addr);
            }
        }
    }

    /// The peers the caller named.
    pub fn manual_peers(&self) -> &[SocketAddr] {
        &self.manual_peers
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// A dial to `addr` may start ([`Admission::begin_dial`]).
    pub fn begin_dial(&mut self, addr: SocketAddr, may_evict: bool) -> Result<(), Refusal> {
        self.admission.begin_dial(addr, may_evict)
    }

    pub fn end_dial(&mut self, addr: SocketAddr) {
        self.admission.end_dial(addr);
    }

    /// A connection whose handshakes are done joins the swarm, if admission
    /// allows it: `member` says who and how it came, `ours` is our peer id.
    pub fn join(
        &mut self,
        member: Member,
        handshake: &Handshake,
        class: PeerClass,
        ours: &[u8; 20],
        now: Instant,
    ) -> Result<Joined, Refusal> {
        let admit = self.admission.admit(&member, ours)?;
        // A membership proof names the id our handshake gave.
        self.swarm.set_own_peer_id(*ours);
        let origin = PeerOrigin {
            class,
            outgoing: member.outgoing(),
        };
        let key = self
            .swarm
            .add_peer_with(member.addr, handshake, origin, now);
        self.admission.insert(key, member, admit);
        Ok(Joined {
            key,
            replaces: admit.replaces,
        })
    }

    /// A connection ended: its slot is free and its requests go back to
    /// the pool.
    pub fn leave(&mut self, key: PeerKey) {
        self.admission.remove(key);
        self.swarm.remove_peer(key);
    }

    /// Refuse `addr` from now on.
    pub fn ban(&mut self, addr: SocketAddr) {
        self.admission.ban(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitfield::Bitfield;
    use crate::class::PeerSource;
    use crate::swarm::SwarmConfig;

    fn core(run: RunState) -> TorrentCore {
        let swarm = Swarm::new(
            16384,
            16384 * 4,
            Bitfield::new(4),
            SwarmConfig::default(),
            Instant::now(),
        );
        TorrentCore::new(swarm, 2, run)
    }

    fn peer(n: u8) -> (Member, Handshake) {
        let member = Member {
            addr: SocketAddr::from(([10, 0, 0, n], 6881)),
            peer_id: [n; 20],
            source: PeerSource::Tracker,
        };
        (member, Handshake::new([0; 20], [n; 20]))
    }

    const OURS: [u8; 20] = [0xEE; 20];

    #[test]
    fn a_paused_or_failed_torrent_takes_no_peer_until_it_runs_again() {
        let now = Instant::now();
        let mut c = core(RunState::Paused);
        let (m, h) = peer(1);
        assert_eq!(
            c.join(m, &h, PeerClass::Wan, &OURS, now),
            Err(Refusal::Closed)
        );
        assert_eq!(c.resume(), (true, false));
        let joined = c.join(m, &h, PeerClass::Wan, &OURS, now).expect("active");
        assert_eq!(c.swarm.stats().peers, 1);
        c.fail(Fault {
            message: "disk full".into(),
            retry_at: Some(now + std::time::Duration::from_secs(5)),
        });
        let (m2, h2) = peer(2);
        assert_eq!(
            c.join(m2, &h2, PeerClass::Wan, &OURS, now),
            Err(Refusal::Closed)
        );
        assert!(!c.retry_if_due(now), "not yet");
        assert!(c.retry_if_due(now + std::time::Duration::from_secs(5)));
        assert!(c.join(m2, &h2, PeerClass::Wan, &OURS, now).is_ok());
        c.leave(joined.key);
        assert_eq!(c.swarm.stats().peers, 1);
        assert_eq!(c.admission().len(), 1);
        c.stop();
        assert!(!c.pause(), "a removed torrent is not paused");
        assert_eq!(c.resume(), (false, false));
        assert!(!c.takes_peers());
    }

    #[test]
    fn named_peers_are_kept_once_and_bounded() {
        let mut c = core(RunState::Active);
        let a = SocketAddr::from(([10, 0, 0, 1], 1));
        c.remember_peers(&[a, a]);
        assert_eq!(c.manual_peers(), [a]);
        let many: Vec<SocketAddr> = (0..100u16)
            .map(|p| SocketAddr::from(([10, 0, 1, 1], p + 2)))
            .collect();
        c.remember_peers(&many);
        assert_eq!(c.manual_peers().len(), MAX_MANUAL_PEERS);
        assert_eq!(c.manual_peers().last(), many.last(), "the newest stay");
    }

    #[test]
    fn a_fault_retry_is_a_deadline_of_the_core() {
        let now = Instant::now();
        let mut c = core(RunState::Active);
        let at = now + std::time::Duration::from_secs(3);
        c.fail(Fault {
            message: "disk full".into(),
            retry_at: Some(at),
        });
        assert!(c.poll_timeout().is_some_and(|t| t <= at));
    }

    #[test]
    fn a_replaced_connection_frees_its_slot_at_once() {
        let now = Instant::now();
        let mut c = core(RunState::Active);
        let (m, h) = peer(1);
        let first = c.join(m, &h, PeerClass::Wan, &OURS, now).expect("first");
        let moved = Member {
            addr: SocketAddr::from(([10, 9, 0, 1], 6881)),
            ..m
        };
        let second = c
            .join(moved, &h, PeerClass::Wan, &OURS, now)
            .expect("moved");
        assert_eq!(second.replaces, Some(first.key));
        assert_eq!(c.admission().len(), 1);
        // The old connection's task ends later and leaves: nothing breaks.
        c.leave(first.key);
        assert_eq!(c.admission().len(), 1);
        assert!(c.admission().is_connected(moved.addr));
    }
}
