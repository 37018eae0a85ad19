//! Queueing: at most `[queue] max_active_downloads` torrents download and
//! at most `max_active_seeds` seed at a time; the others wait their turn
//! in one order that the user rearranges (`capwise queue ID --move top`)
//! and that outlives a restart (the `queue_position` column).
//!
//! One function decides which torrents run, [`Torrents::settle`]: a torrent
//! runs when the user, the policy and its seeding goals let it and the
//! queue has room for its kind; the engine is told only of changes. Every
//! path that changes one of those inputs (add, pause, the policy, a goal,
//! a download that finishes, a move in the queue) settles afterwards, and
//! the seeding tick settles every two seconds in any case.
//!
//! A torrent that is out of the session (`recheck`, `move`) or stopped by
//! an error takes no place: an error would otherwise hold a slot for good.

use capwise_engine::session::{TorrentHandle, TorrentState};

use super::{Entry, TorrentError, Torrents};
use crate::api_types::{QueueMove, TorrentView};

/// `[queue]`: how many torrents may download and seed at once (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Torrents downloading (or fetching metadata) at once.
    pub downloads: Option<usize>,
    /// Torrents seeding at once.
    pub seeds: Option<usize>,
}

impl Default for QueueLimits {
    /// Five downloads, as Transmission: more only split the same link;
    /// seeds unlimited (the policy and the seeding goals govern seeding).
    fn default() -> Self {
        QueueLimits {
            downloads: Some(DEFAULT_MAX_ACTIVE_DOWNLOADS),
            seeds: None,
        }
    }
}

/// `[queue] max_active_downloads` when the config says nothing.
pub const DEFAULT_MAX_ACTIVE_DOWNLOADS: usize = 5;

impl QueueLimits {
    /// From the config's numbers, where 0 means no limit.
    pub fn from_config(downloads: Option<usize>, seeds: Option<usize>) -> Self {
        let limit = |n: usize| (n > 0).then_some(n);
        QueueLimits {
            downloads: downloads.map_or(Self::default().downloads, limit),
            seeds: seeds.and_then(limit),
        }
    }

    /// Whether any kind is limited: then torrents start paused and the
    /// queue lets them go, so none runs for a moment out of turn.
    pub(super) fn any(&self) -> bool {
        self.downloads.is_some() || self.seeds.is_some()
    }
}

/// What a running torrent would be doing, for the slot it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Download,
    Seed,
}

/// Why a torrent waits in the queue, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Queued {
    pub(super) kind: Kind,
    /// 1 for the next to go, among those of its kind.
    pub(super) line: usize,
}

fn kind_of(handle: &TorrentHandle) -> Option<Kind> {
    let p = handle.progress();
    match p.state {
        TorrentState::Error(_) => None,
        TorrentState::FetchingMetadata => Some(Kind::Download),
        _ if p.wanted_length > 0 && p.wanted_have >= p.wanted_length => Some(Kind::Seed),
        _ => Some(Kind::Download),
    }
}

