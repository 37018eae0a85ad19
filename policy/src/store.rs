//! The SQLite store: networks seen, budgets, schedules, the usage ledger and
//! the durable budget reservations. WAL mode, versioned migrations through
//! `PRAGMA user_version`. A corrupt file is moved aside and a fresh database
//! created, so a bad file can never cause a crash loop; a sound file that
//! cannot be used now (locked, newer schema, permissions) is never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::budget::{Budget, Counts, Period};
use crate::error::{PolicyError, Result};
use crate::interface_counters::{Counters, LinkReading};
use crate::ledger::{Direction, PeerClass};
use crate::network::{Metered, Network, NetworkId, NetworkKind};
use crate::schedule::{Days, Rule, Schedule, Window};
use crate::time::{Timestamp, UtcOffset, Weekday};
use crate::zone::Zone;

/// Schema migrations; migration `i` brings the database to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    metered_override INTEGER,          -- NULL: no word from the user; 1 metered; 0 unmetered
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE budgets (
    network_id TEXT PRIMARY KEY,
    cap_bytes INTEGER NOT NULL,
    period TEXT NOT NULL,              -- monthly | weekly | daily | one-off
    cycle_day INTEGER,                 -- monthly: 1-31; weekly: 0 (Mon)-6 (Sun)
    one_off_start INTEGER,
    one_off_end INTEGER,
    counts TEXT NOT NULL,              -- down+up | up
    reserve_percent INTEGER NOT NULL,
    utc_offset_seconds INTEGER NOT NULL
);
CREATE TABLE schedule_windows (
    network_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    days INTEGER NOT NULL,
    start_minute INTEGER NOT NULL,
    end_minute INTEGER NOT NULL,
    rule TEXT NOT NULL,                -- free | pause | limit
    down_rate INTEGER,
    up_rate INTEGER,
    utc_offset_seconds INTEGER NOT NULL,
    PRIMARY KEY (network_id, position)
);
CREATE TABLE usage (
    network_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    direction TEXT NOT NULL,           -- down | up
    peer_class TEXT NOT NULL,          -- wan | lan
    bytes INTEGER NOT NULL,
    PRIMARY KEY (network_id, period_start, direction, peer_class)
);
CREATE TABLE reservations (
    network_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    reserved_bytes INTEGER NOT NULL,   -- budget taken durably; >= what was spent
    PRIMARY KEY (network_id, period_start)
);
CREATE TABLE link_usage (
    network_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    rx_bytes INTEGER NOT NULL,
    tx_bytes INTEGER NOT NULL,
    PRIMARY KEY (network_id, period_start)
);
"#,
    // 2: a budget's IANA time zone; NULL keeps the fixed utc_offset_seconds
    // (every budget stored before this version).
    r#"
ALTER TABLE budgets ADD COLUMN time_zone TEXT;
"#,
    // 3: a schedule's IANA time zone, as for budgets.
    r#"
ALTER TABLE schedule_windows ADD COLUMN time_zone TEXT;
"#,
    // 4: the last reading of each network's interface counters, so that a
    // restart counts what the link carried meanwhile.
    r#"
CREATE TABLE link_readings (
    network_id TEXT PRIMARY KEY,
    interface TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    rx_bytes INTEGER NOT NULL,
    tx_bytes INTEGER NOT NULL,
    at INTEGER NOT NULL
);
"#,
    // 5: whether the network counted as metered when last seen, and who
    // said so, for `capwise network list` (NULL: not seen since).
    r#"
ALTER TABLE networks ADD COLUMN last_metered TEXT;
ALTER TABLE networks ADD COLUMN last_metered_source TEXT;
"#,
    // 6: the agent's usage per local day (the machine's zone when written),
    // beside the per-period totals, for the history per day. Databases from
    // before start with no days: their periods keep their totals.
    r#"
CREATE TABLE usage_days (
    network_id TEXT NOT NULL,
    day TEXT NOT NULL,                 -- YYYY-MM-DD, local
    direction TEXT NOT NULL,           -- down | up
    peer_class TEXT NOT NULL,          -- wan | lan
    bytes INTEGER NOT NULL,
    PRIMARY KEY (network_id, day, direction, peer_class)
);
"#,
];

/// A network the agent has seen, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenNetwork {
    /// Its stable id.
    pub id: NetworkId,
    /// Last known display name.
    pub name: String,
    /// Last known kind.
    pub kind: NetworkKind,
    /// The user's word on metering, if any.
    pub metered_override: Option<bool>,
    /// Whether it counted as metered when last seen (the user's word
    /// applied), and who said so, in words; `None` if not seen since
    /// capwise kept this.
    pub last_metered: Option<(Metered, String)>,
    /// When first seen.
    pub first_seen: Timestamp,
    /// When last seen.
    pub last_seen: Timestamp,
}

/// One row of the usage ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRow {
    /// Down or up.
    pub direction: Direction,
    /// WAN or LAN peers.
    pub peer_class: PeerClass,
    /// Bytes in the period.
    pub bytes: u64,
}

/// One period's usage, as [`Store::recent_periods`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodUsage {
    /// When the period started.
    pub period_start: Timestamp,
    /// The agent's ledger rows of the period.
    pub rows: Vec<UsageRow>,
    /// The whole link's `(rx, tx)` in the period (0 if never read).
    pub link: (u64, u64),
}

/// One day's usage of a network (the days with any, from `usage_days`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayUsage {
    /// The local date, `YYYY-MM-DD`.
    pub day: String,
    /// The agent's bytes that day, per direction and peer class.
    pub rows: Vec<UsageRow>,
}

/// `YYYY-MM-DD` of `at` in the machine's zone.
fn local_day(at: Timestamp) -> String {
    let date = Zone::system(at).to_local(at).date;
    format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
}

/// The policy database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    moved_aside: Option<MovedAside>,
}

/// A corrupt database [`Store::open`] moved out of the way.
#[derive(Debug)]
struct MovedAside {
    to: PathBuf,
    why: String,
    /// Ledger rows (usage, reservations, link usage) read back from it.
    carried: usize,
}

/// The ledger tables a fresh database takes over from a corrupt one, each
/// with its columns: what was used and reserved this period must still
/// count against the cap.
const CARRIED_TABLES: &[(&str, &str)] = &[
    (
        "usage",
        "network_id, period_start, direction, peer_class, bytes",
    ),
    ("reservations", "network_id, period_start, reserved_bytes"),
    ("link_usage", "network_id, period_start, rx_bytes, tx_bytes"),
];

/// How long an open waits for another process's lock by default: long
/// enough for any write capwise itself makes, short enough that a command
/// does not seem to hang.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why opening failed, before the caller decides what to do with the file.
enum OpenFailure {
    /// The file's content is not a sound database: moving it aside is the
    /// only way forward, and loses nothing that could still be read.
    Corrupt(rusqlite::Error),
    /// Anything else: the file may be fine and must not be touched.
    Refused(PolicyError),
}

