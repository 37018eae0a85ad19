//! A [`Snapshot`] of the agent's figures, written as OpenMetrics text (or
//! the older Prometheus text format) with `prometheus-client`. Pure: a
//! fresh registry per scrape, so a label value that is gone (a reason no
//! longer in force, a torrent state no torrent has) leaves no stale series.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use capwise_policy::decision::Allowance;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::attribution::Path;

/// Torrent states, as label values, always listed (0 when none is in it).
pub const TORRENT_STATES: [&str; 10] = [
    "fetching_metadata",
    "checking",
    "downloading",
    "seeding",
    "waiting",
    "queued",
    "finished",
    "moving",
    "paused",
    "error",
];

/// One budgeted network's period so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetFigures {
    /// The network's id.
    pub network: String,
    /// The cap, bytes.
    pub cap: u64,
    /// The part of the cap kept for the user, bytes.
    pub reserve: u64,
    /// Counted bytes on the whole link this period.
    pub used: u64,
    /// Counted bytes capwise used this period.
    pub agent_used: u64,
    /// Bytes durably reserved in the ledger this period.
    pub reserved: u64,
    /// Debited bytes not known to have arrived (0 for a network not in use).
    pub in_flight: u64,
}

/// The decision in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionFigures {
    /// `Reason::code`.
    pub reason: &'static str,
    /// Per (direction, class) label values.
    pub allowances: Vec<((&'static str, &'static str), Allowance)>,
    /// Whether background torrents may run.
    pub background_allowed: bool,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes per network and (direction, class, kind), since the agent started.
    pub bytes: Vec<(String, Path, u64)>,
    /// Budgets, one per budgeted network.
    pub budgets: Vec<BudgetFigures>,
    /// The decision.
    pub decision: DecisionFigures,
    /// Torrents per state label.
    pub torrents: BTreeMap<&'static str, u64>,
    /// Connected peers per (source, transport) label values.
    pub peers: BTreeMap<(&'static str, &'static str), u64>,
    /// Downloaded pieces that failed their hash check, since the agent started.
    pub hash_failures: u64,
    /// Failed disk reads and writes, since the agent started.
    pub disk_errors: u64,
    /// Connections to or from blocklisted addresses refused, since the agent started.
    pub blocked_connections: u64,
}

type Labels = Vec<(&'static str, String)>;
type GaugeFamily = Family<Labels, Gauge<u64, AtomicU64>>;
type CounterFamily = Family<Labels, Counter<u64>>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|&(k, v)| (k, v.to_owned())).collect()
}

/// 0 suspended, 1 limited to a rate, 2 unlimited.
fn allowance_level(a: Allowance) -> u64 {
    match a {
        Allowance::Suspended => 0,
        Allowance::Rate(_) => 1,
        Allowance::Unlimited => 2,
    }
}

/// The registry holding the snapshot's figures under the `capwise_` prefix.
pub fn registry(s: &Snapshot) -> Registry {
    let mut r = Registry::with_prefix("capwise");

    let bytes = CounterFamily::default();
    for (network, (direction, class, kind), value) in &s.bytes {
        bytes
            .get_or_create(&labels(&[
                ("direction", direction),
                ("class", class),
                ("network", network),
                ("kind", kind),
            ]))
            .inc_by(*value);
    }
    r.register_with_unit(
        "transfer",
        "Bytes capwise moved since it started, by direction, peer class (lan, wan), \
         the network in force (the billed link's id) and kind (payload, overhead)",
        Unit::Bytes,
        bytes,
    );

    let budget = |name: &str, help: &str, value: fn(&BudgetFigures) -> u64| {
        let family = GaugeFamily::default();
        for b in &s.budgets {
            family
                .get_or_create(&labels(&[("network", &b.network)]))
                .set(value(b));
        }
        (name.to_owned(), help.to_owned(), family)
    };
    for (name, help, family) in [
        budget("budget_cap", "The network's data cap this period", |b| {
            b.cap
        }),
        budget(
            "budget_reserve",
            "The part of the cap capwise leaves to the user",
            |b| b.reserve,
        ),
        budget(
            "budget_used",
            "Counted bytes the whole link used this period",
            |b| b.used,
        ),
        budget(
            "budget_agent_used",
            "Counted bytes capwise used this period",
            |b| b.agent_used,
        ),
        budget(
            "ledger_reserved",
            "Bytes durably reserved in the ledger this period (at least what capwise used)",
            |b| b.reserved,
        ),
        budget(
            "ledger_in_flight",
            "Debited bytes of requests not yet answered",
            |b| b.in_flight,
        ),
    ] {
        r.register_with_unit(name, help, Unit::Bytes, family);
    }

    let d = &s.decision;
    let level = GaugeFamily::default();
    let rate = GaugeFamily::default();
    for &((direction, class), allowance) in &d.allowances {
        let l = labels(&[
            ("direction", direction),
            ("class", class),
            ("reason", d.reason),
        ]);
        level.get_or_create(&l).set(allowance_level(allowance));
        if let Allowance::Rate(bytes_per_second) = allowance {
            rate.get_or_create(&l).set(bytes_per_second);
        }
    }
    r.register(
        "decision_allowance",
        "What the policy lets through now per direction and peer class: \
         0 suspended, 1 limited to a rate, 2 unlimited; reason is the decision's code",
        level,
    );
    r.register(
        "decision_rate_limit_bytes_per_second",
        "The rate a limited direction and class may use",
        rate,
    );
    let background = GaugeFamily::default();
    background
        .get_or_create(&labels(&[("reason", d.reason)]))
        .set(u64::from(d.background_allowed));
    r.register(
        "decision_background_allowed",
        "1 while background torrents may run",
        background,
    );

    let torrents = GaugeFamily::default();
    for state in TORRENT_STATES {
        let n = s.torrents.get(state).copied().unwrap_or(0);
        torrents.get_or_create(&labels(&[("state", state)])).set(n);
    }
    r.register("torrents", "Torrents by state", torrents);

    let peers = GaugeFamily::default();
    for (&(source, transport), &n) in &s.peers {
        peers
            .get_or_create(&labels(&[("source", source), ("transport", transport)]))
            .set(n);
    }
    r.register(
        "peers",
        "Connected peers by where they were found and what carries them",
        peers,
    );

    let hash_failures: Counter<u64> = Counter::default();
    hash_failures.inc_by(s.hash_failures);
    r.register(
        "hash_failures",
        "Downloaded pieces that failed their hash check",
        hash_failures,
    );
    let disk_errors: Counter<u64> = Counter::default();
    disk_errors.inc_by(s.disk_errors);
    r.register(
        "disk_errors",
        "Failed disk writes of verified pieces and failed reads of blocks to serve",
        disk_errors,
    );
    let blocked: Counter<u64> = Counter::default();
    blocked.inc_by(s.blocked_connections);
    r.register(
        "blocked_connections",
        "Connections to or from addresses on the blocklist, refused",
        blocked,
    );
    r
}

