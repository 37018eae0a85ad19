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
