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
        let ours = our_handshake(port, reqq);
        let read = peer_request_queue(&ours);
        if reqq <= i64::MAX as usize {
            assert_eq!(read, Some(reqq));
        }
    }
});
