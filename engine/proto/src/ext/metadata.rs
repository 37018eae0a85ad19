//! ut_metadata (BEP 9): the info dictionary from peers, for a torrent known
//! only by its info-hash, and to peers, for every torrent we have.
//!
//! A message is a bencoded dictionary (`msg_type` 0 request, 1 data, 2
//! reject; `piece`; `total_size` on data) followed, for data, by the raw
//! 16 KiB block. [`MetadataFetch`] is the fetching side, one per torrent:
//! peers come in with what their extension handshake announced, blocks and
//! rejects go in with `now`, requests come out of [`MetadataFetch::poll_requests`]
//! and the verified info bytes out of [`MetadataFetch::on_data`].
//!
//! Limits, as libtorrent and rqbit use them: 16 KiB blocks; a metadata size
//! above 32 MiB is refused; a message above 17 KiB, a block of the wrong
//! size or a `total_size` other than announced drops the peer; at most 2
//! requests outstanding per peer; a block is never asked again within 3 s;
//! a peer that rejects is not asked for 60 s. After a failed SHA-1 the
//! senders of the copy wait 20–70 s (other peers are asked at once); a
//! copy from one peer alone makes it suspect, never asked again; a copy
//! from several puts them on parole: each of them then fills a copy alone
//! (it *owns* the copy), so the next failure names the liar. An owner that
//! rejects, times out or leaves gives the copy up (its blocks are dropped).
//! Memory follows what arrived, not what a peer claims: a block's buffer is
//! allocated when it arrives (and has the size the agreed total implies).
//!
//! Architecture invariant: metadata is trusted only when its SHA-1 equals
//! the info-hash; nothing else leaves this machine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::bencode::{self, Owned};
use crate::metainfo::InfoHash;
use crate::picker::PeerKey;

/// The size of a metadata block (the last may be shorter).
pub const BLOCK_SIZE: usize = 16 * 1024;
/// Larger metadata is refused (rqbit's bound; libtorrent's is 30 MiB).
pub const MAX_METADATA_SIZE: usize = 32 * 1024 * 1024;
/// A ut_metadata message (dictionary and block) above this drops the peer.
pub const MAX_MESSAGE_LEN: usize = 17 * 1024;
/// Requests outstanding to one peer at most.
pub const MAX_OUTSTANDING: usize = 2;
/// A block is not asked again, of anyone, within this long.
pub const REASK_AFTER: Duration = Duration::from_secs(3);
/// A request unanswered this long no longer counts against the peer's slots.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that rejected a request is left alone this long.
pub const REJECT_WAIT: Duration = Duration::from_secs(60);
/// After a failed hash, the fetch waits between these two.
pub const HASH_FAIL_WAIT: (Duration, Duration) = (Duration::from_secs(20), Duration::from_secs(70));
/// The extended message id we announce for ut_metadata in `m`.
pub const OUR_ID: u8 = 3;
/// The name of the extension in `m`.
pub const NAME: &[u8] = b"ut_metadata";

/// Why a ut_metadata message or a peer's announcement was refused; the
/// caller drops the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The message is longer than [`MAX_MESSAGE_LEN`].
    #[error("ut_metadata message of {0} bytes (at most 17 KiB)")]
    TooLong(usize),
    /// The dictionary does not decode or lacks `msg_type`/`piece`.
    #[error("malformed ut_metadata message")]
    Malformed,
    /// `metadata_size` is zero, negative or above [`MAX_METADATA_SIZE`].
    #[error("metadata_size {0} is not between 1 byte and 32 MiB")]
    BadSize(i64),
    /// A data block whose length is not what the agreed size implies.
    #[error("metadata block {piece} of {len} bytes, expected {expected}")]
    WrongBlockSize {
        /// The block's index.
        piece: u32,
        /// Its length.
        len: usize,
        /// What the size implies.
        expected: usize,
    },
    /// A data message whose `total_size` differs from the peer's announcement.
    #[error("total_size {got} differs from the metadata_size {announced} announced")]
    WrongTotalSize {
        /// In the message.
        got: i64,
        /// In the handshake.
        announced: usize,
    },
}

