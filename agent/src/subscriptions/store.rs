//! Subscriptions in `capwise.db` (the agent's tables, migrations 3 and 5
//! of `torrent_db.rs`): what was subscribed to, the channel state the pure
//! step needs (last sequence, body digest, held items), the HTTP
//! validators for conditional polls, and the last poll's result in words.
//!
//! The held set is written item by item as the poller reaches it, so a
//! crash between adding a torrent and recording it loses at most that one
//! record; the sequence, digest and validators are written once a poll's
//! actions are done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capwise_channel::{BodyDigest, SubscriptionState};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::torrent_db::TorrentDb;

/// What a subscription is and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The manifest's URL: the subscription's identity.
    pub url: String,
    /// The pinned channel key, 64 hex digits.
    pub key: String,
    /// Where its torrents go; `None`: the agent's download directory.
    pub download_dir: Option<PathBuf>,
    /// Its torrents are background work (as `capwise add --background`).
    pub background: bool,
    /// Seconds between polls.
    pub interval_secs: u64,
    /// Last sequence, digest and held info-hashes.
    pub state: SubscriptionState,
    /// Held info-hash → the item's name.
    pub names: BTreeMap<String, String>,
    /// The accepted manifest's `ETag`, for `If-None-Match`.
    pub etag: Option<String>,
    /// The accepted manifest's `Last-Modified`, for `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// When it was last polled, Unix seconds.
    pub polled_at: Option<i64>,
    /// The last poll's outcome: accepted, unchanged, refused, failed, waiting.
    pub outcome: Option<String>,
    /// The last poll's result, in words.
    pub result: Option<String>,
    /// Where the last accepted manifest asks for delivery reports.
    pub report_url: Option<String>,
    /// The channel's membership token (hex), if given at `subscribe`.
    pub token: Option<String>,
    /// Its WAN window (`window.rs` syntax), if given at `subscribe`.
    pub wan_window: Option<String>,
}

impl Subscription {
    /// A new subscription, never polled.
    pub fn new(
        url: String,
        key: String,
        download_dir: Option<PathBuf>,
        background: bool,
        interval_secs: u64,
    ) -> Self {
        Subscription {
            url,
            key,
            download_dir,
            background,
            interval_secs,
            state: SubscriptionState::default(),
            names: BTreeMap::new(),
            etag: None,
            last_modified: None,
            polled_at: None,
            outcome: None,
            result: None,
            report_url: None,
            token: None,
            wan_window: None,
        }
    }
}

/// A poll's outcome, stored as its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A manifest was accepted and its actions carried out (maybe partly).
    Accepted,
    /// The server said 304, or sent the accepted bytes again.
    Unchanged,
    /// The manifest was refused: nothing changed.
    Refused,
    /// It could not be fetched.
    Failed,
    /// Not polled: the policy holds WAN traffic back.
    Waiting,
}

impl Outcome {
    /// The stored and shown word.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Waiting => "waiting",
        }
    }
}

/// Why a subscription cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is subscribed already.
    #[error("already subscribed to {0} (unsubscribe first to change its key or options)")]
    Exists(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] anyhow::Error),
}

/// Stores a new subscription.
pub fn insert(db: &TorrentDb, s: &Subscription, now: i64) -> Result<(), StoreError> {
    let dir = match &s.download_dir {
        Some(d) => Some(
            d.to_str()
                .context("the download directory's name is not UTF-8")?
                .to_owned(),
        ),
        None => None,
    };
    db.with_conn(|conn| {
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO subscriptions
                 (url, key, download_dir, background, interval_secs, added_at, token, wan_window)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.url,
                    s.key,
                    dir,
                    s.background,
                    s.interval_secs as i64,
                    now,
                    s.token,
                    s.wan_window
                ],
            )
            .context("cannot store the subscription")?;
        if inserted == 0 {
            return Err(StoreError::Exists(s.url.clone()));
        }
        Ok(())
    })
}

