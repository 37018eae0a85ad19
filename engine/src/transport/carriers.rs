//! Which carriers a session speaks ([`Transports`]) and dialling over them
//! in order ([`Dialer`]).
//!
//! The default is TCP first, then uTP, and both accepted: a peer that
//! speaks uTP only (or whose TCP is firewalled) is still reached, uTP peers
//! can reach us, and a dial to the many peers without uTP costs nothing
//! more. uTP first (`utp,tcp`, libtorrent's order: LEDBAT yields to the
//! user's own traffic) costs such peers one short SYN timeout
//! ([`UTP_FALLBACK_TIMEOUT`]) before TCP is tried; it is one setting away.

use std::io;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use super::utp_driver::UtpDriver;
use super::{tcp, utp, Transport};

/// How long a uTP dial may take when TCP is tried after it: two SYNs (the
/// second after 1 s) and as long again for the answer. A peer without uTP
/// usually says nothing at all (no RESET), so this is what it costs; uTP
/// alone gets the caller's whole timeout.
pub const UTP_FALLBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A carrier for peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Carrier {
    /// TCP.
    Tcp,
    /// uTP (BEP 29) over the session's UDP socket, with LEDBAT.
    Utp,
    /// QUIC, between capwise agents only: never dialled from an address
    /// alone, but offered in the extension handshake and dialled to a peer
    /// that offered it (`session/upgrade.rs`), on a UDP port of its own.
    Quic,
}

impl Carrier {
    /// Its name in settings: `tcp`, `utp`.
    pub fn name(self) -> &'static str {
        match self {
            Carrier::Tcp => "tcp",
            Carrier::Utp => "utp",
            Carrier::Quic => "quic",
        }
    }
}

impl FromStr for Carrier {
    type Err = TransportsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Carrier::Tcp),
            "utp" => Ok(Carrier::Utp),
            "quic" => Ok(Carrier::Quic),
            other => Err(TransportsError::Unknown(other.to_string())),
        }
    }
}

/// Why a list of carriers was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportsError {
    /// Not `tcp`, `utp` or `quic`.
    #[error("unknown transport {0:?}: the transports are tcp, utp and quic")]
    Unknown(String),
    /// Nothing listed, or only `quic` (which needs a connection to offer it on).
    #[error(
        "no transport given: name at least one of tcp, utp (quic only upgrades their connections)"
    )]
    Empty,
    /// Listed twice.
    #[error("transport {0} is listed twice")]
    Repeated(&'static str),
}

/// The carriers a session uses, in dial order: what is not listed is
/// neither dialled nor accepted (no TCP listener without TCP, no uTP on the
/// UDP socket without uTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transports(Vec<Carrier>);

impl Default for Transports {
    /// TCP, then uTP (see the module's note).
    fn default() -> Self {
        Transports(vec![Carrier::Tcp, Carrier::Utp])
    }
}

impl Transports {
    /// The carriers in this order; none, or one twice, is refused.
    pub fn new(order: impl IntoIterator<Item = Carrier>) -> Result<Self, TransportsError> {
        let mut list = Vec::new();
        for c in order {
            if list.contains(&c) {
                return Err(TransportsError::Repeated(c.name()));
            }
            list.push(c);
        }
        if list.iter().all(|&c| c == Carrier::Quic) {
            return Err(TransportsError::Empty);
        }
        Ok(Transports(list))
    }

    /// TCP only (what capwise spoke before uTP).
    pub fn tcp_only() -> Self {
        Transports(vec![Carrier::Tcp])
    }

    /// For a torrent that must stay out of the way of the user's own
    /// traffic: uTP first, whose LEDBAT yields to it, and TCP only to a
    /// peer that does not answer uTP (many clients, aria2 among them, have
    /// no uTP; leaving them out would leave the torrent without them).
    pub fn background() -> Self {
        Transports(vec![Carrier::Utp, Carrier::Tcp])
    }

    /// Whether `carrier` is used.
    pub fn uses(&self, carrier: Carrier) -> bool {
        self.0.contains(&carrier)
    }

    /// The carriers in dial order.
    pub fn order(&self) -> &[Carrier] {
        &self.0
    }
}

impl FromStr for Transports {
    type Err = TransportsError;

    /// A comma-separated list, in dial order: `utp,tcp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let carriers = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Carrier>, _>>()?;
        Transports::new(carriers)
    }
}

