//! ut_pex (BEP 11): decoding never panics; what decodes re-encodes to a
//! message that decodes the same; a peer's state fed the input (as a message
//! from a WAN peer, then its peers as our connected set) keeps its bounds,
//! and what it yields to dial has no LAN address.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use capwise_proto::class::PeerClass;
use capwise_proto::ext::pex::{PexMessage, PexPeer, MAX_ACCEPTED, MAX_ADDED, MAX_DROPPED};
use capwise_proto::privacy::PublicTorrent;
use libfuzzer_sys::fuzz_target;

fn classify(ip: IpAddr) -> PeerClass {
    match ip {
        IpAddr::V4(v4) if v4.is_private() || v4.is_loopback() => PeerClass::Lan,
        IpAddr::V6(v6) if v6.is_loopback() => PeerClass::Lan,
        _ => PeerClass::Wan,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = PexMessage::decode(data) {
        // IPv4-mapped entries of added6 move to added: compare as sets.
        let sorted = |m: &PexMessage| {
            let mut added: Vec<_> = m.added.iter().map(|e| (e.addr, e.flags)).collect();
            let mut dropped = m.dropped.clone();
            added.sort();
            dropped.sort();
            (added, dropped)
        };
        let again = PexMessage::decode(&msg.encode()).expect("our encoding decodes");
        assert_eq!(sorted(&again), sorted(&msg));
    }
    let now = Instant::now();
    let public = PublicTorrent::check(false).unwrap();
    let mut peer = PexPeer::new(public, "8.8.8.8:6881".parse().unwrap(), PeerClass::Wan, now);
    if let Ok(Some(learnt)) = peer.handle_message(now, data) {
        let added = learnt.to_dial(classify);
        assert!(added.len() <= MAX_ACCEPTED);
        for entry in &added {
            assert_eq!(classify(entry.addr.ip()), PeerClass::Wan);
            assert_ne!(entry.addr.port(), 0);
        }
        // A second message at once is ignored, never taken.
        assert!(!matches!(peer.handle_message(now, data), Ok(Some(_))));
        let mut set: BTreeMap<_, _> = added.iter().map(|e| (e.addr, e.flags)).collect();
        let mut at = now;
        for _ in 0..3 {
            if let Some(out) = peer.poll_transmit(at, &set, classify) {
                assert!(out.added.len() <= MAX_ADDED && out.dropped.len() <= MAX_DROPPED);
                assert!(out.encode().len() < 4096);
            }
            assert!(peer.poll_timeout() > at);
            set.retain(|addr, _| addr.port() % 2 == 0);
            at += Duration::from_secs(60);
        }
    }
});
