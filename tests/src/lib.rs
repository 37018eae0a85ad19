//! Shared helpers for capwise integration and interop tests: reference clients, trackers, temp swarms.
//!
//! The interop suite (`tests/interop.rs`) drives real BitTorrent clients (libtorrent, Transmission,
//! aria2, opentracker) on loopback inside a private network namespace; run it with `scripts/test`.

pub mod branch;
pub mod clients;
pub mod home;
pub mod hostile;
pub mod hostile_handshake;
pub mod lan;
pub mod netns;
pub mod paths;
pub mod payload;
pub mod ports;
pub mod process;
pub mod sniff;
pub mod torrent;
pub mod tracker;
pub mod wan;
pub mod world;
