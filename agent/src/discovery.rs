//! How the CLI finds the running agent: the agent writes its API address to
//! `<state-dir>/agent.json` and its token to `<state-dir>/api-token` (0600,
//! readable only by the user), so `--state-dir DIR` pairs a CLI call with
//! an agent.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The file naming the running agent's API.
pub const AGENT_FILE: &str = "agent.json";
/// The file holding the API token.
pub const TOKEN_FILE: &str = "api-token";

/// `agent.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentFile {
    /// Base URL of the API, e.g. `http://127.0.0.1:43121`.
    pub api: String,
    /// The agent's process id.
    pub pid: u32,
}

/// Returns the token in `state_dir`, creating one (256 random bits) if it is
/// missing or malformed. The file is (re)set to mode 0600 either way.
pub fn ensure_token(state_dir: &Path) -> Result<String> {
    let path = state_dir.join(TOKEN_FILE);
    if let Ok(existing) = fs::read_to_string(&path) {
        let token = existing.trim();
        if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
            fs::set_permissions(&path, Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
            return Ok(token.to_string());
        }
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// Writes `agent.json` atomically, so a CLI never reads half of it.
pub fn write_agent_file(state_dir: &Path, file: &AgentFile) -> Result<()> {
    let json = serde_json::to_vec_pretty(file).context("cannot encode agent.json")?;
    write_private(&state_dir.join(AGENT_FILE), &json)
}

/// Removes `agent.json` if it still names this process.
pub fn remove_agent_file(state_dir: &Path) {
    let path = state_dir.join(AGENT_FILE);
    let ours = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<AgentFile>(&b).ok())
        .is_some_and(|f| f.pid == std::process::id());
    if ours {
        let _ = fs::remove_file(path);
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The running agent for `state_dir`: its API and token, or an error that
/// says how to start one.
pub fn find_agent(state_dir: &Path) -> Result<(AgentFile, String)> {
    let agent_path = state_dir.join(AGENT_FILE);
    let no_agent = || {
        format!(
            "no capwise agent is running for {} (start one with `capwise run{}`)",
            state_dir.display(),
            state_dir_flag(state_dir)
        )
    };
    let Ok(bytes) = fs::read(&agent_path) else {
        bail!(no_agent());
    };
    let file: AgentFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is damaged", agent_path.display()))?;
    if !process_alive(file.pid) {
        bail!(
            "{} (the last one, pid {}, has exited)",
            no_agent(),
            file.pid
        );
    }
    let token_path = state_dir.join(TOKEN_FILE);
    let token = fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read the API token {}", token_path.display()))?;
    Ok((file, token.trim().to_string()))
}

fn state_dir_flag(state_dir: &Path) -> String {
    if state_dir == crate::paths::default_state_dir() {
        String::new()
    } else {
        format!(" --state-dir {}", state_dir.display())
    }
}

fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // Alive but another user's: still an agent, the token decides.
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = ensure_token(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::set_permissions(dir.path().join(TOKEN_FILE), Permissions::from_mode(0o644)).unwrap();
        assert_eq!(ensure_token(dir.path()).unwrap(), t1);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(dir.path().join(TOKEN_FILE), "short").unwrap();
        assert_ne!(ensure_token(dir.path()).unwrap(), t1);
    }

    #[test]
    fn no_agent_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = find_agent(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no capwise agent is running"), "{e}");
        assert!(e.contains("--state-dir"), "{e}");
        write_agent_file(
            dir.path(),
            &AgentFile {
                api: "http://127.0.0.1:1".into(),
                pid: u32::MAX - 1,
            },
        )
        .unwrap();
        let e = find_agent(dir.path()).unwrap_err().to_string();
        assert!(e.contains("has exited"), "{e}");
    }
}
