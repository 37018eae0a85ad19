//! Delivery reports: what a subscribed machine holds, signed by its agent's
//! own key, sent to the publisher so an administrator at headquarters sees
//! every machine, its site, its version and what is missing.
//!
//! A report travels in the manifest's envelope (JSON around the exact body
//! bytes, see [`crate::manifest`]) under its own signing context, so a
//! report's signature can never pass as a manifest's or the other way
//! round. The agent key is the envelope's key: a machine *is* its key, as a
//! channel is. [`verify_report`] is the pure check the publisher runs on
//! untrusted bytes.

use serde::{Deserialize, Serialize};

use crate::manifest::{open, seal_as, signed_message_as};
use crate::{ChannelError, ChannelKey, PublicKey, MAX_ITEMS};

/// Prefix of every signed report (domain separation from manifests).
pub const REPORT_CONTEXT: &[u8] = b"capwise-delivery-report/1\n";
/// Largest report accepted: a few hundred bytes per item of a full manifest.
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;
/// Longest machine or site name kept.
pub const MAX_NAME: usize = 255;
/// How far ahead of the publisher's clock a report may be dated.
pub const MAX_CLOCK_AHEAD: u64 = 10 * 60;

/// An agent's own signing key: the same kind of ed25519 key as a channel's,
/// kept in the agent's state directory.
pub type AgentKey = ChannelKey;

/// What one machine holds of one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The channel's public key, hex.
    pub channel: String,
    /// The reporting agent's public key, hex; must equal the envelope's key.
    pub agent: String,
    /// The machine's name (its host name), for people.
    pub machine: String,
    /// The machine's site as it sees it (its `[site]` name, else its LAN).
    pub site: String,
    /// Sequence of the last manifest it accepted; None before the first.
    pub sequence: Option<u64>,
    /// When the agent wrote the report, Unix seconds: a newer report of one
    /// agent replaces an older one, never the other way round.
    pub at: u64,
    /// Each item of that manifest and how much of it is held.
    pub items: Vec<ItemHeld>,
    /// Why the last poll failed, in words, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// How much of one item a machine holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemHeld {
    /// The item's info-hash, 40 hex digits.
    pub info_hash: String,
    /// Its name.
    pub name: String,
    /// Verified bytes held.
    pub have: u64,
    /// Bytes in all.
    pub size: u64,
}

impl ItemHeld {
    /// Every byte is held.
    pub fn complete(&self) -> bool {
        self.have >= self.size
    }
}

impl Report {
    /// The report file: this report signed with the agent's `key`. Refuses
    /// a report that names another agent than `key`'s.
    pub fn sign(&self, key: &AgentKey) -> Result<Vec<u8>, ChannelError> {
        let public = key.public();
        if self.agent != public.to_hex() {
            return Err(ChannelError::WrongKey {
                expected: public.to_hex(),
                found: self.agent.clone(),
            });
        }
        let body = serde_json::to_vec(self).map_err(|e| ChannelError::Body(e.to_string()))?;
        seal_as(REPORT_CONTEXT, &body, key)
    }
}

/// The report file for the exact `body` bytes, signed with `key`, whatever
/// they hold (the fuzz target seals bodies no agent would write).
pub fn seal(body: &[u8], key: &AgentKey) -> Result<Vec<u8>, ChannelError> {
    seal_as(REPORT_CONTEXT, body, key)
}

