//! IP blocklists: the P2P format (`name:1.2.3.4-1.2.3.255`, PeerGuardian's
//! and most published lists'), eMule's DAT format
//! (`001.002.003.004 - 001.002.003.255 , 100 , name`) and plain CIDR or
//! single-address lines, mixed freely, one entry a line.
//!
//! [`Blocklist::parse`] is a pure function over the file's bytes (the
//! caller unpacks gzip): a line it cannot read is counted in
//! [`Parsed::bad_lines`], never a panic or an error that loses the rest.
//! The ranges are kept sorted and merged, so a lookup is one binary search.
//! IPv4 only: an IPv6 line counts as bad.

use std::net::{IpAddr, Ipv4Addr};

/// eMule DAT entries with an access level above this are allowed, not
/// blocked (the format's convention).
const DAT_MAX_BLOCKED_LEVEL: u32 = 127;

/// Sorted, disjoint, non-adjacent inclusive IPv4 ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    ranges: Vec<(u32, u32)>,
}

/// What [`Blocklist::parse`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The entries read.
    pub list: Blocklist,
    /// Lines with an entry (not blank, not a comment) that could not be read.
    pub bad_lines: usize,
    /// The first bad line's number (1-based), for a message.
    pub first_bad_line: Option<usize>,
}

impl Blocklist {
    /// Reads every line of `bytes` (UTF-8 or not: names are not needed).
    pub fn parse(bytes: &[u8]) -> Parsed {
        let mut ranges = Vec::new();
        let mut bad = 0;
        let mut first_bad = None;
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = String::from_utf8_lossy(raw);
            match parse_line(line.trim()) {
                Line::Skip => {}
                Line::Range(a, b) => ranges.push((a, b)),
                Line::Bad => {
                    bad += 1;
                    first_bad.get_or_insert(i + 1);
                }
            }
        }
        Parsed {
            list: Blocklist::from_ranges(ranges),
            bad_lines: bad,
            first_bad_line: first_bad,
        }
    }

    /// The union of `ranges` (inclusive; a reversed one is taken as is,
    /// swapped).
    pub fn from_ranges(mut ranges: Vec<(u32, u32)>) -> Blocklist {
        for r in &mut ranges {
            if r.0 > r.1 {
                *r = (r.1, r.0);
            }
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Blocklist { ranges: merged }
    }

    /// Joins two lists (several files in the configuration).
    pub fn union(&self, other: &Blocklist) -> Blocklist {
        let mut all = self.ranges.clone();
        all.extend_from_slice(&other.ranges);
        Blocklist::from_ranges(all)
    }

    /// Whether `ip` is blocked. An IPv4-mapped IPv6 address is looked up as
    /// its IPv4 address; other IPv6 addresses are never blocked.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return false,
            },
        };
        let x = u32::from(v4);
        // The first range that ends at or after x.
        let i = self.ranges.partition_point(|r| r.1 < x);
        self.ranges.get(i).is_some_and(|r| r.0 <= x)
    }

    /// The merged ranges.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Whether nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Addresses blocked in all.
    pub fn addresses(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| u64::from(b - a) + 1).sum()
    }
}

enum Line {
    Skip,
    Range(u32, u32),
    Bad,
}

fn parse_line(line: &str) -> Line {
    if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
        return Line::Skip;
    }
    let parsed = if line.contains(',') {
        parse_dat(line)
    } else if let Some(r) = parse_range(line) {
        // "1.2.3.4-1.2.3.255" without a name, or a DAT range alone.
        Some(Some(r))
    } else if let Some((_, range)) = line.rsplit_once(':') {
        parse_range(range.trim()).map(Some)
    } else {
        parse_cidr(line).map(Some)
    };
    match parsed {
        Some(Some((a, b))) if a <= b => Line::Range(a, b),
        Some(None) => Line::Skip,
        _ => Line::Bad,
    }
}

/// `A - B , LEVEL , NAME`: `Some(None)` for an entry whose level allows.
fn parse_dat(line: &str) -> Option<Option<(u32, u32)>> {
    let mut fields = line.split(',');
    let range = parse_range(fields.next()?.trim())?;
    let level = match fields.next() {
        Some(l) => l.trim().parse::<u32>().ok()?,
        None => 0,
    };
    Some((level <= DAT_MAX_BLOCKED_LEVEL).then_some(range))
}

/// `A-B` or `A - B`, octets maybe zero-padded.
fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-')?;
    Some((octets(a.trim())?, octets(b.trim())?))
}

/// `A/N` or a single `A`.
fn parse_cidr(s: &str) -> Option<(u32, u32)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, n)) => (a, n.trim().parse::<u32>().ok().filter(|n| *n <= 32)?),
        None => (s, 32),
    };
    let start = octets(addr.trim())?;
    let host_bits = 32 - len;
    let mask = if host_bits == 32 {
        0
    } else {
        u32::MAX << host_bits
    };
    let start = start & mask;
    Some((start, start | !mask))
}

