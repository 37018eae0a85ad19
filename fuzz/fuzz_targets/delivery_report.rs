//! Delivery reports: `verify_report` never panics on any bytes. The first
//! byte picks the mode: odd checks the rest as a whole report file
//! (envelope and signature refusals); even seals the rest as a body with
//! the fuzzer's own key first, so the signed-body checks (names, items,
//! hashes, dates) are reached too. An accepted report re-signs to one that
//! verifies alike.
#![no_main]

use capwise_channel::report::{seal, verify_report, AgentKey};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = AgentKey::from_seed([0x42; 32]);
    let file = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        match seal(rest, &key) {
            Ok(file) => file,
            Err(_) => return,
        }
    };
    let Ok(accepted) = verify_report(&file, NOW) else {
        return;
    };
    let Ok(again) = accepted.sign(&key) else {
        // Signed by another agent than the fuzzer's (mode odd): fine.
        return;
    };
    assert_eq!(verify_report(&again, NOW).as_ref(), Ok(&accepted));
});
