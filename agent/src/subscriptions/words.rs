//! A refused manifest in the words `capwise channel list` shows: what was
//! wrong, for an administrator, not the crate's field names.

use capwise_channel::ChannelError;

/// "refused: the manifest's signature does not match the channel key", ...
pub fn refusal(error: &ChannelError) -> String {
    let why = match error {
        ChannelError::BadSignature { .. } => {
            "the manifest's signature does not match the channel key (altered, or signed by someone else)".to_owned()
        }
        ChannelError::WrongKey { found, .. } => format!(
            "the manifest is signed by another key ({}…), not the channel's",
            &found[..found.len().min(16)]
        ),
        ChannelError::Rollback { sequence, last } => format!(
            "the manifest is older than one already accepted (rollback: sequence {sequence}, accepted {last})"
        ),
        ChannelError::Fork { sequence } => format!(
            "the manifest has the sequence already accepted ({sequence}) with other contents \
             (two manifests signed with one sequence, or a replayed fork)"
        ),
        ChannelError::Expired { expires, .. } => format!(
            "the manifest expired on {}; the publisher must publish again",
            crate::commands::output::format_timestamp(capwise_policy::time::Timestamp(
                i64::try_from(*expires).unwrap_or(i64::MAX)
            ))
        ),
        ChannelError::TooLarge { size, limit } => {
            format!("the manifest is too large ({size} bytes, the limit is {limit})")
        }
        ChannelError::Envelope(e) => format!("this is not a capwise channel manifest ({e})"),
        ChannelError::Body(e) => format!("the manifest's contents are malformed ({e})"),
        ChannelError::BadPath { .. } | ChannelError::ForeignHost { .. } | ChannelError::BadUrl { .. } => {
            error.to_string()
        }
        ChannelError::Key(e) => format!("the channel key is unusable ({e})"),
    };
    format!("refused, nothing changed: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_was_wrong() {
        let bad = refusal(&ChannelError::BadSignature { key: "k".into() });
        assert!(
            bad.contains("signature does not match the channel key"),
            "{bad}"
        );
        let old = refusal(&ChannelError::Rollback {
            sequence: 1,
            last: 2,
        });
        assert!(
            old.contains("older than one already accepted (rollback"),
            "{old}"
        );
        let other = refusal(&ChannelError::WrongKey {
            expected: "a".repeat(64),
            found: "b".repeat(64),
        });
        assert!(other.contains("signed by another key"), "{other}");
        assert!(refusal(&ChannelError::Fork { sequence: 3 }).contains("other contents"));
    }
}
