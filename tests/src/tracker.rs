//! opentracker on 127.0.0.1 with a whitelist of info-hashes, plus scrape-based swarm waits.

use crate::ports::free_port;
use crate::process::{wait_until, ChildGuard};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A running opentracker, killed on drop.
pub struct Tracker {
    pub port: u16,
    /// The address it listens on (127.0.0.1 unless started with [`Tracker::start_on`]).
    pub ip: Ipv4Addr,
    _guard: ChildGuard,
}

/// A port for a tracker that will be started later (the .torrent needs the URL first).
pub fn reserve_port() -> u16 {
    free_port()
}

/// `http://127.0.0.1:PORT/announce`
pub fn announce_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/announce")
}

/// Scrape numbers for one torrent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrape {
    pub complete: u64,
    pub incomplete: u64,
}

impl Tracker {
    /// Starts opentracker on 127.0.0.1:`port` (TCP and UDP) tracking only `info_hashes` (40-hex).
    /// `work` is a fresh directory for its chroot and whitelist; logs go to `log_dir`.
    pub fn start(port: u16, info_hashes: &[String], work: &Path, log_dir: &Path) -> Result<Self> {
        Self::start_on(Ipv4Addr::LOCALHOST, port, info_hashes, work, log_dir, |c| c)
    }

    /// Like [`Tracker::start`] on `ip`; `wrap` may rewrite the command (e.g. to run it with
    /// `ip netns exec`). The readiness probe and [`Tracker::scrape`] connect from the calling
    /// thread's network namespace, which must reach `ip`.
    pub fn start_on(
        ip: Ipv4Addr,
        port: u16,
        info_hashes: &[String],
        work: &Path,
        log_dir: &Path,
        wrap: impl FnOnce(Command) -> Command,
    ) -> Result<Self> {
        std::fs::create_dir_all(work)?;
        // opentracker chroots to `work` and drops to `nobody` before reading the whitelist.
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755))?;
        let wl = work.join("whitelist");
        let mut body = String::new();
        for h in info_hashes {
            if h.len() != 40 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("not a 40-hex info-hash: {h:?}");
            }
            body.push_str(&h.to_ascii_lowercase());
            body.push('\n');
        }
        std::fs::write(&wl, body)?;
        std::fs::set_permissions(&wl, std::fs::Permissions::from_mode(0o644))?;
        let p = port.to_string();
        let i = ip.to_string();
        let mut cmd = Command::new("opentracker");
        // -i must precede -p/-P, or opentracker also listens on every interface.
        cmd.args(["-i", &i, "-p", &p, "-P", &p, "-d"])
            .arg(work)
            .args(["-w", "whitelist"]);
        let mut cmd = wrap(cmd);
        let mut guard = ChildGuard::spawn("opentracker", &mut cmd, log_dir)?;
        let addr: SocketAddr = (ip, port).into();
        wait_until(
            "opentracker to listen",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                if let Some(s) = guard.try_wait()? {
                    bail!("opentracker exited: {s}\n{}", guard.log_tail(2000));
                }
                Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok())
            },
        )?;
        let tracker = Self {
            port,
            ip,
            _guard: guard,
        };
        // opentracker listens before its whitelist thread has read the file; until then it
        // refuses every announce ("not authorized"), which a fast client sees as a failure.
        if let Some(first) = info_hashes.first() {
            wait_until(
                "opentracker to load its whitelist",
                Duration::from_secs(10),
                Duration::from_millis(50),
                || {
                    Ok(!tracker
                        .get(&probe_path(first, "")?)?
                        .contains("not authorized"))
                },
            )?;
            // `stopped` skips the whitelist check, so it always goes through: the probe leaves
            // no peer behind.
            tracker.get(&probe_path(first, "&event=stopped")?)?;
        }
        Ok(tracker)
    }

    /// One HTTP/1.0 GET against the tracker; returns the body.
    fn get(&self, path_and_query: &str) -> Result<String> {
        let addr: SocketAddr = (self.ip, self.port).into();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.set_write_timeout(Some(Duration::from_secs(3)))?;
        write!(
            s,
            "GET {path_and_query} HTTP/1.0\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
            self.ip, self.port
        )?;
        let mut resp = Vec::new();
        s.take(1 << 20).read_to_end(&mut resp)?;
        let text = String::from_utf8_lossy(&resp);
        let (_, body) = text
            .split_once("\r\n\r\n")
            .context("malformed tracker response")?;
        Ok(body.to_string())
    }

    pub fn announce_url(&self) -> String {
        format!("http://{}:{}/announce", self.ip, self.port)
    }

    /// Scrapes one info-hash (40-hex). A torrent the tracker has not seen yet reads as zeros.
    pub fn scrape(&self, info_hash: &str) -> Result<Scrape> {
        let body = self.get(&format!("/scrape?info_hash={}", percent_hash(info_hash)?))?;
        Ok(Scrape {
            complete: bencode_int_after(&body, "8:completei").unwrap_or(0),
            incomplete: bencode_int_after(&body, "10:incompletei").unwrap_or(0),
        })
    }

    /// Waits until the tracker lists at least `seeders` complete and `leechers` incomplete peers.
    pub fn wait_swarm(
        &self,
        info_hash: &str,
        seeders: u64,
        leechers: u64,
        timeout: Duration,
    ) -> Result<()> {
        let mut last = Scrape::default();
        wait_until(
            &format!("tracker to list >= {seeders} seeders and >= {leechers} leechers"),
            timeout,
            Duration::from_millis(200),
            || {
                last = self.scrape(info_hash)?;
                Ok(last.complete >= seeders && last.incomplete >= leechers)
            },
        )
        .with_context(|| format!("last scrape: {last:?}"))
    }
}

/// `%AB%CD…` for a 40-hex info-hash.
fn percent_hash(info_hash: &str) -> Result<String> {
    Ok(hex_decode(info_hash)?
        .iter()
        .map(|b| format!("%{b:02X}"))
        .collect())
}

/// The readiness probe's announce (a seeder on port 1 that wants no peers); `event` is
/// empty or `&event=...`.
fn probe_path(info_hash: &str, event: &str) -> Result<String> {
    Ok(format!(
        "/announce?info_hash={}&peer_id=-CWPROBE-00000000000&port=1&uploaded=0&downloaded=0&left=0&numwant=0&compact=1{event}",
        percent_hash(info_hash)?
    ))
}

fn bencode_int_after(body: &str, key: &str) -> Option<u64> {
    let start = body.find(key)? + key.len();
    let rest = &body[start..];
    let end = rest.find('e')?;
    rest[..end].parse().ok()
}

/// Decodes 40 hex chars into 20 bytes.
pub fn hex_decode(h: &str) -> Result<[u8; 20]> {
    let h = h.trim();
    if h.len() != 40 {
        bail!("info-hash must be 40 hex chars: {h:?}");
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).context("bad hex")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scrape_body() {
        let body =
            "d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei2e10:downloadedi5e10:incompletei3eeee";
        assert_eq!(bencode_int_after(body, "8:completei"), Some(2));
        assert_eq!(bencode_int_after(body, "10:incompletei"), Some(3));
        assert_eq!(hex_decode(&"0a".repeat(20)).unwrap(), [10u8; 20]);
        assert!(hex_decode("zz").is_err());
    }
}
