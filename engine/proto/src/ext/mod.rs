//! Extension sub-protocols carried in BEP 10 extended messages: each a codec
//! and a sans-IO state machine per torrent (bytes and `now` in, requests and
//! results out), the way libtorrent runs them as torrent plugins.
//!
//! - [`metadata`]: ut_metadata (BEP 9), fetching and serving the info dictionary.

pub mod metadata;