/// Dotted IPv4 whose octets may carry leading zeros (`001.002.003.004`,
/// which `Ipv4Addr`'s parser refuses).
fn octets(s: &str) -> Option<u32> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse::<u8>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(u32::from(Ipv4Addr::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reads_p2p_lines_with_colons_in_names() {
        let p = Blocklist::parse(
            b"# a comment\nSome org: Inc:1.2.3.4-1.2.3.255\n\nother:10.0.0.1-10.0.0.1\r\n",
        );
        assert_eq!(p.bad_lines, 0);
        assert!(p.list.contains(ip("1.2.3.4")));
        assert!(p.list.contains(ip("1.2.3.255")));
        assert!(!p.list.contains(ip("1.2.3.3")));
        assert!(!p.list.contains(ip("1.2.4.0")));
        assert!(p.list.contains(ip("10.0.0.1")));
        assert!(!p.list.contains(ip("10.0.0.2")));
    }

    #[test]
    fn reads_emule_dat_and_honours_the_access_level() {
        let p = Blocklist::parse(
            b"001.002.003.000 - 001.002.003.255 , 000 , Bad range\n\
              005.006.007.000 - 005.006.007.255 , 200 , Allowed range\n\
              009.000.000.000 - 009.000.000.010 , 127 , Edge\n",
        );
        assert_eq!(p.bad_lines, 0);
        assert!(p.list.contains(ip("1.2.3.77")));
        assert!(!p.list.contains(ip("5.6.7.8")));
        assert!(p.list.contains(ip("9.0.0.10")));
        assert!(!p.list.contains(ip("9.0.0.11")));
    }

    #[test]
    fn reads_cidr_and_single_addresses() {
        let p = Blocklist::parse(b"192.168.0.0/16\n8.8.8.8\n0.0.0.0/0x\n10.1.2.3/33\n");
        assert_eq!(p.bad_lines, 2);
        assert_eq!(p.first_bad_line, Some(3));
        assert!(p.list.contains(ip("192.168.255.255")));
        assert!(!p.list.contains(ip("192.169.0.0")));
        assert!(p.list.contains(ip("8.8.8.8")));
        assert!(!p.list.contains(ip("8.8.8.9")));
        let all = Blocklist::parse(b"0.0.0.0/0\n");
        assert_eq!(all.list.addresses(), 1 << 32);
        assert!(all.list.contains(ip("255.255.255.255")));
    }

    #[test]
    fn bad_lines_are_counted_never_fatal() {
        let p = Blocklist::parse(
            b"x:1.2.3.4-1.2.3\nx:1.2.3.400-1.2.3.5\nx:9.9.9.9-1.1.1.1\n2001:db8::/32\n\xff\xfe\x00\n\
              1.2.3.4.5\nok:7.7.7.7-7.7.7.8\n",
        );
        assert_eq!(p.bad_lines, 6);
        assert_eq!(p.first_bad_line, Some(1));
        assert_eq!(p.list.ranges().len(), 1);
        assert!(p.list.contains(ip("7.7.7.8")));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let l = Blocklist::from_ranges(vec![(10, 20), (15, 30), (31, 40), (50, 60), (5, 5)]);
        assert_eq!(l.ranges(), &[(5, 5), (10, 40), (50, 60)]);
        let max = Blocklist::from_ranges(vec![(u32::MAX - 1, u32::MAX), (0, 0)]);
        assert!(max.contains(ip("255.255.255.255")));
        assert!(max.contains(ip("0.0.0.0")));
        assert!(!max.contains(ip("0.0.0.1")));
        let both = l.union(&max);
        assert_eq!(both.ranges().len(), 5);
    }

    #[test]
    fn mapped_ipv6_is_looked_up_as_ipv4() {
        let l = Blocklist::parse(b"127.0.0.2\n").list;
        assert!(l.contains(ip("::ffff:127.0.0.2")));
        assert!(!l.contains(ip("::1")));
        assert!(!l.contains(ip("127.0.0.1")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_lookups_match_a_scan(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), probe in proptest::prelude::any::<u32>()) {
            let p = Blocklist::parse(&bytes);
            let scan = p.list.ranges().iter().any(|(a, b)| *a <= probe && probe <= *b);
            proptest::prop_assert_eq!(p.list.contains(IpAddr::V4(probe.into())), scan);
        }

        #[test]
        fn merged_ranges_hold_exactly_the_inputs(ranges in proptest::collection::vec((0u32..1000, 0u32..1000), 0..20), probe in 0u32..1100) {
            let l = Blocklist::from_ranges(ranges.clone());
            let want = ranges.iter().any(|(a, b)| a.min(b) <= &probe && &probe <= a.max(b));
            proptest::prop_assert_eq!(l.contains(IpAddr::V4(probe.into())), want);
            for w in l.ranges().windows(2) {
                proptest::prop_assert!(w[0].1.saturating_add(1) < w[1].0);
            }
        }
    }
}