/// Forgets a subscription and its held items.
pub fn delete(db: &TorrentDb, url: &str) -> Result<()> {
    db.with_conn(|conn| {
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM subscription_items WHERE url = ?1",
            params![url],
        )?;
        tx.execute("DELETE FROM subscriptions WHERE url = ?1", params![url])?;
        tx.commit()?;
        Ok(())
    })
}

/// One subscription.
pub fn get(db: &TorrentDb, url: &str) -> Result<Option<Subscription>> {
    db.with_conn(|conn| Ok(read(conn, Some(url))?.pop()))
}

/// Every subscription, by URL.
pub fn all(db: &TorrentDb) -> Result<Vec<Subscription>> {
    db.with_conn(|conn| read(conn, None))
}

/// Every subscription, read without the agent (`capwise channel list` with
/// none running): read-only, and empty when there is no database or table.
pub fn all_without_agent(db_path: &Path) -> Result<Vec<Subscription>> {
    if !db_path.exists() {
        return Ok(Vec::new());
    }
    let conn = Connection::open_with_flags(db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", db_path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let exists: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'subscriptions'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    // A database no agent has migrated since an upgrade has no window column.
    let windows: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('subscriptions') WHERE name = 'wan_window'",
        [],
        |r| r.get(0),
    )?;
    read_columns(&conn, None, windows)
}

fn read(conn: &Connection, url: Option<&str>) -> Result<Vec<Subscription>> {
    read_columns(conn, url, true)
}

fn read_columns(conn: &Connection, url: Option<&str>, windows: bool) -> Result<Vec<Subscription>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT url, key, download_dir, background, interval_secs, last_sequence, digest,
                etag, last_modified, polled_at, outcome, result, report_url, token, {}
         FROM subscriptions WHERE ?1 IS NULL OR url = ?1 ORDER BY url",
        if windows { "wan_window" } else { "NULL" }
    ))?;
    let rows = stmt.query_map(params![url], |r| {
        let digest: Option<String> = r.get(6)?;
        Ok(Subscription {
            url: r.get(0)?,
            key: r.get(1)?,
            download_dir: r.get::<_, Option<String>>(2)?.map(PathBuf::from),
            background: r.get(3)?,
            interval_secs: r.get::<_, i64>(4)?.max(0) as u64,
            state: SubscriptionState {
                last_sequence: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
                held: Default::default(),
                // A digest that does not decode is as if none were kept: the
                // next manifest of that sequence pins its body again.
                digest: digest.and_then(|d| hex::decode(d).ok()?.try_into().ok()),
            },
            names: BTreeMap::new(),
            etag: r.get(7)?,
            last_modified: r.get(8)?,
            polled_at: r.get(9)?,
            outcome: r.get(10)?,
            result: r.get(11)?,
            report_url: r.get(12)?,
            token: r.get(13)?,
            wan_window: r.get(14)?,
        })
    })?;
    let mut subs: Vec<Subscription> = rows.collect::<rusqlite::Result<_>>()?;
    let mut items = conn.prepare(
        "SELECT info_hash, name FROM subscription_items WHERE url = ?1 ORDER BY info_hash",
    )?;
    for s in &mut subs {
        let held = items.query_map(params![s.url], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in held {
            let (hash, name) = row?;
            s.state.held.insert(hash.clone());
            s.names.insert(hash, name);
        }
    }
    Ok(subs)
}

/// Records that the subscription now holds an item it added.
pub fn hold(db: &TorrentDb, url: &str, info_hash: &str, name: &str) -> Result<()> {
    db.with_conn(|conn| {
        conn.execute(
            "INSERT OR REPLACE INTO subscription_items (url, info_hash, name) VALUES (?1, ?2, ?3)",
            params![url, info_hash, name],
        )?;
        Ok(())
    })
}

/// Records that the subscription let an item go.
pub fn release(db: &TorrentDb, url: &str, info_hash: &str) -> Result<()> {
    db.with_conn(|conn| {
        conn.execute(
            "DELETE FROM subscription_items WHERE url = ?1 AND info_hash = ?2",
            params![url, info_hash],
        )?;
        Ok(())
    })
}

