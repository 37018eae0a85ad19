//! Known answers for MSE's Diffie–Hellman, key derivation and RC4 discard,
//! computed apart from this code by `mse_vectors.py` (Python's pow, hashlib
//! and a textbook RC4), and the wire bytes of steps 1 to 4 built from them.

use capwise_proto::mse::{
    derive_keys, req2_hash, skeys_from, Cipher, Initiator, InitiatorConfig, Method, Methods,
    Padding, PrivateKey, Responder, ResponderConfig,
};
use rand::{CryptoRng, RngCore};

const XA: [u8; 20] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
];
const YA: &str = "96e112dab29e8c5272accb9b17b26887ce54a144a4e3b697c7d159b7a817e556b0918db2b4c658e02a87f7e5fb14b18a553e084cbf3dad2d30f16596ccb982d406258c61b30c5c1dae2ddc60bdbd48d79896312aad63238c39e1a633821eb693";
const YB: &str = "84b23a1e8480b595426889ed448dfc92dc2c293006e0cf39657f70c3eca33cb50bd62ca343a558ca8489018d6986a1d347686b3343453259367421bd5cf35c60d834afa278f71223a4c79cdb9a1bc918e09099b4f5aabd652c226edbb75f88f7";
const S: &str = "1aea23a0431eeac96cfe444068c2674f97b4ac97054382d31445f162f8b1e576cf94207839779de0a37f42501cf321226af0d346b0b7cdb8ff4a0123b228b38dc7e696ead6b6f17264c28d21f1dc74536a94993f7943401a06e4b2f99febf21a";
const KEY_A: &str = "dfb1883f6847fe62a2a1e96eadb29f63bfb2d334";
const KEY_B: &str = "300f9ee3df869c207eac351c8b53dd485c4da8d1";
const REQ1: &str = "cd2c416b7ef2eda2576f714f8293a5fcaa97f838";
const REQ2_XOR_REQ3: &str = "862c77bf96c0a9ab236a9ee48487195b4d69c9b4";
const STREAM_A: &str = "83463d2bef60d80a7cac0940283af121";
const STREAM_B: &str = "0ca1e8703d7ef72ce37366e01dbb2170";
const INFO_HASH: &str = "0123456789abcdef0123456789abcdef01234567";

fn xb() -> [u8; 20] {
    std::array::from_fn(|i| 0xa0 + i as u8)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn arr<const N: usize>(s: &str) -> [u8; N] {
    hex(s).try_into().unwrap()
}

/// Hands out scripted bytes (the private key), zeros after.
struct Scripted(Vec<u8>);

impl RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = if self.0.is_empty() {
                0
            } else {
                self.0.remove(0)
            };
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for Scripted {}

#[test]
fn diffie_hellman_matches_python() {
    let (a, b) = (PrivateKey::from_bytes(&XA), PrivateKey::from_bytes(&xb()));
    assert_eq!(a.public_key().to_vec(), hex(YA));
    assert_eq!(b.public_key().to_vec(), hex(YB));
    assert_eq!(a.shared_secret(&arr(YB)).unwrap().to_vec(), hex(S));
    assert_eq!(b.shared_secret(&arr(YA)).unwrap().to_vec(), hex(S));
}

#[test]
fn keys_and_discarded_keystream_match_python() {
    let (key_a, key_b) = derive_keys(&arr(S), &arr(INFO_HASH));
    assert_eq!((key_a.to_vec(), key_b.to_vec()), (hex(KEY_A), hex(KEY_B)));
    let mut stream = [0u8; 16];
    Cipher::new(&key_a).apply(&mut stream);
    assert_eq!(
        stream.to_vec(),
        hex(STREAM_A),
        "keystream after 1024 dropped"
    );
    let mut stream = [0u8; 16];
    Cipher::new(&key_b).apply(&mut stream);
    assert_eq!(stream.to_vec(), hex(STREAM_B));
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[test]
fn the_wire_bytes_of_steps_1_to_4_match_python() {
    let info_hash: [u8; 20] = arr(INFO_HASH);
    let config = InitiatorConfig {
        info_hash,
        provide: Methods::BOTH,
        initial_payload: vec![],
        padding: Padding::Exact(0),
    };
    let mut a = Initiator::new(config, &mut Scripted(XA.to_vec())).unwrap();
    let config = ResponderConfig {
        padding: Padding::Exact(0),
        ..ResponderConfig::default()
    };
    let mut b = Responder::new(
        skeys_from(&[info_hash]),
        config,
        &mut Scripted(xb().to_vec()),
    );

    let step1 = a.poll_transmit().unwrap();
    assert_eq!(step1, hex(YA));
    b.handle_input(&step1).unwrap();
    b.compute_dh().unwrap();
    let step2 = b.poll_transmit().unwrap();
    assert_eq!(step2, hex(YB));
    a.handle_input(&step2).unwrap();
    a.compute_dh().unwrap();

    let step3 = a.poll_transmit().unwrap();
    // VC, crypto_provide 3, len(PadC) 0, len(IA) 0
    let fields = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0];
    let mut expected = hex(REQ1);
    expected.extend(hex(REQ2_XOR_REQ3));
    expected.extend(xor(&fields, &hex(STREAM_A)));
    assert_eq!(step3, expected);
    assert_eq!(hex(REQ2_XOR_REQ3).len(), req2_hash(&info_hash).len());

    b.handle_input(&step3).unwrap();
    let step4 = b.poll_transmit().unwrap();
    // VC, crypto_select 2 (RC4), len(PadD) 0
    let fields = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0];
    assert_eq!(step4, xor(&fields, &hex(STREAM_B)));
    a.handle_input(&step4).unwrap();
    assert_eq!(a.outcome().unwrap().method, Method::Rc4);
    assert_eq!(b.outcome().unwrap().info_hash, info_hash);
}
