//! Channel subscriptions, the subscriber's side of `capwise-channel`: the
//! daemon owns one poller task per subscription (`poller.rs`: fetch,
//! verify, carry out), stored in `capwise.db` (`store.rs`) so they survive
//! restarts; `fetch.rs` is the bounded HTTP GET, `words.rs` a refusal in
//! plain words, `window.rs` a subscription's WAN window. The CLI reaches
//! them through the API (`/v1/subscriptions`).
//!
//! **Invariant:** a poll and an unsubscribe never overlap (each
//! subscription's `busy` lock), so an unsubscribe removes every torrent
//! the subscription added, including one a poll was adding.

pub mod fetch;
pub mod poller;
pub mod report;
pub mod store;
pub mod window;
mod words;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capwise_channel::url::Url;
use capwise_channel::PublicKey;
use capwise_policy::time::Timestamp;

use crate::api_types::{HeldItem, SubscribeRequest, SubscriptionView};
use crate::daemon::torrents::TorrentError;
use poller::Context;
use store::{StoreError, Subscription};

/// Poll interval when none is given.
pub const DEFAULT_INTERVAL_SECS: u64 = 15 * 60;
/// Shortest poll interval (tests poll every few seconds; a publisher's
/// server should not see more).
pub const MIN_INTERVAL_SECS: u64 = 2;
/// Longest poll interval: a week.
pub const MAX_INTERVAL_SECS: u64 = 7 * 86_400;

/// Why a subscription request failed; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// Not subscribed to that URL.
    #[error("not subscribed to {0}")]
    NotFound(String),
    /// Subscribed already.
    #[error("{0}")]
    Exists(String),
    /// A bad URL, key, directory or interval.
    #[error("{0}")]
    Invalid(String),
    /// The database or the engine failed.
    #[error("{}", crate::commands::output::error_chain(.0))]
    Internal(anyhow::Error),
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    busy: Arc<tokio::sync::Mutex<()>>,
}

/// The daemon's subscriptions and their pollers.
pub struct Subscriptions {
    ctx: Arc<Context>,
    running: Mutex<HashMap<String, Running>>,
}

