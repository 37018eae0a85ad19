//! Why a manifest (or a key) is refused, in words an administrator reads in a log.

/// A refusal. Every variant means: nothing was changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelError {
    /// The manifest is bigger than any channel needs.
    #[error("manifest is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// [`crate::MAX_MANIFEST_BYTES`].
        limit: usize,
    },
    /// The outer envelope is not what a capwise publisher writes.
    #[error("not a capwise channel manifest: {0}")]
    Envelope(String),
    /// The signed body does not parse or has an impossible field.
    #[error("manifest body is malformed: {0}")]
    Body(String),
    /// Signed by another channel than the one subscribed to.
    #[error("manifest is signed by channel {found}, not by the subscribed channel {expected}")]
    WrongKey {
        /// The pinned public key.
        expected: String,
        /// The key the manifest names.
        found: String,
    },
    /// The signature does not match the body and key.
    #[error("bad signature: the manifest was altered or not signed by channel {key}")]
    BadSignature {
        /// The pinned public key.
        key: String,
    },
    /// An older manifest than one already accepted (a replay or a stale mirror).
    #[error("sequence {sequence} is older than the last accepted {last} (rollback refused)")]
    Rollback {
        /// The manifest's sequence.
        sequence: u64,
        /// The last accepted sequence.
        last: u64,
    },
    /// The sequence already accepted, with other body bytes: the publisher
    /// signed two manifests with one sequence number, or a fork is replayed.
    #[error("sequence {sequence} was already accepted with a different body (two manifests signed with one sequence number, or a replayed fork); refused")]
    Fork {
        /// The sequence both bodies carry.
        sequence: u64,
    },
    /// The manifest's expiry has passed: the publisher stopped refreshing it, or a mirror froze.
    #[error("manifest expired at {expires} (now {now}); the publisher must republish")]
    Expired {
        /// Expiry, Unix seconds.
        expires: u64,
        /// Now, Unix seconds.
        now: u64,
    },
    /// An item's path would leave the manifest's directory.
    #[error("item {item}: path {path:?} {reason}")]
    BadPath {
        /// The item's name.
        item: String,
        /// The offending path.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A URL in the manifest points at another host than the manifest's own.
    #[error("item {item}: URL {url} is on another host than the manifest ({expected}); refused")]
    ForeignHost {
        /// The item's name.
        item: String,
        /// The offending URL.
        url: String,
        /// The manifest's host.
        expected: String,
    },
    /// A URL that does not parse or is not http(s).
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL text.
        url: String,
        /// Why.
        reason: String,
    },
    /// A key that does not parse.
    #[error("bad channel key: {0}")]
    Key(String),
}