/// What an accepted manifest leaves behind.
pub struct Accepted<'a> {
    /// Its sequence.
    pub sequence: u64,
    /// Its body's SHA-256.
    pub digest: Option<BodyDigest>,
    /// Validators for the next conditional poll; `None` when an action
    /// failed, so that the next poll fetches the manifest again and retries.
    pub validators: Option<(Option<&'a str>, Option<&'a str>)>,
    /// The manifest's delivery-report URL.
    pub report_url: Option<&'a str>,
}

/// Records an accepted manifest and the poll's result.
pub fn record_accepted(
    db: &TorrentDb,
    url: &str,
    accepted: &Accepted<'_>,
    now: i64,
    outcome: Outcome,
    result: &str,
) -> Result<()> {
    let (etag, last_modified) = accepted.validators.unwrap_or((None, None));
    db.with_conn(|conn| {
        conn.execute(
            "UPDATE subscriptions SET last_sequence = ?2, digest = ?3, etag = ?4,
                 last_modified = ?5, polled_at = ?6, outcome = ?7, result = ?8,
                 report_url = ?9
             WHERE url = ?1",
            params![
                url,
                accepted.sequence as i64,
                accepted.digest.map(hex::encode),
                etag,
                last_modified,
                now,
                outcome.word(),
                result,
                accepted.report_url
            ],
        )?;
        Ok(())
    })
}

/// Records a poll that changed nothing (unchanged, refused, failed, waiting).
pub fn record_result(
    db: &TorrentDb,
    url: &str,
    now: i64,
    outcome: Outcome,
    result: &str,
) -> Result<()> {
    db.with_conn(|conn| {
        conn.execute(
            "UPDATE subscriptions SET polled_at = ?2, outcome = ?3, result = ?4 WHERE url = ?1",
            params![url, now, outcome.word(), result],
        )?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_their_items_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capwise.db");
        let url = "http://hq.example/ch/manifest.json";
        {
            let db = TorrentDb::open(&path).unwrap();
            let mut s = Subscription::new(url.into(), "ab".repeat(32), None, true, 60);
            s.wan_window = Some("22:00-06:00".into());
            insert(&db, &s, 1).unwrap();
            assert!(matches!(insert(&db, &s, 2), Err(StoreError::Exists(_))));
            hold(&db, url, &"11".repeat(20), "a.iso").unwrap();
            hold(&db, url, &"22".repeat(20), "b.img").unwrap();
            release(&db, url, &"11".repeat(20)).unwrap();
            let accepted = Accepted {
                sequence: 7,
                digest: Some([9; 32]),
                validators: Some((Some("\"e1\""), None)),
                report_url: Some("http://hq/v1/reports"),
            };
            record_accepted(&db, url, &accepted, 5, Outcome::Accepted, "accepted 7").unwrap();
        }
        let db = TorrentDb::open(&path).unwrap();
        let s = get(&db, url).unwrap().expect("stored");
        assert_eq!(s.state.last_sequence, Some(7));
        assert_eq!(s.state.digest, Some([9; 32]));
        assert_eq!(s.report_url.as_deref(), Some("http://hq/v1/reports"));
        assert_eq!(
            s.state.held.iter().cloned().collect::<Vec<_>>(),
            vec!["22".repeat(20)]
        );
        assert_eq!(s.names[&"22".repeat(20)], "b.img");
        assert_eq!(s.etag.as_deref(), Some("\"e1\""));
        assert!(s.background && s.interval_secs == 60);
        assert_eq!(s.wan_window.as_deref(), Some("22:00-06:00"));
        record_result(&db, url, 6, Outcome::Refused, "refused: rollback").unwrap();
        let s = get(&db, url).unwrap().unwrap();
        assert_eq!(s.state.last_sequence, Some(7));
        assert_eq!(s.outcome.as_deref(), Some("refused"));
        drop(db);
        assert_eq!(all_without_agent(&path).unwrap().len(), 1);
        let db = TorrentDb::open(&path).unwrap();
        delete(&db, url).unwrap();
        assert!(all(&db).unwrap().is_empty());
        assert!(all_without_agent(&dir.path().join("none.db"))
            .unwrap()
            .is_empty());
    }
}
