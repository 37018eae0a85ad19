//! The policy database in the state directory, and the accounting period
//! that usage is filed under.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use capwise_policy::budget::{period_bounds, Period};
use capwise_policy::error::PolicyError;
use capwise_policy::network::NetworkId;
use capwise_policy::store::{Store, BUSY_TIMEOUT};
use capwise_policy::time::{Timestamp, UtcOffset};

use crate::paths::default_state_dir;

/// The database's file name inside the state directory.
pub const DB_FILE: &str = "capwise.db";

/// The state directory: the one given, else the default.
pub fn state_dir(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .unwrap_or_else(default_state_dir)
}

/// Creates the state directory (and missing parents) readable only by the
/// user: it holds the API token, usage history and the networks seen.
pub fn create_state_dir(state_dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))
}

/// Opens (creating if needed) `<state_dir>/capwise.db` for a command that
/// does not own the state directory (every command but `run`, `get` and
/// `seed`): a corrupt file is refused and left as it is, for the agent to
/// repair. Any other failure (locked, newer schema, permissions) also
/// leaves the file untouched and is returned with the store's message,
/// which names the file and says what to do.
/// (`_now` is kept for the callers; only a repair needs the time.)
pub fn open_store(state_dir: &Path, _now: Timestamp) -> Result<Store> {
    create_state_dir(state_dir)?;
    Ok(Store::open_without_repair(
        &state_dir.join(DB_FILE),
        BUSY_TIMEOUT,
    )?)
}

/// [`open_store`] for the process holding the state directory's lock: a
/// corrupt file is moved aside, its readable usage carried over, and the
/// user told once where it went.
pub fn open_store_repairing(state_dir: &Path, now: Timestamp) -> Result<Store> {
    open_store_with(state_dir, now, BUSY_TIMEOUT)
}

fn open_store_with(state_dir: &Path, now: Timestamp, busy: Duration) -> Result<Store> {
    create_state_dir(state_dir)?;
    let path = state_dir.join(DB_FILE);
    let store = Store::open_with_busy_timeout(&path, now, busy)?;
    if let (Some(aside), Some(why)) = (store.moved_aside(), store.why_moved_aside()) {
        let kept = match store.carried_rows() {
            0 => "budgets, schedules and usage history start over".to_string(),
            n => format!(
                "its usage and reservations ({n} rows) were carried over; budgets and schedules start over"
            ),
        };
        // stderr, not a log line: the CLI shows it as its own warning and
        // the service's stderr is in the journal too; logging it as well
        // printed it twice. Not eprintln!: a closed stderr must not panic.
        let _ = writeln!(
            std::io::stderr(),
            "capwise: warning: {} was corrupt ({why}); moved it to {} and started a fresh database ({kept})",
            path.display(),
            aside.display()
        );
    }
    Ok(store)
}

/// How long the agent keeps retrying a database another process holds
/// locked: under systemd's default 90 s start-up timeout, so that a lock
/// that does not go away ends in a clear failure rather than a kill.
pub const LOCKED_RETRY_LIMIT: Duration = Duration::from_secs(60);

/// The longest pause between two attempts.
const LOCKED_RETRY_MAX_PAUSE: Duration = Duration::from_secs(15);

/// [`open_store`] for the agent: a database locked by another process is
/// retried with a doubling pause (1 s up to 15 s, logged) for at most
/// [`LOCKED_RETRY_LIMIT`]; every other error is returned at once. So a
/// passing lock delays start-up instead of failing it into a restart loop,
/// and a lasting one still fails with the store's message.
pub async fn open_store_waiting(state_dir: &Path) -> Result<Store> {
    retry_while_locked(
        "policy database",
        Duration::from_secs(1),
        LOCKED_RETRY_LIMIT,
        || open_store_repairing(state_dir, Timestamp::now_from_system()),
    )
    .await
}

