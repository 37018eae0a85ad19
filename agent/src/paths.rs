//! Where capwise keeps its state: `$XDG_STATE_HOME/capwise`, else
//! `~/.local/state/capwise`.

use std::path::PathBuf;

/// The default state directory.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("capwise");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/capwise");
    }
    PathBuf::from(".capwise-state")
}
