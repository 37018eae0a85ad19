//! Magnet URIs: never panics; a parsed link written back parses to the same link.
#![no_main]

use capwise_engine::magnet::Magnet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(magnet) = Magnet::parse(text) else {
        return;
    };
    let uri = magnet.to_uri();
    assert_eq!(Magnet::parse(&uri).as_ref(), Ok(&magnet), "uri {uri:?}");
    assert_eq!(magnet.to_string(), uri);
});
