//! The MSE/PE handshake, both roles in memory: RC4 and plaintext
//! selection, initial payload, padding bounds, hostile inputs.

use capwise_proto::mse::{
    skeys_from, Initiator, InitiatorConfig, Method, Methods, MseError, Outcome, Padding,
    PrivateKey, Responder, ResponderConfig, MAX_BEFORE_SYNC, PUBLIC_KEY_LEN,
};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

const INFO_HASH: [u8; 20] = [7; 20];
const OTHER_HASH: [u8; 20] = [9; 20];
/// What a dialler sends as IA: a BitTorrent handshake, 68 bytes.
fn bt_handshake() -> Vec<u8> {
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&INFO_HASH);
    hs.extend_from_slice(b"-CW0001-abcdefghijkl");
    hs
}

fn initiator(provide: Methods, padding: Padding, seed: u64) -> Initiator {
    let config = InitiatorConfig {
        info_hash: INFO_HASH,
        provide,
        initial_payload: bt_handshake(),
        padding,
    };
    Initiator::new(config, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn responder(config: ResponderConfig, seed: u64) -> Responder {
    Responder::new(
        skeys_from(&[OTHER_HASH, INFO_HASH]),
        config,
        &mut StdRng::seed_from_u64(seed),
    )
}

#[derive(Debug, PartialEq)]
enum Side {
    Initiator,
    Responder,
}

#[derive(Debug, Default)]
struct Transcript {
    a_to_b: Vec<u8>,
    b_to_a: Vec<u8>,
}

/// Runs both machines against each other, feeding each transmit in chunks
/// of `chunk` bytes, until neither has anything left to do.
fn drive(
    a: &mut Initiator,
    b: &mut Responder,
    chunk: usize,
) -> Result<Transcript, (Side, MseError)> {
    let mut t = Transcript::default();
    for _ in 0..20 {
        a.compute_dh().map_err(|e| (Side::Initiator, e))?;
        b.compute_dh().map_err(|e| (Side::Responder, e))?;
        let mut moved = false;
        while let Some(bytes) = a.poll_transmit() {
            t.a_to_b.extend_from_slice(&bytes);
            for c in bytes.chunks(chunk) {
                b.handle_input(c).map_err(|e| (Side::Responder, e))?;
                b.compute_dh().map_err(|e| (Side::Responder, e))?;
            }
            moved = true;
        }
        while let Some(bytes) = b.poll_transmit() {
            t.b_to_a.extend_from_slice(&bytes);
            for c in bytes.chunks(chunk) {
                a.handle_input(c).map_err(|e| (Side::Initiator, e))?;
                a.compute_dh().map_err(|e| (Side::Initiator, e))?;
            }
            moved = true;
        }
        if !moved && !a.wants_dh() && !b.wants_dh() {
            break;
        }
    }
    Ok(t)
}

fn complete(a: &mut Initiator, b: &mut Responder, chunk: usize) -> (Outcome, Outcome, Transcript) {
    let t = drive(a, b, chunk).unwrap();
    let (oa, ob) = (
        a.outcome().expect("initiator done"),
        b.outcome().expect("responder done"),
    );
    (oa, ob, t)
}

#[test]
fn rc4_handshake_completes_and_both_streams_round_trip() {
    let mut a = initiator(Methods::BOTH, Padding::Random, 1);
    let mut b = responder(ResponderConfig::default(), 2);
    let (mut oa, mut ob, _) = complete(&mut a, &mut b, usize::MAX);
    assert_eq!((oa.method, ob.method), (Method::Rc4, Method::Rc4));
    assert_eq!(
        ob.info_hash, INFO_HASH,
        "the responder found the torrent from req2"
    );
    assert_eq!(ob.initial_payload_len, 68);
    assert_eq!(ob.payload, bt_handshake(), "IA decrypted on the responder");
    assert!(oa.payload.is_empty());

    let message = b"\x00\x00\x00\x05\x04\x00\x00\x00\x2a".to_vec();
    let mut wire = message.clone();
    oa.send.as_mut().unwrap().apply(&mut wire);
    assert_ne!(wire, message, "encrypted on the wire");
    ob.receive.as_mut().unwrap().apply(&mut wire);
    assert_eq!(wire, message);

    let mut back = b"bitfield and more".to_vec();
    ob.send.as_mut().unwrap().apply(&mut back);
    oa.receive.as_mut().unwrap().apply(&mut back);
    assert_eq!(back, b"bitfield and more");
    // The streams keep their place: a second message decrypts too.
    let mut again = b"second".to_vec();
    oa.send.as_mut().unwrap().apply(&mut again);
    ob.receive.as_mut().unwrap().apply(&mut again);
    assert_eq!(again, b"second");
}

#[test]
fn plaintext_is_selected_when_only_it_is_common() {
    let mut a = initiator(Methods::PLAINTEXT, Padding::Random, 3);
    let mut b = responder(ResponderConfig::default(), 4);
    let (oa, ob, _) = complete(&mut a, &mut b, usize::MAX);
    assert_eq!(
        (oa.method, ob.method),
        (Method::Plaintext, Method::Plaintext)
    );
    assert!(oa.send.is_none() && oa.receive.is_none() && ob.send.is_none() && ob.receive.is_none());
    assert_eq!(
        ob.payload,
        bt_handshake(),
        "IA is RC4 even when plaintext follows"
    );
}

#[test]
fn the_responders_preference_decides_when_both_are_provided() {
    let mut a = initiator(Methods::BOTH, Padding::Random, 5);
    let config = ResponderConfig {
        prefer: Method::Plaintext,
        ..ResponderConfig::default()
    };
    let mut b = responder(config, 6);
    let (oa, ob, _) = complete(&mut a, &mut b, usize::MAX);
    assert_eq!(
        (oa.method, ob.method),
        (Method::Plaintext, Method::Plaintext)
    );

    let mut a = initiator(Methods::BOTH, Padding::Random, 5);
    let config = ResponderConfig {
        accept: Methods::RC4,
        prefer: Method::Plaintext,
        ..ResponderConfig::default()
    };
    let mut b = responder(config, 6);
    let (oa, _, _) = complete(&mut a, &mut b, usize::MAX);
    assert_eq!(
        oa.method,
        Method::Rc4,
        "preference yields to what is accepted"
    );
}

#[test]
fn no_common_method_is_a_clear_error() {
    let mut a = initiator(Methods::RC4, Padding::Random, 7);
    let config = ResponderConfig {
        accept: Methods::PLAINTEXT,
        prefer: Method::Plaintext,
        ..ResponderConfig::default()
    };
    let mut b = responder(config, 8);
    let err = drive(&mut a, &mut b, usize::MAX).unwrap_err();
    assert_eq!(
        err,
        (
            Side::Responder,
            MseError::NoCommonMethod {
                provided: 2,
                accepted: 1
            }
        )
    );
}

#[test]
fn payload_right_after_step_4_reaches_the_initiator_decrypted() {
    let mut a = initiator(Methods::BOTH, Padding::Exact(3), 9);
    let config = ResponderConfig {
        padding: Padding::Exact(3),
        ..ResponderConfig::default()
    };
    let mut b = responder(config, 10);
    b.handle_input(&a.poll_transmit().unwrap()).unwrap();
    b.compute_dh().unwrap();
    a.handle_input(&b.poll_transmit().unwrap()).unwrap();
    a.compute_dh().unwrap();
    b.handle_input(&a.poll_transmit().unwrap()).unwrap();
    let mut step4 = b.poll_transmit().unwrap();
    let mut ob = b.outcome().unwrap();
    let mut handshake = bt_handshake();
    ob.send.as_mut().unwrap().apply(&mut handshake);
    step4.extend_from_slice(&handshake);
    a.handle_input(&step4).unwrap();
    let oa = a.outcome().unwrap();
    assert_eq!(oa.payload, bt_handshake());
    assert_eq!(oa.overhead_received, (PUBLIC_KEY_LEN + 3 + 14 + 3) as u64);
}

#[test]
fn padding_of_0_and_512_completes_and_is_counted_as_overhead() {
    for pad in [0usize, 512] {
        let mut a = initiator(Methods::BOTH, Padding::Exact(pad as u16), 11);
        let config = ResponderConfig {
            padding: Padding::Exact(pad as u16),
            ..ResponderConfig::default()
        };
        let mut b = responder(config, 12);
        let (oa, ob, t) = complete(&mut a, &mut b, usize::MAX);
        assert_eq!(oa.method, Method::Rc4, "pad {pad}");
        assert_eq!(ob.payload, bt_handshake(), "pad {pad}");
        // Ya PadA | req1 req2^req3 | VC provide len(PadC) PadC len(IA) | IA
        let a_overhead = (96 + pad + 40 + 8 + 4 + 2 + pad + 2) as u64;
        // Yb PadB | VC select len(PadD) PadD
        let b_overhead = (96 + pad + 8 + 4 + 2 + pad) as u64;
        assert_eq!(t.a_to_b.len() as u64, a_overhead + 68, "pad {pad}");
        assert_eq!(t.b_to_a.len() as u64, b_overhead, "pad {pad}");
        assert_eq!(
            (oa.overhead_sent, ob.overhead_received),
            (a_overhead, a_overhead)
        );
        assert_eq!(
            (ob.overhead_sent, oa.overhead_received),
            (b_overhead, b_overhead)
        );
    }
}

#[test]
fn byte_by_byte_gives_what_one_chunk_gives() {
    for (seed, provide) in [(13, Methods::BOTH), (14, Methods::PLAINTEXT)] {
        let run = |chunk| {
            let mut a = initiator(provide, Padding::Random, seed);
            let mut b = responder(ResponderConfig::default(), seed + 100);
            complete(&mut a, &mut b, chunk)
        };
        let (mut oa1, mut ob1, t1) = run(usize::MAX);
        let (mut oa2, ob2, t2) = run(1);
        assert_eq!((t1.a_to_b, t1.b_to_a), (t2.a_to_b, t2.b_to_a));
        assert_eq!(
            (oa1.method, ob1.payload.clone()),
            (oa2.method, ob2.payload.clone())
        );
        assert_eq!(
            (
                oa1.overhead_sent,
                oa1.overhead_received,
                ob1.overhead_sent,
                ob1.overhead_received
            ),
            (
                oa2.overhead_sent,
                oa2.overhead_received,
                ob2.overhead_sent,
                ob2.overhead_received
            )
        );
        if let (Some(s1), Some(s2)) = (oa1.send.as_mut(), oa2.send.as_mut()) {
            let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
            s1.apply(&mut x);
            s2.apply(&mut y);
            assert_eq!(x, y, "same keystream position");
            ob1.receive.as_mut().unwrap().apply(&mut x);
            assert_eq!(x, [0u8; 32]);
        }
    }
}

#[test]
fn a_responder_without_the_torrent_says_so() {
    let mut a = initiator(Methods::BOTH, Padding::Random, 15);
    let mut b = Responder::new(
        skeys_from(&[OTHER_HASH]),
        ResponderConfig::default(),
        &mut StdRng::seed_from_u64(16),
    );
    let err = drive(&mut a, &mut b, usize::MAX).unwrap_err();
    assert_eq!(err, (Side::Responder, MseError::UnknownInfoHash));
    assert_eq!(b.handle_input(b"more"), Err(MseError::Over("failed")));
}

#[test]
fn fewer_than_96_bytes_then_eof_is_dropped() {
    let mut b = responder(ResponderConfig::default(), 17);
    b.handle_input(&[1; 50]).unwrap();
    assert!(!b.wants_dh(), "no key yet, no work");
    assert_eq!(b.handle_eof(), Err(MseError::ShortPublicKey(50)));

    let mut a = initiator(Methods::BOTH, Padding::Random, 18);
    a.handle_input(&[1; 95]).unwrap();
    assert_eq!(a.handle_eof(), Err(MseError::ShortPublicKey(95)));

    let mut b = responder(ResponderConfig::default(), 19);
    let mut ya = PrivateKey::random(&mut StdRng::seed_from_u64(1))
        .public_key()
        .to_vec();
    ya.extend_from_slice(&[0; 10]);
    b.handle_input(&ya).unwrap();
    b.compute_dh().unwrap();
    assert!(matches!(b.handle_eof(), Err(MseError::Closed(_))));
}

#[test]
fn more_than_608_bytes_before_the_sync_point_is_dropped() {
    // Before our key goes out: the peer has no business sending more.
    let mut b = responder(ResponderConfig::default(), 20);
    let mut garbage = vec![0u8; MAX_BEFORE_SYNC + 1];
    StdRng::seed_from_u64(3).fill_bytes(&mut garbage);
    assert_eq!(
        b.handle_input(&garbage),
        Err(MseError::TooMuchBeforeSync(609))
    );

    // After it: a real req1, but behind 513 bytes of padding.
    let mut b = responder(ResponderConfig::default(), 21);
    let key = PrivateKey::random(&mut StdRng::seed_from_u64(4));
    b.handle_input(&key.public_key()).unwrap();
    b.compute_dh().unwrap();
    let yb: [u8; 96] = b.poll_transmit().unwrap()[..96].try_into().unwrap();
    let secret = key.shared_secret(&yb).unwrap();
    let req1 = sha1(&[b"req1", &secret]);
    let mut pad_then_req1 = vec![0u8; 513];
    pad_then_req1.extend_from_slice(&req1);
    assert_eq!(
        b.handle_input(&pad_then_req1),
        Err(MseError::NoSync("HASH('req1', S)", 628))
    );

    // With 512 it is found (and the unknown torrent is what stops it).
    let mut b = responder(ResponderConfig::default(), 21);
    b.handle_input(&key.public_key()).unwrap();
    b.compute_dh().unwrap();
    let mut pad_then_req1 = vec![0u8; 512];
    pad_then_req1.extend_from_slice(&req1);
    pad_then_req1.extend_from_slice(&[0; 20]);
    assert_eq!(
        b.handle_input(&pad_then_req1),
        Err(MseError::UnknownInfoHash)
    );
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[test]
fn garbage_finds_no_sync_point_on_either_side() {
    let mut garbage = vec![0u8; 700];
    StdRng::seed_from_u64(5).fill_bytes(&mut garbage);

    let mut b = responder(ResponderConfig::default(), 22);
    b.handle_input(&garbage[..300]).unwrap();
    b.compute_dh().unwrap();
    assert_eq!(
        b.handle_input(&garbage[300..]),
        Err(MseError::NoSync("HASH('req1', S)", 628))
    );

    let mut a = initiator(Methods::BOTH, Padding::Random, 23);
    a.handle_input(&garbage[..200]).unwrap();
    assert!(a.wants_dh());
    a.compute_dh().unwrap();
    assert_eq!(
        a.handle_input(&garbage[200..]),
        Err(MseError::NoSync("ENCRYPT(VC)", 616))
    );
}

#[test]
fn public_keys_out_of_range_are_refused() {
    for bad in [[0u8; 96], [0xff; 96], {
        let mut one = [0u8; 96];
        one[95] = 1;
        one
    }] {
        let mut b = responder(ResponderConfig::default(), 24);
        b.handle_input(&bad).unwrap();
        assert_eq!(b.compute_dh(), Err(MseError::InvalidPublicKey));
        assert!(b.poll_transmit().is_none(), "nothing answered");
    }
}

#[test]
fn an_oversized_initial_payload_or_empty_provide_is_refused_up_front() {
    let mut rng = StdRng::seed_from_u64(25);
    let config = InitiatorConfig {
        info_hash: INFO_HASH,
        provide: Methods::BOTH,
        initial_payload: vec![0; 65536],
        padding: Padding::Random,
    };
    assert_eq!(
        Initiator::new(config.clone(), &mut rng).unwrap_err(),
        MseError::InitialPayloadTooLong(65536)
    );
    let config = InitiatorConfig {
        provide: Methods::from_bits(0x04),
        initial_payload: vec![],
        ..config
    };
    assert_eq!(
        Initiator::new(config, &mut rng).unwrap_err(),
        MseError::NothingProvided
    );
}

#[test]
fn input_after_the_outcome_is_refused() {
    let mut a = initiator(Methods::BOTH, Padding::Random, 26);
    let mut b = responder(ResponderConfig::default(), 27);
    complete(&mut a, &mut b, usize::MAX);
    assert_eq!(a.handle_input(b"x"), Err(MseError::Over("finished")));
    assert_eq!(a.handle_eof(), Ok(()));
}

proptest::proptest! {
    /// What the `mse_handshake` fuzz target does, on a smaller budget:
    /// arbitrary bytes in arbitrary chunks end in an error or wait, never
    /// a panic, and nothing is answered to input shorter than a key.
    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1500), chunk in 1usize..80) {
        let mut b = responder(ResponderConfig::default(), 30);
        for piece in data.chunks(chunk) {
            if b.handle_input(piece).is_err() || b.compute_dh().is_err() {
                break;
            }
        }
        let answered = b.poll_transmit().is_some();
        proptest::prop_assert!(answered == (data.len() >= PUBLIC_KEY_LEN) || data.len() > MAX_BEFORE_SYNC);
        proptest::prop_assert!(b.handle_eof().is_err());
        let mut a = initiator(Methods::BOTH, Padding::Random, 31);
        for piece in data.chunks(chunk) {
            if a.handle_input(piece).is_err() || a.compute_dh().is_err() {
                break;
            }
        }
        proptest::prop_assert!(a.handle_eof().is_err());
    }
}
