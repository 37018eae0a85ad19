//! capwise-policy: knows the link, keeps data-cap budgets, and decides how much
//! the engine may send and receive, with a reason a person understands.
//!
//! The pieces, from the outside in:
//! - [`source`]: where the current uplink comes from (NetworkManager over
//!   D-Bus, the kernel's routes and sysfs, or a `--network-file`), as a
//!   [`network::Network`] published on a `tokio::sync::watch` channel.
//! - [`store`]: the SQLite database of networks, budgets, schedules, the
//!   usage ledger and durable reservations.
//! - [`budget`] and [`schedule`]: caps with their periods, and time windows.
//! - [`ledger`]: the hard-cap promise: bytes are debited from durably
//!   reserved chunks before they are sent or requested.
//! - [`interface_counters`]: the whole link's traffic, from the kernel.
//! - [`power`]: on AC or on battery (UPower, [`source::upower`]).
//! - [`decision`]: the pure function from (network, budget, schedule,
//!   power, settings, now) to allowances and a sentence.
//! - [`bucket`]: the token buckets that enforce the allowances live.
//! - [`projection`]: where a period's use is heading (a straight line).
//!
//! Time is always passed in as `now`; nothing here reads the clock on its
//! own, so every decision can be replayed.

pub mod bucket;
pub mod budget;
pub mod decision;
pub mod error;
pub mod interface_counters;
pub mod ledger;
pub mod network;
pub mod power;
pub mod projection;
pub mod schedule;
pub mod source;
pub mod store;
pub mod time;
pub mod units;
pub mod zone;

pub use error::{PolicyError, Result};
