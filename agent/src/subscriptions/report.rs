//! Delivery status, the subscriber's side: after each poll, a subscription
//! whose manifest names a `report` URL tells the publisher what this
//! machine holds of it, signed with the agent's own key
//! ([`crate::delivery`]). A report that cannot be sent is logged and tried
//! again after the next poll; it never holds the subscription up.

use capwise_channel::report::{AgentKey, ItemHeld, Report};
use capwise_channel::url::Url;
use capwise_policy::time::Timestamp;

use super::poller::Context;
use super::store;

/// The machine as its reports name it.
pub struct Reporter {
    key: AgentKey,
    machine: String,
    site: String,
    /// The interface reports leave by (`[net] interface`), if any.
    interface: Option<String>,
}

impl Reporter {
    /// Reports signed with `key`, naming this machine by its host name and
    /// its site as `site` (empty: unnamed).
    pub fn new(key: AgentKey, site: String) -> Self {
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unnamed".into());
        Reporter {
            key,
            machine,
            site,
            interface: None,
        }
    }

    /// Reports sent through `interface` only, when given.
    pub fn with_interface(mut self, interface: Option<String>) -> Self {
        self.interface = interface;
        self
    }

    /// What this machine holds of the subscription at `url`, as a report.
    fn report(&self, ctx: &Context, sub: &store::Subscription, problem: Option<String>) -> Report {
        let items = sub
            .names
            .iter()
            .map(|(info_hash, name)| {
                let (have, size) = ctx
                    .torrents
                    .get(info_hash)
                    .map_or((0, 0), |t| (t.bytes_have, t.total_length));
                ItemHeld {
                    info_hash: info_hash.clone(),
                    name: name.clone(),
                    have,
                    size,
                }
            })
            .collect();
        Report {
            channel: sub.key.to_ascii_lowercase(),
            agent: self.key.public().to_hex(),
            machine: self.machine.clone(),
            site: self.site.clone(),
            sequence: sub.state.last_sequence,
            at: u64::try_from(Timestamp::now_from_system().0).unwrap_or(0),
            items,
            problem,
        }
    }

    /// Sends the report for the subscription at `url` if its last accepted
    /// manifest asks for one.
    pub async fn after_poll(&self, ctx: &Context, url: &str, problem: Option<String>) {
        let Ok(Some(sub)) = store::get(&ctx.db, url) else {
            return;
        };
        let Some(report_url) = sub.report_url.as_deref() else {
            return;
        };
        let Ok(report_url) = Url::parse(report_url) else {
            return;
        };
        let signed = match self.report(ctx, &sub, problem).sign(&self.key) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot sign a delivery report");
                return;
            }
        };
        match crate::delivery::send::send(&report_url, signed, self.interface.as_deref()).await {
            Ok(()) => tracing::debug!(%url, %report_url, "delivery report sent"),
            Err(e) => tracing::warn!(%url, error = %format!("{e:#}"), "delivery report not sent"),
        }
    }
}
