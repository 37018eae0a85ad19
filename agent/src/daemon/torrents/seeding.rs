//! Seeding goals: a torrent stops seeding once it has given back a ratio
//! of what it took (`capwise set ID --ratio 2.0`) or has seeded for a time
//! (`--seed-time 7d`), per torrent or by the config's `[seeding]` defaults.
//! The goals count every upload, to the LAN as much as to the internet: a
//! metered network already keeps WAN seeding off, and LAN seeding on it
//! obeys the goals like any other.
//!
//! A goal needs lifetime totals, which the engine does not keep (its
//! counters start at zero with each run): they are kept here, per
//! torrent, under `totals:<info-hash>` in the settings table, saved every
//! [`SAVE_EVERY`] and at a clean stop. The goals themselves are under
//! `goals:<info-hash>`, as the words the user gave ("2.0", "none").

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capwise_engine::session::{TorrentHandle, TorrentState};
use serde::{Deserialize, Serialize};

use super::{TorrentError, Torrents};
use crate::api_types::{SeedGoalsChange, SeedingView, TorrentView};

fn goals_key(id: &str) -> String {
    format!("goals:{id}")
}

fn totals_key(id: &str) -> String {
    format!("totals:{id}")
}

/// How often the totals are brought up to date and the goals checked.
const TICK: Duration = Duration::from_secs(2);
/// How often changed totals are written; a kill -9 loses at most this much
/// counting, never data.
const SAVE_EVERY: Duration = Duration::from_secs(30);

/// One goal as the user set it: none (seed on), or a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal<T> {
    /// Seed without this limit, whatever the config says.
    Never,
    /// Stop at this value.
    At(T),
}

/// The config's `[seeding]` defaults, for torrents without their own.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SeedDefaults {
    /// Stop at this ratio.
    pub ratio: Option<f64>,
    /// Stop after seeding this long.
    pub seed_time: Option<Duration>,
}

/// Parses a ratio goal: a number ("2", "1.5"), "none", or "default"
/// (`Ok(None)`: the config's).
pub fn parse_ratio(text: &str) -> Result<Option<Goal<f64>>, String> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "default" => Ok(None),
        "none" | "never" | "off" | "unlimited" => Ok(Some(Goal::Never)),
        _ => match t.parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.0 => Ok(Some(Goal::At(r))),
            _ => Err(format!(
                "{text:?} is not a ratio: give a number such as 2.0, `none` or `default`"
            )),
        },
    }
}

/// Parses a seeding-time goal: a duration ("7d", "12h", "90m"), "none", or
/// "default" (`Ok(None)`).
pub fn parse_seed_time(text: &str) -> Result<Option<Goal<Duration>>, String> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "default" => Ok(None),
        "none" | "never" | "off" | "unlimited" => Ok(Some(Goal::Never)),
        _ => humantime::parse_duration(&t)
            .map(|d| Some(Goal::At(d)))
            .map_err(|e| {
                format!(
                    "{text:?} is not a seeding time ({e}): give e.g. 7d, 12h, `none` or `default`"
                )
            }),
    }
}

/// A torrent's goals as stored: the user's words, absent for the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StoredGoals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ratio: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed_time: Option<String>,
}

/// Lifetime figures, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Totals {
    /// Payload sent, all runs.
    uploaded: u64,
    /// Payload received, all runs.
    downloaded: u64,
    /// Time spent seeding (not paused), milliseconds.
    seeding_ms: u64,
    /// Why it stopped seeding, once a goal is met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    finished: Option<String>,
}

impl Totals {
    /// Uploaded over what it took: the bytes downloaded, or (seeded from
    /// data already here) the size of what is wanted.
    fn ratio(&self, wanted_length: u64) -> f64 {
        let base = if self.downloaded > 0 {
            self.downloaded
        } else {
            wanted_length
        };
        if base == 0 {
            0.0
        } else {
            self.uploaded as f64 / base as f64
        }
    }
}

/// The goals in force for one torrent.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Effective {
    ratio: Option<f64>,
    seed_time: Option<Duration>,
    ratio_from_config: bool,
    seed_time_from_config: bool,
}

