//! A subscription's WAN window (`capwise subscribe --wan-window
//! "22:00-06:00"`): outside it, the subscription's torrents move nothing
//! over the WAN and its manifest is not polled; LAN sharing goes on at any
//! time. The window only narrows the network's own schedule: the policy
//! decides first (its `wan` switch, gates and buckets), and the window can
//! only hold back more (the engine's `TorrentOptions::wan_window` switch is
//! ANDed with the session's).
//!
//! The syntax is the schedules' (`capwise schedule add --from --to
//! --days`), parsed by the same functions (`cli_schedule::parse_clock`,
//! `parse_days`), and judged by the policy's own [`Window::is_active`], in
//! the machine's time zone: `[DAYS ]HH:MM-HH:MM`, e.g. `22:00-06:00` or
//! `weekdays 19:00-07:00`; a window that ends at or before its start ends
//! the next day.
//!
//! [`Windows`] holds one engine [`Switch`] per subscription with a window,
//! and which torrents (by info-hash) belong to which subscription, so that
//! every torrent of the subscription gets that switch, whether a poll adds
//! it or the daemon restores it after a restart. One clock task flips the
//! switches at the windows' edges, sleeping until the nearest one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capwise_engine::hooks::Switch;
use capwise_policy::schedule::{Days, Rule, Window};
use capwise_policy::time::{Timestamp, Weekday};
use capwise_policy::zone::Zone;

use crate::cli_schedule::{parse_clock, parse_days};
use crate::torrent_db::TorrentDb;

/// Longest the clock sleeps without looking again (a changed system clock
/// or zone is noticed within this).
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How far ahead an edge is looked for: a window on one weekday opens
/// within a week.
const HORIZON_MINUTES: i64 = 8 * 1440;

/// A subscription's weekly WAN window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WanWindow {
    /// Days it starts on (bit 0 = Monday).
    pub days: u8,
    /// Start, minutes after local midnight.
    pub start: u16,
    /// End, minutes after local midnight (1440 = 24:00).
    pub end: u16,
}

impl WanWindow {
    /// Parses `[DAYS ]HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<WanWindow, String> {
        let text = text.trim();
        let (days, span) = match text.rsplit_once(char::is_whitespace) {
            Some((days, span)) => (parse_days(days)?, span),
            None => (Days::EVERY_DAY.0, text),
        };
        let (from, to) = span.split_once('-').ok_or_else(|| {
            format!("`{text}`: expected a window such as 22:00-06:00 or \"weekdays 19:00-07:00\"")
        })?;
        let start = parse_clock(from)?;
        if start >= 1440 {
            return Err(format!(
                "`{text}`: a window starts before 24:00 (00:00 is midnight)"
            ));
        }
        if days == 0 {
            return Err(format!("`{text}`: names no day"));
        }
        Ok(WanWindow {
            days,
            start,
            end: parse_clock(to)?,
        })
    }

    fn policy_window(&self) -> Window {
        Window {
            days: Days(self.days),
            start_minute: self.start,
            end_minute: self.end,
            // Not used: the window only says open or closed.
            rule: Rule::Free,
        }
    }

    /// Whether WAN traffic may move at `now` in `zone`.
    pub fn is_open(&self, now: Timestamp, zone: &Zone) -> bool {
        let local = zone.to_local(now);
        self.policy_window()
            .is_active(local.weekday, local.minute_of_day() as u16)
    }

    /// The first minute after `now` at which it opens or closes; `None`
    /// for a window that is always open (every day, 24 hours).
    pub fn next_change(&self, now: Timestamp, zone: &Zone) -> Option<Timestamp> {
        let open = self.is_open(now, zone);
        // Minute by minute on the wall clock, so a daylight saving change
        // moves the edge with the clock.
        let first = Timestamp((now.0.div_euclid(60) + 1) * 60);
        (0..HORIZON_MINUTES)
            .map(|m| first.plus_secs(m * 60))
            .find(|&t| self.is_open(t, zone) != open)
    }

    /// The stored and shown form: `22:00-06:00`, `weekdays 19:00-07:00`.
    pub fn text(&self) -> String {
        format!(
            "{}{}-{}",
            self.days_prefix(),
            clock(self.start),
            clock(self.end)
        )
    }

    /// As people read it: `22:00–06:00`.
    pub fn shown(&self) -> String {
        format!(
            "{}{}\u{2013}{}",
            self.days_prefix(),
            clock(self.start),
            clock(self.end)
        )
    }

    fn days_prefix(&self) -> String {
        match Days(self.days) {
            Days::EVERY_DAY => String::new(),
            Days::WEEKDAYS => "weekdays ".into(),
            Days::WEEKEND => "weekend ".into(),
            Days(mask) => {
                let names: Vec<&str> = Weekday::ALL
                    .iter()
                    .filter(|d| mask & (1 << d.index()) != 0)
                    .map(|d| short_day(*d))
                    .collect();
                format!("{} ", names.join(","))
            }
        }
    }

    /// Why it holds WAN traffic back at `now`, in plain words; `None` while
    /// it is open.
    pub fn holds_back(&self, now: Timestamp, zone: &Zone) -> Option<String> {
        if self.is_open(now, zone) {
            return None;
        }
        let next = match self.next_change(now, zone) {
            Some(t) => {
                let local = zone.to_local(t);
                let at = clock(local.minute_of_day() as u16);
                if t.0 - now.0 < 86_400 - 60 {
                    format!("; next opens at {at}")
                } else {
                    format!("; next opens {} {at}", short_day(local.weekday))
                }
            }
            None => String::new(),
        };
        Some(format!("outside its window {}{next}", self.shown()))
    }
}