/// The snapshot in the OpenMetrics text format (ends with `# EOF`).
pub fn openmetrics(s: &Snapshot) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry(s));
    out
}

/// The snapshot in the Prometheus text format 0.0.4, for older scrapers
/// and `promtool check metrics`.
pub fn prometheus_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry(s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Snapshot {
        Snapshot {
            bytes: vec![
                ("home".into(), ("down", "wan", "payload"), 1_000_000),
                ("home".into(), ("down", "wan", "overhead"), 2_000),
            ],
            budgets: vec![BudgetFigures {
                network: "home".into(),
                cap: 10_000_000,
                reserve: 1_000_000,
                used: 3_000_000,
                agent_used: 1_000_000,
                reserved: 1_048_576,
                in_flight: 0,
            }],
            decision: DecisionFigures {
                reason: "metered",
                allowances: vec![
                    (("up", "wan"), Allowance::Suspended),
                    (("down", "wan"), Allowance::Rate(500_000)),
                    (("up", "lan"), Allowance::Unlimited),
                ],
                background_allowed: false,
            },
            torrents: [("seeding", 2)].into_iter().collect(),
            peers: [(("tracker", "tcp"), 3)].into_iter().collect(),
            hash_failures: 1,
            disk_errors: 0,
            blocked_connections: 4,
        }
    }

    #[test]
    fn openmetrics_text_names_every_figure_with_codes_not_sentences() {
        let text = openmetrics(&sample());
        for line in [
            "capwise_transfer_bytes_total{direction=\"down\",class=\"wan\",network=\"home\",kind=\"payload\"} 1000000",
            "capwise_budget_cap_bytes{network=\"home\"} 10000000",
            "capwise_budget_reserve_bytes{network=\"home\"} 1000000",
            "capwise_budget_used_bytes{network=\"home\"} 3000000",
            "capwise_ledger_reserved_bytes{network=\"home\"} 1048576",
            "capwise_decision_allowance{direction=\"up\",class=\"wan\",reason=\"metered\"} 0",
            "capwise_decision_allowance{direction=\"down\",class=\"wan\",reason=\"metered\"} 1",
            "capwise_decision_allowance{direction=\"up\",class=\"lan\",reason=\"metered\"} 2",
            "capwise_decision_rate_limit_bytes_per_second{direction=\"down\",class=\"wan\",reason=\"metered\"} 500000",
            "capwise_torrents{state=\"seeding\"} 2",
            "capwise_torrents{state=\"error\"} 0",
            "capwise_peers{source=\"tracker\",transport=\"tcp\"} 3",
            "capwise_hash_failures_total 1",
            "capwise_disk_errors_total 0",
            "capwise_blocked_connections_total 4",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains("decision_rate_limit_bytes_per_second{direction=\"up\""));
    }

    #[test]
    fn the_prometheus_text_format_types_counters_by_their_sample_names() {
        let text = prometheus_text(&sample());
        assert!(
            text.contains("# TYPE capwise_hash_failures_total counter"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }
}