impl Effective {
    fn of(stored: &StoredGoals, defaults: SeedDefaults) -> Effective {
        let ratio = stored
            .ratio
            .as_deref()
            .and_then(|t| parse_ratio(t).ok().flatten());
        let seed_time = stored
            .seed_time
            .as_deref()
            .and_then(|t| parse_seed_time(t).ok().flatten());
        Effective {
            ratio: match ratio {
                Some(Goal::At(r)) => Some(r),
                Some(Goal::Never) => None,
                None => defaults.ratio,
            },
            seed_time: match seed_time {
                Some(Goal::At(d)) => Some(d),
                Some(Goal::Never) => None,
                None => defaults.seed_time,
            },
            ratio_from_config: ratio.is_none() && defaults.ratio.is_some(),
            seed_time_from_config: seed_time.is_none() && defaults.seed_time.is_some(),
        }
    }

    /// The sentence of the goal `totals` meets, if one is met.
    fn met(&self, totals: &Totals, wanted_length: u64) -> Option<String> {
        let ratio = totals.ratio(wanted_length);
        if let Some(goal) = self.ratio.filter(|&g| ratio >= g) {
            return Some(format!(
                "stopped seeding: it has uploaded {ratio:.2} times what it took, its ratio goal is {goal}"
            ));
        }
        let seeded = Duration::from_millis(totals.seeding_ms);
        if let Some(goal) = self.seed_time.filter(|&g| seeded >= g) {
            return Some(format!(
                "stopped seeding: it has seeded for {}, its seeding-time goal",
                humantime::format_duration(round_secs(goal))
            ));
        }
        None
    }
}

