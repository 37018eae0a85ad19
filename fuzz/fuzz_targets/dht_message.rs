//! DHT datagrams (KRPC, BEP 5/43): decoding never panics, whatever decodes
//! re-encodes to the same message, and a node fed the bytes (as a query
//! from anywhere and, re-addressed to its open transaction, as the answer
//! to its bootstrap query) never panics and answers only within bounds.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use capwise_dht::krpc::{Body, Message, MAX_PACKET};
use capwise_dht::{Config, Dht};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = Message::decode(data);
    if let Ok(m) = &decoded {
        assert_eq!(Message::decode(&m.encode()).as_ref(), Ok(m));
    }
    let now = Instant::now();
    let bootstrap: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    let mut dht = Dht::new(
        Config {
            bootstrap: vec![bootstrap],
            ..Config::default()
        },
        now,
    );
    let first = dht.poll_transmit(now).expect("the bootstrap query");
    let tid = Message::decode(&first.bytes).unwrap().tid;
    dht.handle_packet("10.0.0.2:1000".parse().unwrap(), data, now);
    if let Ok(mut m) = decoded {
        if !matches!(m.body, Body::Query { .. }) {
            m.tid = tid;
            dht.handle_packet(bootstrap, &m.encode(), now);
        }
    }
    dht.handle_timeout(now + Duration::from_secs(10));
    let mut sent = 0;
    while let Some(t) = dht.poll_transmit(now) {
        assert!(t.bytes.len() <= MAX_PACKET);
        assert!(Message::decode(&t.bytes).is_ok());
        sent += 1;
    }
    assert!(sent <= 64, "{sent} datagrams for one input");
    while dht.poll_event().is_some() {}
});
