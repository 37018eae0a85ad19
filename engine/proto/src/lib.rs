//! capwise-proto: the BitTorrent protocol with no I/O in it.
//!
//! Following quinn-proto, everything here is a pure function over bytes or a
//! deterministic state machine: bytes, timers and `now` go in, actions come
//! out. No tokio, no sockets, no files, no clock of its own: the caller
//! passes `Instant`s. `capwise-engine` adds the I/O around it.
//!
//! - [`bencode`], [`metainfo`], [`magnet`]: pure parsers and encoders.
//! - [`wire`]: peer wire messages (BEP 3, 6, 10), handshake and codec.
//! - [`mse`]: the MSE/PE handshake (Diffie–Hellman, RC4) as two state machines.
//! - [`picker`], [`choker`], [`swarm`]: which blocks to ask for, whom to serve;
//!   [`priority`]: file priorities (skip, high, sequential) onto pieces.
//! - [`announce`]: when a torrent announces to its trackers, with which event.
//! - [`torrent`]: one torrent's core: its swarm, [`admission`] (limits, bans,
//!   dials under way, the self-connection check, crossed dials) and run state.
//! - [`bitfield`]: which pieces a peer (or we) have.
//! - [`class`]: direction and peer class, the axes of gates and counters;
//!   where a peer came from (tracker, DHT, PEX, LSD, incoming, manual).
//! - [`ext`]: BEP 10 extension sub-protocols (ut_metadata, ut_pex,
//!   capwise_member: proof of channel membership).
//! - [`lsd`]: local service discovery (BEP 14) packets and schedule.
//! - [`privacy`]: BEP 27; a [`privacy::PublicTorrent`] is what PEX, LSD and the DHT require.
//! - [`webseed`]: BEP 19 web seeds: file URLs, pieces onto file ranges, one seed's state machine.
//!
//! Architecture invariant: this crate knows nothing of tokio, sockets, the
//! file system or the policy crate; `scripts/test` checks its dependency tree.

pub mod admission;
pub mod announce;
pub mod bencode;
pub mod bitfield;
pub mod blocklist;
pub mod choker;
pub mod class;
pub mod client_name;
pub mod ext;
pub mod lsd;
pub mod magnet;
pub mod metainfo;
pub mod mse;
pub mod picker;
pub mod priority;
pub mod privacy;
pub mod swarm;
pub mod torrent;
pub mod webseed;
pub mod wire;
