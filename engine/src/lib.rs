//! capwise-engine: a BitTorrent v1 engine.
//!
//! Layout, following quinn-proto/quinn: the protocol logic is sans-IO (bytes and
//! `now` in, actions out) and lives in the `capwise-proto` crate, which has no
//! tokio in its dependency tree; this crate re-exports its modules under the
//! same paths and adds a thin tokio layer ([`session`]) that moves bytes between
//! sockets, disk and those state machines.
//!
//! - [`bencode`], [`metainfo`], [`magnet`], [`create`]: pure parsers and builders.
//! - [`wire`]: peer wire messages (BEP 3, 6, 10), handshake and codec.
//! - [`picker`], [`choker`], [`swarm`]: which blocks to ask for, whom to serve.
//! - [`storage`]: pieces onto files, verification, resume data.
//! - [`tracker`]: HTTP and UDP announces.
//! - [`lsd`]: the local service discovery driver (a multicast socket on one interface).
//! - [`egress`]: where sockets leave from: the listen address, the one interface all traffic is bound to.
//! - [`udp`]: the UDP socket on the listen port, shared by its protocols (DHT now, uTP next).
//! - [`portmap`]: port mapping on the home router (PCP/NAT-PMP, UPnP IGD), no policy in it.
//! - [`dht`]: the tokio driver of the sans-IO DHT node (`capwise-dht`).
//! - [`transport`]: what a peer connection's bytes travel over (TCP, or an
//!   in-memory pipe), with its wire-byte counts.
//! - [`hooks`]: what the policy may steer: byte gates, a seeding switch, counters.
//! - [`session`]: the tokio layer that runs torrents.
//! - `webseed`: BEP 19 web seeds as a download source (HTTP range requests, gated and counted like a WAN peer).
//!
//! The engine knows nothing of the policy crate; it only offers [`hooks`].

pub use capwise_proto::{
    bencode, bitfield, blocklist, choker, class, ext, magnet, metainfo, picker, priority, swarm,
    wire,
};

pub mod create;
mod deadline;
pub mod dht;
pub mod egress;
pub mod error;
pub mod hooks;
pub mod lsd;
mod netif;
pub mod portmap;
pub mod session;
pub mod storage;
pub mod tracker;
pub mod transport;
pub mod udp;
mod webseed;

pub use webseed::WebSeedStats;

pub use error::{Error, Result};
pub use transport::mse::Encryption;