impl Store {
    /// Opens (or creates) the database at `path`, waiting up to
    /// [`BUSY_TIMEOUT`] for another process's lock. See
    /// [`Store::open_with_busy_timeout`].
    pub fn open(path: &Path, now: Timestamp) -> Result<Store> {
        Store::open_with_busy_timeout(path, now, BUSY_TIMEOUT)
    }

    /// Opens (or creates) the database at `path`. Only a corrupt file (SQLite
    /// says corrupt or not a database, or `quick_check` fails) is renamed
    /// `<path>.corrupt-<now>` and replaced by a fresh database; the caller
    /// learns it from [`Store::moved_aside`] and tells the user. A locked
    /// database, one written by a newer capwise, and permission or I/O
    /// failures are errors that leave the file as it is: it may hold budgets
    /// and reservations the hard cap depends on.
    ///
    /// The usage ledger (usage, reservations, link usage) is read back from
    /// the moved file, row by row up to the first unreadable one, so that
    /// the period's bytes still count; [`Store::carried_rows`] says how many.
    pub fn open_with_busy_timeout(path: &Path, now: Timestamp, busy: Duration) -> Result<Store> {
        let first_error = match open_and_migrate(path, busy) {
            Ok(conn) => {
                return Ok(Store {
                    conn,
                    moved_aside: None,
                })
            }
            Err(OpenFailure::Refused(error)) => return Err(error),
            Err(OpenFailure::Corrupt(error)) => error,
        };
        Store::move_aside(path, now, busy, first_error)
    }

    /// Opens the database at `path` like [`Store::open_with_busy_timeout`],
    /// but never moves a file: a corrupt one is
    /// [`PolicyError::DatabaseDamaged`], left for the process that owns
    /// the state directory (the agent) to repair.
    pub fn open_without_repair(path: &Path, busy: Duration) -> Result<Store> {
        match open_and_migrate(path, busy) {
            Ok(conn) => Ok(Store {
                conn,
                moved_aside: None,
            }),
            Err(OpenFailure::Refused(error)) => Err(error),
            Err(OpenFailure::Corrupt(error)) => Err(PolicyError::DatabaseDamaged {
                path: path.to_path_buf(),
                error,
            }),
        }
    }

    fn move_aside(
        path: &Path,
        now: Timestamp,
        busy: Duration,
        first_error: rusqlite::Error,
    ) -> Result<Store> {
        let aside = aside_path(path, now);
        if let Err(rename) = std::fs::rename(path, &aside) {
            return Err(PolicyError::DatabaseCorrupt {
                path: path.to_path_buf(),
                source: first_error,
                rename,
            });
        }
        for suffix in ["-wal", "-shm"] {
            let side = sibling(path, suffix);
            if side.exists() {
                let _ = std::fs::rename(&side, sibling(&aside, suffix));
            }
        }
        let conn = open_and_migrate(path, busy).map_err(|failure| match failure {
            OpenFailure::Refused(error) => error,
            OpenFailure::Corrupt(source) => PolicyError::DatabaseUnavailable {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let carried = carry_ledger(&conn, &aside);
        Ok(Store {
            conn,
            moved_aside: Some(MovedAside {
                to: aside,
                why: first_error.to_string(),
                carried,
            }),
        })
    }

    /// How many ledger rows were read back from the database moved aside
    /// (0 if none was, or nothing could be read).
    pub fn carried_rows(&self) -> usize {
        self.moved_aside.as_ref().map_or(0, |m| m.carried)
    }

    /// An in-memory database, for tests and dry runs.
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        Ok(Store {
            conn,
            moved_aside: None,
        })
    }

    /// Where a corrupt database was moved by [`Store::open`], if it was.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_ref().map(|m| m.to.as_path())
    }

    /// What showed the moved-aside database corrupt, if one was moved.
    pub fn why_moved_aside(&self) -> Option<&str> {
        self.moved_aside.as_ref().map(|m| m.why.as_str())
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Records that `network` is the current uplink at `now`.
    pub fn note_network_seen(&self, network: &Network, now: Timestamp) -> Result<()> {
        let (metered, source) = network.effective_metered();
        self.conn.execute(
            "INSERT INTO networks (id, name, kind, first_seen, last_seen, last_metered,
                                   last_metered_source)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET name = ?2, kind = ?3, last_seen = max(last_seen, ?4),
                                           last_metered = ?5, last_metered_source = ?6",
            params![
                network.id.as_str(),
                network.name,
                network.kind.as_str(),
                now.0,
                metered.as_str(),
                source.says_so()
            ],
        )?;
        Ok(())
    }

    /// Stores the user's word: `Some(true)` metered, `Some(false)` unmetered,
    /// `None` forget it. The network need not have been seen yet.
    pub fn set_metered_override(&self, id: &NetworkId, metered: Option<bool>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO networks (id, name, kind, metered_override, first_seen, last_seen)
             VALUES (?1, '', 'unknown', ?2, 0, 0)
             ON CONFLICT(id) DO UPDATE SET metered_override = ?2",
            params![id.as_str(), metered],
        )?;
        Ok(())
    }

