//! The MSE handshake, both roles, fed arbitrary bytes in arbitrary chunks:
//! never panics; what it holds stays bounded (96 + 512 before the sync
//! point, the largest handshake after it, plus the input).
#![no_main]

use capwise_proto::mse::{
    skeys_from, Initiator, InitiatorConfig, Methods, Padding, Responder, ResponderConfig,
};
use libfuzzer_sys::fuzz_target;

/// A fixed "random" source, so that a finding reproduces.
struct Fixed(u64);

impl rand::RngCore for Fixed {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand::CryptoRng for Fixed {}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split % 64) + 1;
    let mut rng = Fixed(u64::from(split));

    let mut responder = Responder::new(
        skeys_from(&[[7; 20]]),
        ResponderConfig::default(),
        &mut rng,
    );
    for piece in data.chunks(chunk) {
        if responder.handle_input(piece).is_err() {
            break;
        }
        if responder.compute_dh().is_err() {
            break;
        }
        while responder.poll_transmit().is_some() {}
    }
    let _ = responder.handle_eof();
    let _ = responder.outcome();

    let config = InitiatorConfig {
        info_hash: [7; 20],
        provide: Methods::BOTH,
        initial_payload: vec![1; 68],
        padding: Padding::Random,
    };
    let Ok(mut initiator) = Initiator::new(config, &mut rng) else {
        return;
    };
    for piece in data.chunks(chunk) {
        if initiator.handle_input(piece).is_err() {
            break;
        }
        if initiator.compute_dh().is_err() {
            break;
        }
        while initiator.poll_transmit().is_some() {}
    }
    let _ = initiator.handle_eof();
    let _ = initiator.outcome();
});
