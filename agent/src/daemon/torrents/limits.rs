//! A torrent's own rate limits (`capwise set ID --up RATE --down RATE`):
//! token buckets the engine asks before the session's gate
//! (`TorrentOptions::gate`), so they only ever narrow what the policy and
//! the global limits allow. Kept in the settings table under
//! `limits:<info-hash>`, changed live.

use std::sync::Arc;

use capwise_engine::hooks::{ByteGate, Direction, GateFuture, PeerClass};
use capwise_policy::bucket::Throttle;
use capwise_policy::decision::Allowance;

use super::{TorrentError, Torrents};
use crate::api_types::{Limits, TorrentView};

fn setting_key(id: &str) -> String {
    format!("limits:{id}")
}

fn allowance(rate: Option<u64>) -> Allowance {
    rate.map(Allowance::rate).unwrap_or(Allowance::Unlimited)
}

/// One torrent's buckets, one per direction, for all its peers and web seeds.
pub struct TorrentLimit {
    up: Throttle,
    down: Throttle,
    limits: std::sync::Mutex<Limits>,
}

impl TorrentLimit {
    /// Buckets for `limits` (`None`: unlimited).
    pub fn new(limits: Limits) -> Arc<TorrentLimit> {
        Arc::new(TorrentLimit {
            up: Throttle::new(allowance(limits.up)),
            down: Throttle::new(allowance(limits.down)),
            limits: std::sync::Mutex::new(limits),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, limits: Limits) {
        self.up.set_allowance(allowance(limits.up));
        self.down.set_allowance(allowance(limits.down));
        *self.limits.lock().unwrap_or_else(|e| e.into_inner()) = limits;
    }
}

impl ByteGate for TorrentLimit {
    fn acquire(&self, direction: Direction, _: PeerClass, bytes: u64) -> GateFuture<'_> {
        let bucket = match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        };
        Box::pin(bucket.acquire(bytes))
    }
}

impl Torrents {
    /// Torrent `id`'s stored limits (none when unreadable: the log says so).
    pub(super) fn stored_limits(&self, id: &str) -> Limits {
        match self.db.setting(&setting_key(id)) {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|error| {
                tracing::error!(%id, %error, "stored torrent limits do not parse; none applied");
                Limits::default()
            }),
            Ok(None) => Limits::default(),
            Err(error) => {
                tracing::error!(%id, %error, "cannot read the torrent's limits");
                Limits::default()
            }
        }
    }

    /// Changes the limits `change` names (0 removes one), at once and for
    /// later starts; answers the torrent.
    pub fn set_limits(&self, id: &str, change: Limits) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        let limit = self
            .entries()
            .get(&id)
            .map(|e| e.limit.clone())
            .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
        let mut limits = limit.limits();
        if let Some(up) = change.up {
            limits.up = (up > 0).then_some(up);
        }
        if let Some(down) = change.down {
            limits.down = (down > 0).then_some(down);
        }
        let text = (limits != Limits::default())
            .then(|| serde_json::to_string(&limits))
            .transpose()
            .map_err(|e| TorrentError::Internal(e.into()))?;
        self.db
            .set_setting(&setting_key(&id), text.as_deref())
            .map_err(TorrentError::Internal)?;
        limit.set(limits);
        tracing::info!(%id, up = ?limits.up, down = ?limits.down, "torrent limits changed");
        self.get(&id)
    }

    /// Forgets a removed torrent's limits.
    pub(super) fn forget_limits(&self, id: &str) {
        if let Err(error) = self.db.set_setting(&setting_key(id), None) {
            tracing::warn!(%id, %error, "cannot forget the torrent's limits");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// 1 MB at 100 kB/s cannot pass in half a second, uploads are not
    /// held by the download limit, and lifting the limit lets bytes through.
    #[tokio::test]
    async fn a_torrent_limit_holds_its_direction_only_and_changes_live() {
        let limit = TorrentLimit::new(Limits {
            up: None,
            down: Some(100_000),
        });
        let slow = tokio::time::timeout(
            Duration::from_millis(500),
            limit.acquire(Direction::Down, PeerClass::Wan, 1_000_000),
        )
        .await;
        assert!(slow.is_err(), "1 MB passed a 100 kB/s limit in 0.5 s");
        let t = Instant::now();
        limit
            .acquire(Direction::Up, PeerClass::Wan, 1_000_000)
            .await;
        assert!(t.elapsed() < Duration::from_millis(200));
        limit.set(Limits::default());
        tokio::time::timeout(
            Duration::from_millis(500),
            limit.acquire(Direction::Down, PeerClass::Lan, 1_000_000),
        )
        .await
        .expect("unlimited once lifted");
    }
}