    /// The user's word on whether `id` is metered.
    pub fn metered_override(&self, id: &NetworkId) -> Result<Option<bool>> {
        let value: Option<Option<bool>> = self
            .conn
            .query_row(
                "SELECT metered_override FROM networks WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(value.flatten())
    }

    /// All networks seen, most recent first.
    pub fn networks(&self) -> Result<Vec<SeenNetwork>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, name, kind, metered_override, first_seen, last_seen, last_metered,
                    last_metered_source FROM networks
             ORDER BY last_seen DESC, id",
        )?;
        let rows = stmt.query_map([], |r| {
            let last: Option<String> = r.get(6)?;
            let source: Option<String> = r.get(7)?;
            Ok(SeenNetwork {
                id: NetworkId(r.get(0)?),
                name: r.get(1)?,
                kind: NetworkKind::parse(&r.get::<_, String>(2)?),
                metered_override: r.get(3)?,
                last_metered: last.map(|m| (Metered::parse(&m), source.unwrap_or_default())),
                first_seen: Timestamp(r.get(4)?),
                last_seen: Timestamp(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets (or with `None` removes) the budget of a network.
    pub fn set_budget(&self, id: &NetworkId, budget: Option<&Budget>) -> Result<()> {
        let Some(b) = budget else {
            self.conn
                .execute("DELETE FROM budgets WHERE network_id = ?1", [id.as_str()])?;
            return Ok(());
        };
        b.validate()?;
        let (period, cycle, start, end) = match b.period {
            Period::Monthly { cycle_day } => ("monthly", Some(cycle_day as i64), None, None),
            Period::Weekly { starts_on } => ("weekly", Some(starts_on.index() as i64), None, None),
            Period::Daily => ("daily", None, None, None),
            Period::OneOff { start, end } => ("one-off", None, Some(start.0), Some(end.0)),
        };
        self.conn.execute(
            "INSERT OR REPLACE INTO budgets (network_id, cap_bytes, period, cycle_day, one_off_start,
                 one_off_end, counts, reserve_percent, utc_offset_seconds, time_zone)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id.as_str(),
                to_sql_u64(b.cap_bytes),
                period,
                cycle,
                start,
                end,
                b.counts.as_str(),
                b.reserve_percent,
                zone_offset_column(b.zone),
                b.zone.name()
            ],
        )?;
        Ok(())
    }

    /// The budget of a network, if it has one.
    pub fn budget(&self, id: &NetworkId) -> Result<Option<Budget>> {
        type Row = (
            i64,
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            String,
            i64,
            i32,
            Option<String>,
        );
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT cap_bytes, period, cycle_day, one_off_start, one_off_end, counts,
                        reserve_percent, utc_offset_seconds, time_zone
                 FROM budgets WHERE network_id = ?1",
                [id.as_str()],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                },
            )
            .optional()?;
        let Some((cap, period, cycle, start, end, counts, reserve, offset, zone_name)) = row else {
            return Ok(None);
        };
        let bad = |detail: String| PolicyError::invalid("stored budget", detail);
        let period = match period.as_str() {
            "monthly" => Period::Monthly {
                cycle_day: u8::try_from(cycle.unwrap_or(1)).map_err(|_| bad("cycle day".into()))?,
            },
            "weekly" => Period::Weekly {
                starts_on: Weekday::from_index(cycle.unwrap_or(0).rem_euclid(7) as u8),
            },
            "daily" => Period::Daily,
            "one-off" => Period::OneOff {
                start: Timestamp(start.unwrap_or(0)),
                end: Timestamp(end.unwrap_or(0)),
            },
            other => return Err(bad(format!("unknown period {other:?}"))),
        };
        let budget = Budget {
            cap_bytes: from_sql_u64(cap),
            period,
            counts: Counts::parse(&counts).ok_or_else(|| bad(format!("counts {counts:?}")))?,
            reserve_percent: u8::try_from(reserve).map_err(|_| bad("reserve".into()))?,
            zone: stored_zone(offset, zone_name.as_deref()).ok_or_else(|| bad("offset".into()))?,
        };
        budget.validate()?;
        Ok(Some(budget))
    }

    /// Every network that has a budget, with it, ordered by network id.
    pub fn budgets(&self) -> Result<Vec<(NetworkId, Budget)>> {
        let ids: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT network_id FROM budgets ORDER BY network_id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let id = NetworkId(id);
            if let Some(budget) = self.budget(&id)? {
                out.push((id, budget));
            }
        }
        Ok(out)
    }

    /// Replaces the schedule of a network.
    pub fn set_schedule(&mut self, id: &NetworkId, schedule: &Schedule) -> Result<()> {
        for w in &schedule.windows {
            w.validate()?;
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM schedule_windows WHERE network_id = ?1",
            [id.as_str()],
        )?;
        for (position, w) in schedule.windows.iter().enumerate() {
            let (rule, down, up) = match w.rule {
                Rule::Free => ("free", None, None),
                Rule::Pause => ("pause", None, None),
                Rule::Limit { down, up } => ("limit", down.map(to_sql_u64), up.map(to_sql_u64)),
            };
            tx.execute(
                "INSERT INTO schedule_windows (network_id, position, days, start_minute, end_minute,
                     rule, down_rate, up_rate, utc_offset_seconds, time_zone)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id.as_str(),
                    position as i64,
                    w.days.0,
                    w.start_minute,
                    w.end_minute,
                    rule,
                    down,
                    up,
                    zone_offset_column(schedule.zone),
                    schedule.zone.name()
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Keeps `reading` as the last one of `id`'s link.
    pub fn save_link_reading(&self, id: &NetworkId, reading: &LinkReading) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO link_readings (network_id, interface, boot_id, rx_bytes,
                 tx_bytes, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id.as_str(),
                reading.interface,
                reading.boot_id,
                to_sql_u64(reading.counters.rx),
                to_sql_u64(reading.counters.tx),
                reading.at.0
            ],
        )?;
        Ok(())
    }

    /// The last reading kept for `id`'s link, if any.
    pub fn link_reading(&self, id: &NetworkId) -> Result<Option<LinkReading>> {
        Ok(self
            .conn
            .query_row(
                "SELECT interface, boot_id, rx_bytes, tx_bytes, at FROM link_readings
                 WHERE network_id = ?1",
                [id.as_str()],
                |r| {
                    Ok(LinkReading {
                        interface: r.get(0)?,
                        boot_id: r.get(1)?,
                        counters: Counters {
                            rx: from_sql_u64(r.get(2)?),
                            tx: from_sql_u64(r.get(3)?),
                        },
                        at: Timestamp(r.get(4)?),
                    })
                },
            )
            .optional()?)
    }

