//! The BEP 10 extension handshake, as an `Extended { id: 0 }` payload: never
//! panics, our own handshake reads back the `reqq` we put in it, and the
//! capwise_quic offer we put in it reads back whole.
#![no_main]

use capwise_engine::ext::quic::{peer_offer, QuicOffer};
use capwise_engine::wire::extension::{our_handshake, our_handshake_offering, peer_request_queue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = peer_request_queue(data);
    let _ = peer_offer(data);
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
        if data.len() >= 42 && port != 0 {
            let offer = QuicOffer {
                port,
                fingerprint: data[10..42].try_into().unwrap(),
            };
            let ours = our_handshake_offering(port, reqq, metadata_size, &[], None, Some(&offer));
            assert_eq!(peer_offer(&ours), Some(offer));
        }
    }
});