/// One ut_metadata message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg {
    /// `msg_type` 0: send block `piece`.
    Request {
        /// Block index.
        piece: u32,
    },
    /// `msg_type` 1: block `piece` of metadata `total_size` bytes long.
    Data {
        /// Block index.
        piece: u32,
        /// The whole metadata's size.
        total_size: i64,
        /// The block's bytes (after the dictionary).
        data: Bytes,
    },
    /// `msg_type` 2: the peer will not send block `piece`.
    Reject {
        /// Block index.
        piece: u32,
    },
    /// Another `msg_type`: ignored, as BEP 9 asks.
    Unknown,
}

impl MetadataMsg {
    /// Decodes an extended message's payload. Never panics; bounded by
    /// [`MAX_MESSAGE_LEN`] before anything is parsed.
    pub fn decode(payload: &Bytes) -> Result<MetadataMsg, MetadataError> {
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(MetadataError::TooLong(payload.len()));
        }
        let (value, used) =
            bencode::decode_prefix(payload).map_err(|_| MetadataError::Malformed)?;
        let dict = value.as_dict().ok_or(MetadataError::Malformed)?;
        let int = |key: &[u8]| dict.get(key).and_then(bencode::Value::as_int);
        let msg_type = int(b"msg_type").ok_or(MetadataError::Malformed)?;
        let piece = int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(MetadataError::Malformed)?;
        Ok(match msg_type {
            0 => MetadataMsg::Request { piece },
            1 => MetadataMsg::Data {
                piece,
                total_size: int(b"total_size").ok_or(MetadataError::Malformed)?,
                data: payload.slice(used..),
            },
            2 => MetadataMsg::Reject { piece },
            _ => MetadataMsg::Unknown,
        })
    }

    /// The payload of an extended message carrying this one.
    pub fn encode(&self) -> Bytes {
        let (msg_type, piece) = match self {
            MetadataMsg::Request { piece } => (0, *piece),
            MetadataMsg::Data { piece, .. } => (1, *piece),
            MetadataMsg::Reject { piece } => (2, *piece),
            MetadataMsg::Unknown => (3, 0),
        };
        let mut dict = Owned::dict()
            .with("msg_type", Owned::Int(msg_type))
            .with("piece", Owned::Int(piece.into()));
        if let MetadataMsg::Data { total_size, .. } = self {
            dict = dict.with("total_size", Owned::Int(*total_size));
        }
        let mut out = dict.build().to_bytes();
        if let MetadataMsg::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        Bytes::from(out)
    }
}

/// The answer to a request for block `piece` of `info_bytes` (the original
/// bytes whose SHA-1 is the info-hash): the block, or a reject when out of
/// range.
pub fn serve(info_bytes: &Bytes, piece: u32) -> MetadataMsg {
    let start = piece as usize * BLOCK_SIZE;
    if start >= info_bytes.len() {
        return MetadataMsg::Reject { piece };
    }
    let end = (start + BLOCK_SIZE).min(info_bytes.len());
    MetadataMsg::Data {
        piece,
        total_size: info_bytes.len() as i64,
        data: info_bytes.slice(start..end),
    }
}

/// Blocks in metadata of `size` bytes.
fn block_count(size: usize) -> usize {
    size.div_ceil(BLOCK_SIZE)
}

/// The length block `piece` must have in metadata of `size` bytes.
fn block_len(size: usize, piece: usize) -> usize {
    (size - piece * BLOCK_SIZE).min(BLOCK_SIZE)
}

/// A ut_metadata request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataRequest {
    /// To whom.
    pub peer: PeerKey,
    /// The extended message id the peer gave ut_metadata.
    pub ext_id: u8,
    /// The block.
    pub piece: u32,
    /// The block's length (16 KiB, less for the last one): what the
    /// answer's payload will be, for a byte gate to debit ahead.
    pub len: usize,
}

#[derive(Debug)]
struct FetchPeer {
    ext_id: u8,
    size: usize,
    /// Blocks asked of this peer and when.
    outstanding: Vec<(u32, Instant)>,
    /// Not asked before this (after a reject).
    quiet_until: Option<Instant>,
    /// Sent a copy of the metadata, alone, that failed its hash: never
    /// asked again.
    suspect: bool,
    /// Shared in a copy that failed: fills copies alone from now on.
    parole: bool,
}

