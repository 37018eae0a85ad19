//! The `--network-file` TOML: never panics; a parsed network has a non-empty id.
#![no_main]

use std::path::Path;

use capwise_policy::source::file::parse_network_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(network) = parse_network_file(Path::new("fuzz.toml"), text) {
        let _ = format!("{network:?}");
    }
});
