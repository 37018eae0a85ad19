//! The 68-byte peer handshake: never panics; decode/encode round-trips.
#![no_main]

use capwise_engine::wire::{Handshake, HANDSHAKE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(hs) = Handshake::decode(data) else {
        return;
    };
    assert_eq!(data.len(), HANDSHAKE_LEN);
    assert_eq!(&hs.encode()[..], data);
    let _ = (hs.supports_extensions(), hs.supports_fast());
});