/// Fetches one torrent's metadata from its peers.
#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    peers: HashMap<PeerKey, FetchPeer>,
    /// The size being assembled (chosen from the first usable peer).
    size: Option<usize>,
    /// Blocks received so far, each allocated when it arrived.
    blocks: Vec<Option<Bytes>>,
    /// Who sent each block.
    senders: Vec<Option<PeerKey>>,
    /// When each block was last asked for.
    asked: Vec<Option<Instant>>,
    /// The peer on parole that fills the current copy alone.
    owner: Option<PeerKey>,
    done: bool,
    hash_failures: u32,
}

impl MetadataFetch {
    /// A fetch for the torrent with this info-hash.
    pub fn new(info_hash: InfoHash) -> MetadataFetch {
        MetadataFetch {
            info_hash,
            peers: HashMap::new(),
            size: None,
            blocks: Vec::new(),
            senders: Vec::new(),
            asked: Vec::new(),
            owner: None,
            done: false,
            hash_failures: 0,
        }
    }

    /// A peer's extension handshake said `ut_metadata` is `ext_id` and
    /// the metadata is `metadata_size` bytes. A size out of bounds is an
    /// error (drop the peer); without a size or an id the peer is ignored.
    pub fn add_peer(
        &mut self,
        key: PeerKey,
        ext_id: Option<u8>,
        metadata_size: Option<i64>,
    ) -> Result<(), MetadataError> {
        let (Some(ext_id), Some(size)) = (ext_id.filter(|&id| id != 0), metadata_size) else {
            return Ok(());
        };
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s > 0 && s <= MAX_METADATA_SIZE)
            .ok_or(MetadataError::BadSize(size))?;
        self.peers.insert(
            key,
            FetchPeer {
                ext_id,
                size,
                outstanding: Vec::new(),
                quiet_until: None,
                suspect: false,
                parole: false,
            },
        );
        Ok(())
    }

    /// A peer left; its requests are free to go elsewhere.
    pub fn remove_peer(&mut self, key: PeerKey) {
        if self.owner == Some(key) {
            self.give_up_copy();
        }
        if let Some(peer) = self.peers.remove(&key) {
            for (piece, _) in peer.outstanding {
                if let Some(asked) = self.asked.get_mut(piece as usize) {
                    *asked = None;
                }
            }
        }
    }

    /// Peers that can be asked.
    pub fn peer_count(&self) -> usize {
        self.peers.values().filter(|p| !p.suspect).count()
    }

    /// Whether the metadata was assembled and verified.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How many assembled copies failed the hash.
    pub fn hash_failures(&self) -> u32 {
        self.hash_failures
    }

    /// Bytes held for blocks received so far (what memory the fetch uses).
    pub fn buffered(&self) -> usize {
        self.blocks.iter().flatten().map(Bytes::len).sum()
    }

    /// Blocks received of those needed (0 of 0 before a size is known).
    pub fn blocks_have(&self) -> (usize, usize) {
        (self.blocks.iter().flatten().count(), self.blocks.len())
    }

    /// The owner of the copy gave it up: its blocks are dropped, so that
    /// no copy mixes a peer on parole with another.
    fn give_up_copy(&mut self) {
        self.owner = None;
        for (block, (sender, asked)) in self
            .blocks
            .iter_mut()
            .zip(self.senders.iter_mut().zip(self.asked.iter_mut()))
        {
            *block = None;
            *sender = None;
            *asked = None;
        }
        for p in self.peers.values_mut() {
            p.outstanding.clear();
        }
    }

    /// Whether the current copy has nothing yet: no block in, none asked.
    fn copy_is_fresh(&self) -> bool {
        self.blocks.iter().all(Option::is_none)
            && self.peers.values().all(|p| p.outstanding.is_empty())
    }

    /// Choose the size to assemble: the first usable peer's.
    fn choose_size(&mut self) {
        if self.size.is_some() {
            return;
        }
        let mut sizes: Vec<(PeerKey, usize)> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.suspect)
            .map(|(k, p)| (*k, p.size))
            .collect();
        sizes.sort_unstable();
        if let Some(&(_, size)) = sizes.first() {
            let n = block_count(size);
            self.size = Some(size);
            self.blocks = vec![None; n];
            self.senders = vec![None; n];
            self.asked = vec![None; n];
        }
    }

    /// Requests to send now: to each usable peer that announced the size
    /// being assembled, up to 2 outstanding, for blocks not asked within 3 s.
    pub fn poll_requests(&mut self, now: Instant) -> Vec<MetadataRequest> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if let Some(size) = self.size {
            // Everyone who announced this size left: assemble another's.
            if !self.peers.values().any(|p| !p.suspect && p.size == size) {
                self.size = None;
            }
        }
        self.choose_size();
        let Some(size) = self.size else {
            return out;
        };
        let mut keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let peer = self.peers.get_mut(&key).expect("key from the map");
            let before = peer.outstanding.len();
            peer.outstanding
                .retain(|&(_, at)| now.duration_since(at) < REQUEST_TIMEOUT);
            if self.owner == Some(key) && peer.outstanding.len() < before {
                // The owner let a request time out: it gives the copy up.
                peer.quiet_until = Some(now + REJECT_WAIT);
                self.give_up_copy();
                continue;
            }
            if peer.suspect || peer.size != size || peer.quiet_until.is_some_and(|t| now < t) {
                continue;
            }
            match self.owner {
                Some(owner) if owner != key => continue,
                Some(_) => {}
                None if peer.parole => {
                    if !self.copy_is_fresh() {
                        continue;
                    }
                    self.owner = Some(key);
                }
                None => {}
            }
            let peer = self.peers.get_mut(&key).expect("key from the map");
            while peer.outstanding.len() < MAX_OUTSTANDING {
                let next = (0..self.blocks.len()).find(|&i| {
                    self.blocks[i].is_none()
                        && self.asked[i].is_none_or(|at| now.duration_since(at) >= REASK_AFTER)
                });
                let Some(piece) = next else { break };
                self.asked[piece] = Some(now);
                peer.outstanding.push((piece as u32, now));
                out.push(MetadataRequest {
                    peer: key,
                    ext_id: peer.ext_id,
                    piece: piece as u32,
                    len: block_len(size, piece),
                });
            }
        }
        out
    }

    /// When [`poll_requests`](Self::poll_requests) may next have something
    /// to send (none: only a new peer or a message can change that).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let asked = self.asked.iter().flatten().map(|&at| at + REASK_AFTER);
        let quiet = self.peers.values().filter_map(|p| p.quiet_until);
        let timeouts = self
            .peers
            .values()
            .flat_map(|p| p.outstanding.iter().map(|&(_, at)| at + REQUEST_TIMEOUT));
        asked.chain(quiet).chain(timeouts).min()
    }

    /// A peer rejected block `piece`: it is not asked for 60 s.
    pub fn on_reject(&mut self, key: PeerKey, piece: u32, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.outstanding.retain(|&(p, _)| p != piece);
        peer.quiet_until = Some(now + REJECT_WAIT);
        if let Some(asked) = self.asked.get_mut(piece as usize) {
            *asked = None;
        }
        if self.owner == Some(key) {
            self.give_up_copy();
        }
    }

    /// A data message from `key`. `Err`: drop the peer (wrong sizes).
    /// `Ok(Some(bytes))`: the whole info dictionary, whose SHA-1 is the
    /// info-hash. A block not asked of this peer is ignored; when the last
    /// block makes a copy whose hash fails, the fetch starts over: its
    /// senders wait 20–70 s, a lone sender is never asked again, several
    /// go on parole (see the module).
    pub fn on_data(
        &mut self,
        key: PeerKey,
        piece: u32,
        total_size: i64,
        data: Bytes,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, MetadataError> {
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(None);
        };
        if usize::try_from(total_size).ok() != Some(peer.size) {
            return Err(MetadataError::WrongTotalSize {
                got: total_size,
                announced: peer.size,
            });
        }
        let Some(at) = peer.outstanding.iter().position(|&(p, _)| p == piece) else {
            return Ok(None);
        };
        peer.outstanding.swap_remove(at);
        if self.done || self.size != Some(peer.size) {
            return Ok(None);
        }
        let size = peer.size;
        let index = piece as usize;
        if index >= self.blocks.len() {
            return Ok(None);
        }
        let expected = block_len(size, index);
        if data.len() != expected {
            return Err(MetadataError::WrongBlockSize {
                piece,
                len: data.len(),
                expected,
            });
        }
        if self.blocks[index].is_some() {
            return Ok(None);
        }
        // Copied out of the read buffer, so the block holds its own bytes only.
        self.blocks[index] = Some(Bytes::copy_from_slice(&data));
        self.senders[index] = Some(key);
        if self.blocks.iter().any(Option::is_none) {
            return Ok(None);
        }
        let mut info = Vec::with_capacity(size);
        for block in self.blocks.iter().flatten() {
            info.extend_from_slice(block);
        }
        if InfoHash::of(&info) == self.info_hash {
            self.done = true;
            self.blocks.clear();
            return Ok(Some(info));
        }
        self.hash_failures += 1;
        let mut senders: Vec<PeerKey> = self.senders.iter().flatten().copied().collect();
        senders.sort_unstable();
        senders.dedup();
        let alone = senders.len() == 1;
        let (lo, hi) = HASH_FAIL_WAIT;
        let spread = (hi - lo).as_millis() as u64;
        for sender in senders {
            if let Some(p) = self.peers.get_mut(&sender) {
                if alone {
                    p.suspect = true;
                } else {
                    p.parole = true;
                }
                let wait = lo + Duration::from_millis(rand::random::<u64>() % (spread + 1));
                p.quiet_until = Some(now + wait);
            }
        }
        self.owner = None;
        self.size = None;
        self.blocks.clear();
        self.senders.clear();
        self.asked.clear();
        for p in self.peers.values_mut() {
            p.outstanding.clear();
        }
        Ok(None)
    }

    /// Whether `key` sent part of a copy that failed its hash.
    pub fn is_suspect(&self, key: PeerKey) -> bool {
        self.peers.get(&key).is_some_and(|p| p.suspect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(len: usize) -> (Vec<u8>, InfoHash) {
        // Any bytes do: the fetch checks only their hash.
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let hash = InfoHash::of(&bytes);
        (bytes, hash)
    }

    fn block(bytes: &[u8], piece: u32) -> Bytes {
        match serve(&Bytes::copy_from_slice(bytes), piece) {
            MetadataMsg::Data { data, .. } => data,
            other => panic!("no block {piece}: {other:?}"),
        }
    }

    #[test]
    fn codec_round_trips_request_data_and_reject() {
        for msg in [
            MetadataMsg::Request { piece: 3 },
            MetadataMsg::Reject { piece: 0 },
            MetadataMsg::Data {
                piece: 1,
                total_size: 20000,
                data: Bytes::from_static(b"block bytes"),
            },
        ] {
            assert_eq!(MetadataMsg::decode(&msg.encode()).unwrap(), msg);
        }
        let data = MetadataMsg::Data {
            piece: 0,
            total_size: 5,
            data: Bytes::from_static(b"abcde"),
        }
        .encode();
        assert!(data.starts_with(b"d8:msg_typei1e5:piecei0e10:total_sizei5ee"));
        assert!(data.ends_with(b"abcde"));
    }

    #[test]
    fn codec_refuses_long_and_malformed_messages() {
        let long = Bytes::from(vec![b'x'; MAX_MESSAGE_LEN + 1]);
        assert_eq!(
            MetadataMsg::decode(&long),
            Err(MetadataError::TooLong(MAX_MESSAGE_LEN + 1))
        );
        for bad in [
            &b"le"[..],
            b"d5:piecei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"\xff",
        ] {
            assert_eq!(
                MetadataMsg::decode(&Bytes::copy_from_slice(bad)),
                Err(MetadataError::Malformed),
                "{bad:?}"
            );
        }
        let unknown = Bytes::from_static(b"d8:msg_typei9e5:piecei0ee");
        assert_eq!(MetadataMsg::decode(&unknown), Ok(MetadataMsg::Unknown));
    }

    #[test]
    fn serving_answers_blocks_and_rejects_out_of_range() {
        let (bytes, _) = info_of(BLOCK_SIZE + 100);
        let info = Bytes::from(bytes.clone());
        assert_eq!(block(&bytes, 0).len(), BLOCK_SIZE);
        assert_eq!(&block(&bytes, 1)[..], &bytes[BLOCK_SIZE..]);
        assert_eq!(serve(&info, 2), MetadataMsg::Reject { piece: 2 });
        assert_eq!(
            serve(&info, u32::MAX),
            MetadataMsg::Reject { piece: u32::MAX }
        );
    }

    #[test]
    fn sizes_out_of_bounds_are_refused_and_nothing_is_allocated() {
        let (_, hash) = info_of(10);
        let mut fetch = MetadataFetch::new(hash);
        assert_eq!(
            fetch.add_peer(1, Some(2), Some(4 << 30)),
            Err(MetadataError::BadSize(4 << 30))
        );
        assert_eq!(
            fetch.add_peer(1, Some(2), Some(0)),
            Err(MetadataError::BadSize(0))
        );
        assert_eq!(
            fetch.add_peer(1, Some(2), Some(-5)),
            Err(MetadataError::BadSize(-5))
        );
        assert_eq!(
            fetch.add_peer(1, Some(2), Some(MAX_METADATA_SIZE as i64 + 1)),
            Err(MetadataError::BadSize(MAX_METADATA_SIZE as i64 + 1))
        );
        // Without ut_metadata or a size the peer cannot help: ignored.
        fetch.add_peer(2, None, Some(10)).unwrap();
        fetch.add_peer(3, Some(2), None).unwrap();
        assert_eq!(fetch.peer_count(), 0);
        // The largest allowed size allocates nothing before blocks arrive.
        fetch
            .add_peer(4, Some(2), Some(MAX_METADATA_SIZE as i64))
            .unwrap();
        let reqs = fetch.poll_requests(Instant::now());
        assert_eq!(reqs.len(), MAX_OUTSTANDING);
        assert_eq!(fetch.buffered(), 0);
    }

    #[test]
    fn fetches_verifies_and_yields_the_info_bytes() {
        let (bytes, hash) = info_of(3 * BLOCK_SIZE + 5);
        let mut fetch = MetadataFetch::new(hash);
        let now = Instant::now();
        fetch
            .add_peer(1, Some(7), Some(bytes.len() as i64))
            .unwrap();
        let mut result = None;
        let mut t = now;
        while result.is_none() {
            let reqs = fetch.poll_requests(t);
            assert!(reqs.len() <= MAX_OUTSTANDING);
            assert!(reqs.iter().all(|r| r.peer == 1 && r.ext_id == 7));
            for r in reqs {
                let got = fetch
                    .on_data(1, r.piece, bytes.len() as i64, block(&bytes, r.piece), t)
                    .unwrap();
                result = result.or(got);
            }
            t += Duration::from_millis(10);
        }
        assert_eq!(result.unwrap(), bytes);
        assert!(fetch.is_done());
        assert!(fetch.poll_requests(t).is_empty());
    }

    #[test]
    fn at_most_two_outstanding_and_no_reask_within_three_seconds() {
        let (bytes, hash) = info_of(8 * BLOCK_SIZE);
        let mut fetch = MetadataFetch::new(hash);
        let t0 = Instant::now();
        let size = Some(bytes.len() as i64);
        fetch.add_peer(1, Some(2), size).unwrap();
        let first = fetch.poll_requests(t0);
        assert_eq!(first.iter().map(|r| r.piece).collect::<Vec<_>>(), [0, 1]);
        assert!(fetch.poll_requests(t0 + Duration::from_secs(5)).is_empty());
        // A second peer, 1 s later, gets other blocks, not 0 and 1.
        fetch.add_peer(2, Some(2), size).unwrap();
        let second = fetch.poll_requests(t0 + Duration::from_secs(1));
        assert_eq!(second.iter().map(|r| r.piece).collect::<Vec<_>>(), [2, 3]);
        // Peer 1 unanswered for 10 s: its slots free up; blocks 0, 1 may go again.
        let later = fetch.poll_requests(t0 + REQUEST_TIMEOUT);
        assert_eq!(
            later.iter().map(|r| (r.peer, r.piece)).collect::<Vec<_>>(),
            [(1, 0), (1, 1)]
        );
        assert!(fetch.poll_timeout().is_some());
    }

    #[test]
    fn a_block_freed_by_a_reject_is_not_reasked_of_the_rejecting_peer_for_a_minute() {
        let (bytes, hash) = info_of(4 * BLOCK_SIZE);
        let mut fetch = MetadataFetch::new(hash);
        let t0 = Instant::now();
        fetch
            .add_peer(1, Some(2), Some(bytes.len() as i64))
            .unwrap();
        let reqs = fetch.poll_requests(t0);
        fetch.on_reject(1, reqs[0].piece, t0);
        assert!(fetch.poll_requests(t0 + Duration::from_secs(59)).is_empty());
        let again = fetch.poll_requests(t0 + REJECT_WAIT);
        assert!(!again.is_empty());
        assert!(again.iter().all(|r| r.peer == 1));
    }

    #[test]
    fn wrong_block_size_or_total_size_is_an_error_and_unasked_blocks_are_ignored() {
        let (bytes, hash) = info_of(2 * BLOCK_SIZE + 1);
        let len = bytes.len() as i64;
        let mut fetch = MetadataFetch::new(hash);
        let t0 = Instant::now();
        fetch.add_peer(1, Some(2), Some(len)).unwrap();
        fetch.poll_requests(t0);
        // Block 2 was not asked: ignored, not stored.
        assert_eq!(fetch.on_data(1, 2, len, block(&bytes, 2), t0), Ok(None));
        assert_eq!(fetch.buffered(), 0);
        assert_eq!(
            fetch.on_data(1, 0, len, Bytes::from(vec![0; 100]), t0),
            Err(MetadataError::WrongBlockSize {
                piece: 0,
                len: 100,
                expected: BLOCK_SIZE
            })
        );
        assert_eq!(
            fetch.on_data(1, 1, len + 1, block(&bytes, 1), t0),
            Err(MetadataError::WrongTotalSize {
                got: len + 1,
                announced: bytes.len()
            })
        );
        assert_eq!(fetch.buffered(), 0);
    }

    #[test]
    fn a_failed_hash_from_one_peer_makes_it_suspect_and_others_go_on() {
        let (bytes, hash) = info_of(2 * BLOCK_SIZE);
        let len = bytes.len() as i64;
        let mut fetch = MetadataFetch::new(hash);
        let t0 = Instant::now();
        fetch.add_peer(1, Some(2), Some(len)).unwrap();
        let liar = fetch.poll_requests(t0);
        for r in &liar {
            let junk = Bytes::from(vec![0xAA; BLOCK_SIZE]);
            assert_eq!(fetch.on_data(1, r.piece, len, junk, t0), Ok(None));
        }
        assert_eq!(fetch.hash_failures(), 1);
        assert!(fetch.is_suspect(1));
        assert_eq!(fetch.buffered(), 0);
        // An honest peer arrives: it is asked at once (no back-off for
        // peers that sent nothing), the liar never again.
        fetch.add_peer(2, Some(5), Some(len)).unwrap();
        let t1 = t0 + Duration::from_millis(1);
        let reqs = fetch.poll_requests(t1);
        assert!(!reqs.is_empty() && reqs.iter().all(|r| r.peer == 2));
        let mut out = None;
        for r in reqs {
            out = out.or(fetch
                .on_data(2, r.piece, len, block(&bytes, r.piece), t1)
                .unwrap());
        }
        assert_eq!(out.unwrap(), bytes);
    }

    #[test]
    fn a_peer_announcing_another_size_is_not_mixed_in() {
        let (bytes, hash) = info_of(BLOCK_SIZE + 10);
        let len = bytes.len() as i64;
        let mut fetch = MetadataFetch::new(hash);
        let t0 = Instant::now();
        fetch.add_peer(1, Some(2), Some(len)).unwrap();
        fetch.add_peer(2, Some(2), Some(len * 3)).unwrap();
        let reqs = fetch.poll_requests(t0);
        assert!(reqs.iter().all(|r| r.peer == 1));
        // Leaving returns its blocks to the pool at once.
        fetch.remove_peer(1);
        fetch.add_peer(3, Some(4), Some(len)).unwrap();
        let reqs = fetch.poll_requests(t0);
        assert_eq!(
            reqs.iter().map(|r| (r.peer, r.piece)).collect::<Vec<_>>(),
            [(3, 0), (3, 1)]
        );
    }

    #[test]
    fn a_failed_copy_from_several_peers_puts_them_on_parole_until_the_liar_is_named() {
        let (bytes, hash) = info_of(4 * BLOCK_SIZE);
        let len = bytes.len() as i64;
        let mut fetch = MetadataFetch::new(hash);
        let t0 = Instant::now();
        // Peer 1 lies, peer 2 is honest; each fills half of the first copy.
        fetch.add_peer(1, Some(2), Some(len)).unwrap();
        fetch.add_peer(2, Some(2), Some(len)).unwrap();
        let answer = |fetch: &mut MetadataFetch, reqs: Vec<MetadataRequest>, now| {
            let mut out = None;
            for r in reqs {
                let data = if r.peer == 1 {
                    Bytes::from(vec![0xAA; r.len])
                } else {
                    block(&bytes, r.piece)
                };
                out = out.or(fetch.on_data(r.peer, r.piece, len, data, now).unwrap());
            }
            out
        };
        let reqs = fetch.poll_requests(t0);
        assert!(reqs.iter().any(|r| r.peer == 1) && reqs.iter().any(|r| r.peer == 2));
        assert_eq!(answer(&mut fetch, reqs, t0), None);
        assert_eq!(fetch.hash_failures(), 1);
        assert!(
            !fetch.is_suspect(1) && !fetch.is_suspect(2),
            "blame is shared"
        );
        // Both wait, then fill copies alone: the lower key first.
        assert!(fetch.poll_requests(t0 + HASH_FAIL_WAIT.0 / 2).is_empty());
        let t1 = t0 + HASH_FAIL_WAIT.1;
        let mut now = t1;
        let mut out = None;
        for _ in 0..8 {
            let reqs = fetch.poll_requests(now);
            let mut owners: Vec<_> = reqs.iter().map(|r| r.peer).collect();
            owners.dedup();
            assert!(
                owners.len() <= 1,
                "a copy on parole has one sender: {owners:?}"
            );
            out = out.or(answer(&mut fetch, reqs, now));
            if out.is_some() {
                break;
            }
            now += HASH_FAIL_WAIT.1;
        }
        assert_eq!(out.unwrap(), bytes);
        assert!(fetch.is_suspect(1), "the liar is named");
        assert!(!fetch.is_suspect(2));
    }

    #[test]
    fn an_owner_that_rejects_gives_the_copy_up() {
        let (bytes, hash) = info_of(3 * BLOCK_SIZE);
        let len = bytes.len() as i64;
        let mut fetch = MetadataFetch::new(hash);
        let t0 = Instant::now();
        fetch.add_peer(1, Some(2), Some(len)).unwrap();
        fetch.add_peer(2, Some(2), Some(len)).unwrap();
        fetch.peers.get_mut(&1).unwrap().parole = true;
        fetch.peers.get_mut(&2).unwrap().parole = true;
        let reqs = fetch.poll_requests(t0);
        assert!(reqs.iter().all(|r| r.peer == 1) && !reqs.is_empty());
        let first = reqs[0];
        fetch
            .on_data(1, first.piece, len, block(&bytes, first.piece), t0)
            .unwrap();
        fetch.on_reject(1, reqs[1].piece, t0);
        assert_eq!(fetch.buffered(), 0, "the owner's blocks are dropped");
        let reqs = fetch.poll_requests(t0);
        assert!(!reqs.is_empty() && reqs.iter().all(|r| r.peer == 2));
    }
}
