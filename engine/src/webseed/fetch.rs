//! The HTTP side of a web seed: the client, the seed's class, and one
//! request's runs of pieces fetched as range requests, file by file, each
//! piece hashed as soon as its last byte is in.

use std::net::IpAddr;
use std::time::Duration;

use sha1::{Digest, Sha1};

use capwise_proto::metainfo::Info;
use capwise_proto::webseed::{file_ranges, file_url, Outcome, Segment};

use crate::hooks::{Classifier, Direction, PeerClass};

use super::Seed;
use crate::egress::Egress;

/// Redirects followed, and only within the seed's host: a redirect to
/// another host would move bytes from an address we did not classify.
const MAX_REDIRECTS: usize = 3;

/// A client for web seeds: rustls (the workspace's reqwest features), no
/// proxy from the environment (the bytes must come from the address we
/// classified), redirects only within one host, connections kept alive
/// between a seed's requests, each leaving from `from` (the session's
/// listen address when a specific one, its interface when it has one: a
/// connection on a device that is missing fails).
pub(super) fn client(from: &Egress) -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let same_host = attempt
            .previous()
            .first()
            .is_some_and(|first| first.host_str() == attempt.url().host_str());
        if attempt.previous().len() > MAX_REDIRECTS || !same_host {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    let mut b = reqwest::Client::builder()
        .redirect(policy)
        .no_proxy()
        .connect_timeout(Duration::from_secs(15))
        .user_agent(concat!("capwise/", env!("CARGO_PKG_VERSION")));
    if let Some(ip) = from.ip {
        b = b.local_address(ip);
    }
    if let Some(device) = &from.device {
        b = b.interface(device);
    }
    b.build().map_err(|e| e.to_string())
}

/// The seed's class: LAN only when every address its host resolves to is
/// LAN; WAN otherwise, and when it cannot be resolved.
pub(super) async fn classify(url: &str, classifier: &dyn Classifier) -> PeerClass {
    let Ok(parsed) = url::Url::parse(url) else {
        return PeerClass::Wan;
    };
    let port = parsed.port_or_known_default().unwrap_or(80);
    let ips: Vec<IpAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(url::Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(url::Host::Domain(d)) => match tokio::net::lookup_host((d, port)).await {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    if !ips.is_empty()
        && ips
            .iter()
            .all(|ip| classifier.classify(*ip) == PeerClass::Lan)
    {
        PeerClass::Lan
    } else {
        PeerClass::Wan
    }
}

/// One request's work: runs of consecutive pieces.
pub(super) struct Job<'a> {
    info: &'a Info,
    base: &'a str,
    /// `(first, last)` piece of each run, inclusive.
    runs: Vec<(u32, u32)>,
}

impl<'a> Job<'a> {
    pub(super) fn new(info: &'a Info, base: &'a str, pieces: &[u32]) -> Self {
        let mut sorted = pieces.to_vec();
        sorted.sort_unstable();
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for i in sorted {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == i => *last = i,
                _ => runs.push((i, i)),
            }
        }
        Self { info, base, runs }
    }

    fn segments(&self) -> impl Iterator<Item = ((u32, u32), Vec<Segment>)> + '_ {
        self.runs.iter().map(|&(first, last)| {
            let start = self.info.piece_range(first).map_or(0, |r| r.start);
            let end = self.info.piece_range(last).map_or(0, |r| r.end);
            ((first, last), file_ranges(self.info, start..end))
        })
    }

    /// Bytes the server sends (pad files' zeros are not asked for).
    pub(super) fn file_bytes(&self) -> u64 {
        self.segments()
            .flat_map(|(_, s)| s)
            .filter(|s| matches!(s, Segment::File { .. }))
            .map(|s| s.len())
            .sum()
    }

    /// Fetches every run; pieces handed to the swarm go into `delivered`.
    pub(super) async fn run(
        &self,
        seed: &Seed,
        class: PeerClass,
        delivered: &mut Vec<u32>,
    ) -> Outcome {
        for ((first, last), segments) in self.segments().collect::<Vec<_>>() {
            let mut pieces = Assembler::new(self.info, first, last);
            for seg in segments {
                let outcome = match seg {
                    Segment::Zeros(n) => {
                        pieces.push(&vec![0; n as usize], seed, delivered).await;
                        Outcome::Done
                    }
                    Segment::File { file, offset, len } => {
                        let Some(url) = file_url(self.base, self.info, file) else {
                            return Outcome::Failed(format!("no file {file}"));
                        };
                        let whole = self.info.files[file].length;
                        range(
                            seed,
                            class,
                            &url,
                            offset,
                            len,
                            whole,
                            &mut pieces,
                            delivered,
                        )
                        .await
                    }
                };
                if outcome != Outcome::Done {
                    return outcome;
                }
                if seed.is_dropped() {
                    return Outcome::Aborted;
                }
            }
        }
        Outcome::Done
    }
}

