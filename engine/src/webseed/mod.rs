//! BEP 19 web seeds as a download source: for each http(s) URL of a
//! torrent's `url-list`, a task whose workers (one per connection, at most
//! [`SeedConfig::connections`]) take whole pieces from the torrent's picker
//! ([`Swarm::web_seed_pick`]: pieces no peer is fetching), fetch them with
//! HTTP range requests across file boundaries (`fetch.rs`), hash each one
//! and hand it to the swarm, which writes it through the peers' path
//! (hashed again, written, journalled, announced with `have`).
//!
//! Invariants, as for a peer: the bytes of a request are debited at the
//! session's [`ByteGate`](crate::hooks::ByteGate) before the request is
//! sent; a piece is written only once its SHA-1 matched; a seed is WAN
//! traffic unless every address its host resolves to is LAN (the session's
//! classifier), and no WAN seed is asked anything while the WAN switch is
//! off. The sans-IO rules (time-outs, back-off, `Retry-After`, when to drop
//! a seed) are [`capwise_proto::webseed::WebSeed`]'s.
//!
//! [`Swarm::web_seed_pick`]: crate::swarm::Swarm::web_seed_pick

mod fetch;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capwise_proto::torrent::RunState;
use capwise_proto::webseed::{Outcome, SeedConfig, WebSeed};

use crate::hooks::{Direction, PeerClass};
use crate::picker::PeerKey;
use crate::session::TorrentShared;

/// What a torrent's web seeds are doing, for its handle.
#[derive(Debug, Default)]
pub(crate) struct Status {
    /// Seeds not dropped.
    active: AtomicUsize,
    /// Seeds given up on.
    dropped: AtomicUsize,
    /// Payload bytes they delivered (in verified pieces).
    bytes: AtomicU64,
}

/// A torrent's web seeds at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebSeedStats {
    /// Web seeds in use (not dropped).
    pub active: usize,
    /// Web seeds given up on (the log says why).
    pub dropped: usize,
    /// Payload bytes of verified pieces they delivered so far.
    pub bytes: u64,
}

impl Status {
    pub(crate) fn stats(&self) -> WebSeedStats {
        WebSeedStats {
            active: self.active.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Starts a task per web seed of the torrent (none without `url-list`).
pub(crate) fn spawn(shared: &Arc<TorrentShared>) {
    let meta = &shared.metainfo;
    for note in &meta.web_seed_notes {
        tracing::warn!(torrent = %meta.info.name, "{note}");
    }
    for url in &meta.web_seeds {
        let client = match fetch::client(shared.session.egress()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%url, error = %e, "web seed not used: no HTTP client");
                continue;
            }
        };
        let key = shared.lock_core().swarm.add_web_seed();
        shared.web_seeds.active.fetch_add(1, Ordering::Relaxed);
        let seed = Arc::new(Seed {
            shared: shared.clone(),
            key,
            machine: Mutex::new(WebSeed::new(url.clone(), SeedConfig::default())),
            client,
            workers: AtomicUsize::new(0),
        });
        let connections = SeedConfig::default().connections;
        for _ in 0..connections {
            seed.workers.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(seed.clone().work());
        }
    }
}

/// One web seed of one torrent, shared by its workers.
struct Seed {
    shared: Arc<TorrentShared>,
    key: PeerKey,
    machine: Mutex<WebSeed>,
    client: reqwest::Client,
    /// Workers still running: the last one out removes the seed from the swarm.
    workers: AtomicUsize,
}

/// How long a worker with nothing to pick waits before it looks again
/// (pieces come back when a peer or another worker gives them up).
const IDLE_RECHECK: Duration = Duration::from_secs(1);

impl Seed {
    fn url(&self) -> String {
        self.lock().url().to_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WebSeed> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn work(self: Arc<Self>) {
        let mut shutdown = self.shared.session.shutdown.subscribe();
        let mut run = self.shared.run.subscribe();
        let mut progress = self.shared.subscribe_progress();
        loop {
            let state = *run.borrow_and_update();
            if state == RunState::Stopped || self.lock().dropped().is_some() {
                break;
            }
            let wait: Option<Duration> = if state != RunState::Active {
                None
            } else if self.shared.is_complete() {
                // Until a piece is lost (progress changes) or the run state does.
                None
            } else {
                match self.turn().await {
                    Turn::Again => continue,
                    Turn::Wait(d) => Some(d),
                    Turn::Stop => break,
                }
            };
            let sleep = crate::deadline::sleep_until(wait.map(|d| Instant::now() + d));
            tokio::select! {
                () = sleep => {}
                changed = run.changed() => if changed.is_err() { break },
                _ = progress.changed() => {}
                _ = shutdown.recv() => break,
            }
        }
        if self.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut core = self.shared.lock_core();
            core.swarm.remove_web_seed(self.key);
            self.shared.dispatch(core);
        }
    }