/// Checks a report's bytes: size, envelope, signature by the key it
/// carries, body, names and item bounds, and a date not ahead of `now` by
/// more than [`MAX_CLOCK_AHEAD`]. Whether the channel is one this agent
/// publishes is the caller's question.
pub fn verify_report(bytes: &[u8], now: u64) -> Result<Report, ChannelError> {
    if bytes.len() > MAX_REPORT_BYTES {
        return Err(ChannelError::TooLarge {
            size: bytes.len(),
            limit: MAX_REPORT_BYTES,
        });
    }
    let opened = open(bytes)?;
    if !opened.key.verifies(
        &signed_message_as(REPORT_CONTEXT, &opened.body),
        &opened.signature,
    ) {
        return Err(ChannelError::BadSignature {
            key: opened.key.to_hex(),
        });
    }
    let mut report: Report =
        serde_json::from_slice(&opened.body).map_err(|e| ChannelError::Body(e.to_string()))?;
    if !report.agent.eq_ignore_ascii_case(&opened.key.to_hex()) {
        return Err(ChannelError::Body(format!(
            "the report names agent {}, not its signer",
            report.agent
        )));
    }
    report.agent = opened.key.to_hex();
    report.channel = PublicKey::from_hex(&report.channel)?.to_hex();
    if report.machine.len() > MAX_NAME || report.site.len() > MAX_NAME {
        return Err(ChannelError::Body(format!(
            "a machine or site name longer than {MAX_NAME} bytes"
        )));
    }
    if report.problem.as_ref().is_some_and(|p| p.len() > 4096) {
        return Err(ChannelError::Body(
            "a problem text longer than 4096 bytes".into(),
        ));
    }
    if report.items.len() > MAX_ITEMS {
        return Err(ChannelError::Body(format!("more than {MAX_ITEMS} items")));
    }
    for item in &mut report.items {
        item.info_hash = crate::verify::info_hash(&item.info_hash)?;
        if item.name.len() > MAX_NAME {
            return Err(ChannelError::Body(format!(
                "an item name longer than {MAX_NAME} bytes"
            )));
        }
    }
    if report.at > now.saturating_add(MAX_CLOCK_AHEAD) {
        return Err(ChannelError::Body(format!(
            "dated {} s ahead of this machine's clock",
            report.at - now
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn report(agent: &AgentKey) -> Report {
        Report {
            channel: ChannelKey::from_seed([1; 32]).public().to_hex(),
            agent: agent.public().to_hex(),
            machine: "branch-a-1".into(),
            site: "10.20.0.0/16".into(),
            sequence: Some(3),
            at: NOW,
            items: vec![ItemHeld {
                info_hash: "AB".repeat(20),
                name: "image.iso".into(),
                have: 10,
                size: 20,
            }],
            problem: None,
        }
    }

    #[test]
    fn a_signed_report_verifies_and_comes_back_normalised() {
        let agent = AgentKey::from_seed([9; 32]);
        let bytes = report(&agent).sign(&agent).unwrap();
        let back = verify_report(&bytes, NOW).unwrap();
        assert_eq!(back.items[0].info_hash, "ab".repeat(20));
        assert_eq!(back.agent, agent.public().to_hex());
        assert!(!back.items[0].complete());
    }

    #[test]
    fn altered_foreign_or_future_reports_are_refused() {
        let agent = AgentKey::from_seed([9; 32]);
        let other = AgentKey::from_seed([8; 32]);
        // Signed by another key than the one it names.
        assert!(report(&agent).sign(&other).is_err());
        // A byte of the body changed.
        let bytes = report(&agent).sign(&agent).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let body_at = text.find("\"body\"").unwrap() + 12;
        let mut altered = bytes.clone();
        altered[body_at] = if altered[body_at] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            verify_report(&altered, NOW),
            Err(ChannelError::BadSignature { .. } | ChannelError::Envelope(_))
        ));
        // From the future.
        let mut ahead = report(&agent);
        ahead.at = NOW + MAX_CLOCK_AHEAD + 1;
        assert!(verify_report(&ahead.sign(&agent).unwrap(), NOW).is_err());
        // A manifest's signature does not pass as a report's.
        let body = serde_json::to_vec(&report(&agent)).unwrap();
        let as_manifest = crate::manifest::seal(&body, &agent).unwrap();
        assert!(matches!(
            verify_report(&as_manifest, NOW),
            Err(ChannelError::BadSignature { .. })
        ));
        // Too large, before any parsing.
        assert!(matches!(
            verify_report(&vec![b' '; MAX_REPORT_BYTES + 1], NOW),
            Err(ChannelError::TooLarge { .. })
        ));
    }
}
