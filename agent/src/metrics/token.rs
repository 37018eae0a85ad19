//! The read-only metrics token: `<state dir>/metrics-token` (0600), made
//! like the other secret files (`new_secret_file`) on first use. It lets a
//! scraper read `GET /metrics` and nothing else, so the API's control token
//! never has to sit in a Prometheus configuration.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The token's file name in the state directory.
pub const METRICS_TOKEN_FILE: &str = "metrics-token";

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(METRICS_TOKEN_FILE)
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            anyhow::ensure!(
                token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
                "{} is not a metrics token (64 hex digits); remove it to make a new one",
                path.display()
            );
            Ok(Some(token.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The metrics token, made (0600, never overwritten) if there is none.
pub fn load_or_create(state_dir: &Path) -> Result<String> {
    let path = path(state_dir);
    if let Some(token) = read(&path)? {
        return Ok(token);
    }
    match crate::commands::channel::new_secret_file(&path) {
        Ok(secret) => Ok(hex::encode(secret)),
        // Made meanwhile by the agent or another command: take that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(&path)?.context("the metrics token vanished")
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// `capwise metrics`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: MetricsCommand,
}

/// The `metrics` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MetricsCommand {
    /// Print the read-only token for `GET /metrics` (Authorization: Bearer TOKEN), making it if needed.
    Token {
        /// The agent's state directory (default: $XDG_STATE_HOME/capwise).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

/// Runs `capwise metrics ...`.
pub fn run(args: &MetricsArgs) -> Result<()> {
    match &args.command {
        MetricsCommand::Token { state_dir } => {
            let dir = crate::state_db::state_dir(state_dir.as_deref());
            crate::state_db::create_state_dir(&dir)?;
            println!("{}", load_or_create(&dir)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_or_create(dir.path()).unwrap(), first);
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(path(dir.path()), "short\n").unwrap();
        assert!(
            load_or_create(dir.path()).is_err(),
            "a damaged token is not replaced silently"
        );
    }
}
