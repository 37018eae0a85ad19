//! The agent's torrents in `capwise.db`, next to the policy's tables: each
//! torrent's metainfo, where its data lives, the user's choices for it, and
//! its resume data, so a restart picks every torrent up where it was.
//!
//! The agent opens its own connection to the same WAL database as the
//! policy store and versions its tables separately (`agent_schema`), so the
//! two crates migrate independently.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use capwise_engine::storage::ResumeStore;
use rusqlite::{params, Connection, OptionalExtension};

/// The agent's schema version, one step per entry of [`MIGRATIONS`].
const MIGRATIONS: &[&str] = &[
    // 1: torrents and the user's settings that outlive a restart.
    "CREATE TABLE torrents (
        info_hash    TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        metainfo     BLOB NOT NULL,
        download_dir TEXT NOT NULL,
        paused       INTEGER NOT NULL DEFAULT 0,
        background   INTEGER NOT NULL DEFAULT 0,
        added_at     INTEGER NOT NULL,
        resume       BLOB
    );
    CREATE TABLE agent_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: the verified-piece journal, written between resume checkpoints.
    "ALTER TABLE torrents ADD COLUMN journal BLOB;",
    // 3: channel subscriptions (`subscriptions/store.rs`) and the items each holds.
    "CREATE TABLE subscriptions (
        url           TEXT PRIMARY KEY,
        key           TEXT NOT NULL,
        download_dir  TEXT,
        background    INTEGER NOT NULL DEFAULT 0,
        interval_secs INTEGER NOT NULL,
        added_at      INTEGER NOT NULL,
        last_sequence INTEGER,
        digest        TEXT,
        etag          TEXT,
        last_modified TEXT,
        polled_at     INTEGER,
        outcome       TEXT,
        result        TEXT,
        report_url    TEXT,
        token         TEXT
    );
    CREATE TABLE subscription_items (
        url       TEXT NOT NULL,
        info_hash TEXT NOT NULL,
        name      TEXT NOT NULL,
        PRIMARY KEY (url, info_hash)
    );",
    // 4: at a publisher, the last delivery report of each subscribed
    // machine (agent key) per channel.
    "CREATE TABLE delivery_reports (
        channel     TEXT NOT NULL,
        agent       TEXT NOT NULL,
        machine     TEXT NOT NULL,
        site        TEXT NOT NULL,
        sequence    INTEGER,
        reported_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        report      TEXT NOT NULL,
        PRIMARY KEY (channel, agent)
    );",
    // 5: a subscription's WAN window (`subscriptions/window.rs`), as
    // `subscribe --wan-window` gave it; NULL: none.
    "ALTER TABLE subscriptions ADD COLUMN wan_window TEXT;",
    // 6: the queue's order (`daemon/torrents/queue.rs`), first to go
    // first; torrents stored before it keep the order they were added in.
    "ALTER TABLE torrents ADD COLUMN queue_position INTEGER;
    UPDATE torrents SET queue_position =
        (SELECT COUNT(*) FROM torrents AS t
         WHERE t.added_at < torrents.added_at
            OR (t.added_at = torrents.added_at AND t.info_hash < torrents.info_hash));",
];

/// One stored torrent.
#[derive(Debug, Clone)]
pub struct StoredTorrent {
    /// Info-hash, 40 lowercase hex digits.
    pub id: String,
    /// The torrent's name.
    pub name: String,
    /// The .torrent bytes.
    pub metainfo: Vec<u8>,
    /// Where its data lives.
    pub download_dir: PathBuf,
    /// Paused by the user.
    pub paused: bool,
    /// Background work: waits on metered networks.
    pub background: bool,
}

/// The agent's side of the database. One connection behind a mutex: writes
/// are adds, pauses, resume data every 30 s per torrent, and while
/// downloading a journal record every few tens of milliseconds (one small
/// UPDATE each, batching the pieces written meanwhile).
#[derive(Debug)]
pub struct TorrentDb {
    conn: Mutex<Connection>,
}