    /// One request: reserve a connection, pick pieces, debit, fetch, hand in.
    async fn turn(self: &Arc<Self>) -> Turn {
        let now = Instant::now();
        let reserved = self.lock().try_reserve(now);
        let Some(id) = reserved else {
            let m = self.lock();
            if m.dropped().is_some() {
                return Turn::Stop;
            }
            let next = m.poll_timeout().map(|t| t.saturating_duration_since(now));
            return Turn::Wait(next.unwrap_or(IDLE_RECHECK).max(Duration::from_millis(10)));
        };
        let url = self.url();
        let class = fetch::classify(&url, &*self.shared.session.hooks.classifier).await;
        let hooks = &self.shared.session.hooks;
        if !self.shared.window_admits(class) || (class == PeerClass::Wan && !hooks.wan.is_on()) {
            self.lock().cancel(id);
            return Turn::Wait(IDLE_RECHECK);
        }
        let max_bytes = self.lock().config().max_request_bytes;
        let pieces = {
            let mut core = self.shared.lock_core();
            if core.run_state() == RunState::Active {
                core.swarm.web_seed_pick_from(self.key, max_bytes, class)
            } else {
                Vec::new()
            }
        };
        if pieces.is_empty() {
            self.lock().cancel(id);
            return Turn::Wait(IDLE_RECHECK);
        }
        let job = fetch::Job::new(&self.shared.metainfo.info, &url, &pieces);
        // Debit before the bytes move, in the peers' steps.
        let step = match class {
            PeerClass::Lan => 256 * 1024,
            PeerClass::Wan => 64 * 1024,
        };
        let mut left = job.file_bytes();
        // Ends the request: the torrent paused or stopped, or (for a WAN
        // seed) the WAN switch or the torrent's WAN window went off.
        let mut run = self.shared.run.subscribe();
        let mut wan = hooks.wan.subscribe();
        let mut window = self.shared.window_watch();
        let interrupted = async move {
            let not_active = run.wait_for(|s| *s != RunState::Active);
            let wan_off = async {
                if class == PeerClass::Wan {
                    let window_shut = async {
                        match &mut window {
                            Some(rx) => {
                                let _ = rx.wait_for(|on| !on).await;
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        _ = wan.wait_for(|on| !on) => {}
                        () = window_shut => {}
                    }
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = not_active => {}
                () = wan_off => {}
            }
        };
        tokio::pin!(interrupted);
        while left > 0 {
            let bytes = left.min(step);
            let gate = self.shared.acquire(Direction::Down, class, bytes);
            tokio::select! {
                () = gate => left -= bytes,
                () = &mut interrupted => return self.abandon(id, &pieces, Outcome::Aborted, 0),
            }
        }
        let begun = self.lock().begin(id, job.file_bytes(), Instant::now());
        let Some(deadline) = begun else {
            return self.abandon(id, &pieces, Outcome::Aborted, 0);
        };
        let mut delivered = Vec::new();
        let outcome = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), job.run(self, class, &mut delivered)) => match r {
                Ok(outcome) => outcome,
                Err(_) => Outcome::TimedOut,
            },
            () = &mut interrupted => Outcome::Aborted,
        };
        let moved: u64 = delivered
            .iter()
            .map(|&i| self.shared.metainfo.info.piece_size(i))
            .sum();
        let rest: Vec<u32> = pieces
            .into_iter()
            .filter(|i| !delivered.contains(i))
            .collect();
        self.abandon(id, &rest, outcome, moved)
    }

    /// Ends request `id` with `outcome`, handing back `pieces` not delivered.
    fn abandon(
        &self,
        id: capwise_proto::webseed::RequestId,
        pieces: &[u32],
        outcome: Outcome,
        bytes: u64,
    ) -> Turn {
        if !pieces.is_empty() {
            let mut core = self.shared.lock_core();
            for &i in pieces {
                core.swarm.web_seed_release(self.key, i);
            }
            self.shared.dispatch(core);
        }
        let failed = !matches!(outcome, Outcome::Done | Outcome::Aborted);
        if failed {
            tracing::debug!(url = %self.url(), ?outcome, "web seed request failed");
        }
        let mut m = self.lock();
        let was_dropped = m.dropped().is_some();
        m.finish(id, outcome, bytes, Instant::now());
        self.note_drop(&mut m, was_dropped);
        if m.dropped().is_some() {
            Turn::Stop
        } else {
            Turn::Again
        }
    }

    /// Says once, in plain words, that a seed was given up and why.
    fn note_drop(&self, m: &mut WebSeed, was_dropped: bool) {
        if was_dropped {
            return;
        }
        if let Some(reason) = m.dropped() {
            let status = &self.shared.web_seeds;
            status.active.fetch_sub(1, Ordering::Relaxed);
            status.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                torrent = %self.shared.metainfo.info.name,
                url = %m.url(),
                "web seed dropped: {reason}"
            );
        }
    }

    /// A piece it sent failed its hash check: counts against the seed.
    fn bad_piece(&self, index: u32) {
        tracing::warn!(url = %self.url(), piece = index, "piece from a web seed failed its hash check");
        self.shared
            .count_fault(crate::hooks::Counters::add_hash_failure);
        let mut m = self.lock();
        let was = m.dropped().is_some();
        m.piece_failed(Instant::now());
        self.note_drop(&mut m, was);
    }

    /// Whether it was dropped (a worker stops its request then).
    fn is_dropped(&self) -> bool {
        self.lock().dropped().is_some()
    }

    /// Bytes from the seed's HTTP exchanges, in the torrent's and the
    /// session's counters (what the policy reads), like a peer's.
    fn count(&self, direction: Direction, class: PeerClass, payload: u64, overhead: u64) {
        let hooks = &self.shared.session.hooks;
        for counters in [&*self.shared.counters, &*hooks.counters] {
            counters.add_payload(direction, class, payload);
            counters.add_overhead(direction, class, overhead);
        }
        if direction == Direction::Down && payload > 0 {
            hooks.gate.arrived(class, payload);
        }
    }

    /// A verified piece into the swarm (written by the torrent's verifier).
    fn deliver(&self, index: u32, data: &[u8]) -> bool {
        let mut core = self.shared.lock_core();
        let ok = core.swarm.web_seed_piece(self.key, index, data);
        self.shared.dispatch(core);
        if ok {
            self.shared
                .web_seeds
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        ok
    }
}

/// What a worker does next.
enum Turn {
    /// Go on at once.
    Again,
    /// Nothing to do for this long (or until something changes).
    Wait(Duration),
    /// The seed is dropped.
    Stop,
}
