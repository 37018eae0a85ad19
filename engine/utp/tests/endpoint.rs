//! Two endpoints (one per "socket") joined in memory: routing by address
//! and connection id, SYN bounds, RESETs for unknown connections, and a
//! flood of garbage that leaves the endpoint as it was.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use capwise_utp::packet::{Header, Packet, PacketType};
use capwise_utp::{Endpoint, EndpointConfig, Event, Routed};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Delivers every queued datagram between the two endpoints (no delay)
/// until both are quiet; bounded.
fn exchange(now: Instant, a: (&mut Endpoint, SocketAddr), b: (&mut Endpoint, SocketAddr)) {
    let (ea, aa) = a;
    let (eb, ab) = b;
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some((to, d)) = ea.poll_transmit(now) {
            assert_eq!(to, ab);
            eb.handle_datagram(now, aa, &d);
            moved = true;
        }
        while let Some((to, d)) = eb.poll_transmit(now) {
            assert_eq!(to, aa);
            ea.handle_datagram(now, ab, &d);
            moved = true;
        }
        if !moved {
            return;
        }
    }
    panic!("endpoints never went quiet");
}

#[test]
fn two_connections_between_the_same_endpoints_stay_apart() {
    let now = Instant::now();
    let (aa, ab) = (addr("10.0.0.1:6881"), addr("10.0.0.2:6881"));
    let mut a = Endpoint::new(EndpointConfig::default(), 1);
    let mut b = Endpoint::new(EndpointConfig::default(), 2);
    let c1 = a.connect(now, ab).unwrap();
    let c2 = a.connect(now, ab).unwrap();
    exchange(now, (&mut a, aa), (&mut b, ab));
    let s1 = b.accept().unwrap();
    let s2 = b.accept().unwrap();
    assert_eq!(b.accept(), None);
    assert_eq!(b.remote(s1), Some(aa));
    a.connection(c1).unwrap().write(b"one");
    a.connection(c2).unwrap().write(b"two");
    exchange(now, (&mut a, aa), (&mut b, ab));
    let mut got = Vec::new();
    for s in [s1, s2] {
        let mut buf = [0u8; 8];
        let n = b.connection(s).unwrap().read(&mut buf);
        got.push(buf[..n].to_vec());
        assert_eq!(
            b.connection(s).unwrap().poll_event(),
            Some(Event::Connected)
        );
    }
    got.sort();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    // Removing one leaves the other working.
    b.remove(s1);
    a.connection(c2).unwrap().write(b"more");
    exchange(now, (&mut a, aa), (&mut b, ab));
    assert_eq!(b.connection(s2).unwrap().readable_len(), 4);
}

