//! The BEP 10 extension handshake, as an `Extended { id: 0 }` payload: never
//! panics, and our own handshake reads back the `reqq` we put in it.
#![no_main]

use capwise_engine::wire::extension::{our_handshake, peer_request_queue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peer_request_queue(data);
    if data.len() >= 10 {
        let port = u16::from_le_bytes([data[0], data[1]]);
        let reqq = u64::from_le_bytes(data[2..10].try_into().unwrap()) as usize;
        // With and without a metadata size (BEP 9's `metadata_size`).
        let metadata_size = (data.len() % 2 == 0).then_some(data.len());
        let ours = our_handshake(port, reqq, metadata_size);
        let read = peer_request_queue(&ours);
        if reqq <= i64::MAX as usize {
            assert_eq!(read, Some(reqq));
        }
    }
});