impl Entry {
    /// Whether it takes (or waits for) a place in the queue.
    fn wants_a_place(&self) -> bool {
        self.should_run() && !self.moving && !self.rechecking
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

impl Torrents {
    /// The queue's limits (from the config).
    pub fn with_queue_limits(mut self, limits: QueueLimits) -> Self {
        self.queue_limits = limits;
        self
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a torrent at the end of the queue unless it has a place (one
    /// started again by `recheck` or `move` keeps its own).
    pub(super) fn enqueue(&self, id: &str) {
        let mut queue = self.queue();
        if !queue.iter().any(|q| q == id) {
            queue.push(id.to_string());
        }
    }

    /// The queue as stored, before a restore (which opens torrents in
    /// parallel, finishing in any order).
    pub(super) fn queue_in_order(&self, ids: Vec<String>) {
        *self.queue() = ids;
    }

    /// After a restore: those that could not be opened leave the queue,
    /// and the others take their places.
    pub(super) async fn restored(&self) {
        {
            let entries = self.entries();
            self.queue().retain(|id| entries.contains_key(id));
        }
        self.settle_now().await;
    }

    /// Takes a removed torrent out of the queue.
    pub(super) fn dequeue(&self, id: &str) {
        self.queue().retain(|q| q != id);
    }

    /// Its place in the whole queue, 1 for the first.
    pub(super) fn queue_position(&self, id: &str) -> usize {
        self.queue()
            .iter()
            .position(|q| q == id)
            .map_or(0, |i| i + 1)
    }

    /// The sentence a queued torrent shows.
    pub(super) fn queued_reason(&self, queued: Queued) -> String {
        let (limit, what, key) = match queued.kind {
            Kind::Download => (
                self.queue_limits.downloads,
                "download",
                "max_active_downloads",
            ),
            Kind::Seed => (self.queue_limits.seeds, "seed", "max_active_seeds"),
        };
        let limit = limit.unwrap_or(0);
        format!(
            "queued: {limit} {} {what} at a time ([queue] {key}); it is {} in line \
             (capwise queue ID --move top lets it go first)",
            if limit == 1 {
                "torrent may"
            } else {
                "torrents may"
            },
            ordinal(queued.line),
        )
    }

    /// Decides which torrents run: in queue order, each that wants to run
    /// takes a place of its kind while there is one. Returns the handles
    /// whose run state changes, to be told outside the lock.
    pub(super) fn settle(&self) -> Vec<(TorrentHandle, bool)> {
        let mut entries = self.entries();
        let order = self.queue().clone();
        let (mut downloads, mut seeds) = (0usize, 0usize);
        let (mut downloads_waiting, mut seeds_waiting) = (0usize, 0usize);
        let mut changes = Vec::new();
        for id in &order {
            let Some(entry) = entries.get_mut(id) else {
                continue;
            };
            if entry.moving || entry.rechecking {
                continue;
            }
            entry.queued = None;
            if entry.wants_a_place() {
                let kind = kind_of(&entry.handle);
                let (taken, limit, waiting) = match kind {
                    Some(Kind::Download) => (
                        &mut downloads,
                        self.queue_limits.downloads,
                        &mut downloads_waiting,
                    ),
                    Some(Kind::Seed) => (&mut seeds, self.queue_limits.seeds, &mut seeds_waiting),
                    None => {
                        // An error takes no place; it runs as the user left it.
                        Self::change(entry, true, &mut changes);
                        continue;
                    }
                };
                if limit.is_some_and(|limit| *taken >= limit) {
                    *waiting += 1;
                    entry.queued = kind.map(|kind| Queued {
                        kind,
                        line: *waiting,
                    });
                } else {
                    *taken += 1;
                }
            }
            let run = entry.wants_a_place() && entry.queued.is_none();
            Self::change(entry, run, &mut changes);
        }
        changes
    }

    fn change(entry: &mut Entry, run: bool, changes: &mut Vec<(TorrentHandle, bool)>) {
        if entry.running != run {
            entry.running = run;
            changes.push((entry.handle.clone(), run));
        }
    }

    /// [`Torrents::settle`], and the engine told.
    pub(super) async fn settle_now(&self) {
        for (handle, run) in self.settle() {
            if run {
                handle.resume().await;
            } else {
                handle.pause().await;
            }
        }
    }

    /// Moves a torrent in the queue (`capwise queue ID --move top`); kept
    /// across restarts, and the queue settles at once.
    pub async fn move_in_queue(
        &self,
        id: &str,
        to: QueueMove,
    ) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        let order = {
            let mut queue = self.queue();
            let from = queue
                .iter()
                .position(|q| *q == id)
                .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
            let last = queue.len() - 1;
            let at = match to {
                QueueMove::Top => 0,
                QueueMove::Up => from.saturating_sub(1),
                QueueMove::Down => (from + 1).min(last),
                QueueMove::Bottom => last,
            };
            let moved = queue.remove(from);
            queue.insert(at, moved);
            queue.clone()
        };
        self.db
            .set_queue_order(&order)
            .map_err(TorrentError::Internal)?;
        self.settle_now().await;
        self.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use capwise_engine::create::{create_torrent, CreateOptions};
    use capwise_engine::hooks::{ByteGate, Direction, GateFuture, PeerClass};
    use capwise_engine::metainfo::Metainfo;
    use capwise_engine::session::{Hooks, Session, SessionConfig, TorrentOptions};

    use crate::torrent_db::TorrentDb;

    /// Downloads wait while it is shut; uploads always go.
    struct Valve(tokio::sync::watch::Sender<bool>);

    impl ByteGate for Valve {
        fn acquire(&self, direction: Direction, _: PeerClass, _: u64) -> GateFuture<'_> {
            let mut open = self.0.subscribe();
            Box::pin(async move {
                if direction == Direction::Down {
                    let _ = open.wait_for(|open| *open).await;
                }
            })
        }
    }

    fn loopback() -> SessionConfig {
        SessionConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..SessionConfig::default()
        }
    }

    fn states(torrents: &Torrents, ids: &[&str]) -> Vec<String> {
        ids.iter()
            .map(|id| torrents.get(id).unwrap().state)
            .collect()
    }

    /// One download and one seed at a time: the second torrent queues and
    /// says why; moving it to the top or pausing the first lets it go; once
    /// the valve opens both complete one after the other, never together;
    /// the second seed queues; the order outlives a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_at_a_time_in_the_order_the_user_gave() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let seeder = Session::start(loopback(), Hooks::default()).await.unwrap();
        let mut sources = Vec::new();
        for (name, fill) in [("a.bin", 1u8), ("b.bin", 2u8)] {
            let data = src.join(name);
            std::fs::write(&data, vec![fill; 1 << 20]).unwrap();
            let bytes = create_torrent(&CreateOptions {
                path: data,
                ..CreateOptions::default()
            })
            .unwrap();
            let meta = Metainfo::from_bytes(&bytes).unwrap();
            seeder
                .add_torrent(meta, src.clone(), TorrentOptions::default())
                .await
                .unwrap();
            sources.push(bytes);
        }
        let (valve, _) = tokio::sync::watch::channel(false);
        let valve = Arc::new(Valve(valve));
        let hooks = Hooks {
            gate: valve.clone(),
            ..Hooks::default()
        };
        let session = Session::start(loopback(), hooks).await.unwrap();
        let db_path = dir.path().join("capwise.db");
        let limits = QueueLimits {
            downloads: Some(1),
            seeds: Some(1),
        };
        let torrents = Arc::new(
            Torrents::new(
                session.clone(),
                Arc::new(TorrentDb::open(&db_path).unwrap()),
                true,
            )
            .with_queue_limits(limits)
            .with_manual_peers(vec![seeder.local_addr()]),
        );
        let leech = dir.path().join("leech");
        let a = torrents
            .add(sources[0].clone(), leech.clone(), false, false)
            .await
            .unwrap();
        let b = torrents
            .add(sources[1].clone(), leech.clone(), false, false)
            .await
            .unwrap();
        let ids = [a.id.as_str(), b.id.as_str()];
        assert_eq!(states(&torrents, &ids), ["downloading", "queued"]);
        let waiting = torrents.get(&b.id).unwrap();
        let reason = waiting.reason.unwrap_or_default();
        assert!(
            reason.contains("1 torrent may download at a time") && reason.contains("1st in line"),
            "{reason}"
        );
        assert_eq!((a.queue_position, waiting.queue_position), (1, 2));

        let moved = torrents.move_in_queue(&b.id, QueueMove::Top).await.unwrap();
        assert_eq!(moved.queue_position, 1);
        assert_eq!(states(&torrents, &ids), ["queued", "downloading"]);
        torrents.set_paused(&b.id, true).await.unwrap();
        assert_eq!(states(&torrents, &ids), ["downloading", "paused"]);
        torrents.set_paused(&b.id, false).await.unwrap();
        assert_eq!(states(&torrents, &ids), ["queued", "downloading"]);

        // The valve opens; the queue settles as the seeding tick would.
        valve.0.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            torrents.settle_now().await;
            let now = states(&torrents, &ids);
            assert!(
                now.iter().filter(|s| *s == "downloading").count() <= 1,
                "two downloads at once: {now:?}"
            );
            if seen.last() != Some(&now) {
                seen.push(now.clone());
            }
            let a_view = torrents.get(&a.id).unwrap();
            if a_view.wanted_have == a_view.wanted_length && now[1] == "seeding" {
                break;
            }
            assert!(Instant::now() < deadline, "never both complete: {seen:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        torrents.settle_now().await;
        // B finished first and seeds; A, complete too, waits for a seed's place.
        assert_eq!(states(&torrents, &ids), ["queued", "seeding"], "{seen:?}");
        let reason = torrents.get(&a.id).unwrap().reason.unwrap_or_default();
        assert!(reason.contains("may seed at a time"), "{reason}");
        session.shutdown().await;
        torrents.release_all();

        // Restarted: B is still first.
        let session = Session::start(loopback(), Hooks::default()).await.unwrap();
        let db = Arc::new(TorrentDb::open(&db_path).unwrap());
        let again =
            Arc::new(Torrents::new(session.clone(), db.clone(), true).with_queue_limits(limits));
        again.restore_all(db.torrents().unwrap(), 4).await;
        assert_eq!(again.get(&b.id).unwrap().queue_position, 1);
        assert_eq!(states(&again, &ids), ["queued", "seeding"]);
        session.shutdown().await;
        seeder.shutdown().await;
    }

    #[test]
    fn zero_lifts_a_limit_and_silence_keeps_the_default() {
        assert_eq!(QueueLimits::from_config(None, None), QueueLimits::default());
        assert_eq!(
            QueueLimits::from_config(Some(0), Some(3)),
            QueueLimits {
                downloads: None,
                seeds: Some(3)
            }
        );
        assert!(!QueueLimits::from_config(Some(0), Some(0)).any());
    }

    #[test]
    fn places_read_as_words() {
        let words: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            words,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
