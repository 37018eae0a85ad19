//! `GET /v1/events`: server-sent events of what changed. Each open stream
//! looks at the torrents and the decision every second and at this
//! period's usage every 5 s, and sends only what differs from what it sent
//! last (the first look sends everything). Nothing runs without an open
//! stream: an idle agent with no page open does no extra work.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use crate::daemon::api::ApiState;

/// How often a stream looks at the torrents and the decision.
const TICK: Duration = Duration::from_secs(1);
/// Looks between two reads of the usage (a database read).
const USAGE_EVERY: u32 = 5;
/// Streams open at once: each holds the last JSON it sent.
pub const MAX_STREAMS: usize = 16;

/// One open stream's memory of what it sent.
struct Feed {
    state: Arc<ApiState>,
    state_dir: PathBuf,
    tick: tokio::time::Interval,
    ticks: u32,
    torrents: String,
    why: String,
    usage: String,
    queue: VecDeque<Event>,
    _slot: Slot,
}

/// A place among the [`MAX_STREAMS`]; given back when the stream is dropped
/// (the client went away).
struct Slot(Arc<ApiState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.dashboard.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

fn take_slot(state: &Arc<ApiState>) -> Option<Slot> {
    let streams: &AtomicUsize = &state.dashboard.streams;
    streams
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_STREAMS).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(state.clone()))
}

impl Feed {
    /// Queues an event if `json` differs from what was sent last as `name`.
    fn offer(queue: &mut VecDeque<Event>, last: &mut String, name: &str, json: String) {
        if *last != json {
            queue.push_back(Event::default().event(name).data(&json));
            *last = json;
        }
    }

    async fn look(&mut self) {
        let torrents = serde_json::to_string(&self.state.torrents.list()).unwrap_or_default();
        Self::offer(&mut self.queue, &mut self.torrents, "torrents", torrents);
        let why = serde_json::to_string(&self.state.control.why()).unwrap_or_default();
        let why_changed = why != self.why;
        Self::offer(&mut self.queue, &mut self.why, "why", why);
        // The usage follows the network: read it at once when that changes.
        if self.ticks.is_multiple_of(USAGE_EVERY) || why_changed {
            let dir = self.state_dir.clone();
            let read = tokio::task::spawn_blocking(move || super::data::usage_json(&dir)).await;
            if let Ok(Ok(usage)) = read {
                let usage = serde_json::to_string(&usage).unwrap_or_default();
                Self::offer(&mut self.queue, &mut self.usage, "usage", usage);
            }
        }
        self.ticks = self.ticks.wrapping_add(1);
    }
}

/// `GET /v1/events`: `torrents` (as `GET /v1/torrents`), `why` (as `GET
/// /v1/why`) and `usage` (as `GET /v1/usage`) events, each when it changed.
pub(super) async fn events(State(s): State<Arc<ApiState>>) -> Response {
    let Some(slot) = take_slot(&s) else {
        return super::api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("at most {MAX_STREAMS} event streams are open at once"),
        );
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        state_dir: PathBuf::from(s.control.info().state_dir),
        state: s,
        tick,
        ticks: 0,
        torrents: String::new(),
        why: String::new(),
        usage: String::new(),
        queue: VecDeque::new(),
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.queue.pop_front() {
                return Some((Ok::<_, Infallible>(event), feed));
            }
            feed.tick.tick().await;
            feed.look().await;
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