/// Bytes an engine counter at `now` adds to the totals since it was `seen`;
/// a counter below the last seen started again (a new run of the torrent
/// the agent did not announce with [`Seeding::new_run`]).
fn counted(now: u64, seen: u64) -> u64 {
    now.checked_sub(seen).unwrap_or(now)
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// One torrent's goals and totals while it runs.
pub(super) struct Seeding {
    state: Mutex<SeedState>,
}

struct SeedState {
    goals: StoredGoals,
    totals: Totals,
    /// The engine's session counters last seen: totals grow by the difference.
    seen_up: u64,
    seen_down: u64,
    last_tick: Instant,
    saved: Totals,
    saved_at: Instant,
}

impl Seeding {
    fn lock(&self) -> std::sync::MutexGuard<'_, SeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine's counters start at zero again (the torrent left the
    /// session and comes back); call once the totals are up to date.
    pub(super) fn new_run(&self) {
        let mut s = self.lock();
        s.seen_up = 0;
        s.seen_down = 0;
    }

    /// Whether a goal stopped it.
    pub(super) fn finished(&self) -> Option<String> {
        self.lock().totals.finished.clone()
    }
}

impl Torrents {
    /// Torrent `id`'s stored goals and totals (defaults when unreadable:
    /// the log says so).
    pub(super) fn load_seeding(&self, id: &str) -> Arc<Seeding> {
        let goals: StoredGoals = self.read_setting(id, &goals_key(id), "seeding goals");
        let totals: Totals = self.read_setting(id, &totals_key(id), "lifetime totals");
        let now = Instant::now();
        Arc::new(Seeding {
            state: Mutex::new(SeedState {
                goals,
                saved: totals.clone(),
                totals,
                seen_up: 0,
                seen_down: 0,
                last_tick: now,
                saved_at: now,
            }),
        })
    }

    fn read_setting<T: Default + for<'de> Deserialize<'de>>(
        &self,
        id: &str,
        key: &str,
        what: &str,
    ) -> T {
        match self.db.setting(key) {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|error| {
                tracing::error!(%id, %error, "stored {what} do not parse; starting afresh");
                T::default()
            }),
            Ok(None) => T::default(),
            Err(error) => {
                tracing::error!(%id, %error, "cannot read the {what}");
                T::default()
            }
        }
    }

    /// What `capwise status` shows of a torrent's goals and totals: the
    /// totals as of `p`, the engine's progress now.
    pub(super) fn seeding_view(
        &self,
        seeding: &Seeding,
        p: &capwise_engine::session::Progress,
    ) -> SeedingView {
        let s = seeding.lock();
        let e = Effective::of(&s.goals, self.seed_defaults);
        let mut totals = s.totals.clone();
        totals.uploaded += counted(p.uploaded, s.seen_up);
        totals.downloaded += counted(p.downloaded, s.seen_down);
        SeedingView {
            ratio: totals.ratio(p.wanted_length),
            ratio_goal: e.ratio,
            ratio_goal_from_config: e.ratio_from_config,
            seeding_secs: totals.seeding_ms / 1000,
            seed_time_goal_secs: e.seed_time.map(|d| d.as_secs()),
            seed_time_goal_from_config: e.seed_time_from_config,
            uploaded_total: totals.uploaded,
            downloaded_total: totals.downloaded,
        }
    }

    /// Changes torrent `id`'s goals; a torrent that no longer meets one
    /// seeds again at the next check.
    pub fn set_seed_goals(
        &self,
        id: &str,
        change: &SeedGoalsChange,
    ) -> Result<TorrentView, TorrentError> {
        let id = self.resolve(id)?;
        if let Some(t) = &change.ratio {
            parse_ratio(t).map_err(TorrentError::Invalid)?;
        }
        if let Some(t) = &change.seed_time {
            parse_seed_time(t).map_err(TorrentError::Invalid)?;
        }
        let seeding = self
            .entries()
            .get(&id)
            .map(|e| e.seeding.clone())
            .ok_or_else(|| TorrentError::NotFound(id.clone()))?;
        let keep = |t: &String| (!t.trim().eq_ignore_ascii_case("default")).then(|| t.clone());
        let goals = {
            let mut s = seeding.lock();
            if let Some(t) = &change.ratio {
                s.goals.ratio = keep(t);
            }
            if let Some(t) = &change.seed_time {
                s.goals.seed_time = keep(t);
            }
            s.goals.clone()
        };
        let text = (goals != StoredGoals::default())
            .then(|| serde_json::to_string(&goals))
            .transpose()
            .map_err(|e| TorrentError::Internal(e.into()))?;
        self.db
            .set_setting(&goals_key(&id), text.as_deref())
            .map_err(TorrentError::Internal)?;
        tracing::info!(%id, ratio = ?goals.ratio, seed_time = ?goals.seed_time, "seeding goals changed");
        self.get(&id)
    }

    /// Forgets a removed torrent's goals and totals.
    pub(super) fn forget_seeding(&self, id: &str) {
        for key in [goals_key(id), totals_key(id)] {
            if let Err(error) = self.db.set_setting(&key, None) {
                tracing::warn!(%id, %error, "cannot forget the torrent's seeding figures");
            }
        }
    }

    /// Brings every torrent's totals up to date and marks those that met a
    /// goal or no longer do (the queue stops and starts them: `settle`);
    /// writes totals that
    /// changed when `save` (or when they were last written long ago).
    pub async fn check_seeding(&self, save: bool) {
        let now = Instant::now();
        // A torrent out of the session for a while (`recheck`, `move`) has
        // a handle whose counters are the last run's: counted already.
        let entries: Vec<(String, TorrentHandle, Arc<Seeding>, bool)> = self
            .entries()
            .iter()
            .filter(|(_, e)| !e.moving && !e.rechecking)
            .map(|(id, e)| {
                (
                    id.clone(),
                    e.handle.clone(),
                    e.seeding.clone(),
                    !e.user_paused && !e.waiting,
                )
            })
            .collect();
        for (id, handle, seeding, may_run) in entries {
            let p = handle.progress();
            let (start, to_save) = {
                let mut s = seeding.lock();
                let s = &mut *s;
                s.totals.uploaded += counted(p.uploaded, s.seen_up);
                s.totals.downloaded += counted(p.downloaded, s.seen_down);
                s.seen_up = p.uploaded;
                s.seen_down = p.downloaded;
                if p.state == TorrentState::Seeding {
                    s.totals.seeding_ms += now.duration_since(s.last_tick).as_millis() as u64;
                }
                s.last_tick = now;
                let goals = Effective::of(&s.goals, self.seed_defaults);
                let met = goals.met(&s.totals, p.wanted_length);
                let mut stop = false;
                let mut start = false;
                match (&s.totals.finished, met) {
                    (None, Some(why)) if p.state == TorrentState::Seeding => {
                        tracing::info!(%id, reason = %why, "seeding goal met");
                        s.totals.finished = Some(why);
                        stop = true;
                    }
                    (Some(_), None) => {
                        s.totals.finished = None;
                        start = may_run;
                    }
                    _ => {}
                }
                let due = save || stop || start || now.duration_since(s.saved_at) >= SAVE_EVERY;
                let to_save = (due && s.totals != s.saved).then(|| {
                    s.saved = s.totals.clone();
                    s.saved_at = now;
                    s.totals.clone()
                });
                (start, to_save)
            };
            if let Some(totals) = to_save {
                match serde_json::to_string(&totals) {
                    Ok(text) => {
                        if let Err(error) = self.db.set_setting(&totals_key(&id), Some(&text)) {
                            tracing::warn!(%id, %error, "cannot save the torrent's lifetime totals");
                        }
                    }
                    Err(error) => tracing::warn!(%id, %error, "cannot encode lifetime totals"),
                }
            }
            if start {
                tracing::info!(%id, "its seeding goal is no longer met; seeding again");
            }
        }
    }

    /// Checks the goals and settles the queue every [`TICK`] until the
    /// torrents are dropped.
    pub fn follow_seeding(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                me.check_seeding(false).await;
                // A goal met or lifted, a download turned seed: the queue decides.
                me.settle_now().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_parse_numbers_durations_and_words() {
        assert_eq!(parse_ratio("2.0"), Ok(Some(Goal::At(2.0))));
        assert_eq!(parse_ratio(" None "), Ok(Some(Goal::Never)));
        assert_eq!(parse_ratio("default"), Ok(None));
        for bad in ["-1", "nan", "inf", "two", ""] {
            assert!(parse_ratio(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            parse_seed_time("7d"),
            Ok(Some(Goal::At(Duration::from_secs(7 * 86_400))))
        );
        assert_eq!(
            parse_seed_time("1h 30m"),
            Ok(Some(Goal::At(Duration::from_secs(5_400))))
        );
        assert_eq!(parse_seed_time("none"), Ok(Some(Goal::Never)));
        assert!(parse_seed_time("soon").unwrap_err().contains("soon"));
    }

    #[test]
    fn a_torrent_s_own_goal_wins_over_the_config_and_none_lifts_it() {
        let defaults = SeedDefaults {
            ratio: Some(1.0),
            seed_time: Some(Duration::from_secs(60)),
        };
        let totals = Totals {
            uploaded: 150,
            downloaded: 100,
            seeding_ms: 30_000,
            finished: None,
        };
        let by_default = Effective::of(&StoredGoals::default(), defaults);
        assert!(by_default.ratio_from_config);
        let why = by_default.met(&totals, 100).expect("1.5 meets 1.0");
        assert!(why.contains("1.50") && why.contains("ratio"), "{why}");

        let own = StoredGoals {
            ratio: Some("2".into()),
            seed_time: Some("none".into()),
        };
        let e = Effective::of(&own, defaults);
        assert_eq!((e.ratio, e.seed_time), (Some(2.0), None));
        assert_eq!(
            e.met(&totals, 100),
            None,
            "1.5 is below 2, and no time goal"
        );

        let timed = StoredGoals {
            ratio: Some("none".into()),
            seed_time: Some("20s".into()),
        };
        let why = Effective::of(&timed, defaults)
            .met(&totals, 100)
            .expect("30 s meets 20 s");
        assert!(why.contains("20s"), "{why}");
    }

    #[test]
    fn a_torrent_seeded_from_its_own_data_counts_against_its_size() {
        let seeded = Totals {
            uploaded: 300,
            ..Totals::default()
        };
        assert_eq!(seeded.ratio(100), 3.0);
        assert_eq!(seeded.ratio(0), 0.0);
    }
}