/// One range request for `len` bytes of a file from `offset`, fed into `pieces`.
#[allow(clippy::too_many_arguments)]
async fn range(
    seed: &Seed,
    class: PeerClass,
    url: &str,
    offset: u64,
    len: u64,
    file_length: u64,
    pieces: &mut Assembler<'_>,
    delivered: &mut Vec<u32>,
) -> Outcome {
    let last = offset + len - 1;
    let sent = seed
        .client
        .get(url)
        .header(reqwest::header::RANGE, format!("bytes={offset}-{last}"))
        .send()
        .await;
    // Request line and headers, roughly: HTTP bytes are overhead like a
    // peer's message headers (reqwest does not count what crossed).
    seed.count(Direction::Up, class, 0, url.len() as u64 + 120);
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(describe(&e)),
    };
    // The bytes come from the address the connection went to.
    let class = match resp.remote_addr() {
        Some(a) if seed.shared.session.hooks.classifier.classify(a.ip()) == PeerClass::Wan => {
            PeerClass::Wan
        }
        _ => class,
    };
    let head: usize = resp
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    seed.count(Direction::Down, class, 0, head as u64 + 17);
    let status = resp.status().as_u16();
    match status {
        206 => {
            let expected = format!("bytes {offset}-{last}/");
            let ok = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&expected));
            if !ok {
                return Outcome::Failed(format!(
                    "{url}: a Content-Range other than {offset}-{last}"
                ));
            }
        }
        // A whole file is a fine answer to a range that is the whole file.
        200 if offset == 0 && len == file_length => {}
        200 => {
            return Outcome::Failed(format!(
                "{url}: the server ignores Range requests (200 for part of a file)"
            ))
        }
        503 | 429 => {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Outcome::Busy { retry_after };
        }
        _ => return Outcome::Failed(format!("{url}: HTTP {status}")),
    }
    let mut got = 0u64;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => return Outcome::Failed(describe(&e)),
        };
        let room = (len - got) as usize;
        let take = chunk.len().min(room);
        seed.count(
            Direction::Down,
            class,
            take as u64,
            (chunk.len() - take) as u64,
        );
        got += take as u64;
        pieces.push(&chunk[..take], seed, delivered).await;
        if take < chunk.len() {
            return Outcome::Failed(format!("{url}: more bytes than the range asked for"));
        }
        if seed.is_dropped() {
            return Outcome::Aborted;
        }
    }
    if got < len {
        return Outcome::Failed(format!("{url}: the body ended after {got} of {len} bytes"));
    }
    Outcome::Done
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Bytes of a run of pieces in, whole pieces out: each is hashed when its
/// last byte arrives, handed to the swarm if it matches, blamed on the
/// seed if not (and then fetched again, from wherever, later).
struct Assembler<'a> {
    info: &'a Info,
    index: u32,
    last: u32,
    buf: Vec<u8>,
}

impl<'a> Assembler<'a> {
    fn new(info: &'a Info, first: u32, last: u32) -> Self {
        Self {
            info,
            index: first,
            last,
            buf: Vec::with_capacity(info.piece_size(first) as usize),
        }
    }

    async fn push(&mut self, mut data: &[u8], seed: &Seed, delivered: &mut Vec<u32>) {
        while !data.is_empty() && self.index <= self.last {
            let size = self.info.piece_size(self.index) as usize;
            let take = (size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == size {
                let index = self.index;
                let expected = self.info.piece_hash(index).copied();
                let buf = std::mem::take(&mut self.buf);
                // Off the executor: a piece can be megabytes.
                let (ok, buf) = tokio::task::spawn_blocking(move || {
                    let digest: [u8; 20] = Sha1::digest(&buf).into();
                    (Some(digest) == expected, buf)
                })
                .await
                .unwrap_or((false, Vec::new()));
                if ok {
                    if seed.deliver(index, &buf) {
                        delivered.push(index);
                    }
                } else {
                    seed.bad_piece(index);
                }
                self.index += 1;
                let next = self.info.piece_size(self.index) as usize;
                self.buf = buf;
                self.buf.clear();
                self.buf.reserve(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_proto::metainfo::FileEntry;

    #[test]
    fn a_job_groups_consecutive_pieces_and_skips_pad_bytes() {
        let pl = 16 * 1024;
        let lens = [(10_000u64, false), (6_384, true), (40_000, false)];
        let mut offset = 0;
        let files = lens
            .iter()
            .enumerate()
            .map(|(i, (len, pad))| {
                let e = FileEntry {
                    path: vec!["t".into(), format!("f{i}")],
                    length: *len,
                    offset,
                    pad: *pad,
                };
                offset += len;
                e
            })
            .collect();
        let info = Info {
            name: "t".into(),
            piece_length: pl,
            piece_hashes: vec![[0; 20]; offset.div_ceil(pl) as usize],
            files,
            total_length: offset,
            private: false,
            notes: Vec::new(),
        };
        let job = Job::new(&info, "http://h/", &[3, 0, 1]);
        assert_eq!(job.runs, vec![(0, 1), (3, 3)]);
        // Pieces 0, 1 and 3 (short): 3 * 16 KiB - 7232 bytes, less the pad file's 6384.
        assert_eq!(job.file_bytes(), 16_384 * 2 - 6_384 + (56_384 - 3 * 16_384));
    }
}