impl TorrentDb {
    /// Opens the database file (the policy store has already created it or
    /// moved a corrupt one aside) and brings the agent's tables up to date.
    pub fn open(path: &Path) -> Result<TorrentDb> {
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL with NORMAL survives a killed process; only power loss can
        // drop the last commits, and resume data is re-checked against the
        // files anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&conn).with_context(|| format!("cannot migrate {}", path.display()))?;
        Ok(TorrentDb {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection, for the agent's other tables (`subscriptions/store.rs`).
    pub(crate) fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        f(&self.conn())
    }

    /// Every stored torrent, in queue order.
    pub fn torrents(&self) -> Result<Vec<StoredTorrent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT info_hash, name, metainfo, download_dir, paused, background
             FROM torrents ORDER BY queue_position, added_at, info_hash",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredTorrent {
                id: r.get(0)?,
                name: r.get(1)?,
                metainfo: r.get(2)?,
                download_dir: PathBuf::from(r.get::<_, String>(3)?),
                paused: r.get(4)?,
                background: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores a newly added torrent.
    pub fn insert(&self, t: &StoredTorrent, added_at: i64) -> Result<()> {
        let dir = t
            .download_dir
            .to_str()
            .context("the download directory's name is not UTF-8")?;
        self.conn().execute(
            "INSERT INTO torrents (info_hash, name, metainfo, download_dir, paused, background, added_at,
                                   queue_position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
                     (SELECT COALESCE(MAX(queue_position) + 1, 0) FROM torrents))",
            params![t.id, t.name, t.metainfo, dir, t.paused, t.background, added_at],
        )?;
        Ok(())
    }

    /// Records the queue's order: `ids`, first to go first.
    pub fn set_queue_order(&self, ids: &[String]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (position, id) in ids.iter().enumerate() {
            tx.execute(
                "UPDATE torrents SET queue_position = ?2 WHERE info_hash = ?1",
                params![id, position as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records whether the user paused a torrent.
    pub fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        self.conn().execute(
            "UPDATE torrents SET paused = ?2 WHERE info_hash = ?1",
            params![id, paused],
        )?;
        Ok(())
    }

    /// Replaces a torrent's stored source (a magnet link once its metadata
    /// is fetched) with .torrent bytes, and its name.
    pub fn set_metainfo(&self, id: &str, name: &str, metainfo: &[u8]) -> Result<()> {
        self.conn().execute(
            "UPDATE torrents SET metainfo = ?1, name = ?2 WHERE info_hash = ?3",
            params![metainfo, name, id],
        )?;
        Ok(())
    }

    /// Records where a torrent's data is now (`capwise move`).
    pub fn set_download_dir(&self, id: &str, dir: &Path) -> Result<()> {
        let dir = dir
            .to_str()
            .context("the download directory's name is not UTF-8")?;
        self.conn().execute(
            "UPDATE torrents SET download_dir = ?2 WHERE info_hash = ?1",
            params![id, dir],
        )?;
        Ok(())
    }

    /// Every setting whose key starts with `prefix`, by key.
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT key, value FROM agent_settings WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = stmt.query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets a torrent and its resume data.
    pub fn remove(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM torrents WHERE info_hash = ?1", params![id])?;
        Ok(())
    }

    /// A setting the user changed at run time (e.g. `capwise limits set`).
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM agent_settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps a setting across restarts; `None` removes it.
    pub fn set_setting(&self, key: &str, value: Option<&str>) -> Result<()> {
        let conn = self.conn();
        match value {
            Some(v) => conn.execute(
                "INSERT INTO agent_settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => conn.execute("DELETE FROM agent_settings WHERE key = ?1", params![key])?,
        };
        Ok(())
    }
}

/// Resume data lives in the torrent's row: one database to back up, and a
/// removed torrent takes its resume data with it.
impl ResumeStore for TorrentDb {
    fn load(&self, info_hash: &[u8; 20]) -> std::io::Result<Option<Vec<u8>>> {
        self.conn()
            .query_row(
                "SELECT resume FROM torrents WHERE info_hash = ?1",
                params![hex(info_hash)],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(std::io::Error::other)
    }

    fn save(&self, info_hash: &[u8; 20], bytes: &[u8]) -> std::io::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET resume = ?2 WHERE info_hash = ?1",
                params![hex(info_hash), bytes],
            )
            .map(drop)
            .map_err(std::io::Error::other)
    }

    fn remove(&self, info_hash: &[u8; 20]) -> std::io::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET resume = NULL, journal = NULL WHERE info_hash = ?1",
                params![hex(info_hash)],
            )
            .map(drop)
            .map_err(std::io::Error::other)
    }

    fn load_journal(&self, info_hash: &[u8; 20]) -> std::io::Result<Option<Vec<u8>>> {
        self.conn()
            .query_row(
                "SELECT journal FROM torrents WHERE info_hash = ?1",
                params![hex(info_hash)],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(std::io::Error::other)
    }

    /// Under WAL with `synchronous = NORMAL` a commit is a write to the WAL,
    /// no fsync: it survives a killed process, as the journal must.
    fn save_journal(&self, info_hash: &[u8; 20], bytes: &[u8]) -> std::io::Result<()> {
        self.conn()
            .prepare_cached("UPDATE torrents SET journal = ?2 WHERE info_hash = ?1")
            .and_then(|mut st| st.execute(params![hex(info_hash), bytes]))
            .map(drop)
            .map_err(std::io::Error::other)
    }
}

/// Lowercase hex of an info-hash: the torrent's id everywhere in the agent.
pub fn hex(info_hash: &[u8; 20]) -> String {
    info_hash.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS agent_schema (version INTEGER NOT NULL)")?;
    let version: Option<i64> = conn
        .query_row("SELECT version FROM agent_schema", [], |r| r.get(0))
        .optional()?;
    let version = usize::try_from(version.unwrap_or(0)).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        anyhow::bail!(
            "the database was written by a newer capwise (agent schema {version}, this one knows {})",
            MIGRATIONS.len()
        );
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(step)?;
        tx.execute("DELETE FROM agent_schema", [])?;
        tx.execute(
            "INSERT INTO agent_schema (version) VALUES (?1)",
            params![i + 1],
        )?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> StoredTorrent {
        StoredTorrent {
            id: id.into(),
            name: "n".into(),
            metainfo: vec![1, 2, 3],
            download_dir: "/tmp/x".into(),
            paused: false,
            background: true,
        }
    }

    #[test]
    fn torrents_settings_and_resume_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capwise.db");
        let hash = [0xab; 20];
        {
            let db = TorrentDb::open(&path).unwrap();
            db.insert(&sample(&hex(&hash)), 1).unwrap();
            db.set_paused(&hex(&hash), true).unwrap();
            db.set_setting("limits.up", Some("1000")).unwrap();
            db.save(&hash, b"resume").unwrap();
            db.save_journal(&hash, b"journal").unwrap();
        }
        let db = TorrentDb::open(&path).unwrap();
        let all = db.torrents().unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].paused && all[0].background);
        assert_eq!(db.setting("limits.up").unwrap().as_deref(), Some("1000"));
        assert_eq!(db.load(&hash).unwrap().as_deref(), Some(&b"resume"[..]));
        assert_eq!(
            db.load_journal(&hash).unwrap().as_deref(),
            Some(&b"journal"[..])
        );
        assert_eq!(db.load(&[0; 20]).unwrap(), None);
        ResumeStore::remove(&db, &hash).unwrap();
        assert_eq!(db.load(&hash).unwrap(), None);
        assert_eq!(db.load_journal(&hash).unwrap(), None);
        db.remove(&hex(&hash)).unwrap();
        assert!(db.torrents().unwrap().is_empty());
        assert_eq!(db.load(&hash).unwrap(), None);
    }

