//! The engine's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input was not valid bencode.
    #[error("bencode: {0}")]
    Bencode(#[from] crate::bencode::BencodeError),
    /// A .torrent file is malformed or unsafe; the message names the field.
    #[error("invalid torrent: {0}")]
    Metainfo(#[from] crate::metainfo::MetainfoError),
    /// A magnet URI could not be understood.
    #[error("invalid magnet link: {0}")]
    Magnet(#[from] crate::magnet::MagnetError),
    /// A peer broke the wire protocol.
    #[error("peer protocol: {0}")]
    Wire(#[from] crate::wire::WireError),
    /// A tracker could not be reached or answered nonsense.
    #[error("tracker: {0}")]
    Tracker(#[from] crate::tracker::TrackerError),
    /// File system trouble, with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No torrent with this info-hash is in the session (never added, or
    /// removed already).
    #[error("no torrent {0} in this session")]
    UnknownTorrent(crate::metainfo::InfoHash),
    /// An encrypted handshake (MSE/PE) with a peer failed.
    #[error("encrypted handshake with {addr}: {source}")]
    Mse {
        /// The peer.
        addr: std::net::SocketAddr,
        /// What went wrong.
        source: crate::transport::mse::HandshakeError,
    },
    /// Encryption is required and the peer did not complete an encrypted
    /// handshake (most likely it speaks plaintext only).
    #[error(
        "{addr} did not take an encrypted connection ({source}), and encryption is required \
         (--encryption require): the peer is skipped"
    )]
    EncryptionRefused {
        /// The peer.
        addr: std::net::SocketAddr,
        /// What went wrong.
        source: crate::transport::mse::HandshakeError,
    },
    /// A plaintext peer came while encryption is required.
    #[error("{0} opened in plaintext, and encryption is required: refused")]
    PlaintextRefused(std::net::SocketAddr),
    /// A file selection the torrent cannot take: a bad glob, or a list of
    /// priorities that does not match its files.
    #[error("file selection: {0}")]
    FileSelection(String),
    /// Any other I/O error (sockets).
    #[error("i/o: {0}")]
    Net(#[from] std::io::Error),
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
