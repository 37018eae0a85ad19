//! The policy database in the state directory, and the accounting period
//! that usage is filed under.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use capwise_policy::budget::{period_bounds, Period};
use capwise_policy::network::NetworkId;
use capwise_policy::store::Store;
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

/// Opens (creating if needed) `<state_dir>/capwise.db`. A corrupt file is
/// moved aside by the store; the user is told where it went.
pub fn open_store(state_dir: &Path, now: Timestamp) -> Result<Store> {
    create_state_dir(state_dir)?;
    let path = state_dir.join(DB_FILE);
    let store = Store::open(&path, now)
        .with_context(|| format!("cannot open the policy database {}", path.display()))?;
    if let Some(aside) = store.moved_aside() {
        eprintln!(
            "capwise: warning: {} was unreadable; moved it to {} and started a fresh database",
            path.display(),
            aside.display()
        );
    }
    Ok(store)
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
