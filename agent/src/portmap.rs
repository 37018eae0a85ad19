//! When the peer ports are mapped on the home router: while the uplink
//! lets WAN peers in (unmetered, not a VPN, uploads to the internet not
//! paused), never otherwise. The engine's `portmap` speaks the protocols;
//! this follows the policy's decisions, renews before the lease ends,
//! removes the mapping when the uplink turns metered and on the way out,
//! and leaves `portmap.json` in the state directory for `capwise net`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capwise_engine::portmap::{IpProtocol, MapOptions, PortMapping};
use capwise_policy::decision::{Allowance, Decision};
use capwise_policy::network::Network;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::policy_runtime::PolicyReload;

/// The mapping in force, for `capwise net` (absent when none is).
pub const STATUS_FILE: &str = "portmap.json";
/// After a router refused or did not answer, asked again this much later
/// (or at the next change of network).
const RETRY: Duration = Duration::from_secs(300);
/// What removing the mapping may take of the stop budget.
const REMOVE_BUDGET: Duration = Duration::from_secs(2);

/// `portmap.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The agent that holds the mapping.
    pub pid: u32,
    /// "PCP", "NAT-PMP" or "UPnP IGD".
    pub protocol: String,
    /// The router's WAN address, when it told.
    pub external_ip: Option<IpAddr>,
    /// The router asked.
    pub gateway: IpAddr,
    /// This host's address the ports lead to.
    pub local_ip: IpAddr,
    /// Each port mapped.
    pub ports: Vec<StatusPort>,
    /// The lease granted, in seconds.
    pub lease_secs: u64,
}

/// One mapped port in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusPort {
    /// "TCP" or "UDP".
    pub protocol: String,
    /// The port on this host.
    pub internal: u16,
    /// The port on the router's WAN address.
    pub external: u16,
}

/// Why the ports are not to be mapped on this uplink, or `None` when they
/// may be. A metered link must not invite WAN peers, whatever the upload
/// settings; behind a VPN the router asked would be the tunnel's.
pub fn refusal(decision: &Decision, network: Option<&Network>) -> Option<&'static str> {
    let Some(network) = network else {
        return Some("no uplink");
    };
    if network.through_vpn() {
        return Some("the uplink is a VPN");
    }
    if network.is_metered() {
        return Some("the uplink is metered");
    }
    if network.is_roaming() {
        return Some("the uplink is roaming");
    }
    if decision.up_wan == Allowance::Suspended {
        return Some("uploads to the internet are paused");
    }
    None
}

/// The follower; [`PortMapper::stop`] removes the mapping.
pub struct PortMapper {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PortMapper {
    /// Follows `decisions` and maps `ports` (protocol, local port) while
    /// [`refusal`] finds nothing against it.
    pub fn start(
        ports: Vec<(IpProtocol, u16)>,
        decisions: watch::Receiver<Decision>,
        policy: PolicyReload,
        state_dir: PathBuf,
    ) -> PortMapper {
        let (stop, stopped) = watch::channel(false);
        remove_status(&state_dir);
        let task = tokio::spawn(follow(ports, decisions, policy, state_dir, stopped));
        PortMapper { stop, task }
    }

    /// Removes the mapping from the router (bounded) and stops following.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let task = self.task;
        tokio::pin!(task);
        if tokio::time::timeout(REMOVE_BUDGET, &mut task)
            .await
            .is_err()
        {
            tracing::warn!(
                "the router did not confirm the port mapping's removal in time; its lease ends it"
            );
            task.abort();
        }
    }
}