impl Subscriptions {
    /// No poller runs until [`Subscriptions::resume_all`].
    pub fn new(ctx: Context) -> Arc<Self> {
        Arc::new(Subscriptions {
            ctx: Arc::new(ctx),
            running: Mutex::new(HashMap::new()),
        })
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a poller for every stored subscription (after the stored
    /// torrents are restored, so their items are known as held).
    pub fn resume_all(&self) {
        match store::all(&self.ctx.db) {
            Ok(all) => {
                for s in all {
                    self.spawn(&s.url, s.interval_secs);
                }
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot read the subscriptions")
            }
        }
    }

    fn spawn(&self, url: &str, interval_secs: u64) {
        let busy = Arc::new(tokio::sync::Mutex::new(()));
        let task = tokio::spawn(poll_forever(
            self.ctx.clone(),
            url.to_owned(),
            Duration::from_secs(interval_secs.max(MIN_INTERVAL_SECS)),
            busy.clone(),
        ));
        if let Some(old) = self
            .running()
            .insert(url.to_owned(), Running { task, busy })
        {
            old.task.abort();
        }
    }

    /// Stores a new subscription and polls it at once.
    pub fn subscribe(
        &self,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionView, SubscriptionError> {
        let url = check_url(&request.url)?;
        let key = PublicKey::from_hex(&request.key)
            .map_err(|e| SubscriptionError::Invalid(format!("--key: {e}")))?;
        let dir = request.download_dir.as_deref().map(PathBuf::from);
        if dir.as_ref().is_some_and(|d| !d.is_absolute()) {
            return Err(SubscriptionError::Invalid(
                "the download directory must be absolute".into(),
            ));
        }
        let interval = request.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS);
        if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&interval) {
            return Err(SubscriptionError::Invalid(format!(
                "the poll interval is {MIN_INTERVAL_SECS} s to {MAX_INTERVAL_SECS} s (a week), not {interval}"
            )));
        }
        let token = match request.token.as_deref() {
            Some(text) => Some(
                crate::daemon::torrents::parse_token(text)
                    .map_err(|e| SubscriptionError::Invalid(format!("--token: {e}")))?
                    .to_hex(),
            ),
            None => None,
        };
        let mut sub = Subscription::new(
            url.to_string(),
            key.to_hex(),
            dir,
            request.background,
            interval,
        );
        sub.token = token;
        let window = match request.wan_window.as_deref() {
            Some(text) => Some(
                window::WanWindow::parse(text)
                    .map_err(|e| SubscriptionError::Invalid(format!("--wan-window: {e}")))?,
            ),
            None => None,
        };
        sub.wan_window = window.map(|w| w.text());
        store::insert(&self.ctx.db, &sub, Timestamp::now_from_system().0).map_err(|e| match e {
            StoreError::Exists(_) => SubscriptionError::Exists(e.to_string()),
            StoreError::Db(e) => SubscriptionError::Internal(e),
        })?;
        tracing::info!(url = %sub.url, key = %sub.key, interval, wan_window = ?sub.wan_window, "subscribed");
        if window.is_some() {
            self.ctx.windows.set(&sub.url, window);
        }
        self.spawn(&sub.url, interval);
        Ok(view(&sub))
    }

    /// Stops polling, removes the torrents the subscription added (their
    /// data too with `delete_data`) and forgets it.
    pub async fn unsubscribe(&self, url: &str, delete_data: bool) -> Result<(), SubscriptionError> {
        let url = check_url(url)?.to_string();
        let sub = store::get(&self.ctx.db, &url)
            .map_err(SubscriptionError::Internal)?
            .ok_or_else(|| SubscriptionError::NotFound(url.clone()))?;
        let running = self.running().remove(&url);
        let _idle = match &running {
            Some(r) => {
                let guard = r.busy.clone().lock_owned().await;
                r.task.abort();
                Some(guard)
            }
            None => None,
        };
        // Read again: a poll that just finished may have added items.
        let held = store::get(&self.ctx.db, &url)
            .map_err(SubscriptionError::Internal)?
            .map_or(sub.state.held, |s| s.state.held);
        for id in &held {
            match self.ctx.torrents.remove(id, delete_data).await {
                Ok(()) | Err(TorrentError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(%url, %id, error = %e, "cannot remove a channel's torrent")
                }
            }
        }
        store::delete(&self.ctx.db, &url).map_err(SubscriptionError::Internal)?;
        self.ctx.windows.forget(&url);
        tracing::info!(%url, removed = held.len(), delete_data, "unsubscribed");
        Ok(())
    }

    /// Every subscription as the API shows it.
    pub fn list(&self) -> Result<Vec<SubscriptionView>, SubscriptionError> {
        let all = store::all(&self.ctx.db).map_err(SubscriptionError::Internal)?;
        Ok(all.iter().map(view).collect())
    }

    /// Stops every poller (at shutdown), letting a poll under way finish
    /// for up to `grace` in all, so that a torrent it adds is recorded held.
    pub async fn stop(&self, grace: Duration) {
        let running: Vec<Running> = self.running().drain().map(|(_, r)| r).collect();
        let deadline = tokio::time::Instant::now() + grace;
        for r in running {
            let idle = tokio::time::timeout_at(deadline, r.busy.clone().lock_owned()).await;
            r.task.abort();
            drop(idle);
        }
    }
}

async fn poll_forever(
    ctx: Arc<Context>,
    url: String,
    interval: Duration,
    busy: Arc<tokio::sync::Mutex<()>>,
) {
    loop {
        {
            let _polling = busy.lock().await;
            poller::poll(&ctx, &url).await;
        }
        // A poll held back by the subscription's window is made as soon as
        // the window opens, not an interval later.
        match ctx.windows.closed(&url) {
            Some((_, switch)) => {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = switch.until_on() => {}
                }
            }
            None => tokio::time::sleep(interval).await,
        }
    }
}

/// A manifest URL: http or https, with a host, no user name or password.
fn check_url(text: &str) -> Result<Url, SubscriptionError> {
    let bad = |why: &str| SubscriptionError::Invalid(format!("{text:?} {why}"));
    let url = Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("is not an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "has a user name or password; capwise does not send them",
        ));
    }
    Ok(url)
}

/// A stored subscription as the API shows it.
pub fn view(s: &Subscription) -> SubscriptionView {
    SubscriptionView {
        url: s.url.clone(),
        key: s.key.clone(),
        download_dir: s.download_dir.as_ref().map(|d| d.display().to_string()),
        background: s.background,
        interval_secs: s.interval_secs,
        last_sequence: s.state.last_sequence,
        polled_at: s.polled_at,
        outcome: s.outcome.clone().unwrap_or_else(|| "pending".into()),
        result: s.result.clone().unwrap_or_else(|| "not polled yet".into()),
        items: {
            let mut items: Vec<HeldItem> = s
                .names
                .iter()
                .map(|(info_hash, name)| HeldItem {
                    info_hash: info_hash.clone(),
                    name: name.clone(),
                })
                .collect();
            items.sort_by(|a, b| a.name.cmp(&b.name).then(a.info_hash.cmp(&b.info_hash)));
            items
        },
        wan_window: s.wan_window.clone(),
        wan_held: window::note(s.wan_window.as_deref(), Timestamp::now_from_system()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_urls_are_http_with_a_host_and_no_credentials() {
        assert!(check_url("https://hq.example/ch/manifest.json").is_ok());
        for bad in [
            "ftp://hq/x",
            "file:///etc/passwd",
            "https://u:p@hq/x",
            "manifest.json",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