/// Runs `open` until it succeeds, fails other than by a lock, or `limit`
/// would be passed.
pub async fn retry_while_locked<T>(
    what: &str,
    first_pause: Duration,
    limit: Duration,
    mut open: impl FnMut() -> Result<T>,
) -> Result<T> {
    let started = Instant::now();
    let mut pause = first_pause;
    let mut attempt = 1u32;
    loop {
        match open() {
            Err(error) if is_locked(&error) && started.elapsed() + pause < limit => {
                tracing::warn!(
                    attempt,
                    retry_in_ms = pause.as_millis() as u64,
                    error = %error,
                    "{what} is locked by another process; retrying"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LOCKED_RETRY_MAX_PAUSE);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether `error` is SQLite's busy or locked, typed by the store or raw.
pub fn is_locked(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(policy) = cause.downcast_ref::<PolicyError>() {
            return matches!(policy, PolicyError::DatabaseLocked { .. });
        }
        cause
            .downcast_ref::<rusqlite::Error>()
            .and_then(rusqlite::Error::sqlite_error_code)
            .is_some_and(|code| {
                matches!(
                    code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            })
    })
}

/// The period usage of `id` is filed under at `now`: the budget's period if
/// the network has a budget, else the calendar month (UTC), so that usage
/// is kept even where nothing is capped.
pub fn usage_period(
    store: &Store,
    id: &NetworkId,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp)> {
    Ok(match store.budget(id)? {
        Some(budget) => budget.bounds(now),
        None => calendar_month(now),
    })
}

/// The calendar month (UTC) containing `now`.
pub fn calendar_month(now: Timestamp) -> (Timestamp, Timestamp) {
    period_bounds(now, Period::Monthly { cycle_day: 1 }, UtcOffset::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another process holding `capwise.db` locked exclusively until
    /// `release` is sent (or at once if it is dropped).
    fn hold_lock(
        path: PathBuf,
    ) -> (
        std::sync::mpsc::Sender<()>,
        std::sync::mpsc::Receiver<()>,
        std::thread::JoinHandle<()>,
    ) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;
                 UPDATE reservations SET reserved_bytes = reserved_bytes + 1;",
            )
            .unwrap();
            locked_tx.send(()).unwrap();
            let _ = released.recv_timeout(Duration::from_secs(10));
            conn.execute_batch("COMMIT").unwrap();
        });
        (release, locked_rx, holder)
    }

    fn db_with_reservation(dir: &Path) -> NetworkId {
        let store = open_store(dir, Timestamp(1)).unwrap();
        let id = NetworkId::new("hotspot");
        store.raise_reservation(&id, Timestamp(0), 700).unwrap();
        id
    }

    #[tokio::test]
    async fn a_passing_lock_is_waited_out_and_nothing_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let id = db_with_reservation(dir.path());
        let (release, locked, holder) = hold_lock(dir.path().join(DB_FILE));
        locked.recv().unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let _ = release.send(());
        });
        let mut attempts = 0;
        let store = retry_while_locked(
            "test",
            Duration::from_millis(50),
            Duration::from_secs(5),
            || {
                attempts += 1;
                open_store_with(dir.path(), Timestamp(2), Duration::from_millis(20))
            },
        )
        .await
        .unwrap();
        assert!(attempts > 1, "the lock was not seen: {attempts}");
        assert!(store.moved_aside().is_none());
        assert_eq!(store.reserved(&id, Timestamp(0)).unwrap(), 701);
        releaser.join().unwrap();
        holder.join().unwrap();
    }

    #[tokio::test]
    async fn a_lasting_lock_fails_within_the_limit_with_the_locked_error() {
        let dir = tempfile::tempdir().unwrap();
        db_with_reservation(dir.path());
        let (release, locked, holder) = hold_lock(dir.path().join(DB_FILE));
        locked.recv().unwrap();
        let started = Instant::now();
        let error = retry_while_locked(
            "test",
            Duration::from_millis(50),
            Duration::from_millis(400),
            || open_store_with(dir.path(), Timestamp(2), Duration::from_millis(20)),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(is_locked(&error), "{error:#}");
        assert!(format!("{error:#}").contains("locked by another process"));
        release.send(()).unwrap();
        holder.join().unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
    }

    #[tokio::test]
    async fn a_newer_schema_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        db_with_reservation(dir.path());
        rusqlite::Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let mut attempts = 0;
        let error = retry_while_locked(
            "test",
            Duration::from_millis(50),
            Duration::from_secs(5),
            || {
                attempts += 1;
                open_store(dir.path(), Timestamp(2))
            },
        )
        .await
        .unwrap_err();
        assert_eq!(attempts, 1);
        assert!(
            format!("{error:#}").contains("written by a newer capwise"),
            "{error:#}"
        );
    }
}