fn short_day(day: Weekday) -> &'static str {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][day.index() as usize]
}

fn clock(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// What a stored window says now, for `channel list` and `why`: `None`
/// without a window or while it is open. A stored text that no longer
/// parses holds nothing back here; [`Windows::load`] logs it.
pub fn note(stored: Option<&str>, now: Timestamp) -> Option<String> {
    let window = WanWindow::parse(stored?).ok()?;
    window.holds_back(now, &Zone::system(now))
}

struct Entry {
    window: WanWindow,
    switch: Switch,
}

#[derive(Default)]
struct State {
    /// Subscription URL → its window and switch.
    subs: HashMap<String, Entry>,
    /// Info-hash (lowercase hex) → the subscription that added it.
    items: HashMap<String, String>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// A window was set or removed: the clock looks again.
    changed: tokio::sync::Notify,
}

/// The subscriptions' WAN windows and their switches (cheap to clone).
#[derive(Clone, Default)]
pub struct Windows(Arc<Inner>);

impl Windows {
    /// The windows and held items of every stored subscription: called
    /// before the stored torrents are restored, so each gets its switch.
    pub fn load(db: &TorrentDb) -> anyhow::Result<Windows> {
        let windows = Windows::default();
        for sub in super::store::all(db)? {
            for id in &sub.state.held {
                windows.assign(id, &sub.url);
            }
            match sub.wan_window.as_deref().map(WanWindow::parse) {
                None => {}
                Some(Ok(w)) => windows.set(&sub.url, Some(w)),
                Some(Err(error)) => {
                    tracing::error!(url = %sub.url, %error, "the stored WAN window does not parse; ignored")
                }
            }
        }
        Ok(windows)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (or with `None` removes) subscription `url`'s window. Its
    /// switch is kept, so running torrents follow the new window at once.
    pub fn set(&self, url: &str, window: Option<WanWindow>) {
        let now = Timestamp::now_from_system();
        let mut state = self.state();
        match window {
            Some(window) => {
                let open = window.is_open(now, &Zone::system(now));
                let entry = state.subs.entry(url.to_owned()).or_insert_with(|| Entry {
                    window,
                    switch: Switch::new(open),
                });
                entry.window = window;
                entry.switch.set(open);
            }
            None => {
                if let Some(old) = state.subs.remove(url) {
                    old.switch.set(true);
                }
            }
        }
        drop(state);
        self.0.changed.notify_one();
    }

    /// Forgets subscription `url` and its items (unsubscribed).
    pub fn forget(&self, url: &str) {
        self.set(url, None);
        self.state().items.retain(|_, u| u != url);
    }

    /// Torrent `info_hash` belongs to subscription `url` (before it is
    /// added, so that it starts with the window's switch); false if it
    /// belonged to a subscription already (which keeps it).
    pub fn assign(&self, info_hash: &str, url: &str) -> bool {
        let mut state = self.state();
        let id = info_hash.to_ascii_lowercase();
        if state.items.contains_key(&id) {
            return false;
        }
        state.items.insert(id, url.to_owned());
        true
    }

    /// Torrent `info_hash` no longer belongs to a subscription.
    pub fn unassign(&self, info_hash: &str) {
        self.state().items.remove(&info_hash.to_ascii_lowercase());
    }

    /// The WAN window switch for torrent `info_hash`, if its subscription
    /// has a window.
    pub fn switch_for(&self, info_hash: &str) -> Option<Switch> {
        let state = self.state();
        let url = state.items.get(&info_hash.to_ascii_lowercase())?;
        state.subs.get(url).map(|e| e.switch.clone())
    }

    /// The switch of subscription `url` while its window is closed.
    pub fn closed(&self, url: &str) -> Option<(WanWindow, Switch)> {
        let state = self.state();
        let entry = state.subs.get(url)?;
        (!entry.switch.is_on()).then(|| (entry.window, entry.switch.clone()))
    }

    /// Flips every switch to what its window says at `now`; returns the
    /// nearest edge after `now`.
    pub fn tick(&self, now: Timestamp, zone: &Zone) -> Option<Timestamp> {
        let state = self.state();
        let mut next: Option<Timestamp> = None;
        for (url, e) in &state.subs {
            let open = e.window.is_open(now, zone);
            if open != e.switch.is_on() {
                tracing::info!(%url, window = %e.window.shown(), open, "subscription WAN window");
            }
            e.switch.set(open);
            if let Some(t) = e.window.next_change(now, zone) {
                next = Some(next.map_or(t, |n: Timestamp| Timestamp(n.0.min(t.0))));
            }
        }
        next
    }

    /// Runs the clock: flips the switches at the windows' edges (the task
    /// sleeps until the nearest, at most an hour, or until a window is set).
    pub fn follow_clock(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let now = Timestamp::now_from_system();
                let next = me.tick(now, &Zone::system(now));
                let sleep = next
                    .map(|t| Duration::from_secs((t.0 - now.0).max(1) as u64))
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP);
                tokio::select! {
                    // A little after the edge, so the minute has turned.
                    _ = tokio::time::sleep(sleep + Duration::from_millis(200)) => {}
                    _ = me.0.changed.notified() => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
