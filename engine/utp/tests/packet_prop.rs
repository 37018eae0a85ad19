//! The codec against arbitrary input: decoding never panics, and whatever
//! decodes encodes back to a packet that decodes the same.

use capwise_utp::packet::{Header, Packet, PacketType};
use proptest::prelude::*;

fn packet_type() -> impl Strategy<Value = PacketType> {
    prop_oneof![
        Just(PacketType::Data),
        Just(PacketType::Fin),
        Just(PacketType::State),
        Just(PacketType::Reset),
        Just(PacketType::Syn),
    ]
}

proptest! {
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = Packet::decode(&bytes) {
            let again = p.encode();
            prop_assert_eq!(Packet::decode(&again), Ok(p));
        }
    }

    #[test]
    fn headers_round_trip(
        t in packet_type(),
        id in any::<u16>(), ts in any::<u32>(), diff in any::<u32>(), wnd in any::<u32>(),
        seq in any::<u16>(), ack in any::<u16>(),
        sack_words in 0usize..9,
        sack_seed in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let sack: Vec<u8> = (0..sack_words * 4).map(|i| sack_seed.wrapping_mul(i as u8 + 1)).collect();
        let p = Packet {
            header: Header { packet_type: t, connection_id: id, timestamp_us: ts, timestamp_diff_us: diff, wnd_size: wnd, seq_nr: seq, ack_nr: ack },
            selective_ack: (!sack.is_empty()).then_some(&sack[..]),
            payload: &payload,
        };
        let bytes = p.encode();
        prop_assert_eq!(bytes.len(), 20 + if sack.is_empty() { 0 } else { 2 + sack.len() } + payload.len());
        prop_assert_eq!(Packet::decode(&bytes), Ok(p));
    }

    #[test]
    fn a_header_with_its_fields_flipped_never_panics(flip in 0usize..40, bit in 0u8..8) {
        let p = Packet {
            header: Header { packet_type: PacketType::State, connection_id: 1, timestamp_us: 2, timestamp_diff_us: 3, wnd_size: 4, seq_nr: 5, ack_nr: 6 },
            selective_ack: Some(&[1, 2, 3, 4]),
            payload: b"abcdefghijklmn",
        };
        let mut bytes = p.encode();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        let _ = Packet::decode(&bytes);
    }
}

/// An established pair with data in flight both ways, and b's first bytes
/// delivered, so forged packets meet a connection with state.
fn established() -> (
    std::time::Instant,
    capwise_utp::Connection,
    capwise_utp::Connection,
) {
    use capwise_utp::{Config, Connection};
    let now = std::time::Instant::now();
    let mut a = Connection::connect(Config::default(), now, 100);
    let syn = a.poll_transmit(now).unwrap();
    let mut b = Connection::accept(Config::default(), now, &syn, 65_530).unwrap();
    a.handle_datagram(now, &b.poll_transmit(now).unwrap())
        .unwrap();
    b.handle_datagram(now, &a.poll_transmit(now).unwrap())
        .unwrap();
    a.write(&[1; 20_000]);
    b.write(&[2; 20_000]);
    let mut first = true;
    while let Some(d) = a.poll_transmit(now) {
        // One lost, so b holds the rest out of order.
        if !std::mem::take(&mut first) {
            let _ = b.handle_datagram(now, &d);
        }
    }
    while let Some(d) = b.poll_transmit(now) {
        let _ = a.handle_datagram(now, &d);
    }
    (now, a, b)
}

proptest! {
    #[test]
    fn forged_packets_never_break_a_connection(
        packets in proptest::collection::vec(
            (packet_type(), any::<bool>(), -40i32..40, -40i32..40, any::<u32>(), any::<u32>(),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 4..=4)),
             proptest::collection::vec(any::<u8>(), 0..1500)),
            1..20),
    ) {
        let (now, mut a, mut b) = established();
        let mut t = now;
        for (ty, to_a, dseq, dack, diff, wnd, sack, payload) in packets {
            t += std::time::Duration::from_millis(7);
            // Sequence numbers near the live ones (a: seq 2.., b: 65530..).
            let (conn, id, seq_base, ack_base) = if to_a { (&mut a, 100u16, 65_530u16, 2u16) } else { (&mut b, 101u16, 2u16, 65_530u16) };
            let p = Packet {
                header: Header { packet_type: ty, connection_id: id, timestamp_us: 1, timestamp_diff_us: diff, wnd_size: wnd,
                    seq_nr: seq_base.wrapping_add(dseq as u16), ack_nr: ack_base.wrapping_add(dack as u16) },
                selective_ack: sack.as_deref(),
                payload: &payload,
            };
            let _ = conn.handle_datagram(t, &p.encode());
            let mut sent = 0;
            while conn.poll_transmit(t).is_some() {
                sent += 1;
                prop_assert!(sent <= 64);
            }
            if let Some(deadline) = conn.poll_timeout() {
                conn.handle_timeout(deadline.max(t));
            }
            let mut buf = [0u8; 65536];
            while conn.read(&mut buf) > 0 {}
            prop_assert!(conn.bytes_in_flight() <= conn.congestion_window().max(64 * 1400));
        }
    }
}