    /// Torrents come back in queue order; one added later goes last; a
    /// database from before the queue keeps the order of adding.
    #[test]
    fn the_queue_order_survives_and_the_new_go_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capwise.db");
        let ids = |db: &TorrentDb| -> Vec<String> {
            db.torrents().unwrap().into_iter().map(|t| t.id).collect()
        };
        {
            let db = TorrentDb::open(&path).unwrap();
            for (id, at) in [("aa", 3), ("bb", 1), ("cc", 2)] {
                db.insert(&sample(id), at).unwrap();
            }
            assert_eq!(ids(&db), ["aa", "bb", "cc"]);
            db.set_queue_order(&["cc".into(), "aa".into(), "bb".into()])
                .unwrap();
        }
        let db = TorrentDb::open(&path).unwrap();
        db.insert(&sample("dd"), 0).unwrap();
        assert_eq!(ids(&db), ["cc", "aa", "bb", "dd"]);
        drop(db);
        // Back to schema 5, positions gone: migration 6 orders by adding time.
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "ALTER TABLE torrents DROP COLUMN queue_position;
             UPDATE agent_schema SET version = 5;",
        )
        .unwrap();
        drop(old);
        let db = TorrentDb::open(&path).unwrap();
        assert_eq!(ids(&db), ["dd", "bb", "cc", "aa"]);
    }

    #[test]
    fn a_newer_schema_is_refused_not_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capwise.db");
        drop(TorrentDb::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE agent_schema SET version = 99", [])
            .unwrap();
        let e = TorrentDb::open(&path).unwrap_err();
        assert!(format!("{e:#}").contains("newer capwise"), "{e:#}");
    }
}
