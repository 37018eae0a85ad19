//! Local Service Discovery (BEP 14): parsing never panics; what parses
//! formats back to packets of at most 1400 bytes that parse the same; the
//! receiver yields only the datagram's source IP and never errs on its own
//! packets.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use capwise_proto::lsd::{format, parse, Announcer, Cookie, Group, Heard, Receiver, MAX_PACKET};
use capwise_proto::privacy::PublicTorrent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let parsed = parse(data);
    if let Ok(announce) = &parsed {
        assert!(announce.port != 0 && !announce.info_hashes.is_empty());
        let cookie = Cookie::from_u32(7);
        let mut hashes = Vec::new();
        for group in [Group::V4, Group::V6] {
            for packet in format(group, announce.port, &announce.info_hashes, &cookie) {
                assert!(packet.len() <= MAX_PACKET);
                let back = parse(&packet).expect("our packet parses");
                assert_eq!(back.port, announce.port);
                hashes.extend(back.info_hashes);
            }
        }
        assert_eq!(hashes.len(), 2 * announce.info_hashes.len());
    }
    let mut announcer = Announcer::new(Cookie::from_u32(1), 6881);
    if let Ok(announce) = &parsed {
        let public = PublicTorrent::check(false).unwrap();
        announcer.add_torrent(announce.info_hashes[0], public, now);
    }
    let mut receiver = Receiver::new(announcer.cookie().clone());
    let source: SocketAddr = "192.168.7.7:6771".parse().unwrap();
    match receiver.handle(now, source, data, &announcer) {
        Ok(Heard::Peer { addr, info_hashes }) => {
            assert_eq!(addr.ip(), source.ip());
            assert!(info_hashes.iter().all(|h| announcer.announces(h)));
        }
        Ok(_) => {}
        Err(_) => assert!(parsed.is_err()),
    }
});
