//! UDP tracker packets (BEP 15): never panics on connect or announce replies,
//! over IPv4 or IPv6; the transaction id is the one in the packet so that the
//! fuzzer reaches past the header check.
#![no_main]

use capwise_engine::tracker::udp::{decode_announce, decode_connect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tid = data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()));
    if let Ok(id) = decode_connect(data, tid) {
        assert!(data.len() >= 16);
        assert_eq!(id.to_be_bytes(), data[8..16]);
    }
    for ipv6 in [false, true] {
        if let Ok(reply) = decode_announce(data, tid, ipv6) {
            let entry = if ipv6 { 18 } else { 6 };
            // Entries with port 0 are skipped, the rest kept in order.
            assert_eq!((data.len() - 20) % entry, 0);
            assert!(reply.peers.len() <= (data.len() - 20) / entry);
            assert!(reply
                .peers
                .iter()
                .all(|p| p.is_ipv6() == ipv6 && p.port() != 0));
        }
    }
});
