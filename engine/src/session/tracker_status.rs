//! What each tracker of a torrent last said, for `capwise trackers`: when
//! it was last asked and answered, what it reported, and the last error.
//! Trackers a tier never reached (an earlier one answered) stay
//! "not contacted". Kept per URL in the order of the tiers (BEP 12).

use std::sync::Mutex;
use std::time::SystemTime;

use crate::tracker::AnnounceResponse;

/// One tracker's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerStatus {
    /// Its announce URL.
    pub url: String,
    /// Its tier (0 first).
    pub tier: usize,
    /// When it was last asked.
    pub last_announce: Option<SystemTime>,
    /// When it last answered.
    pub last_answer: Option<SystemTime>,
    /// Peers in its last answer.
    pub peers: Option<usize>,
    /// Seeders and leechers it reported last, if it did.
    pub seeders: Option<u32>,
    /// Leechers it reported last.
    pub leechers: Option<u32>,
    /// Seconds it asked between announces, last answer.
    pub interval_secs: Option<u64>,
    /// Why the last attempt failed (`None` when it answered).
    pub error: Option<String>,
    /// Its last warning message.
    pub warning: Option<String>,
}

/// The trackers' standings, shared by the announce task and the handle.
#[derive(Debug, Default)]
pub(crate) struct TrackerStatuses {
    list: Mutex<Vec<TrackerStatus>>,
}

impl TrackerStatuses {
    /// Every tracker of `tiers`, none contacted yet.
    pub(crate) fn new(tiers: &[Vec<String>]) -> TrackerStatuses {
        let list = tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, urls)| {
                urls.iter().map(move |url| TrackerStatus {
                    url: url.clone(),
                    tier,
                    last_announce: None,
                    last_answer: None,
                    peers: None,
                    seeders: None,
                    leechers: None,
                    interval_secs: None,
                    error: None,
                    warning: None,
                })
            })
            .collect();
        TrackerStatuses {
            list: Mutex::new(list),
        }
    }

    fn with(&self, url: &str, f: impl FnOnce(&mut TrackerStatus)) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = list.iter_mut().find(|s| s.url == url) {
            f(s);
        }
    }

    /// `url` answered with `resp`.
    pub(crate) fn answered(&self, url: &str, resp: &AnnounceResponse) {
        let now = SystemTime::now();
        self.with(url, |s| {
            s.last_announce = Some(now);
            s.last_answer = Some(now);
            s.peers = Some(resp.peers.len());
            s.seeders = resp.seeders;
            s.leechers = resp.leechers;
            s.interval_secs = Some(resp.interval.as_secs());
            s.error = None;
            s.warning = resp.warning.clone();
        });
    }

    /// Asking `url` failed with `error`.
    pub(crate) fn failed(&self, url: &str, error: &str) {
        let now = SystemTime::now();
        self.with(url, |s| {
            s.last_announce = Some(now);
            s.error = Some(error.to_string());
        });
    }

    /// Every tracker, tier by tier.
    pub(crate) fn snapshot(&self) -> Vec<TrackerStatus> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_and_failures_land_on_their_tracker_only() {
        let book = TrackerStatuses::new(&[
            vec!["http://a/announce".into(), "http://b/announce".into()],
            vec!["udp://c:6969".into()],
        ]);
        book.failed("http://a/announce", "connection refused");
        book.answered(
            "http://b/announce",
            &AnnounceResponse {
                interval: Duration::from_secs(1800),
                min_interval: None,
                peers: vec!["127.0.0.1:6881".parse().unwrap()],
                seeders: Some(3),
                leechers: Some(1),
                warning: None,
            },
        );
        book.failed("http://unknown/announce", "ignored");
        let list = book.snapshot();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].error.as_deref(), Some("connection refused"));
        assert!(list[0].last_answer.is_none());
        assert_eq!((list[1].peers, list[1].seeders), (Some(1), Some(3)));
        assert_eq!(list[1].interval_secs, Some(1800));
        assert_eq!((list[2].tier, list[2].last_announce), (1, None));
    }
}
