//! The machine's own key, made on first use and kept in the state
//! directory (0600). It signs delivery reports; publishers list a machine
//! under its public key, so it must outlive restarts and upgrades.

use std::path::Path;

use anyhow::{Context, Result};
use capwise_channel::report::AgentKey;

/// The key file's name in the state directory.
pub const AGENT_KEY_FILE: &str = "agent.key";

/// The agent's key in `state_dir`, made now if there is none.
pub fn load_or_create(state_dir: &Path) -> Result<AgentKey> {
    let path = state_dir.join(AGENT_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            AgentKey::from_hex(&text).with_context(|| format!("cannot read {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match crate::commands::channel::new_key_file(&path) {
                Ok(key) => Ok(key),
                // Another process made it meanwhile: use theirs.
                Err(_) if path.exists() => load_or_create(state_dir),
                Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public(), again.public());
        let mode = std::fs::metadata(dir.path().join(AGENT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