    /// The networks that have at least one schedule window, by id.
    pub fn scheduled_networks(&self) -> Result<Vec<NetworkId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT network_id FROM schedule_windows ORDER BY network_id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .map(|id| id.map(NetworkId::new))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ids)
    }

    /// The schedule of a network (empty if none).
    pub fn schedule(&self, id: &NetworkId) -> Result<Schedule> {
        let mut stmt = self.conn.prepare(
            "SELECT days, start_minute, end_minute, rule, down_rate, up_rate, utc_offset_seconds,
                    time_zone
             FROM schedule_windows WHERE network_id = ?1 ORDER BY position",
        )?;
        let mut schedule = Schedule::default();
        let mut rows = stmt.query([id.as_str()])?;
        while let Some(r) = rows.next()? {
            let rule = match r.get::<_, String>(3)?.as_str() {
                "free" => Rule::Free,
                "pause" => Rule::Pause,
                "limit" => Rule::Limit {
                    down: r.get::<_, Option<i64>>(4)?.map(from_sql_u64),
                    up: r.get::<_, Option<i64>>(5)?.map(from_sql_u64),
                },
                other => {
                    return Err(PolicyError::invalid(
                        "stored schedule",
                        format!("rule {other:?}"),
                    ))
                }
            };
            let window = Window {
                days: Days(r.get(0)?),
                start_minute: r.get(1)?,
                end_minute: r.get(2)?,
                rule,
            };
            window.validate()?;
            schedule.windows.push(window);
            schedule.zone = stored_zone(r.get(6)?, r.get::<_, Option<String>>(7)?.as_deref())
                .ok_or_else(|| PolicyError::invalid("stored schedule", "offset"))?;
        }
        Ok(schedule)
    }

    /// Budget durably reserved for `id` in the period starting `period_start`.
    pub fn reserved(&self, id: &NetworkId, period_start: Timestamp) -> Result<u64> {
        let value: Option<i64> = self
            .conn
            .query_row(
                "SELECT reserved_bytes FROM reservations WHERE network_id = ?1 AND period_start = ?2",
                params![id.as_str(), period_start.0],
                |r| r.get(0),
            )
            .optional()?;
        Ok(value.map(from_sql_u64).unwrap_or(0))
    }

    /// Raises the durable reservation to `total` bytes (never lowers it) and
    /// waits until it is on disk: `synchronous=FULL` for this commit, so a
    /// power cut right after cannot lose it. Only then may bytes be spent.
    pub fn raise_reservation(
        &self,
        id: &NetworkId,
        period_start: Timestamp,
        total: u64,
    ) -> Result<()> {
        self.reserve_with_usage(id, period_start, total, &[])
    }

    /// [`Store::raise_reservation`] and the usage rows accumulated since the
    /// last one, in one durable transaction: after a crash the usage rows
    /// and the reservation that bounds them are of the same moment, so the
    /// ledger lies between what moved and that plus one chunk.
    pub fn reserve_with_usage(
        &self,
        id: &NetworkId,
        period_start: Timestamp,
        total: u64,
        usage: &[(Direction, PeerClass, u64)],
    ) -> Result<()> {
        self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        let result = self.reserve_in_transaction(id, period_start, total, usage);
        // Ordinary ledger writes do not need an fsync each.
        self.conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        result
    }

    fn reserve_in_transaction(
        &self,
        id: &NetworkId,
        period_start: Timestamp,
        total: u64,
        usage: &[(Direction, PeerClass, u64)],
    ) -> Result<()> {
        // `unchecked_transaction` because the store is shared by `&self`;
        // nothing else runs on this connection meanwhile.
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO reservations (network_id, period_start, reserved_bytes) VALUES (?1, ?2, ?3)
             ON CONFLICT(network_id, period_start)
             DO UPDATE SET reserved_bytes = max(reserved_bytes, ?3)",
            params![id.as_str(), period_start.0, to_sql_u64(total)],
        )?;
        for &(direction, peer_class, bytes) in usage {
            self.add_usage(id, period_start, direction, peer_class, bytes)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds `bytes` to the usage ledger row for (network, period, direction,
    /// class), and to today's row of the usage per day.
    pub fn add_usage(
        &self,
        id: &NetworkId,
        period_start: Timestamp,
        direction: Direction,
        peer_class: PeerClass,
        bytes: u64,
    ) -> Result<()> {
        let today = local_day(Timestamp::now_from_system());
        self.add_usage_on(id, period_start, &today, direction, peer_class, bytes)
    }

    /// [`Store::add_usage`] with the day given (`YYYY-MM-DD`).
    pub fn add_usage_on(
        &self,
        id: &NetworkId,
        period_start: Timestamp,
        day: &str,
        direction: Direction,
        peer_class: PeerClass,
        bytes: u64,
    ) -> Result<()> {
        self.day_row(
            "INSERT INTO usage_days (network_id, day, direction, peer_class, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(network_id, day, direction, peer_class)
             DO UPDATE SET bytes = bytes + ?5",
            (id, day, direction, peer_class),
            bytes,
        )?;
        self.usage_row(
            "INSERT INTO usage (network_id, period_start, direction, peer_class, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(network_id, period_start, direction, peer_class)
             DO UPDATE SET bytes = bytes + ?5",
            (id, period_start, direction, peer_class),
            bytes,
        )
    }

    /// Takes back usage recorded ahead of traffic that then did not move
    /// (a clean stop with part of a pre-recorded chunk unspent). Never goes
    /// below zero.
    pub fn take_back_usage(
        &self,
        id: &NetworkId,
        period_start: Timestamp,
        direction: Direction,
        peer_class: PeerClass,
        bytes: u64,
    ) -> Result<()> {
        self.day_row(
            "UPDATE usage_days SET bytes = MAX(bytes - ?5, 0)
             WHERE network_id = ?1 AND day = ?2 AND direction = ?3 AND peer_class = ?4",
            (
                id,
                &local_day(Timestamp::now_from_system()),
                direction,
                peer_class,
            ),
            bytes,
        )?;
        self.usage_row(
            "UPDATE usage SET bytes = MAX(bytes - ?5, 0)
             WHERE network_id = ?1 AND period_start = ?2 AND direction = ?3 AND peer_class = ?4",
            (id, period_start, direction, peer_class),
            bytes,
        )
    }

    /// Runs `sql` on one usage row: ?1 network, ?2 period start, ?3
    /// direction, ?4 peer class, ?5 bytes.
    fn usage_row(
        &self,
        sql: &str,
        (id, period_start, direction, peer_class): (&NetworkId, Timestamp, Direction, PeerClass),
        bytes: u64,
    ) -> Result<()> {
        self.conn.execute(
            sql,
            params![
                id.as_str(),
                period_start.0,
                direction.as_str(),
                peer_class.as_str(),
                to_sql_u64(bytes)
            ],
        )?;
        Ok(())
    }

    /// Runs `sql` on one row of the usage per day: ?1 network, ?2 day, ?3
    /// direction, ?4 peer class, ?5 bytes.
    fn day_row(
        &self,
        sql: &str,
        (id, day, direction, peer_class): (&NetworkId, &str, Direction, PeerClass),
        bytes: u64,
    ) -> Result<()> {
        self.conn.execute(
            sql,
            params![
                id.as_str(),
                day,
                direction.as_str(),
                peer_class.as_str(),
                to_sql_u64(bytes)
            ],
        )?;
        Ok(())
    }

    /// The agent's usage of a network on its last `count` days that have
    /// any, oldest first.
    pub fn recent_days(&self, id: &NetworkId, count: usize) -> Result<Vec<DayUsage>> {
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(
            "SELECT day, direction, peer_class, bytes FROM usage_days
             WHERE network_id = ?1 AND day IN (
                 SELECT DISTINCT day FROM usage_days WHERE network_id = ?1
                 ORDER BY day DESC LIMIT ?2)
             ORDER BY day, direction, peer_class",
        )?;
        let mut rows = stmt.query(params![id.as_str(), limit])?;
        let mut out: Vec<DayUsage> = Vec::new();
        while let Some(r) = rows.next()? {
            let day: String = r.get(0)?;
            let direction = Direction::parse(&r.get::<_, String>(1)?)
                .ok_or_else(|| PolicyError::invalid("stored usage per day", "direction"))?;
            let peer_class = PeerClass::parse(&r.get::<_, String>(2)?)
                .ok_or_else(|| PolicyError::invalid("stored usage per day", "peer class"))?;
            let row = UsageRow {
                direction,
                peer_class,
                bytes: from_sql_u64(r.get(3)?),
            };
            match out.last_mut() {
                Some(last) if last.day == day => last.rows.push(row),
                _ => out.push(DayUsage {
                    day,
                    rows: vec![row],
                }),
            }
        }
        Ok(out)
    }

    /// The usage ledger rows of a period.
    pub fn usage(&self, id: &NetworkId, period_start: Timestamp) -> Result<Vec<UsageRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT direction, peer_class, bytes FROM usage
             WHERE network_id = ?1 AND period_start = ?2 ORDER BY direction, peer_class",
        )?;
        let mut rows = stmt.query(params![id.as_str(), period_start.0])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let direction = Direction::parse(&r.get::<_, String>(0)?)
                .ok_or_else(|| PolicyError::invalid("stored usage", "direction"))?;
            let peer_class = PeerClass::parse(&r.get::<_, String>(1)?)
                .ok_or_else(|| PolicyError::invalid("stored usage", "peer class"))?;
            out.push(UsageRow {
                direction,
                peer_class,
                bytes: from_sql_u64(r.get(2)?),
            });
        }
        Ok(out)
    }

    /// The usage of the last `count` periods of a network that have any
    /// (the agent's or the link's), oldest first.
    pub fn recent_periods(&self, id: &NetworkId, count: usize) -> Result<Vec<PeriodUsage>> {
        let mut stmt = self.conn.prepare(
            "SELECT period_start FROM usage WHERE network_id = ?1
             UNION SELECT period_start FROM link_usage WHERE network_id = ?1
             ORDER BY period_start DESC LIMIT ?2",
        )?;
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let starts = stmt
            .query_map(params![id.as_str(), limit], |r| r.get::<_, i64>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        starts
            .into_iter()
            .rev()
            .map(|start| {
                let period_start = Timestamp(start);
                Ok(PeriodUsage {
                    period_start,
                    rows: self.usage(id, period_start)?,
                    link: self.link_usage(id, period_start)?,
                })
            })
            .collect()
    }

    /// Adds whole-link traffic (all programs) measured on the interface.
    pub fn add_link_usage(
        &self,
        id: &NetworkId,
        period_start: Timestamp,
        rx: u64,
        tx: u64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO link_usage (network_id, period_start, rx_bytes, tx_bytes) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(network_id, period_start)
             DO UPDATE SET rx_bytes = rx_bytes + ?3, tx_bytes = tx_bytes + ?4",
            params![id.as_str(), period_start.0, to_sql_u64(rx), to_sql_u64(tx)],
        )?;
        Ok(())
    }

    /// Whole-link traffic `(rx, tx)` in a period.
    pub fn link_usage(&self, id: &NetworkId, period_start: Timestamp) -> Result<(u64, u64)> {
        let row: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT rx_bytes, tx_bytes FROM link_usage WHERE network_id = ?1 AND period_start = ?2",
                params![id.as_str(), period_start.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row
            .map(|(rx, tx)| (from_sql_u64(rx), from_sql_u64(tx)))
            .unwrap_or((0, 0)))
    }
}

