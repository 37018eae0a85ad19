//! BEP 19 web seeds (`url-list`), sans-IO: an HTTP server holding the
//! torrent's files is one more source of pieces.
//!
//! - [`url`]: the URL of each file (BEP 19's rules for a single-file and a
//!   multi-file torrent, percent-encoded).
//! - [`span`]: a run of pieces onto per-file byte ranges, across file
//!   boundaries (BEP 47 pad files are zeros, never asked for).
//! - [`seed`]: one seed's state machine with the caller's clock: connections
//!   in use, time-outs, exponential back-off, `Retry-After`, and the reason a
//!   seed that keeps failing is dropped.
//!
//! Which pieces a seed fetches comes from the torrent's own picker
//! ([`crate::swarm::Swarm::web_seed_pick`]); the engine's `webseed/` does the
//! HTTP, the gate and the counters.

pub mod seed;
pub mod span;
pub mod url;

pub use seed::{Outcome, RequestId, SeedConfig, SeedState, WebSeed};
pub use span::{file_ranges, Segment};
pub use url::file_url;
