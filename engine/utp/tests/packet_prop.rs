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
