//! The dashboard's password beyond loopback: `<state dir>/api-password`
//! (0600) holds its Argon2id hash in the PHC string format, never the
//! password. `capwise api password` writes it; the remote listener reads
//! it at every sign-in, so a new password applies without a restart.
//! Attempts are limited per client address: each costs an Argon2 hash
//! (tens of milliseconds and 19 MiB), and a guesser gets a handful of
//! tries, then one every [`RETRY_EVERY`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// The hash's file name in the state directory.
pub const PASSWORD_FILE: &str = "api-password";
/// Shorter passwords are refused: the listener faces a network.
pub const MIN_LENGTH: usize = 10;
/// Tries a client address gets at once.
pub const BURST: u32 = 5;
/// After the burst: one more try this often.
pub const RETRY_EVERY: Duration = Duration::from_secs(12);
/// Hashes computed at once, whatever the addresses (2 cores, 19 MiB each).
const CONCURRENT_HASHES: usize = 2;
/// Addresses remembered before the idle ones are dropped.
const MAX_ADDRESSES: usize = 4096;

/// The hash file of `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(PASSWORD_FILE)
}

/// The Argon2id hash (PHC string) of `password`, with a random salt.
pub fn hash(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Checks a new password: long enough, one line.
pub fn acceptable(password: &str) -> Result<()> {
    if password.chars().count() < MIN_LENGTH {
        bail!("the password is too short: at least {MIN_LENGTH} characters");
    }
    if password.contains(['\n', '\r']) {
        bail!("the password must be one line");
    }
    Ok(())
}

/// Writes the hash of `password` (0600, replacing any older one at once).
pub fn store(state_dir: &Path, password: &str) -> Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    acceptable(password)?;
    let hashed = hash(password)?;
    let target = path(state_dir);
    let temp = state_dir.join(format!(".{PASSWORD_FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    writeln!(file, "{hashed}").and_then(|()| file.sync_all())?;
    std::fs::rename(&temp, &target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok(target)
}

/// The stored hash, if a password is set. A file that is not a PHC hash
/// is an error naming it (never taken as a password).
pub fn stored(state_dir: &Path) -> Result<Option<String>> {
    let path = path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim().to_string();
            PasswordHash::new(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a password hash ({e}); set the password again with `capwise api password`",
                    path.display()
                )
            })?;
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Whether `password` matches the PHC `hashed`.
pub fn matches(hashed: &str, password: &str) -> bool {
    PasswordHash::new(hashed).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The password does not match.
    Wrong,
    /// Too many tries from this address: the next one is allowed after this.
    TooMany(Duration),
    /// No password is set (removed since the agent started), or the file
    /// cannot be read: the sentence.
    Unavailable(String),
}

/// The password check of the remote listener, with its per-address limit.
pub struct PasswordGate {
    state_dir: PathBuf,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    hashing: tokio::sync::Semaphore,
}

/// The limiter's key: an IPv6 client is one /64 (one host can have all of it).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

impl PasswordGate {
    /// The gate of the password kept in `state_dir`.
    pub fn new(state_dir: &Path) -> PasswordGate {
        let quota = Quota::with_period(RETRY_EVERY)
            .expect("a period above zero")
            .allow_burst(NonZeroU32::new(BURST).expect("above zero"));
        PasswordGate {
            state_dir: state_dir.to_path_buf(),
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            hashing: tokio::sync::Semaphore::new(CONCURRENT_HASHES),
        }
    }

    /// Whether the password is right, for a client at `client`. Every
    /// attempt counts against the address's allowance, right or wrong.
    pub async fn check(&self, client: IpAddr, password: &str) -> Result<(), Refusal> {
        if self.limiter.len() > MAX_ADDRESSES {
            self.limiter.retain_recent();
        }
        if let Err(not_until) = self.limiter.check_key(&client_key(client)) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(Refusal::TooMany(wait.max(Duration::from_secs(1))));
        }
        let hashed = match stored(&self.state_dir) {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(Refusal::Unavailable(
                    "no dashboard password is set on this machine (`capwise api password`)".into(),
                ))
            }
            Err(e) => return Err(Refusal::Unavailable(format!("{e:#}"))),
        };
        let Ok(_permit) = self.hashing.acquire().await else {
            return Err(Refusal::Unavailable("the agent is stopping".into()));
        };
        let password = password.to_string();
        let right = tokio::task::spawn_blocking(move || matches(&hashed, &password))
            .await
            .unwrap_or(false);
        if right {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_matches_only_its_password_and_is_no_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "correct horse battery").unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(text.starts_with("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        let hashed = stored(dir.path()).unwrap().unwrap();
        assert!(matches(&hashed, "correct horse battery"));
        assert!(!matches(&hashed, "correct horse batterY"));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn short_and_multi_line_passwords_are_refused() {
        assert!(acceptable("short").unwrap_err().to_string().contains("10"));
        assert!(acceptable("two\nlines here").is_err());
        assert!(acceptable("long enough now").is_ok());
    }

    #[test]
    fn a_file_that_is_no_hash_is_an_error_never_a_password() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stored(dir.path()).unwrap(), None);
        std::fs::write(path(dir.path()), "hunter2hunter2\n").unwrap();
        let e = stored(dir.path()).unwrap_err().to_string();
        assert!(e.contains("capwise api password"), "{e}");
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[tokio::test]
    async fn wrong_tries_are_limited_per_address() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "correct horse battery").unwrap();
        let gate = PasswordGate::new(dir.path());
        let guesser: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..BURST {
            assert_eq!(
                gate.check(guesser, "guess guess").await,
                Err(Refusal::Wrong)
            );
        }
        match gate.check(guesser, "correct horse battery").await {
            Err(Refusal::TooMany(wait)) => assert!(wait <= RETRY_EVERY, "{wait:?}"),
            other => panic!("{other:?}"),
        }
        let other: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(gate.check(other, "correct horse battery").await, Ok(()));
    }
}
