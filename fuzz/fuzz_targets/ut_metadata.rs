//! ut_metadata (BEP 9): decoding never panics and what decodes re-encodes
//! to the same message; serving never panics; a fetch fed the input as one
//! peer's extension handshake and then its ut_metadata messages keeps its
//! bounds: a `metadata_size` over 32 MiB is refused, each request asks for
//! one block of at most 16 KiB, at most 2 are outstanding, the fetch holds
//! no more than what arrived, and only metadata whose SHA-1 is the
//! info-hash comes out.
//!
//! Input: a byte `n`, `n` bytes of extension handshake, then messages,
//! each a 2-byte big-endian length and that many bytes.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capwise_proto::ext::metadata::{
    serve, MetadataFetch, MetadataMsg, BLOCK_SIZE, MAX_METADATA_SIZE, MAX_OUTSTANDING,
    REQUEST_TIMEOUT,
};
use capwise_proto::metainfo::InfoHash;
use capwise_proto::wire::extension::peer_ut_metadata;
use libfuzzer_sys::fuzz_target;

const PEER: u64 = 7;

fuzz_target!(|data: &[u8]| {
    let whole = Bytes::copy_from_slice(data);
    if let Ok(msg) = MetadataMsg::decode(&whole) {
        if msg != MetadataMsg::Unknown {
            let again = MetadataMsg::decode(&msg.encode()).expect("our encoding decodes");
            assert_eq!(again, msg);
        }
    }
    let piece = data.first().copied().unwrap_or(0).into();
    match serve(&whole, piece) {
        MetadataMsg::Data { data, .. } => assert!(!data.is_empty() && data.len() <= BLOCK_SIZE),
        MetadataMsg::Reject { .. } => {}
        other => panic!("serve answered {other:?}"),
    }

    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (hello, mut rest) = rest.split_at((n as usize).min(rest.len()));
    let hash = InfoHash::of(b"metadata the fuzzer would have to find");
    let mut fetch = MetadataFetch::new(hash);
    let (id, size) = peer_ut_metadata(hello);
    let usable = size.is_some_and(|s| s > 0 && s as u64 <= MAX_METADATA_SIZE as u64);
    match fetch.add_peer(PEER, id, size) {
        Ok(()) => {}
        Err(_) => {
            assert!(!usable, "a size in bounds was refused: {size:?}");
            return;
        }
    }
    let mut now = Instant::now();
    let mut arrived = 0usize;
    // Asked and not yet answered, rejected or timed out: piece -> when.
    let mut outstanding = HashMap::new();
    while rest.len() >= 2 {
        for r in fetch.poll_requests(now) {
            assert_eq!(r.peer, PEER);
            assert!(r.len > 0 && r.len <= BLOCK_SIZE);
            outstanding.insert(r.piece, now);
        }
        assert!(outstanding.len() <= MAX_OUTSTANDING, "{outstanding:?}");
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let (chunk, after) = rest[2..].split_at(len.min(rest.len() - 2));
        rest = after;
        match MetadataMsg::decode(&Bytes::copy_from_slice(chunk)) {
            Ok(MetadataMsg::Data {
                piece,
                total_size,
                data,
            }) => {
                arrived += data.len();
                outstanding.remove(&piece);
                match fetch.on_data(PEER, piece, total_size, data, now) {
                    Ok(Some(info)) => assert_eq!(InfoHash::of(&info), hash),
                    Ok(None) => {}
                    // The peer would be dropped.
                    Err(_) => return,
                }
            }
            Ok(MetadataMsg::Reject { piece }) => {
                outstanding.remove(&piece);
                fetch.on_reject(PEER, piece, now);
            }
            _ => {}
        }
        assert!(fetch.buffered() <= arrived && fetch.buffered() <= MAX_METADATA_SIZE);
        // Time passes, past the request time-out now and then.
        let step = u64::from(chunk.first().copied().unwrap_or(0));
        now += Duration::from_millis(step * 100);
        outstanding.retain(|_, at| now.duration_since(*at) < REQUEST_TIMEOUT);
    }
});
