//! HTTP tracker reply bodies: never panics; what parses is bounded by the input.
#![no_main]

use capwise_engine::tracker::http::parse_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = parse_response(data) else {
        return;
    };
    // Every peer costs at least 6 bytes of input (compact) or more (dicts).
    assert!(reply.peers.len() <= data.len() / 6);
});
