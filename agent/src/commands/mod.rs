//! The CLI's commands. The policy commands (`budget`, `network`, `usage`,
//! `why`, `net`) open the SQLite store directly, so they work whether or
//! not the agent runs; the torrent commands talk to the running agent.

pub mod budget;
pub mod docs;
pub mod limits;
pub mod net;
pub mod network;
pub(crate) mod output;
pub mod torrents;
pub mod usage;
pub mod why;
