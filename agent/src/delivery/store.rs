//! The publisher's record of delivery reports, in `capwise.db`: the last
//! report of each machine (agent key) per channel. A report older than the
//! one kept (a replay, a delayed retry) never replaces it.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use capwise_channel::report::Report;
use rusqlite::{params, Connection};

/// One machine's last report, as kept.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The report itself (verified when it arrived).
    pub report: Report,
    /// When it arrived, Unix seconds.
    pub received_at: u64,
}

/// The table of reports, behind one connection.
#[derive(Debug)]
pub struct DeliveryStore {
    conn: Mutex<Connection>,
}

impl DeliveryStore {
    /// Opens the agent's database at `path` (creating the table if needed).
    pub fn open(path: &Path) -> Result<DeliveryStore> {
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        crate::torrent_db::migrate(&conn)
            .with_context(|| format!("cannot migrate {}", path.display()))?;
        Ok(DeliveryStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `report` unless one at least as new is kept for its machine;
    /// says whether it was kept.
    pub fn record(&self, report: &Report, received_at: u64) -> Result<bool> {
        let text = serde_json::to_string(report)?;
        let changed = self.conn().execute(
            "INSERT INTO delivery_reports
                 (channel, agent, machine, site, sequence, reported_at, received_at, report)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (channel, agent) DO UPDATE SET
                 machine = excluded.machine, site = excluded.site,
                 sequence = excluded.sequence, reported_at = excluded.reported_at,
                 received_at = excluded.received_at, report = excluded.report
             WHERE excluded.reported_at > delivery_reports.reported_at",
            params![
                report.channel,
                report.agent,
                report.machine,
                report.site,
                report.sequence.map(|s| s as i64),
                report.at as i64,
                received_at as i64,
                text
            ],
        )?;
        Ok(changed > 0)
    }

    /// Every machine's last report for `channel` (hex key), by site and machine.
    pub fn for_channel(&self, channel: &str) -> Result<Vec<Kept>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT report, received_at FROM delivery_reports
             WHERE channel = ?1 ORDER BY site, machine, agent",
        )?;
        let rows = stmt.query_map(params![channel], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut kept = Vec::new();
        for row in rows {
            let (text, received_at) = row?;
            let report: Report =
                serde_json::from_str(&text).context("a stored delivery report does not parse")?;
            kept.push(Kept {
                report,
                received_at: received_at.max(0) as u64,
            });
        }
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_channel::report::ItemHeld;

    fn report(agent: &str, at: u64, have: u64) -> Report {
        Report {
            channel: "c".repeat(64),
            agent: agent.into(),
            machine: format!("m-{agent}"),
            site: "branch-a".into(),
            sequence: Some(1),
            at,
            items: vec![ItemHeld {
                info_hash: "a".repeat(40),
                name: "x".into(),
                have,
                size: 10,
            }],
            problem: None,
        }
    }

    #[test]
    fn a_newer_report_replaces_an_older_one_and_never_the_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeliveryStore::open(&dir.path().join("capwise.db")).unwrap();
        assert!(store.record(&report("1", 100, 5), 100).unwrap());
        assert!(store.record(&report("2", 100, 0), 100).unwrap());
        assert!(store.record(&report("1", 200, 10), 200).unwrap());
        // A replay of the older report is ignored.
        assert!(!store.record(&report("1", 100, 5), 300).unwrap());
        let kept = store.for_channel(&"c".repeat(64)).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].report.items[0].have, 10);
        assert!(store.for_channel(&"d".repeat(64)).unwrap().is_empty());
    }
}
