//! Write tokens (BEP 5): a `get_peers` response carries a token that the
//! requester must return in `announce_peer` from the same IP address.
//!
//! A token is the first 8 bytes of SHA-1 over a random secret and the
//! requester's IP. The secret changes every [`ROTATE_EVERY`] and the
//! previous one is still accepted, so a token lives 5 to 10 minutes.
//! Rotation is lazy (done when a token is made or checked), so tokens
//! never need a timer of their own.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

/// How often the secret changes.
pub const ROTATE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Bytes in a token.
pub const TOKEN_LEN: usize = 8;

/// The current and previous secrets.
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 20],
    previous: [u8; 20],
    rotated: Instant,
}

impl Tokens {
    /// Fresh random secrets.
    pub fn new(now: Instant) -> Tokens {
        Tokens {
            current: rand::random(),
            previous: rand::random(),
            rotated: now,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.rotated);
        if since >= ROTATE_EVERY * 2 {
            // Both secrets are too old: no outstanding token stays valid.
            self.previous = rand::random();
            self.current = rand::random();
            self.rotated = now;
        } else if since >= ROTATE_EVERY {
            self.previous = self.current;
            self.current = rand::random();
            self.rotated += ROTATE_EVERY;
        }
    }

    fn make(secret: &[u8; 20], ip: IpAddr) -> [u8; TOKEN_LEN] {
        let mut h = Sha1::new();
        h.update(secret);
        match ip {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => h.update(v6.octets()),
        }
        let digest = h.finalize();
        let mut out = [0u8; TOKEN_LEN];
        out.copy_from_slice(&digest[..TOKEN_LEN]);
        out
    }

    /// The token to give `ip` now.
    pub fn issue(&mut self, ip: IpAddr, now: Instant) -> [u8; TOKEN_LEN] {
        self.rotate(now);
        Self::make(&self.current, ip)
    }

    /// Whether `token` is one we gave `ip` within the last two secrets.
    pub fn check(&mut self, ip: IpAddr, token: &[u8], now: Instant) -> bool {
        self.rotate(now);
        token == Self::make(&self.current, ip) || token == Self::make(&self.previous, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_live_one_to_two_rotations() {
        let t0 = Instant::now();
        let mut t = Tokens::new(t0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let token = t.issue(ip, t0);
        assert!(t.check(ip, &token, t0));
        assert!(!t.check(other, &token, t0), "bound to the IP");
        assert!(t.check(ip, &token, t0 + ROTATE_EVERY + Duration::from_secs(1)));
        assert!(!t.check(ip, &token, t0 + ROTATE_EVERY * 2 + Duration::from_secs(1)));
        let mut t = Tokens::new(t0);
        let token = t.issue(ip, t0);
        assert!(
            !t.check(ip, &token, t0 + ROTATE_EVERY * 3),
            "a long sleep expires all"
        );
    }
}