#[test]
fn half_open_connections_are_bounded() {
    let now = Instant::now();
    let config = EndpointConfig {
        max_half_open: 4,
        ..EndpointConfig::default()
    };
    let mut b = Endpoint::new(config, 3);
    let mut accepted = 0;
    for i in 0..100u16 {
        let syn = Packet {
            header: Header {
                packet_type: PacketType::Syn,
                connection_id: i * 7,
                timestamp_us: 1,
                timestamp_diff_us: 0,
                wnd_size: 65536,
                seq_nr: 1,
                ack_nr: 0,
            },
            selective_ack: None,
            payload: &[],
        }
        .encode();
        let from = SocketAddr::from(([192, 0, 2, (i % 200) as u8], 1000 + i));
        if let Routed::Incoming(_) = b.handle_datagram(now, from, &syn) {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 4);
    assert_eq!(b.stats().refused_syns, 96);
    // Each gets a 20-byte STATE, nothing more.
    let mut sent = 0;
    while let Some((_, d)) = b.poll_transmit(now) {
        assert_eq!(d.len(), 20);
        sent += 1;
    }
    assert_eq!(sent, 4);
    // Unconfirmed, they time out and free their slots.
    let t = now + Duration::from_secs(11);
    b.handle_timeout(t);
    let closed: Vec<_> = b.handles().collect();
    for h in closed {
        assert!(b.connection(h).unwrap().is_closed());
        b.remove(h);
    }
    assert!(b.is_empty());
}

#[test]
fn a_packet_for_no_connection_gets_a_reset_and_garbage_nothing() {
    let now = Instant::now();
    let (aa, ab) = (addr("10.0.0.1:6881"), addr("10.0.0.2:6881"));
    let mut a = Endpoint::new(EndpointConfig::default(), 4);
    let mut b = Endpoint::new(EndpointConfig::default(), 5);
    let c = a.connect(now, ab).unwrap();
    exchange(now, (&mut a, aa), (&mut b, ab));
    let s = b.accept().unwrap();
    // b forgets the connection; a's next data gets a RESET back.
    b.remove(s);
    a.connection(c).unwrap().write(b"anyone?");
    exchange(now, (&mut a, aa), (&mut b, ab));
    assert_eq!(b.stats().resets_sent, 1);
    let conn = a.connection(c).unwrap();
    assert!(conn.is_closed());
    assert_eq!(conn.close_reason(), Some(capwise_utp::CloseReason::Reset));

    // Garbage of every length: dropped, counted, nothing sent back except
    // bounded RESETs for well-formed packets naming no connection.
    let mut x = 12345u32;
    for len in 0..2000usize {
        let d: Vec<u8> = (0..len % 300)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        assert_eq!(b.handle_datagram(now, aa, &d), Routed::Dropped);
    }
    let mut replies = 0;
    while let Some((_, d)) = b.poll_transmit(now) {
        assert_eq!(
            Packet::decode(&d).unwrap().header.packet_type,
            PacketType::Reset
        );
        replies += 1;
    }
    assert!(replies <= 64, "{replies}");
    assert!(b.is_empty());
}

/// Both ends dial each other at once (two BitTorrent peers that heard of
/// each other together), over the one socket each: the two connections
/// share both addresses. Closing one, or removing it unclosed, must leave
/// the other carrying bytes both ways.
#[test]
fn crossed_dials_stay_apart_when_one_goes() {
    for abort in [false, true] {
        let now = Instant::now();
        let (aa, ab) = (addr("10.0.0.1:6881"), addr("10.0.0.2:6881"));
        let mut a = Endpoint::new(EndpointConfig::default(), 11);
        let mut b = Endpoint::new(EndpointConfig::default(), 12);
        let a_out = a.connect(now, ab).unwrap();
        let b_out = b.connect(now, aa).unwrap();
        exchange(now, (&mut a, aa), (&mut b, ab));
        let a_in = a.accept().expect("b's dial reached a");
        let b_in = b.accept().expect("a's dial reached b");
        // Keep a's dial (a_out <-> b_in), drop b's (b_out <-> a_in).
        if abort {
            a.connection(a_in).unwrap().abort();
            b.connection(b_out).unwrap().abort();
        } else {
            a.connection(a_in).unwrap().close();
            b.connection(b_out).unwrap().close();
        }
        exchange(now, (&mut a, aa), (&mut b, ab));
        a.remove(a_in);
        b.remove(b_out);
        exchange(now, (&mut a, aa), (&mut b, ab));
        assert!(!a.connection(a_out).unwrap().is_closed(), "abort={abort}");
        assert!(!b.connection(b_in).unwrap().is_closed(), "abort={abort}");
        a.connection(a_out).unwrap().write(b"request");
        exchange(now, (&mut a, aa), (&mut b, ab));
        let mut buf = [0u8; 16];
        let n = b.connection(b_in).unwrap().read(&mut buf);
        assert_eq!(&buf[..n], b"request", "abort={abort}");
        b.connection(b_in).unwrap().write(b"answer");
        exchange(now, (&mut a, aa), (&mut b, ab));
        let n = a.connection(a_out).unwrap().read(&mut buf);
        assert_eq!(&buf[..n], b"answer", "abort={abort}");
    }
}
