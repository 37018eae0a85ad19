//! The local API's JSON bodies (agent/src/api_types.rs, included as is):
//! `POST /v1/torrents` (add) and `PUT /v1/limits`. Never panics; whatever
//! deserializes serializes back to the same value; the add request's
//! payload goes through the checks the daemon applies (base64, then
//! .torrent parsing; or magnet parsing).
#![no_main]

use base64::Engine as _;
use capwise_engine::magnet::Magnet;
use capwise_engine::metainfo::Metainfo;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../agent/src/api_types.rs"]
mod api_types;

// api_types.rs speaks of `crate::units` (rates as JSON numbers).
#[allow(dead_code)]
#[path = "../../agent/src/units.rs"]
mod units;

use api_types::{AddRequest, Limits};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<AddRequest>(data) {
        let text = serde_json::to_string(&request).expect("an add request serializes");
        let again: AddRequest = serde_json::from_str(&text).expect("and reads back");
        assert_eq!(format!("{request:?}"), format!("{again:?}"));
        if let Some(b64) = &request.torrent {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
                let _ = Metainfo::from_bytes(&bytes);
            }
        }
        if let Some(link) = &request.magnet {
            let _ = Magnet::parse(link);
        }
    }
    if let Ok(limits) = serde_json::from_slice::<Limits>(data) {
        let text = serde_json::to_string(&limits).expect("limits serialize");
        let again: Limits = serde_json::from_str(&text).expect("and read back");
        assert_eq!(limits, again);
    }
});