/// Opens, sets WAL, checks integrity and migrates, sorting failures into
/// those that show the file corrupt and all others.
fn open_and_migrate(path: &Path, busy: Duration) -> Result<Connection, OpenFailure> {
    let sorted = |error: rusqlite::Error| classify(path, busy, error);
    let conn = Connection::open(path).map_err(sorted)?;
    conn.busy_timeout(busy).map_err(sorted)?;
    // journal_mode returns a row; reading it is also the first real read of
    // the file, where a non-database fails.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sorted)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL")
        .map_err(sorted)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sorted)?;
    if check != "ok" {
        return Err(OpenFailure::Corrupt(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(format!("quick_check: {check}")),
        )));
    }
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sorted)?;
    if version as usize > MIGRATIONS.len() {
        return Err(OpenFailure::Refused(PolicyError::DatabaseTooNew {
            path: path.to_path_buf(),
            found: version,
            known: MIGRATIONS.len() as u32,
        }));
    }
    migrate(&conn).map_err(sorted)?;
    Ok(conn)
}

/// Copies into `conn` every ledger row of the corrupt database at `aside`
/// that can still be read, table by table, up to the first unreadable row;
/// returns how many. Nothing here can fail the open: what cannot be read is
/// lost either way.
fn carry_ledger(conn: &Connection, aside: &Path) -> usize {
    use rusqlite::OpenFlags;
    use std::os::unix::ffi::OsStrExt;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // Without a write-ahead log to replay, read it as immutable: no lock, no
    // -shm or -wal file appears beside the kept copy.
    let opened = if sibling(aside, "-wal").exists() {
        Connection::open_with_flags(aside, flags)
    } else {
        let mut uri = String::from("file:");
        for &b in aside.as_os_str().as_bytes() {
            if b.is_ascii_alphanumeric() || b"/._-".contains(&b) {
                uri.push(char::from(b));
            } else {
                uri.push_str(&format!("%{b:02X}"));
            }
        }
        uri.push_str("?immutable=1");
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
    };
    let Ok(old) = opened else {
        return 0;
    };
    let mut carried = 0;
    for (table, columns) in CARRIED_TABLES {
        let width = columns.split(',').count();
        let Ok(mut select) = old.prepare(&format!("SELECT {columns} FROM {table}")) else {
            continue;
        };
        let placeholders = vec!["?"; width].join(", ");
        let Ok(mut insert) = conn.prepare(&format!(
            "INSERT OR IGNORE INTO {table} ({columns}) VALUES ({placeholders})"
        )) else {
            continue;
        };
        let Ok(mut rows) = select.query([]) else {
            continue;
        };
        while let Ok(Some(row)) = rows.next() {
            let values: rusqlite::Result<Vec<rusqlite::types::Value>> =
                (0..width).map(|i| row.get(i)).collect();
            let Ok(values) = values else {
                break;
            };
            if insert
                .execute(rusqlite::params_from_iter(values))
                .is_ok_and(|n| n == 1)
            {
                carried += 1;
            }
        }
    }
    carried
}

/// Only SQLite's own verdict that the content is damaged moves a file
/// aside. Everything else may happen to a sound database: a lock held by
/// another process, permissions, a full or read-only disk, an I/O error, a
/// migration that failed half-way (its transaction rolled back). Those are
/// refused with the file untouched; a crash loop on them is the agent's to
/// prevent (it retries a lock, and fails start-up with the message).
fn classify(path: &Path, busy: Duration, error: rusqlite::Error) -> OpenFailure {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => OpenFailure::Corrupt(error),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            OpenFailure::Refused(PolicyError::DatabaseLocked {
                path,
                waited_ms: busy.as_millis() as u64,
                source: error,
            })
        }
        _ => OpenFailure::Refused(PolicyError::DatabaseUnavailable {
            path,
            source: error,
        }),
    }
}

/// Applies the migrations the database has not seen yet, each in its own
/// transaction together with the version bump. The caller has refused a
/// version newer than [`MIGRATIONS`] knows.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            index + 1
        ))?;
    }
    Ok(())
}

/// The `utc_offset_seconds` column (NOT NULL since schema 1) for a zone: a
/// named zone's offset varies, the name is what counts, and the column gets
/// UTC's.
fn zone_offset_column(zone: Zone) -> i32 {
    match zone {
        Zone::Fixed(offset) => offset.seconds(),
        Zone::Named(_) => 0,
    }
}

