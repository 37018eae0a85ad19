//! `[quic]` in the configuration: which capwise agents may reach this one
//! over QUIC. An organisation lists its agents' ids (`capwise id` on each
//! machine prints its own), inline or in a file, and its agents then take
//! QUIC only from each other (mutual TLS: each presents its key, each
//! checks the other's against the list); any other peer, capwise or not,
//! stays on TCP or uTP.
//!
//! ```toml
//! [quic]
//! allow = ["3f1c…64 hex digits…", "…"]
//! allow_file = "/etc/capwise/agents.txt"   # one id a line, `#` comments
//! ```
//!
//! With both, the two lists together. With neither, any agent may connect
//! (the dialler still pins the key the other offered).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use capwise_engine::transport::allow_list::AllowList;
use capwise_engine::transport::identity::AgentId;
use serde::Deserialize;

/// `[quic]`: QUIC between capwise agents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct QuicConfig {
    /// Agent ids (64 hex digits) allowed to connect over QUIC.
    pub allow: Option<Vec<String>>,
    /// A file of agent ids allowed to connect, one a line (`#` comments).
    pub allow_file: Option<PathBuf>,
}

impl QuicConfig {
    /// Checks what can be checked without reading the file: the inline ids
    /// and that the file's path is absolute.
    pub fn validate(&self) -> Result<()> {
        self.inline_ids()?;
        if let Some(path) = self.allow_file.as_ref().filter(|p| !p.is_absolute()) {
            bail!(
                "quic.allow_file = \"{}\": must be an absolute path",
                path.display()
            );
        }
        Ok(())
    }

    fn inline_ids(&self) -> Result<Vec<AgentId>> {
        self.allow
            .iter()
            .flatten()
            .map(|id| id.parse().map_err(|e| anyhow::anyhow!("quic.allow: {e}")))
            .collect()
    }

    /// Whether an allow-list is configured (either key).
    pub fn restricts(&self) -> bool {
        self.allow.is_some() || self.allow_file.is_some()
    }

    /// The allow-list: the inline ids and the file's; none when neither
    /// key is set. A file that cannot be read or holds a line that is not
    /// an id is an error: starting with half a list, or none, would let in
    /// agents the administrator did not list (or shut out ones they did).
    pub fn allow_list(&self) -> Result<Option<AllowList>> {
        if !self.restricts() {
            return Ok(None);
        }
        let mut ids = self.inline_ids()?;
        if let Some(path) = &self.allow_file {
            ids.extend(read_file(path)?);
        }
        Ok(Some(AllowList::new(ids)))
    }
}

fn read_file(path: &Path) -> Result<Vec<AgentId>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the QUIC allow-list {}", path.display()))?;
    AllowList::parse_lines(&text)
        .with_context(|| format!("invalid QUIC allow-list {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quic(text: &str) -> Result<QuicConfig> {
        Ok(crate::config::parse(text)?.config.quic)
    }

    #[test]
    fn no_keys_no_list() {
        let q = quic("").unwrap();
        assert!(!q.restricts());
        assert_eq!(q.allow_list().unwrap(), None);
    }

    #[test]
    fn inline_ids_and_a_file_make_one_list() {
        let (a, b, c) = (AgentId([1; 32]), AgentId([2; 32]), AgentId([3; 32]));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agents.txt");
        std::fs::write(&file, format!("# the branch\n{b}\n{c}  # laptop\n")).unwrap();
        let q = quic(&format!(
            "[quic]\nallow = [\"{a}\"]\nallow_file = \"{}\"\n",
            file.display()
        ))
        .unwrap();
        let list = q.allow_list().unwrap().unwrap();
        assert_eq!(list, AllowList::new([a, b, c]));
        // An empty inline list is a list: nobody.
        let none = quic("[quic]\nallow = []\n").unwrap().allow_list().unwrap();
        assert_eq!(none, Some(AllowList::new([])));
    }

    #[test]
    fn a_bad_id_a_relative_path_or_an_unreadable_file_is_an_error() {
        let err = quic("[quic]\nallow = [\"beef\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("quic.allow"), "{err:#}");
        let err = quic("[quic]\nallow_file = \"agents.txt\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("absolute"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let q = quic(&format!("[quic]\nallow_file = \"{}\"\n", missing.display())).unwrap();
        let err = q.allow_list().unwrap_err();
        assert!(format!("{err:#}").contains("cannot read"), "{err:#}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, format!("{}\nnope\n", AgentId([1; 32]))).unwrap();
        let q = quic(&format!("[quic]\nallow_file = \"{}\"\n", bad.display())).unwrap();
        let err = format!("{:#}", q.allow_list().unwrap_err());
        assert!(err.contains("line 2") && err.contains("nope"), "{err}");
    }
}
