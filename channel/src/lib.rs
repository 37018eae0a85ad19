//! capwise-channel: a publisher signs a manifest of torrents; subscribers
//! verify it and learn what to add and what to retire.
//!
//! The pieces:
//! - [`manifest`]: the manifest's fields, its canonical JSON body and the
//!   signed envelope around the exact body bytes.
//! - [`key`]: ed25519 channel keys (the publisher's secret, the public key
//!   subscribers pin), as hex text.
//! - [`checks`]: the pure rules on paths and URLs (nothing leaves the
//!   manifest's directory or host).
//! - [`verify()`]: the one function from untrusted bytes to a [`Manifest`]
//!   a subscriber may act on, refusing with a [`ChannelError`].
//! - [`report`]: a subscribed machine's signed delivery report (what it
//!   holds), and its pure check at the publisher.
//! - [`subscription`]: the pure step from (stored state, verified manifest)
//!   to the actions to take; [`accept`] also refuses a second body under an
//!   accepted sequence (a fork), by the SHA-256 the state keeps.
//!
//! Nothing here does I/O or reads the clock: `now` is passed in, so every
//! decision can be replayed and fuzzed.

pub mod checks;
pub mod error;
pub mod key;
pub mod manifest;
pub mod report;
pub mod subscription;
mod verify;

pub use error::ChannelError;
pub use key::{ChannelKey, PublicKey};
pub use manifest::{Item, Manifest, Retired, MAX_ITEMS, MAX_MANIFEST_BYTES};
pub use subscription::{accept, step, Actions, SubscriptionState};
/// The URL type of [`Trust::manifest_url`], re-exported so callers agree on its version.
pub use url;
pub use verify::{verify, verify_with_digest, BodyDigest, Trust};