impl std::fmt::Display for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|c| c.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// What dialling needs: the carriers in order, the uTP driver when uTP
/// runs, and where TCP dials leave from.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// The carriers, in dial order.
    pub transports: Transports,
    /// The uTP driver (none: uTP is skipped).
    pub utp: Option<UtpDriver>,
    /// Where TCP connections leave from: the listen address when a
    /// specific one, the session's interface when it has one.
    pub egress: crate::egress::Egress,
}

impl Dialer {
    /// The carriers to try, in order: `wanted` (a torrent's own order) or
    /// else the session's, keeping only carriers the session runs.
    pub fn order_for(&self, wanted: Option<&Transports>) -> Vec<Carrier> {
        let runs = |c: &Carrier| match c {
            Carrier::Tcp => self.transports.uses(Carrier::Tcp),
            Carrier::Utp => self.transports.uses(Carrier::Utp) && self.utp.is_some(),
            // Dialled only to a peer that offered it, with its agent id.
            Carrier::Quic => false,
        };
        wanted
            .unwrap_or(&self.transports)
            .order()
            .iter()
            .copied()
            .filter(runs)
            .collect()
    }

    /// Dials `remote` over each carrier of [`Dialer::order_for`]`(wanted)`
    /// in turn until one connects, within `timeout` each (uTP gets
    /// [`UTP_FALLBACK_TIMEOUT`] when something is tried after it); the last
    /// error when none does.
    pub async fn dial(
        &self,
        remote: SocketAddr,
        timeout: Duration,
        wanted: Option<&Transports>,
    ) -> io::Result<Transport> {
        if let Some(name) = &self.egress.device {
            // Every carrier would fail, uTP only after its time-out (its
            // datagrams cannot leave): say so at once.
            if crate::netif::index_of(name) == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("network interface {name} does not exist"),
                ));
            }
        }
        let order = self.order_for(wanted);
        let mut last = io::Error::new(io::ErrorKind::Unsupported, "no transport to dial with");
        for (i, carrier) in order.iter().enumerate() {
            let fallback = i + 1 < order.len();
            let tried = match carrier {
                Carrier::Tcp => tokio::time::timeout(timeout, tcp::connect(remote, &self.egress))
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                    }),
                Carrier::Utp => {
                    let Some(driver) = &self.utp else { continue };
                    let limit = if fallback {
                        timeout.min(UTP_FALLBACK_TIMEOUT)
                    } else {
                        timeout
                    };
                    utp::connect(driver, remote, limit).await
                }
                Carrier::Quic => continue,
            };
            match tried {
                Ok(t) => return Ok(t),
                Err(e) => {
                    tracing::debug!(%remote, carrier = carrier.name(), error = %e, "dial failed");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_order_and_bad_ones_say_why() {
        let t: Transports = "utp, tcp".parse().unwrap();
        assert_eq!(t.order(), &[Carrier::Utp, Carrier::Tcp]);
        assert_eq!(t.to_string(), "utp,tcp");
        let t: Transports = "TCP".parse().unwrap();
        assert!(t.uses(Carrier::Tcp) && !t.uses(Carrier::Utp));
        assert_eq!(
            "tcp,sctp".parse::<Transports>(),
            Err(TransportsError::Unknown("sctp".into()))
        );
        let t: Transports = "tcp,quic".parse().unwrap();
        assert!(t.uses(Carrier::Quic));
        assert_eq!("quic".parse::<Transports>(), Err(TransportsError::Empty));
        assert_eq!("".parse::<Transports>(), Err(TransportsError::Empty));
        assert_eq!(
            "utp,utp".parse::<Transports>(),
            Err(TransportsError::Repeated("utp"))
        );
        assert_eq!(Transports::default().to_string(), "tcp,utp");
        assert_eq!(Transports::background().to_string(), "utp,tcp");
    }

    #[test]
    fn a_torrents_order_keeps_only_what_the_session_runs() {
        let tcp_session = Dialer {
            transports: Transports::tcp_only(),
            utp: None,
            egress: Default::default(),
        };
        assert_eq!(tcp_session.order_for(None), vec![Carrier::Tcp]);
        assert_eq!(
            tcp_session.order_for(Some(&Transports::background())),
            vec![Carrier::Tcp]
        );
        let utp_wanted = Transports::new([Carrier::Utp]).unwrap();
        assert!(tcp_session.order_for(Some(&utp_wanted)).is_empty());
        let with_quic = Dialer {
            transports: "quic,tcp".parse().unwrap(),
            utp: None,
            egress: Default::default(),
        };
        assert_eq!(
            with_quic.order_for(None),
            vec![Carrier::Tcp],
            "QUIC is never dialled blind"
        );
    }
}
