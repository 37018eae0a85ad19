//! The policy commands. Each opens the SQLite store directly, so they work
//! whether or not a transfer is running.

pub mod budget;
pub mod network;
mod output;
pub mod usage;
pub mod why;
