//! Delivery status: each subscribed machine tells the publisher what it
//! holds, and `capwise channel status NAME` at headquarters lists every
//! machine, its site, its version and what is missing.
//!
//! - [`agent_key`]: the machine's own ed25519 key (`<state dir>/agent.key`),
//!   which signs its reports: a machine is known by it.
//! - [`send`]: a subscriber posts a signed report to the manifest's
//!   `report` URL.
//! - [`listener`]: the publisher's endpoint for them (`[channel]
//!   report_listen`), which checks each report before keeping it.
//! - [`store`]: the last report of each machine per channel, in `capwise.db`.
//!
//! The report's format and its pure check are `capwise_channel::report`.

// The subscriber's half (agent_key, send) is called by the subscription
// poller, which lands in the next change; until then only tests call it.
#[cfg_attr(not(test), allow(dead_code))]
pub mod agent_key;
pub mod listener;
#[cfg_attr(not(test), allow(dead_code))]
pub mod send;
pub mod store;
