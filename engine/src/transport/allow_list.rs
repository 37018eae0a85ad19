//! Which agents may reach us over QUIC: an organisation's allow-list of
//! agent ids (`identity.rs`). When one is set, both ends of a QUIC
//! connection present certificates (mutual TLS, `quic_verify.rs`): the
//! listener refuses a dialler whose key is not listed, and the dialler
//! does not dial a listener whose offered id is not. Without one, any
//! agent may connect (its key is still pinned by whoever dials it).
//!
//! The text form is one id a line (64 hex digits, the form `capwise id`
//! prints), `#` starting a comment, blank lines ignored.

use std::collections::BTreeSet;
use std::str::FromStr;

use super::identity::AgentId;

/// Why an agent id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an agent id (64 hex digits, as `capwise id` prints)")]
pub struct BadAgentId {
    /// What was given (cut to a readable length).
    pub text: String,
}

impl FromStr for AgentId {
    type Err = BadAgentId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadAgentId {
            text: s.chars().take(80).collect(),
        };
        let s = s.trim();
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut id = [0u8; 32];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(AgentId(id))
    }
}

/// A line of an allow-list file that is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct BadLine {
    /// The line's number, from 1.
    pub line: usize,
    /// What was wrong with it.
    pub source: BadAgentId,
}

/// The agents allowed to connect over QUIC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    ids: BTreeSet<AgentId>,
}

impl AllowList {
    /// The list of `ids` (an empty one allows no agent at all).
    pub fn new(ids: impl IntoIterator<Item = AgentId>) -> Self {
        Self {
            ids: ids.into_iter().collect(),
        }
    }

    /// Whether `id` is listed.
    pub fn contains(&self, id: &AgentId) -> bool {
        self.ids.contains(id)
    }

    /// How many agents are listed.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no agent is listed (then none may connect).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids in the text of an allow-list file: one a line, `#` to the
    /// end of a line a comment, blank lines ignored. The first line that
    /// is not an id fails the whole file (an allow-list half read would
    /// shut out agents the administrator listed).
    pub fn parse_lines(text: &str) -> Result<Vec<AgentId>, BadLine> {
        let mut ids = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let id = line.parse().map_err(|source| BadLine {
                line: n + 1,
                source,
            })?;
            ids.push(id);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_back_from_its_hex_in_either_case() {
        let id = AgentId([0xa5; 32]);
        assert_eq!(id.to_hex().parse::<AgentId>().unwrap(), id);
        assert_eq!(id.to_hex().to_uppercase().parse::<AgentId>().unwrap(), id);
        assert_eq!(format!("  {id}\t").parse::<AgentId>().unwrap(), id);
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(bad.parse::<AgentId>().is_err(), "{bad:?}");
        }
        // Multi-byte characters never split a byte in two.
        let wide = format!("é{}", "a".repeat(62));
        assert_eq!(wide.len(), 64);
        assert!(wide.parse::<AgentId>().is_err());
    }

    #[test]
    fn a_file_lists_one_id_a_line_with_comments() {
        let (a, b) = (AgentId([1; 32]), AgentId([2; 32]));
        let text = format!("# branch office\n{a}\n\n  {b}   # the laptop\n#{a}\n");
        let ids = AllowList::parse_lines(&text).unwrap();
        assert_eq!(ids, vec![a, b]);
        let list = AllowList::new(ids);
        assert!(list.contains(&a) && list.contains(&b));
        assert!(!list.contains(&AgentId([3; 32])));
        assert_eq!(list.len(), 2);
        let err = AllowList::parse_lines(&format!("{a}\nnot-an-id\n")).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().contains("not-an-id"), "{err}");
        assert!(AllowList::new([]).is_empty());
    }
}
