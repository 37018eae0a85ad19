//! uTP datagrams (BEP 29): decoding never panics; whatever decodes
//! re-encodes to a packet with the same header, payload and selective-ACK
//! bits, which is canonical (it encodes to itself); and an established
//! connection and an endpoint fed the bytes never panic and answer within
//! bounds.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use capwise_utp::packet::{Packet, MAX_SACK_BYTES};
use capwise_utp::{Config, Connection, Endpoint, EndpointConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        // A selective ACK is read at any length but sent padded to a
        // multiple of 4 (BEP 29) and cut at MAX_SACK_BYTES; other
        // extensions are dropped. Only that may change.
        let encoded = p.encode();
        let q = Packet::decode(&encoded).expect("what we encode decodes");
        assert_eq!(q.header, p.header);
        assert_eq!(q.payload, p.payload);
        match (p.selective_ack, q.selective_ack) {
            (None, None) => {}
            (Some(sent), Some(read)) => {
                let kept = sent.len().min(MAX_SACK_BYTES);
                assert_eq!(&read[..kept], &sent[..kept]);
                assert!(read[kept..].iter().all(|&b| b == 0));
                assert_eq!(read.len() % 4, 0);
            }
            other => panic!("selective ACK changed presence: {other:?}"),
        }
        assert_eq!(q.encode(), encoded, "an encoded packet is canonical");
    }

    // An established pair; the input arrives at both ends, as is and with
    // each end's connection id written in, so it reaches the state machine.
    let now = Instant::now();
    let mut a = Connection::connect(Config::default(), now, 100);
    let syn = a.poll_transmit(now).unwrap();
    let mut b = Connection::accept(Config::default(), now, &syn, 5000).unwrap();
    let state = b.poll_transmit(now).unwrap();
    a.handle_datagram(now, &state).unwrap();
    let confirm = a.poll_transmit(now).unwrap();
    b.handle_datagram(now, &confirm).unwrap();
    a.write(&[1; 5000]);
    while let Some(d) = a.poll_transmit(now) {
        let _ = b.handle_datagram(now, &d);
    }
    for (conn, id) in [(&mut a, 100u16), (&mut b, 101u16)] {
        let _ = conn.handle_datagram(now, data);
        if data.len() >= 4 {
            let mut addressed = data.to_vec();
            addressed[2..4].copy_from_slice(&id.to_be_bytes());
            let _ = conn.handle_datagram(now, &addressed);
        }
        let mut sent = 0;
        while conn.poll_transmit(now).is_some() {
            sent += 1;
            assert!(sent <= 64, "{sent} datagrams for one input");
        }
        if let Some(t) = conn.poll_timeout() {
            conn.handle_timeout(t.max(now + Duration::from_secs(1)));
        }
        let mut buf = [0u8; 8192];
        while conn.read(&mut buf) > 0 {}
        while conn.poll_event().is_some() {}
    }

    let mut endpoint = Endpoint::new(EndpointConfig::default(), 7);
    let from: SocketAddr = "10.0.0.2:1000".parse().unwrap();
    endpoint.handle_datagram(now, from, data);
    let mut sent = 0;
    while let Some((to, d)) = endpoint.poll_transmit(now) {
        assert_eq!(to, from);
        assert!(d.len() <= data.len(), "never more than came in");
        sent += 1;
    }
    assert!(sent <= 1);
});
