//! Channel manifests: `verify` never panics on any bytes. The first byte
//! picks the mode: odd verifies the rest as a whole manifest file (envelope
//! parsing and signature refusals); even seals the rest as a body with the
//! fuzzer's own key first, so the signed-body checks (paths, URLs, hashes,
//! sequence, expiry) are reached too. An accepted manifest re-signs to one
//! that verifies alike, and the subscription step on it never panics; the
//! same bytes accepted twice are a no-op the second time (same digest).
#![no_main]

use capwise_channel::{accept, manifest, step, verify, ChannelKey, SubscriptionState, Trust};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = ChannelKey::from_seed([0x42; 32]);
    let public = key.public();
    let Ok(url) = url::Url::parse("http://hq.example:8080/ch/manifest.json") else {
        return;
    };
    let file = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        match manifest::seal(rest, &key) {
            Ok(file) => file,
            Err(_) => return,
        }
    };
    let last_sequence = (mode & 2 == 2).then_some(u64::from(mode >> 2));
    let trust = Trust {
        key: &public,
        manifest_url: &url,
        last_sequence,
        now: NOW,
    };
    let Ok(accepted) = verify(&file, &trust) else {
        return;
    };
    let (_, state) = step(&SubscriptionState::default(), &accepted);
    assert_eq!(state.last_sequence, Some(accepted.sequence));
    let again = accepted.sign(&key).expect("an accepted manifest signs");
    assert_eq!(verify(&again, &trust).as_ref(), Ok(&accepted));
    let start = SubscriptionState {
        last_sequence,
        ..SubscriptionState::default()
    };
    if let Ok((_, _, state)) = accept(&start, &file, &public, &url, NOW) {
        let (_, actions, same) =
            accept(&state, &file, &public, &url, NOW).expect("the same bytes again are accepted");
        assert!(actions.is_empty());
        assert_eq!(same, state);
    }
});
