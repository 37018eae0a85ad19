//! The CLI's commands. The policy commands (`budget`, `network`,
//! `schedule`, `usage`, `why`, `net`) open the SQLite store directly, so they work whether or
//! not the agent runs (and ask a running one to reload after an edit); the
//! torrent commands talk to the running agent.

pub mod api;
pub mod budget;
pub mod channel;
pub mod config;
pub mod docs;
pub mod files;
pub mod id;
pub mod limits;
pub mod net;
pub mod network;
pub(crate) mod output;
pub mod peers;
pub mod relocate;
pub mod schedule;
pub mod subscribe;
pub mod torrent_url;
pub mod torrents;
pub mod trackers;
pub mod usage;
pub mod why;

/// After a policy edit in the store, asks the agent running for `state_dir`
/// (if one does) to reload at once. Without this it would notice at its
/// next refresh, up to a minute later when idle.
pub async fn tell_agent_policy_changed(state_dir: Option<&std::path::Path>) {
    let dir = crate::state_db::state_dir(state_dir);
    let Ok(client) = crate::client::AgentClient::connect(&dir) else {
        return;
    };
    let reloaded: anyhow::Result<crate::api_types::Why> = client
        .post("/v1/policy/reload", &serde_json::json!({}))
        .await;
    if let Err(error) = reloaded {
        eprintln!(
            "warning: the running agent did not reload its policy ({error:#}); \
             it will pick the change up within a minute"
        );
    }
}