async fn follow(
    ports: Vec<(IpProtocol, u16)>,
    mut decisions: watch::Receiver<Decision>,
    policy: PolicyReload,
    state_dir: PathBuf,
    mut stopped: watch::Receiver<bool>,
) {
    let options = MapOptions::default();
    let mut held: Option<(String, PortMapping)> = None;
    // The network a mapping last failed on, and when to ask again.
    let mut failed: Option<(String, Instant)> = None;
    loop {
        let decision = decisions.borrow_and_update().clone();
        let (_, network) = policy.network();
        let refused = refusal(&decision, network.as_ref());
        let id = network
            .as_ref()
            .map(|n| n.id.to_string())
            .unwrap_or_default();
        let stale = held.as_ref().is_some_and(|(on, _)| *on != id);
        if refused.is_some() || stale {
            if let Some((_, mapping)) = held.take() {
                tracing::info!(
                    why = refused.unwrap_or("the uplink changed"),
                    "removing the port mapping"
                );
                mapping.remove().await;
                remove_status(&state_dir);
            }
        }
        let retry_due = failed
            .as_ref()
            .is_none_or(|(on, at)| *on != id || Instant::now() >= *at);
        if refused.is_none() && held.is_none() && retry_due {
            // A stop does not wait for a router that does not answer.
            let attempt = tokio::select! {
                attempt = PortMapping::map(&ports, &options) => attempt,
                _ = stopped.changed() => break,
            };
            match attempt {
                Ok(mapping) => {
                    tracing::info!(
                        protocol = %mapping.method(),
                        external = ?mapping.external_ip(),
                        ports = ?mapping.ports(),
                        lease_secs = mapping.lease().as_secs(),
                        "ports mapped on the router"
                    );
                    write_status(&state_dir, &mapping);
                    held = Some((id.clone(), mapping));
                    failed = None;
                }
                Err(error) => {
                    tracing::info!(%error, "no port mapping: the router offers none");
                    failed = Some((id.clone(), Instant::now() + RETRY));
                }
            }
        }
        let wake = match (&held, &failed) {
            (Some((_, m)), _) => Some(Instant::from_std(m.renew_at())),
            (None, Some((_, at))) if refused.is_none() => Some(*at),
            _ => None,
        };
        tokio::select! {
            changed = decisions.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = sleep_until(wake) => {
                if let Some((on, mut mapping)) = held.take() {
                    let renewed = tokio::select! {
                        renewed = mapping.renew() => renewed,
                        _ = stopped.changed() => {
                            held = Some((on, mapping));
                            break;
                        }
                    };
                    match renewed {
                        Ok(()) => {
                            tracing::debug!(lease_secs = mapping.lease().as_secs(), "port mapping renewed");
                            write_status(&state_dir, &mapping);
                            held = Some((on, mapping));
                        }
                        Err(error) => {
                            // Asked afresh at once: the router may have
                            // rebooted and forgotten it.
                            tracing::info!(%error, "cannot renew the port mapping; mapping again");
                            remove_status(&state_dir);
                        }
                    }
                }
            }
            _ = stopped.changed() => break,
        }
    }
    if let Some((_, mapping)) = held.take() {
        mapping.remove().await;
        tracing::info!("port mapping removed");
    }
    remove_status(&state_dir);
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn write_status(state_dir: &Path, mapping: &PortMapping) {
    let status = Status {
        pid: std::process::id(),
        protocol: mapping.method().to_string(),
        external_ip: mapping.external_ip(),
        gateway: mapping.gateway(),
        local_ip: mapping.local_ip(),
        ports: mapping
            .ports()
            .iter()
            .map(|p| StatusPort {
                protocol: p.protocol.to_string(),
                internal: p.internal,
                external: p.external,
            })
            .collect(),
        lease_secs: mapping.lease().as_secs(),
    };
    let path = state_dir.join(STATUS_FILE);
    let tmp = state_dir.join(format!("{STATUS_FILE}.tmp"));
    let written = serde_json::to_vec_pretty(&status)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(&tmp, json))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(error) = written {
        tracing::warn!(%error, path = %path.display(), "cannot write the port mapping's status");
    }
}

fn remove_status(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(STATUS_FILE));
}

/// The mapping a running agent holds, from its `portmap.json` (`None` when
/// there is none, or its agent is gone).
pub fn read_status(state_dir: &Path) -> Option<Status> {
    let bytes = std::fs::read(state_dir.join(STATUS_FILE)).ok()?;
    let status: Status = serde_json::from_slice(&bytes).ok()?;
    // A kill -9 leaves the file behind; the router's lease ends the mapping.
    Path::new("/proc")
        .join(status.pid.to_string())
        .exists()
        .then_some(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_policy::decision::{decide, DecisionInput, Offline, Settings};
    use capwise_policy::network::{Metered, NetworkId, NetworkKind};
    use capwise_policy::time::Timestamp;

    fn home(metered: Metered) -> Network {
        Network {
            id: NetworkId::new("home"),
            name: "home".into(),
            kind: NetworkKind::Ethernet,
            metered,
            ..Network::default()
        }
    }

    fn decision(network: &Network) -> Decision {
        decide(
            &DecisionInput {
                network: Some(network),
                offline: Offline::Told,
                budget: None,
                schedule: None,
                power: capwise_policy::power::Power::default(),
                settings: &Settings::default(),
            },
            Timestamp::now_from_system(),
        )
    }

    #[test]
    fn maps_only_an_unmetered_uplink_that_is_no_vpn() {
        let unmetered = home(Metered::No);
        assert_eq!(refusal(&decision(&unmetered), Some(&unmetered)), None);
        let metered = home(Metered::Yes);
        assert_eq!(
            refusal(&decision(&metered), Some(&metered)),
            Some("the uplink is metered")
        );
        let mut vpn = home(Metered::No);
        vpn.kind = NetworkKind::Vpn;
        assert_eq!(
            refusal(&decision(&vpn), Some(&vpn)),
            Some("the uplink is a VPN")
        );
        assert_eq!(refusal(&decision(&unmetered), None), Some("no uplink"));
    }

    #[test]
    fn uploads_allowed_on_metered_still_map_nothing() {
        // `upload_on_metered = true` lets uploads through; the router is
        // still not asked to invite the WAN in.
        let metered = home(Metered::Yes);
        let mut d = decision(&home(Metered::No));
        d.up_wan = Allowance::Unlimited;
        assert_eq!(refusal(&d, Some(&metered)), Some("the uplink is metered"));
    }
}
