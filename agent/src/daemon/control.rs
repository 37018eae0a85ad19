//! The agent-wide answers of the API: who the agent is, why it limits what
//! it limits, and the user's rate limits (kept in the database so that
//! `capwise limits set` outlives a restart).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use capwise_policy::decision::Decision;
use tokio::sync::watch;

use super::api::AgentControl;
use super::torrents::Torrents;
use crate::api_types::{AgentInfo, Limits, Why};
use crate::commands::why::why_view;
use crate::config::RateLimits;
use crate::limits::LimitGate;
use crate::policy_runtime::PolicyReload;
use crate::torrent_db::TorrentDb;

const UP_KEY: &str = "limits.up";
const DOWN_KEY: &str = "limits.down";

/// The agent's state behind [`AgentControl`].
pub struct Control {
    /// The torrents.
    pub torrents: Arc<Torrents>,
    /// The database.
    pub db: Arc<TorrentDb>,
    /// The policy's decisions.
    pub decisions: watch::Receiver<Decision>,
    /// Makes the policy re-read the store.
    pub policy: PolicyReload,
    /// The user's buckets, changed live.
    pub limits: LimitGate,
    /// Limits from the configuration file.
    pub config_limits: RateLimits,
    /// Limits in force.
    pub user_limits: Mutex<RateLimits>,
    /// Every stored torrent is restored.
    pub ready: Arc<AtomicBool>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Default download directory.
    pub download_dir: PathBuf,
    /// The configuration's warnings (unknown keys), shown by `why`.
    pub config_warnings: Vec<String>,
}

/// The configuration's limits, with the ones set at run time (stored in the
/// database; "0" meaning unlimited) taking precedence.
pub fn effective_limits(config: &RateLimits, db: &TorrentDb) -> Result<RateLimits> {
    let stored = |key: &str| -> Result<Option<Option<u64>>> {
        db.setting(key)?
            .map(|v| {
                v.parse::<u64>()
                    .map(|n| (n > 0).then_some(n))
                    .with_context(|| format!("stored setting {key} = {v:?} is not a number"))
            })
            .transpose()
    };
    let mut limits = *config;
    if let Some(up) = stored(UP_KEY)? {
        limits.up = up;
    }
    if let Some(down) = stored(DOWN_KEY)? {
        limits.down = down;
    }
    Ok(limits)
}

impl AgentControl for Control {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            ready: self.ready.load(Ordering::Acquire),
            torrents: self.torrents.len(),
            hashed_bytes: self.torrents.session().hashed_bytes(),
            listen: self.torrents.session().local_addr().to_string(),
            state_dir: self.state_dir.display().to_string(),
            download_dir: self.download_dir.display().to_string(),
            blocked_connections: self.torrents.session().blocked_peers(),
        }
    }

    fn reload_policy(&self) -> Why {
        self.policy.reload();
        self.why()
    }

    fn why(&self) -> Why {
        let decision = self.decisions.borrow().clone();
        let (source, network) = self.policy.network();
        let limits = *self.user_limits.lock().unwrap_or_else(|e| e.into_inner());
        let problem = self.policy.source_problem(network.as_ref());
        let why = Why {
            warnings: self.config_warnings.clone(),
            ..why_view(&decision, network.as_ref(), source, &limits, problem)
        };
        crate::commands::why::with_interface(why, self.torrents.session().interface())
    }

    fn limits(&self) -> Limits {
        let l = self.user_limits.lock().unwrap_or_else(|e| e.into_inner());
        Limits {
            up: l.up,
            down: l.down,
        }
    }

    fn set_limits(&self, change: Limits) -> Result<Limits> {
        if let Some(up) = change.up {
            self.db.set_setting(UP_KEY, Some(&up.to_string()))?;
        }
        if let Some(down) = change.down {
            self.db.set_setting(DOWN_KEY, Some(&down.to_string()))?;
        }
        let limits = effective_limits(&self.config_limits, &self.db)?;
        self.limits.set(&limits);
        *self.user_limits.lock().unwrap_or_else(|e| e.into_inner()) = limits;
        tracing::info!(up = ?limits.up, down = ?limits.down, "limits changed");
        Ok(self.limits())
    }

    fn default_download_dir(&self) -> PathBuf {
        self.download_dir.clone()
    }
}
