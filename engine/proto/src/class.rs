//! Which way bytes go and where a peer sits: the two axes every gate,
//! counter and credit is indexed by; and where we learnt of a peer
//! ([`PeerSource`]), which `list` and the API count.

/// Direction of a transfer, seen from this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes we send.
    Up,
    /// Bytes we receive.
    Down,
}

/// Where a peer sits: on the local network (free) or beyond it (billed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerClass {
    /// Same subnet as a local interface, link-local or loopback, not through a VPN.
    Lan,
    /// Everything else.
    Wan,
}

/// Where we learnt of a connected peer. A peer found in a torrent's
/// metadata phase (BEP 9) keeps the source it was found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerSource {
    /// A tracker's announce answer.
    Tracker,
    /// The mainline DHT (BEP 5).
    Dht,
    /// Another peer's ut_pex message (BEP 11).
    Pex,
    /// Local service discovery (BEP 14).
    Lsd,
    /// It dialled us.
    Incoming,
    /// Named by the caller: `--peer`, a magnet's `x.pe=`, a transport the
    /// caller made.
    Manual,
}

impl PeerSource {
    /// Every source, in the order they are shown.
    pub const ALL: [PeerSource; 6] = [
        PeerSource::Tracker,
        PeerSource::Dht,
        PeerSource::Pex,
        PeerSource::Lsd,
        PeerSource::Incoming,
        PeerSource::Manual,
    ];

    /// Its name in the CLI and the API: `tracker`, `dht`, `pex`, `lsd`,
    /// `incoming`, `manual`.
    pub fn name(self) -> &'static str {
        match self {
            PeerSource::Tracker => "tracker",
            PeerSource::Dht => "dht",
            PeerSource::Pex => "pex",
            PeerSource::Lsd => "lsd",
            PeerSource::Incoming => "incoming",
            PeerSource::Manual => "manual",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Connected peers counted by where they came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSources([usize; PeerSource::ALL.len()]);

impl PeerSources {
    /// Count one more peer from `source`.
    pub fn add(&mut self, source: PeerSource) {
        self.0[source.index()] += 1;
    }

    /// Peers from `source`.
    pub fn get(&self, source: PeerSource) -> usize {
        self.0[source.index()]
    }

    /// Peers from every source.
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

impl FromIterator<PeerSource> for PeerSources {
    fn from_iter<I: IntoIterator<Item = PeerSource>>(iter: I) -> Self {
        let mut counts = PeerSources::default();
        for source in iter {
            counts.add(source);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_counted_apart_and_named_once() {
        let counts: PeerSources = [
            PeerSource::Tracker,
            PeerSource::Incoming,
            PeerSource::Tracker,
        ]
        .into_iter()
        .collect();
        assert_eq!(counts.get(PeerSource::Tracker), 2);
        assert_eq!(counts.get(PeerSource::Incoming), 1);
        assert_eq!(counts.get(PeerSource::Manual), 0);
        assert_eq!(counts.total(), 3);
        let names: std::collections::HashSet<_> =
            PeerSource::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), PeerSource::ALL.len());
        for (i, s) in PeerSource::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }
}
