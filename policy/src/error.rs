//! The one error type of the policy crate.

use std::path::PathBuf;

/// Everything that can go wrong while knowing the link, keeping budgets or
/// limiting traffic. Input problems are errors, never panics.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The SQLite database failed in a way that moving it aside cannot fix
    /// (e.g. the directory is not writable).
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),

    /// Another process holds a lock on the policy database for longer than
    /// the busy timeout. The file is fine and was left untouched: moving it
    /// aside would lose budgets and durable reservations.
    #[error(
        "the policy database {path} is locked by another process (still locked after {waited_ms} ms): \
         it was left untouched; stop the other program using it, or try again"
    )]
    DatabaseLocked {
        /// The database file.
        path: PathBuf,
        /// How long SQLite waited for the lock.
        waited_ms: u64,
        /// SQLite's own words.
        source: rusqlite::Error,
    },

    /// The policy database was written by a newer capwise, whose schema this
    /// one cannot know. It is refused, not moved aside, so that going back
    /// to the newer version finds its budgets and reservations again.
    #[error(
        "the policy database {path} was written by a newer capwise (schema {found}, this one knows {known}): \
         it was left untouched; upgrade capwise or move the file away"
    )]
    DatabaseTooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// The newest version this program knows.
        known: u32,
    },

    /// The policy database could not be opened for a reason outside its
    /// content (permissions, a read-only or full file system, an I/O error,
    /// a missing directory). The file was left untouched.
    #[error(
        "cannot open the policy database {path}: {source}; it was left untouched: \
         check its permissions and the file system it is on"
    )]
    DatabaseUnavailable {
        /// The database file.
        path: PathBuf,
        /// SQLite's own words.
        source: rusqlite::Error,
    },

    /// The policy database is corrupt and could not be moved aside to make
    /// room for a fresh one (e.g. the directory is not writable).
    #[error(
        "the policy database {path} is corrupt ({source}) and could not be moved aside: {rename}; \
         move it away by hand"
    )]
    DatabaseCorrupt {
        /// The database file.
        path: PathBuf,
        /// What showed the corruption.
        source: rusqlite::Error,
        /// Why the rename failed.
        rename: std::io::Error,
    },

    /// The policy database is corrupt, and this process does not own the
    /// state directory, so it left the file as it is: the agent (or
    /// `get`/`seed`) moves it aside when it starts, carrying the usage over
    /// where it can be read.
    #[error(
        "the policy database {path} is corrupt ({error}); it was left as it is: \
         `capwise run` moves it aside when it starts and keeps the usage it can still read"
    )]
    DatabaseDamaged {
        /// The database file.
        path: PathBuf,
        /// What showed the corruption; in the message, not the error's source,
        /// so that SQLite's reason is not repeated as its code's description.
        error: rusqlite::Error,
    },

    /// A file or directory could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path that was being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A `--network-file` did not parse as the expected TOML.
    #[error("network file {path} is invalid: {message}")]
    NetworkFile {
        /// The file that was read.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },

    /// A value stored in the database or given in settings is out of range
    /// (e.g. a billing-cycle day of 0, a reserve above 100%).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The kind of value (e.g. "budget", "schedule window").
        what: &'static str,
        /// Why it was rejected.
        detail: String,
    },

    /// No default route was found, so there is no current uplink.
    #[error("no default route: the machine is offline")]
    NoDefaultRoute,

    /// Talking to NetworkManager over D-Bus failed.
    #[error("D-Bus error talking to NetworkManager: {0}")]
    DBus(#[from] zbus::Error),

    /// Talking to UPower over D-Bus failed (not running, or no answer):
    /// capwise then decides as on AC power.
    #[error("D-Bus error talking to UPower: {0}")]
    UPower(zbus::Error),
}

impl PolicyError {
    /// Builds an [`PolicyError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PolicyError::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a [`PolicyError::Invalid`].
    pub fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        PolicyError::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = PolicyError> = std::result::Result<T, E>;
