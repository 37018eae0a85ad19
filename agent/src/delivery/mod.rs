//! Delivery status: each subscribed machine tells the publisher what it
//! holds, and `capwise channel status NAME` at headquarters lists every
//! machine, its site, its version and what is missing.
//!
//! - [`agent_key`]: the machine's own ed25519 key (`<state dir>/agent.key`),
//!   which signs its reports: a machine is known by it.
//! - [`send`]: a subscriber posts a signed report to the manifest's
//!   `report` URL (after each poll: `subscriptions/report.rs`).
//! - [`listener`]: the publisher's endpoint for them (`[channel]
//!   report_listen`), which checks each report before keeping it.
//! - [`store`]: the last report of each machine per channel, in `capwise.db`.
//!
//! The report's format and its pure check are `capwise_channel::report`.

pub mod agent_key;
pub mod listener;
pub mod send;
pub mod store;