/// A budget's or schedule's zone from its columns. A name the tz database no
/// longer knows (tzdata changed under us) falls back to the stored offset
/// with a warning, so that the budget or schedule still applies.
fn stored_zone(offset_seconds: i32, name: Option<&str>) -> Option<Zone> {
    let fixed = UtcOffset::from_seconds(offset_seconds).map(Zone::Fixed);
    let Some(name) = name else {
        return fixed;
    };
    match Zone::named(name) {
        Ok(zone) => Some(zone),
        Err(error) => {
            tracing::warn!(%error, "stored time zone is unknown; using its fixed offset");
            fixed
        }
    }
}

/// A name no earlier moved-aside file has: a rename would replace it, and
/// two corrupt databases in one second must both be kept.
fn aside_path(path: &Path, now: Timestamp) -> PathBuf {
    let first = sibling(path, &format!(".corrupt-{}", now.0));
    if !first.exists() {
        return first;
    }
    (1..1000)
        .map(|n| sibling(path, &format!(".corrupt-{}-{n}", now.0)))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// SQLite integers are i64; byte counts beyond i64::MAX are clamped.
fn to_sql_u64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_corrupt_file_in_the_same_second_does_not_replace_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("capwise.db");
        let first = aside_path(&db, Timestamp(5));
        assert!(first.to_string_lossy().ends_with("capwise.db.corrupt-5"));
        std::fs::write(&first, b"old").unwrap();
        let second = aside_path(&db, Timestamp(5));
        assert!(second.to_string_lossy().ends_with("capwise.db.corrupt-5-1"));
    }
    use crate::network::{Metered, MeteredSource};

    #[test]
    fn migrates_to_latest_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.db");
        let store = Store::open(&path, Timestamp(1)).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        let id = NetworkId::new("uuid-1");
        store.set_metered_override(&id, Some(true)).unwrap();
        drop(store);
        let store = Store::open(&path, Timestamp(2)).unwrap();
        assert!(store.moved_aside().is_none());
        assert_eq!(store.metered_override(&id).unwrap(), Some(true));
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn corrupt_database_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.db");
        std::fs::write(
            &path,
            b"this is not an sqlite database, it is a shopping list",
        )
        .unwrap();
        let store = Store::open(&path, Timestamp(1_733_400_000)).unwrap();
        let aside = dir.path().join("policy.db.corrupt-1733400000");
        assert_eq!(store.moved_aside(), Some(aside.as_path()));
        assert!(std::fs::read(&aside).unwrap().starts_with(b"this is not"));
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        // And the fresh one works.
        store
            .set_metered_override(&NetworkId::new("a"), Some(false))
            .unwrap();
    }

    /// A database with a budget and its durable reservation, checkpointed
    /// so that the main file holds everything.
    fn database_with_a_reservation(path: &Path) -> NetworkId {
        let store = Store::open(path, Timestamp(1)).unwrap();
        let id = NetworkId::new("hotspot");
        store
            .set_budget(&id, Some(&Budget::monthly(1000, 1, Zone::UTC)))
            .unwrap();
        store.raise_reservation(&id, Timestamp(0), 700).unwrap();
        store
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        id
    }

    /// A database whose `networks` table has a page overwritten, while the
    /// ledger's pages are sound: (usage bytes, reservation) written before.
    fn database_with_a_damaged_networks_page(path: &Path, id: &NetworkId) -> (u64, u64) {
        let store = Store::open(path, Timestamp(1)).unwrap();
        store
            .add_usage(id, Timestamp(0), Direction::Down, PeerClass::Wan, 123_456)
            .unwrap();
        store.raise_reservation(id, Timestamp(0), 200_000).unwrap();
        for i in 0..200 {
            store
                .conn
                .execute(
                    "INSERT INTO networks (id, name, kind, first_seen, last_seen) VALUES (?1, ?2, 'wifi', 0, 0)",
                    params![format!("net-{i}"), format!("ZZMARKERZZ{}", "n".repeat(300))],
                )
                .unwrap();
        }
        store
            .conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        drop(store);
        let mut bytes = std::fs::read(path).unwrap();
        let page = 4096;
        let victim = (1..bytes.len() / page)
            .find(|p| {
                let chunk = &bytes[p * page..(p + 1) * page];
                chunk.windows(10).any(|w| w == b"ZZMARKERZZ")
            })
            .expect("a page of the networks table");
        bytes[victim * page..(victim + 1) * page].fill(0xff);
        std::fs::write(path, &bytes).unwrap();
        (123_456, 200_000)
    }

    #[test]
    fn a_corrupt_database_is_left_alone_without_repair_and_its_ledger_carried_over_with() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capwise.db");
        let id = NetworkId::new("hotspot");
        let (used, reserved) = database_with_a_damaged_networks_page(&path, &id);
        let before = std::fs::read(&path).unwrap();

        let error = Store::open_without_repair(&path, BUSY_TIMEOUT).unwrap_err();
        assert!(
            matches!(error, PolicyError::DatabaseDamaged { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("left as it is"), "{error}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was changed"
        );
        assert!(corrupt_files(dir.path()).is_empty());

        let store = Store::open(&path, Timestamp(9)).unwrap();
        assert!(store.moved_aside().is_some());
        assert_eq!(store.carried_rows(), 2);
        let rows = store.usage(&id, Timestamp(0)).unwrap();
        assert_eq!(rows.iter().map(|r| r.bytes).sum::<u64>(), used);
        assert_eq!(store.reserved(&id, Timestamp(0)).unwrap(), reserved);
    }

    fn corrupt_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("corrupt"))
            .collect()
    }

    #[test]
    fn database_from_a_newer_version_is_refused_and_left_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.db");
        database_with_a_reservation(&path);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("PRAGMA user_version = 99; PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let error = Store::open(&path, Timestamp(5)).unwrap_err();
        assert!(
            matches!(
                error,
                PolicyError::DatabaseTooNew { found: 99, known, .. }
                    if known as usize == MIGRATIONS.len()
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "newer capwise (schema 99, this one knows {})",
                MIGRATIONS.len()
            )) && text.contains("upgrade capwise or move the file away"),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(corrupt_files(dir.path()).is_empty());
    }

    #[test]
    fn locked_database_is_refused_not_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.db");
        let id = database_with_a_reservation(&path);
        // Another process writing with the file locked exclusively (WAL
        // readers would pass a plain write transaction).
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;
                 UPDATE reservations SET reserved_bytes = 800;",
            )
            .unwrap();
        let started = std::time::Instant::now();
        let error = Store::open_with_busy_timeout(&path, Timestamp(9), Duration::from_millis(50))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            matches!(error, PolicyError::DatabaseLocked { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("locked"), "{error}");
        assert!(corrupt_files(dir.path()).is_empty());
        // Once the other process is done, nothing was lost.
        other.execute_batch("COMMIT").unwrap();
        drop(other);
        let store = Store::open(&path, Timestamp(10)).unwrap();
        assert!(store.moved_aside().is_none());
        assert_eq!(store.reserved(&id, Timestamp(0)).unwrap(), 800);
        assert!(store.budget(&id).unwrap().is_some());
    }

    #[test]
    fn locked_old_schema_is_refused_while_the_migration_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; {}; PRAGMA user_version = 1;",
                MIGRATIONS[0]
            ))
            .unwrap();
        }
        // A plain write transaction: the migration needs the write lock.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO reservations VALUES ('n', 0, 5);")
            .unwrap();
        let error = Store::open_with_busy_timeout(&path, Timestamp(9), Duration::from_millis(50))
            .unwrap_err();
        assert!(
            matches!(error, PolicyError::DatabaseLocked { .. }),
            "{error:?}"
        );
        assert!(corrupt_files(dir.path()).is_empty());
        other.execute_batch("COMMIT").unwrap();
        let store = Store::open(&path, Timestamp(10)).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        assert_eq!(
            store.reserved(&NetworkId::new("n"), Timestamp(0)).unwrap(),
            5
        );
    }

    #[test]
    fn unreadable_directory_is_refused_not_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        // The path is a directory: SQLite cannot open it; there is nothing
        // corrupt to move.
        let path = dir.path().join("policy.db");
        std::fs::create_dir(&path).unwrap();
        let error = Store::open(&path, Timestamp(1)).unwrap_err();
        assert!(
            matches!(error, PolicyError::DatabaseUnavailable { .. }),
            "{error:?}"
        );
        assert!(path.is_dir());
        assert!(corrupt_files(dir.path()).is_empty());
    }

    #[test]
    fn truncated_or_overwritten_databases_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let good_path = dir.path().join("good.db");
        database_with_a_reservation(&good_path);
        {
            // Enough pages that half the file cuts through the tables.
            let store = Store::open(&good_path, Timestamp(1)).unwrap();
            for n in 0..400 {
                store
                    .raise_reservation(&NetworkId::new(format!("n{n:0>40}")), Timestamp(0), n)
                    .unwrap();
            }
            store
                .conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let good = std::fs::read(&good_path).unwrap();
        assert!(good.len() > 8192, "{}", good.len());
        let mut garbage_header = good.clone();
        garbage_header[..100].fill(0xA5);
        let cases = [
            ("truncated", good[..good.len() / 2].to_vec()),
            ("garbage header", garbage_header),
        ];
        for (n, (what, bytes)) in cases.into_iter().enumerate() {
            let case_dir = dir.path().join(format!("case{n}"));
            std::fs::create_dir(&case_dir).unwrap();
            let path = case_dir.join("policy.db");
            std::fs::write(&path, &bytes).unwrap();
            let store = Store::open(&path, Timestamp(7)).unwrap();
            assert!(store.moved_aside().is_some(), "{what}");
            assert!(store.why_moved_aside().is_some(), "{what}");
            assert_eq!(corrupt_files(&case_dir).len(), 1, "{what}");
            assert_eq!(std::fs::read(store.moved_aside().unwrap()).unwrap(), bytes);
        }
    }

    #[test]
    fn networks_budgets_schedules_round_trip() {
        let mut store = Store::open_in_memory().unwrap();
        let net = Network {
            id: NetworkId::new("uuid-9"),
            name: "Pixel hotspot".into(),
            kind: NetworkKind::Wifi,
            metered: Metered::GuessYes,
            metered_source: MeteredSource::NetworkManager,
            ..Network::default()
        };
        store.note_network_seen(&net, Timestamp(100)).unwrap();
        store.note_network_seen(&net, Timestamp(200)).unwrap();
        let seen = store.networks().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].first_seen, seen[0].last_seen),
            (Timestamp(100), Timestamp(200))
        );
        assert_eq!(seen[0].kind, NetworkKind::Wifi);

        let budget = Budget {
            cap_bytes: 5_000_000_000,
            period: Period::Weekly {
                starts_on: Weekday::Wed,
            },
            counts: Counts::UpOnly,
            reserve_percent: 15,
            zone: UtcOffset::from_hm(5, 30).unwrap().into(),
        };
        store.set_budget(&net.id, Some(&budget)).unwrap();
        assert_eq!(store.budget(&net.id).unwrap(), Some(budget));
        assert_eq!(store.budgets().unwrap(), vec![(net.id.clone(), budget)]);
        store.set_budget(&net.id, None).unwrap();
        assert_eq!(store.budget(&net.id).unwrap(), None);

        let schedule = Schedule {
            windows: vec![
                Window {
                    days: Days::WEEKDAYS,
                    start_minute: 1320,
                    end_minute: 360,
                    rule: Rule::Free,
                },
                Window {
                    days: Days::EVERY_DAY,
                    start_minute: 540,
                    end_minute: 1020,
                    rule: Rule::Limit {
                        down: Some(100_000),
                        up: None,
                    },
                },
            ],
            zone: Zone::Fixed(UtcOffset::from_hm(1, 0).unwrap()),
        };
        store.set_schedule(&net.id, &schedule).unwrap();
        assert_eq!(store.schedule(&net.id).unwrap(), schedule);
        let named = Schedule {
            zone: Zone::named("America/New_York").unwrap(),
            ..schedule
        };
        store.set_schedule(&net.id, &named).unwrap();
        assert_eq!(store.schedule(&net.id).unwrap(), named);
        assert_eq!(store.scheduled_networks().unwrap(), vec![net.id.clone()]);
        store.set_schedule(&net.id, &Schedule::default()).unwrap();
        assert!(store.scheduled_networks().unwrap().is_empty());

        assert_eq!(store.link_reading(&net.id).unwrap(), None);
        let reading = LinkReading {
            interface: "wlan0".into(),
            boot_id: "b1".into(),
            counters: Counters {
                rx: u64::MAX / 4,
                tx: 7,
            },
            at: Timestamp(1_700_000_000),
        };
        store.save_link_reading(&net.id, &reading).unwrap();
        let later = LinkReading {
            at: Timestamp(1_700_000_002),
            ..reading
        };
        store.save_link_reading(&net.id, &later).unwrap();
        assert_eq!(store.link_reading(&net.id).unwrap(), Some(later));
    }

    #[test]
    fn schema_1_database_is_migrated_and_keeps_its_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.db");
        {
            // The database as schema 1 left it (MIGRATIONS[0] is that DDL,
            // never edited), with a budget at +02:00.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!("{}; PRAGMA user_version = 1;", MIGRATIONS[0]))
                .unwrap();
            conn.execute(
                "INSERT INTO budgets (network_id, cap_bytes, period, cycle_day, one_off_start,
                     one_off_end, counts, reserve_percent, utc_offset_seconds)
                 VALUES ('old', 1000, 'daily', NULL, NULL, NULL, 'down+up', 10, 7200)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path, Timestamp(1)).unwrap();
        assert!(store.moved_aside().is_none());
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        let old = store.budget(&NetworkId::new("old")).unwrap().unwrap();
        assert_eq!(old.zone, Zone::Fixed(UtcOffset::from_hm(2, 0).unwrap()));
        assert_eq!(old.period, Period::Daily);
        // The new column takes a name.
        let id = NetworkId::new("new");
        let paris = Budget::monthly(1000, 31, Zone::named("Europe/Paris").unwrap());
        store.set_budget(&id, Some(&paris)).unwrap();
        drop(store);
        let store = Store::open(&path, Timestamp(2)).unwrap();
        assert_eq!(store.budget(&id).unwrap(), Some(paris));
        assert_eq!(
            store.budget(&id).unwrap().unwrap().zone.name(),
            Some("Europe/Paris")
        );
    }

    #[test]
    fn unknown_stored_zone_name_falls_back_to_the_offset() {
        assert_eq!(
            stored_zone(3600, Some("Nowhere/Atlantis")),
            Some(Zone::Fixed(UtcOffset::from_hm(1, 0).unwrap()))
        );
        assert_eq!(stored_zone(0, None), Some(Zone::UTC));
        assert_eq!(stored_zone(30 * 3600, None), None);
    }

    #[test]
    fn reservations_only_rise_and_usage_accumulates() {
        let store = Store::open_in_memory().unwrap();
        let id = NetworkId::new("n");
        store.raise_reservation(&id, Timestamp(0), 1000).unwrap();
        store.raise_reservation(&id, Timestamp(0), 500).unwrap();
        assert_eq!(store.reserved(&id, Timestamp(0)).unwrap(), 1000);
        assert_eq!(store.reserved(&id, Timestamp(1)).unwrap(), 0);
        store
            .add_usage(&id, Timestamp(0), Direction::Up, PeerClass::Wan, 10)
            .unwrap();
        store
            .add_usage(&id, Timestamp(0), Direction::Up, PeerClass::Wan, 5)
            .unwrap();
        let rows = store.usage(&id, Timestamp(0)).unwrap();
        assert_eq!(
            rows,
            vec![UsageRow {
                direction: Direction::Up,
                peer_class: PeerClass::Wan,
                bytes: 15
            }]
        );
        store.add_link_usage(&id, Timestamp(0), 7, 3).unwrap();
        store.add_link_usage(&id, Timestamp(0), 1, 1).unwrap();
        assert_eq!(store.link_usage(&id, Timestamp(0)).unwrap(), (8, 4));
    }

    #[test]
    fn usage_per_day_rolls_up_by_day_across_periods() {
        let store = Store::open_in_memory().unwrap();
        let id = NetworkId::new("n");
        let other = NetworkId::new("other");
        let add = |id: &NetworkId, period: i64, day: &str, d: Direction, c: PeerClass, b: u64| {
            store
                .add_usage_on(id, Timestamp(period), day, d, c, b)
                .unwrap();
        };
        // Two flushes on one day add up; a month's last day and the next
        // month's first are two days though the period changes between them.
        add(&id, 100, "2026-11-29", Direction::Down, PeerClass::Wan, 10);
        add(&id, 100, "2026-11-30", Direction::Down, PeerClass::Wan, 20);
        add(&id, 100, "2026-11-30", Direction::Down, PeerClass::Wan, 5);
        add(&id, 100, "2026-11-30", Direction::Up, PeerClass::Lan, 7);
        add(&id, 200, "2026-12-01", Direction::Up, PeerClass::Wan, 3);
        add(&other, 200, "2026-12-02", Direction::Up, PeerClass::Wan, 99);
        let days = store.recent_days(&id, 2).unwrap();
        let names: Vec<&str> = days.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(
            names,
            vec!["2026-11-30", "2026-12-01"],
            "the last two, oldest first"
        );
        let total = |d: &DayUsage, dir: Direction, class: PeerClass| -> u64 {
            d.rows
                .iter()
                .filter(|r| r.direction == dir && r.peer_class == class)
                .map(|r| r.bytes)
                .sum()
        };
        assert_eq!(total(&days[0], Direction::Down, PeerClass::Wan), 25);
        assert_eq!(total(&days[0], Direction::Up, PeerClass::Lan), 7);
        assert_eq!(total(&days[1], Direction::Up, PeerClass::Wan), 3);
        assert_eq!(store.recent_days(&id, 10).unwrap().len(), 3);
        // The periods' totals are those of the same writes.
        let periods = store.recent_periods(&id, 10).unwrap();
        assert_eq!(periods[0].rows.iter().map(|r| r.bytes).sum::<u64>(), 42);
        assert!(store
            .recent_days(&NetworkId::new("none"), 5)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_schema_5_database_gains_the_days_and_keeps_its_totals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.db");
        {
            let conn = Connection::open(&path).unwrap();
            let mut sql = String::new();
            for m in &MIGRATIONS[..5] {
                sql.push_str(m);
                sql.push(';');
            }
            conn.execute_batch(&format!("{sql} PRAGMA user_version = 5;"))
                .unwrap();
            conn.execute(
                "INSERT INTO usage VALUES ('n', 100, 'down', 'wan', 1234)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path, Timestamp(1000)).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        let id = NetworkId::new("n");
        assert_eq!(store.usage(&id, Timestamp(100)).unwrap()[0].bytes, 1234);
        assert!(store.recent_days(&id, 5).unwrap().is_empty());
        store
            .add_usage(&id, Timestamp(100), Direction::Down, PeerClass::Wan, 6)
            .unwrap();
        let days = store.recent_days(&id, 5).unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].rows[0].bytes, 6);
        assert_eq!(days[0].day.len(), 10, "{}", days[0].day);
        store
            .take_back_usage(&id, Timestamp(100), Direction::Down, PeerClass::Wan, 4)
            .unwrap();
        assert_eq!(store.recent_days(&id, 5).unwrap()[0].rows[0].bytes, 2);
        assert_eq!(store.usage(&id, Timestamp(100)).unwrap()[0].bytes, 1236);
    }

    #[test]
    fn recent_periods_are_the_last_ones_with_usage_oldest_first() {
        let store = Store::open_in_memory().unwrap();
        let id = NetworkId::new("n");
        for start in [100, 200, 300] {
            store
                .add_usage(
                    &id,
                    Timestamp(start),
                    Direction::Down,
                    PeerClass::Wan,
                    start as u64,
                )
                .unwrap();
        }
        // A period where only the link was read counts too.
        store.add_link_usage(&id, Timestamp(400), 9, 1).unwrap();
        store
            .add_usage(
                &NetworkId::new("other"),
                Timestamp(500),
                Direction::Up,
                PeerClass::Wan,
                1,
            )
            .unwrap();
        let periods = store.recent_periods(&id, 3).unwrap();
        let starts: Vec<i64> = periods.iter().map(|p| p.period_start.0).collect();
        assert_eq!(starts, vec![200, 300, 400]);
        assert_eq!(periods[0].rows[0].bytes, 200);
        assert_eq!(periods[0].link, (0, 0));
        assert!(periods[2].rows.is_empty());
        assert_eq!(periods[2].link, (9, 1));
        assert!(store
            .recent_periods(&NetworkId::new("none"), 3)
            .unwrap()
            .is_empty());
    }
}
