//! The decision: a pure function of (network, budget state, schedule,
//! power, settings, now) giving the allowance for each direction and peer
//! class, and a sentence saying why.
//!
//! The network decides first; being on battery can only hold back more
//! (uploads to the internet, and background torrents when the charge is
//! low), never lift what the network holds back.

use std::fmt::Write as _;

use crate::budget::Budget;
use crate::network::Network;
use crate::power::Power;
use crate::schedule::{Rule, Schedule};
use crate::time::{ShortDate, Timestamp};
use crate::units::{HumanBytes, HumanRate};

/// How much may flow in one direction to one class of peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// No limit.
    Unlimited,
    /// At most this many bytes per second (never 0: that is `Suspended`).
    Rate(u64),
    /// Nothing at all: zero, not a trickle.
    Suspended,
}

impl Allowance {
    /// The tighter of two allowances.
    pub fn min(self, other: Allowance) -> Allowance {
        use Allowance::*;
        match (self, other) {
            (Suspended, _) | (_, Suspended) => Suspended,
            (Unlimited, x) | (x, Unlimited) => x,
            (Rate(a), Rate(b)) => Rate(a.min(b)),
        }
    }

    /// A rate, with 0 meaning suspended.
    pub fn rate(bytes_per_second: u64) -> Allowance {
        if bytes_per_second == 0 {
            Allowance::Suspended
        } else {
            Allowance::Rate(bytes_per_second)
        }
    }
}

/// The user's settings; [`Settings::default`] is the zero-configuration
/// behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Seed to WAN peers on metered networks (default: no).
    pub upload_on_metered: bool,
    /// Let background torrents run on metered networks (default: no).
    pub background_on_metered: bool,
    /// Download rate cap on metered networks; `None` = unlimited (default).
    pub metered_download_rate: Option<u64>,
    /// Percent of the cap at which downloads are throttled (default 80).
    pub near_cap_percent: u8,
    /// Download rate when near the cap (default 64 kB/s).
    pub near_cap_download_rate: u64,
    /// Suspend everything while roaming (default: yes).
    pub suspend_when_roaming: bool,
    /// Seed to WAN peers while on battery (default: no).
    pub wan_uploads_on_battery: bool,
    /// On battery below this charge (percent), background torrents wait
    /// (default 30; 0 never).
    pub background_below_percent: u8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            upload_on_metered: false,
            background_on_metered: false,
            metered_download_rate: None,
            near_cap_percent: 80,
            near_cap_download_rate: 64_000,
            suspend_when_roaming: true,
            wan_uploads_on_battery: false,
            background_below_percent: 30,
        }
    }
}

/// Where a capped network stands in its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetState {
    /// The budget.
    pub budget: Budget,
    /// Counted bytes the agent used this period.
    pub agent_used: u64,
    /// Counted bytes the whole link used this period (≥ `agent_used`).
    pub link_used: u64,
    /// When the period ends (the budget resets).
    pub resets_at: Timestamp,
}

/// What having no network means, by who says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offline {
    /// The network file says so (removed, or not written yet): every
    /// transfer waits until it describes a network.
    #[default]
    Told,
    /// No default route (the kernel, NetworkManager): nothing can reach the
    /// internet, so nothing can be billed and capwise holds nothing back;
    /// peers on the LAN and on this machine are still served.
    NoRoute,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// The current uplink (user override already applied), `None` if offline.
    pub network: Option<&'a Network>,
    /// What `network: None` means.
    pub offline: Offline,
    /// The budget, if the network has one.
    pub budget: Option<&'a BudgetState>,
    /// The network's schedule.
    pub schedule: Option<&'a Schedule>,
    /// On AC or on battery.
    pub power: Power,
    /// The user's settings.
    pub settings: &'a Settings,
}

/// Why the allowances are what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No uplink, by the network file's word: everything waits.
    Offline,
    /// No default route: nothing can be billed, nothing is held back.
    NoRoute,
    /// Roaming: everything waits.
    Roaming,
    /// A schedule window pauses traffic.
    SchedulePause,
    /// A schedule window makes traffic free.
    ScheduleFree,
    /// The link reached cap − reserve.
    AtCap,
    /// The link passed the near-cap threshold.
    NearCap,
    /// Metered: no seeding to WAN peers, background waits.
    Metered,
    /// Unmetered (or within budget on an unmetered link): no limits.
    Unmetered,
    /// On battery: uploads to the internet paused, background torrents
    /// wait when the charge is low (the network itself holds nothing back,
    /// or no route).
    OnBattery,
}

impl Reason {
    /// Every reason, in the order above.
    pub const ALL: [Reason; 10] = [
        Reason::Offline,
        Reason::NoRoute,
        Reason::Roaming,
        Reason::SchedulePause,
        Reason::ScheduleFree,
        Reason::AtCap,
        Reason::NearCap,
        Reason::Metered,
        Reason::Unmetered,
        Reason::OnBattery,
    ];

    /// A stable snake_case code for machines (metrics labels): it names
    /// the reason, never the sentence, and does not change with the wording.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Offline => "offline",
            Reason::NoRoute => "no_route",
            Reason::Roaming => "roaming",
            Reason::SchedulePause => "schedule_pause",
            Reason::ScheduleFree => "schedule_free",
            Reason::AtCap => "at_cap",
            Reason::NearCap => "near_cap",
            Reason::Metered => "metered",
            Reason::Unmetered => "unmetered",
            Reason::OnBattery => "on_battery",
        }
    }
}

/// The outcome: allowances per direction and peer class, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Downloads from WAN peers.
    pub down_wan: Allowance,
    /// Downloads from LAN peers.
    pub down_lan: Allowance,
    /// Uploads to WAN peers.
    pub up_wan: Allowance,
    /// Uploads to LAN peers.
    pub up_lan: Allowance,
    /// Whether background (not user-requested) torrents may run.
    pub background_allowed: bool,
    /// Whether traffic now counts against the budget (false in free windows).
    pub counts_against_budget: bool,
    /// The main reason.
    pub reason: Reason,
    /// One sentence for a person.
    pub explanation: String,
}

/// Decides the allowances at `now`. Pure: same input, same answer.
pub fn decide(input: &DecisionInput<'_>, now: Timestamp) -> Decision {
    use Allowance::*;
    let settings = input.settings;
    let Some(network) = input.network else {
        return match input.offline {
            Offline::Told => uniform(
                Suspended,
                false,
                Reason::Offline,
                "Paused: no network connection.".into(),
            ),
            Offline::NoRoute => {
                let mut d = uniform(
                    Unlimited,
                    true,
                    Reason::NoRoute,
                    "Offline: no default route, so nothing can reach the internet or be \
                     billed; peers on your LAN are still served."
                        .into(),
                );
                d.counts_against_budget = false;
                on_battery(d, input.power, settings, false)
            }
        };
    };
    let name = network.quoted_name();
    let (metered_value, metered_source) = network.effective_metered();
    let metered = metered_value.counts_as_metered();
    let budget_note = input.budget.map(budget_sentence).unwrap_or_default();
    let window = input.schedule.and_then(|s| s.active_at(now));

    let d = if network.is_roaming() && settings.suspend_when_roaming {
        uniform(
            Suspended,
            false,
            Reason::Roaming,
            format!("Paused: {name} is roaming{budget_note}."),
        )
    } else if window.map(|w| w.rule) == Some(Rule::Pause) {
        uniform(
            Suspended,
            false,
            Reason::SchedulePause,
            format!("Paused by the schedule on {name}{budget_note}."),
        )
    } else if window.map(|w| w.rule) == Some(Rule::Free) {
        let mut d = uniform(
            Unlimited,
            true,
            Reason::ScheduleFree,
            format!("No limits: free time on {name} by the schedule{budget_note}."),
        );
        d.counts_against_budget = false;
        d
    } else if input
        .budget
        .is_some_and(|b| b.link_used >= b.budget.agent_limit())
    {
        uniform(
            Suspended,
            false,
            Reason::AtCap,
            format!("Paused: {name} reached its limit, keeping the rest for you{budget_note}."),
        )
    } else {
        let near = input.budget.is_some_and(|b| is_near_cap(b, settings));
        let up_wan = if metered && !settings.upload_on_metered {
            Suspended
        } else {
            Unlimited
        };
        let mut down_wan = match (metered, settings.metered_download_rate) {
            (true, Some(rate)) => Allowance::rate(rate),
            _ => Unlimited,
        };
        if near {
            down_wan = down_wan.min(Allowance::rate(settings.near_cap_download_rate));
        }
        let background_allowed = !metered || settings.background_on_metered;
        let held_back = held_back(down_wan, up_wan, background_allowed);
        // Uploads to LAN peers go on (they cost nothing), unless a VPN
        // carries them, where they cost what the internet costs.
        let lan_note = if up_wan == Suspended && !network.through_vpn() {
            "; peers on your LAN are still served"
        } else {
            ""
        };
        let (reason, explanation) = if near {
            (
                Reason::NearCap,
                format!("{held_back}: {name} is near its limit{lan_note}{budget_note}."),
            )
        } else if metered {
            (
                Reason::Metered,
                format!(
                    "{held_back}: {name} is metered ({}){lan_note}{budget_note}.",
                    metered_source.says_so()
                ),
            )
        } else {
            (
                Reason::Unmetered,
                format!("No limits: {name} is not metered{budget_note}."),
            )
        };
        Decision {
            down_wan,
            down_lan: Unlimited,
            up_wan,
            up_lan: Unlimited,
            background_allowed,
            counts_against_budget: true,
            reason,
            explanation,
        }
    };

    let mut d = on_battery(d, input.power, settings, network.through_vpn());

    if let Some(Rule::Limit { down, up }) = window.map(|w| w.rule) {
        if let Some(rate) = down {
            d.down_wan = d.down_wan.min(Allowance::rate(rate));
        }
        if let Some(rate) = up {
            d.up_wan = d.up_wan.min(Allowance::rate(rate));
        }
        let mut limits = Vec::new();
        if let Some(rate) = down {
            limits.push(schedule_clause("downloads", rate));
        }
        if let Some(rate) = up {
            limits.push(schedule_clause("uploads", rate));
        }
        d.explanation.pop();
        let _ = write!(
            d.explanation,
            "; the schedule {} now.",
            join_clauses(&limits)
        );
    }

    // LAN peers cost nothing, unless they are reached through a VPN, where
    // they cost what the WAN costs. Roaming and offline suspend them too
    // (uniform() already did).
    if network.through_vpn() {
        d.down_lan = d.down_wan;
        d.up_lan = d.up_wan;
    } else if !matches!(d.reason, Reason::Roaming | Reason::SchedulePause) {
        d.down_lan = Unlimited;
        d.up_lan = Unlimited;
    }
    d
}

/// Holds back what being on battery asks for, on top of the network's
/// decision `d`. Where the network's reason is the bill (metered, near the
/// cap) that stays the reason and the sentence ends with the power state;
/// otherwise the battery becomes the reason: "On battery (42%): uploads to
/// the internet paused; 'Home' is not metered."
fn on_battery(mut d: Decision, power: Power, settings: &Settings, through_vpn: bool) -> Decision {
    if !power.on_battery() {
        return d;
    }
    let stop_uploads = !settings.wan_uploads_on_battery && d.up_wan != Allowance::Suspended;
    let stop_background = d.background_allowed && power.below(settings.background_below_percent);
    if !stop_uploads && !stop_background {
        return d;
    }
    if stop_uploads {
        d.up_wan = Allowance::Suspended;
    }
    if stop_background {
        d.background_allowed = false;
    }
    let held = held_back(d.down_wan, d.up_wan, d.background_allowed);
    // Every sentence is "What is held back: why ...", and what is held
    // back never holds a colon; the rest names the network.
    let rest = d
        .explanation
        .split_once(": ")
        .map_or(d.explanation.as_str(), |(_, rest)| rest)
        .trim_end_matches('.')
        .to_owned();
    d.explanation = if matches!(d.reason, Reason::Metered | Reason::NearCap) {
        format!("{held}: {rest}; {power}.")
    } else {
        d.reason = Reason::OnBattery;
        let lan_note = if stop_uploads && !through_vpn && !rest.contains("LAN") {
            "; peers on your LAN are still served"
        } else {
            ""
        };
        let mut power = power.to_string();
        power.replace_range(..1, &power[..1].to_ascii_uppercase());
        format!("{power}: {}{lan_note}; {rest}.", lower_first(&held))
    };
    d
}

/// `s` with its first letter in lower case.
fn lower_first(s: &str) -> String {
    let mut s = s.to_owned();
    if let Some(first) = s.get(..1) {
        let lower = first.to_ascii_lowercase();
        s.replace_range(..1, &lower);
    }
    s
}

/// What is held back, as the start of a sentence: "Downloads from the
/// internet limited to 500 kB/s, uploads to the internet paused and
/// background torrents wait"; "Nothing held back" when nothing is.
fn held_back(down_wan: Allowance, up_wan: Allowance, background_allowed: bool) -> String {
    let mut clauses = Vec::new();
    match down_wan {
        Allowance::Rate(rate) => clauses.push(format!(
            "downloads from the internet slowed to {}",
            HumanRate(rate)
        )),
        Allowance::Suspended => clauses.push("downloads from the internet paused".into()),
        Allowance::Unlimited => {}
    }
    match up_wan {
        Allowance::Rate(rate) => clauses.push(format!(
            "uploads to the internet slowed to {}",
            HumanRate(rate)
        )),
        Allowance::Suspended => clauses.push("uploads to the internet paused".into()),
        Allowance::Unlimited => {}
    }
    if !background_allowed {
        clauses.push("background torrents wait".into());
    }
    if clauses.is_empty() {
        return "Nothing held back".into();
    }
    let mut sentence = join_clauses(&clauses);
    if let Some(first) = sentence.get(..1) {
        let upper = first.to_ascii_uppercase();
        sentence.replace_range(..1, &upper);
    }
    sentence
}

/// "limits downloads to 100 kB/s", or "pauses uploads" for a rate of 0.
fn schedule_clause(what: &str, rate: u64) -> String {
    if rate == 0 {
        format!("pauses {what}")
    } else {
        format!("limits {what} to {}", HumanRate(rate))
    }
}

/// "a", "a and b", "a, b and c".
fn join_clauses(clauses: &[String]) -> String {
    match clauses {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn is_near_cap(state: &BudgetState, settings: &Settings) -> bool {
    let threshold =
        state.budget.cap_bytes as u128 * settings.near_cap_percent.min(100) as u128 / 100;
    state.link_used as u128 >= threshold
}

/// "; 1.2 GB of 5 GB used, resets 5 Dec" (with others' share when any).
fn budget_sentence(state: &BudgetState) -> String {
    let reset_day = state.budget.zone.to_local(state.resets_at).date;
    let others = state.link_used.saturating_sub(state.agent_used);
    let mut s = format!(
        "; {} of {} used",
        HumanBytes(state.link_used),
        HumanBytes(state.budget.cap_bytes)
    );
    if others > 0 {
        let _ = write!(
            s,
            " ({} by capwise, {} by other programs)",
            HumanBytes(state.agent_used),
            HumanBytes(others)
        );
    }
    // A one-off allowance (a trip's data pack) never resets: it ends.
    if matches!(state.budget.period, crate::budget::Period::OneOff { .. }) {
        let _ = write!(s, ", until {}", ShortDate(reset_day));
    } else {
        let _ = write!(s, ", resets {}", ShortDate(reset_day));
    }
    s
}

fn uniform(
    allowance: Allowance,
    background: bool,
    reason: Reason,
    explanation: String,
) -> Decision {
    Decision {
        down_wan: allowance,
        down_lan: allowance,
        up_wan: allowance,
        up_lan: allowance,
        background_allowed: background,
        counts_against_budget: true,
        reason,
        explanation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_distinct_snake_case_identifiers() {
        let codes: std::collections::BTreeSet<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Reason::ALL.len());
        for code in codes {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }
    use crate::network::{Metered, MeteredSource, NetworkId, NetworkKind};
    use crate::schedule::{Days, Window};
    use crate::time::{days_from_civil, UtcOffset};
    use Allowance::*;

    fn at(y: i32, m: u32, d: u32, h: i64) -> Timestamp {
        Timestamp(days_from_civil(y, m, d) * 86_400 + h * 3600)
    }

    fn hotspot(metered: Metered) -> Network {
        Network {
            id: NetworkId::new("uuid"),
            name: "Pixel hotspot".into(),
            kind: NetworkKind::Wifi,
            metered,
            metered_source: MeteredSource::NetworkManager,
            ..Network::default()
        }
    }

    fn state(used: u64, others: u64) -> BudgetState {
        let budget = Budget::monthly(5_000_000_000, 5, UtcOffset::UTC);
        BudgetState {
            budget,
            agent_used: used,
            link_used: used + others,
            resets_at: budget.bounds(at(2024, 11, 20, 12)).1,
        }
    }

    fn run(
        net: &Network,
        budget: Option<&BudgetState>,
        schedule: Option<&Schedule>,
        now: Timestamp,
    ) -> Decision {
        let settings = Settings::default();
        decide(
            &DecisionInput {
                network: Some(net),
                offline: Offline::Told,
                budget,
                schedule,
                power: Power::Ac,
                settings: &settings,
            },
            now,
        )
    }

    #[test]
    fn unmetered_means_no_limits() {
        let d = run(&hotspot(Metered::No), None, None, at(2024, 11, 20, 12));
        assert_eq!(
            (d.down_wan, d.up_wan, d.down_lan, d.up_lan),
            (Unlimited, Unlimited, Unlimited, Unlimited)
        );
        assert!(d.background_allowed);
        assert_eq!(d.reason, Reason::Unmetered);
        assert_eq!(d.explanation, "No limits: 'Pixel hotspot' is not metered.");
    }

    #[test]
    fn metered_pauses_seeding_and_background_with_a_sentence() {
        let s = state(1_200_000_000, 0);
        let d = run(
            &hotspot(Metered::GuessYes),
            Some(&s),
            None,
            at(2024, 11, 20, 12),
        );
        assert_eq!(d.up_wan, Suspended);
        assert_eq!(d.down_wan, Unlimited, "downloads the user asked for go on");
        assert_eq!(
            (d.down_lan, d.up_lan),
            (Unlimited, Unlimited),
            "LAN is exempt"
        );
        assert!(!d.background_allowed);
        assert_eq!(d.reason, Reason::Metered);
        assert_eq!(
            d.explanation,
            "Uploads to the internet paused and background torrents wait: 'Pixel hotspot' \
             is metered (NetworkManager says so); peers on your LAN are still served; \
             1.2 GB of 5 GB used, resets 5 Dec."
        );
    }

    #[test]
    fn a_one_off_budget_ends_and_never_resets() {
        let mut s = state(1_000_000_000, 0);
        s.budget.period = crate::budget::Period::OneOff {
            start: at(2024, 11, 1, 0),
            end: at(2024, 11, 29, 10),
        };
        s.resets_at = at(2024, 11, 29, 10);
        let d = run(&hotspot(Metered::Yes), Some(&s), None, at(2024, 11, 20, 12));
        assert!(
            d.explanation.ends_with("1 GB of 5 GB used, until 29 Nov."),
            "{}",
            d.explanation
        );
        assert!(!d.explanation.contains("resets"), "{}", d.explanation);
    }

    #[test]
    fn near_cap_throttles_downloads_counting_other_programs() {
        // 3 GB by capwise + 1 GB by others = 80% of 5 GB.
        let s = state(3_000_000_000, 1_000_000_000);
        let d = run(&hotspot(Metered::Yes), Some(&s), None, at(2024, 11, 20, 12));
        assert_eq!(d.reason, Reason::NearCap);
        assert_eq!(d.down_wan, Rate(64_000));
        assert_eq!(d.up_wan, Suspended);
        assert!(
            d.explanation
                .contains("3 GB by capwise, 1 GB by other programs"),
            "{}",
            d.explanation
        );
        let below = state(3_000_000_000, 999_999_999);
        assert_eq!(
            run(
                &hotspot(Metered::Yes),
                Some(&below),
                None,
                at(2024, 11, 20, 12)
            )
            .reason,
            Reason::Metered
        );
    }

    #[test]
    fn at_cap_minus_reserve_suspends_all_wan_even_unmetered() {
        let s = state(4_500_000_000, 0);
        let d = run(&hotspot(Metered::No), Some(&s), None, at(2024, 11, 20, 12));
        assert_eq!(d.reason, Reason::AtCap);
        assert_eq!((d.down_wan, d.up_wan), (Suspended, Suspended));
        assert_eq!((d.down_lan, d.up_lan), (Unlimited, Unlimited));
    }

    #[test]
    fn roaming_suspends_everything() {
        let mut n = hotspot(Metered::No);
        n.roaming = true;
        let d = run(&n, None, None, at(2024, 11, 20, 12));
        assert_eq!(d.reason, Reason::Roaming);
        assert_eq!(
            (d.down_wan, d.up_wan, d.down_lan, d.up_lan),
            (Suspended, Suspended, Suspended, Suspended)
        );
    }

    #[test]
    fn lan_through_a_vpn_costs_like_wan() {
        let mut vpn = hotspot(Metered::Unknown);
        vpn.kind = NetworkKind::Vpn;
        vpn.name = "work".into();
        vpn.underlying = Some(Box::new(hotspot(Metered::Yes)));
        let d = run(&vpn, None, None, at(2024, 11, 20, 12));
        assert_eq!(d.reason, Reason::Metered);
        assert_eq!(d.up_lan, Suspended);
        assert!(
            d.explanation
                .contains("'Pixel hotspot' (under VPN 'work') is metered"),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn free_nights_lift_limits_and_stop_counting_then_end() {
        let schedule = Schedule {
            windows: vec![Window {
                days: Days::EVERY_DAY,
                start_minute: 23 * 60,
                end_minute: 7 * 60,
                rule: Rule::Free,
            }],
            zone: crate::zone::Zone::UTC,
        };
        let s = state(4_500_000_000, 0);
        let night = run(
            &hotspot(Metered::Yes),
            Some(&s),
            Some(&schedule),
            at(2024, 11, 20, 2),
        );
        assert_eq!(night.reason, Reason::ScheduleFree);
        assert_eq!(night.up_wan, Unlimited);
        assert!(!night.counts_against_budget);
        let morning = run(
            &hotspot(Metered::Yes),
            Some(&s),
            Some(&schedule),
            at(2024, 11, 20, 7),
        );
        assert_eq!(morning.reason, Reason::AtCap);
        assert!(morning.counts_against_budget);
    }

    #[test]
    fn schedule_limit_tightens_rates() {
        let schedule = Schedule {
            windows: vec![Window {
                days: Days::EVERY_DAY,
                start_minute: 9 * 60,
                end_minute: 17 * 60,
                rule: Rule::Limit {
                    down: Some(100_000),
                    up: Some(0),
                },
            }],
            zone: crate::zone::Zone::UTC,
        };
        let d = run(
            &hotspot(Metered::No),
            None,
            Some(&schedule),
            at(2024, 11, 20, 10),
        );
        assert_eq!((d.down_wan, d.up_wan), (Rate(100_000), Suspended));
        assert!(
            d.explanation
                .ends_with("; the schedule limits downloads to 100 kB/s and pauses uploads now."),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn no_route_is_offline_holding_nothing_back_and_says_so() {
        let settings = Settings::default();
        let d = decide(
            &DecisionInput {
                network: None,
                offline: Offline::NoRoute,
                budget: None,
                schedule: None,
                power: Power::Ac,
                settings: &settings,
            },
            Timestamp(0),
        );
        assert_eq!(d.reason, Reason::NoRoute);
        assert!(
            d.explanation.starts_with("Offline: no default route"),
            "{}",
            d.explanation
        );
        assert_eq!((d.down_lan, d.up_lan), (Unlimited, Unlimited));
        assert!(!d.counts_against_budget);
    }

    #[test]
    fn offline_suspends_and_settings_change_defaults() {
        let settings = Settings::default();
        let d = decide(
            &DecisionInput {
                network: None,
                offline: Offline::Told,
                budget: None,
                schedule: None,
                power: Power::Ac,
                settings: &settings,
            },
            Timestamp(0),
        );
        assert_eq!(d.reason, Reason::Offline);
        assert_eq!(d.down_wan, Suspended);
        assert_eq!(d.down_lan, Suspended);

        let settings = Settings {
            upload_on_metered: true,
            background_on_metered: true,
            metered_download_rate: Some(500_000),
            ..Settings::default()
        };
        let net = hotspot(Metered::Yes);
        let d = decide(
            &DecisionInput {
                network: Some(&net),
                offline: Offline::Told,
                budget: None,
                schedule: None,
                power: Power::Ac,
                settings: &settings,
            },
            Timestamp(0),
        );
        assert_eq!((d.up_wan, d.down_wan), (Unlimited, Rate(500_000)));
        assert!(d.background_allowed);
    }

    fn run_with(
        settings: &Settings,
        net: &Network,
        budget: Option<&BudgetState>,
        now: Timestamp,
    ) -> Decision {
        decide(
            &DecisionInput {
                network: Some(net),
                offline: Offline::Told,
                budget,
                schedule: None,
                power: Power::Ac,
                settings,
            },
            now,
        )
    }

    #[test]
    fn near_cap_percent_moves_the_threshold() {
        let now = at(2024, 11, 20, 12);
        let net = hotspot(Metered::No);
        let settings = Settings {
            near_cap_percent: 50,
            ..Settings::default()
        };
        // 2.5 GB of 5 GB: near at 50%, not at the default 80%.
        let half = state(2_000_000_000, 500_000_000);
        let d = run_with(&settings, &net, Some(&half), now);
        assert_eq!(d.reason, Reason::NearCap);
        assert_eq!(d.down_wan, Rate(64_000));
        assert_eq!(run(&net, Some(&half), None, now).reason, Reason::Unmetered);
        // One byte under the threshold is not near.
        let under = state(2_000_000_000, 499_999_999);
        assert_eq!(
            run_with(&settings, &net, Some(&under), now).reason,
            Reason::Unmetered
        );
        // 100%: never near before the cap itself (with no reserve).
        let settings = Settings {
            near_cap_percent: 100,
            ..Settings::default()
        };
        let mut nearly = state(4_999_999_999, 0);
        nearly.budget.reserve_percent = 0;
        assert_eq!(
            run_with(&settings, &net, Some(&nearly), now).reason,
            Reason::Unmetered
        );
    }

    #[test]
    fn near_cap_download_rate_sets_the_slowed_rate_and_its_sentence() {
        let now = at(2024, 11, 20, 12);
        let settings = Settings {
            near_cap_download_rate: 250_000,
            ..Settings::default()
        };
        let s = state(4_000_000_000, 0);
        let d = run_with(&settings, &hotspot(Metered::Yes), Some(&s), now);
        assert_eq!(d.reason, Reason::NearCap);
        assert_eq!(d.down_wan, Rate(250_000));
        assert!(
            d.explanation.starts_with(
                "Downloads from the internet slowed to 250 kB/s, uploads to the internet \
                 paused and background torrents wait"
            ),
            "{}",
            d.explanation
        );
        // The tighter of the metered rate and the near-cap rate applies.
        let settings = Settings {
            near_cap_download_rate: 250_000,
            metered_download_rate: Some(100_000),
            ..Settings::default()
        };
        let d = run_with(&settings, &hotspot(Metered::Yes), Some(&s), now);
        assert_eq!(d.down_wan, Rate(100_000));
        // 0 means downloads stop near the cap, not a 0 B/s trickle.
        let settings = Settings {
            near_cap_download_rate: 0,
            ..Settings::default()
        };
        let d = run_with(&settings, &hotspot(Metered::No), Some(&s), now);
        assert_eq!(d.down_wan, Suspended);
    }

    #[test]
    fn the_sentence_names_every_allowance_and_lan_uploads_go_on() {
        let now = at(2024, 11, 20, 12);
        // Metered, with uploads allowed but downloads capped.
        let settings = Settings {
            upload_on_metered: true,
            metered_download_rate: Some(500_000),
            ..Settings::default()
        };
        let d = run_with(&settings, &hotspot(Metered::Yes), None, now);
        assert_eq!(
            d.explanation,
            "Downloads from the internet slowed to 500 kB/s and background torrents wait: \
             'Pixel hotspot' is metered (NetworkManager says so)."
        );
        // Everything allowed on a metered network: said so.
        let settings = Settings {
            upload_on_metered: true,
            background_on_metered: true,
            ..Settings::default()
        };
        let d = run_with(&settings, &hotspot(Metered::Yes), None, now);
        assert!(
            d.explanation.starts_with("Nothing held back: "),
            "{}",
            d.explanation
        );
        // Through a VPN, LAN peers are not spared: the sentence does not
        // claim they are.
        let mut vpn = hotspot(Metered::Unknown);
        vpn.kind = NetworkKind::Vpn;
        vpn.underlying = Some(Box::new(hotspot(Metered::Yes)));
        let d = run(&vpn, None, None, now);
        assert_eq!(d.up_lan, Suspended);
        assert!(!d.explanation.contains("LAN"), "{}", d.explanation);
    }

    #[test]
    fn a_decision_holding_background_torrents_back_says_so() {
        let now = at(2024, 11, 20, 12);
        let mut roaming = hotspot(Metered::No);
        roaming.roaming = true;
        let cases = [
            run(&hotspot(Metered::Yes), None, None, now),
            run(
                &hotspot(Metered::Yes),
                Some(&state(4_000_000_000, 0)),
                None,
                now,
            ),
            run(
                &hotspot(Metered::No),
                Some(&state(4_600_000_000, 0)),
                None,
                now,
            ),
            run(&roaming, None, None, now),
        ];
        for d in cases {
            assert!(!d.background_allowed);
            assert!(
                d.explanation.starts_with("Paused")
                    || d.explanation.contains("background torrents wait"),
                "{}",
                d.explanation
            );
        }
    }

    #[test]
    fn roaming_without_suspend_is_decided_like_any_network() {
        let now = at(2024, 11, 20, 12);
        let settings = Settings {
            suspend_when_roaming: false,
            ..Settings::default()
        };
        let mut roaming = hotspot(Metered::Yes);
        roaming.roaming = true;
        let d = run_with(&settings, &roaming, None, now);
        assert_eq!(d.reason, Reason::Metered);
        assert_eq!(d.down_wan, Unlimited);
        assert_eq!(d.up_wan, Suspended);
        assert_eq!((d.down_lan, d.up_lan), (Unlimited, Unlimited));
        // The budget still holds while roaming.
        let s = state(4_500_000_000, 0);
        let d = run_with(&settings, &roaming, Some(&s), now);
        assert_eq!(d.reason, Reason::AtCap);
        assert_eq!(d.down_wan, Suspended);
    }

    fn on_power(
        settings: &Settings,
        net: Option<&Network>,
        offline: Offline,
        power: Power,
    ) -> Decision {
        decide(
            &DecisionInput {
                network: net,
                offline,
                budget: None,
                schedule: None,
                power,
                settings,
            },
            at(2024, 11, 20, 12),
        )
    }

    const AT_42: Power = Power::Battery { percent: Some(42) };
    const AT_29: Power = Power::Battery { percent: Some(29) };

    #[test]
    fn on_battery_uploads_to_the_internet_pause_and_low_charge_holds_background_back() {
        let s = Settings::default();
        let home = hotspot(Metered::No);
        let d = on_power(&s, Some(&home), Offline::Told, Power::Ac);
        assert_eq!((d.reason, d.up_wan), (Reason::Unmetered, Unlimited));

        let d = on_power(&s, Some(&home), Offline::Told, AT_42);
        assert_eq!(d.reason, Reason::OnBattery);
        assert_eq!(d.up_wan, Suspended);
        assert_eq!(d.down_wan, Unlimited, "downloads go on");
        assert_eq!((d.down_lan, d.up_lan), (Unlimited, Unlimited));
        assert!(d.background_allowed, "42% is above 30%");
        assert_eq!(
            d.explanation,
            "On battery (42%): uploads to the internet paused; peers on your LAN are \
             still served; 'Pixel hotspot' is not metered."
        );

        let d = on_power(&s, Some(&home), Offline::Told, AT_29);
        assert_eq!(d.reason, Reason::OnBattery);
        assert!(!d.background_allowed);
        assert!(
            d.explanation.starts_with(
                "On battery (29%): uploads to the internet paused and background torrents wait"
            ),
            "{}",
            d.explanation
        );

        // An unknown charge pauses uploads but holds background work only
        // on the percentage's word.
        let d = on_power(
            &s,
            Some(&home),
            Offline::Told,
            Power::Battery { percent: None },
        );
        assert!(d.background_allowed);
        assert!(
            d.explanation.starts_with("On battery: "),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn power_settings_change_both_battery_defaults() {
        let home = hotspot(Metered::No);
        let s = Settings {
            wan_uploads_on_battery: true,
            ..Settings::default()
        };
        let d = on_power(&s, Some(&home), Offline::Told, AT_42);
        assert_eq!((d.reason, d.up_wan), (Reason::Unmetered, Unlimited));
        let d = on_power(&s, Some(&home), Offline::Told, AT_29);
        assert_eq!(d.reason, Reason::OnBattery);
        assert_eq!(d.up_wan, Unlimited);
        assert!(!d.background_allowed);
        assert!(
            d.explanation
                .starts_with("On battery (29%): background torrents wait; 'Pixel hotspot'"),
            "{}",
            d.explanation
        );
        let s = Settings {
            background_below_percent: 0,
            ..Settings::default()
        };
        let d = on_power(
            &s,
            Some(&home),
            Offline::Told,
            Power::Battery { percent: Some(0) },
        );
        assert!(d.background_allowed, "0 never holds background back");
        let s = Settings {
            background_below_percent: 50,
            ..Settings::default()
        };
        assert!(!on_power(&s, Some(&home), Offline::Told, AT_42).background_allowed);
    }

    #[test]
    fn the_bill_stays_the_reason_and_the_battery_only_adds() {
        // Metered: uploads already paused, background already waits: the
        // battery changes nothing and says nothing.
        let metered = hotspot(Metered::Yes);
        let s = Settings::default();
        let plain = on_power(&s, Some(&metered), Offline::Told, Power::Ac);
        assert_eq!(on_power(&s, Some(&metered), Offline::Told, AT_29), plain);
        // With uploads allowed on metered networks, the battery still pauses
        // them; the bill stays the reason (the DHT stays read-only on it).
        let s = Settings {
            upload_on_metered: true,
            background_on_metered: true,
            ..Settings::default()
        };
        let d = on_power(&s, Some(&metered), Offline::Told, AT_29);
        assert_eq!(d.reason, Reason::Metered);
        assert_eq!(d.up_wan, Suspended);
        assert!(!d.background_allowed);
        assert_eq!(
            d.explanation,
            "Uploads to the internet paused and background torrents wait: 'Pixel hotspot' \
             is metered (NetworkManager says so); on battery (29%)."
        );
        // Everything paused already (roaming, offline by the file): no change.
        let mut roaming = hotspot(Metered::No);
        roaming.roaming = true;
        let s = Settings::default();
        assert_eq!(
            on_power(&s, Some(&roaming), Offline::Told, AT_29).reason,
            Reason::Roaming
        );
        assert_eq!(
            on_power(&s, None, Offline::Told, AT_29).reason,
            Reason::Offline
        );
        // No route: LAN peers are still served, but not from a battery to
        // the internet.
        let d = on_power(&s, None, Offline::NoRoute, AT_42);
        assert_eq!(d.reason, Reason::OnBattery);
        assert_eq!((d.up_wan, d.up_lan), (Suspended, Unlimited));
        assert!(!d.counts_against_budget);
        assert!(
            d.explanation
                .starts_with("On battery (42%): uploads to the internet paused; no default route"),
            "{}",
            d.explanation
        );
        // Through a VPN, LAN peers cost what the internet costs: paused too.
        let mut vpn = hotspot(Metered::No);
        vpn.kind = NetworkKind::Vpn;
        vpn.underlying = Some(Box::new(hotspot(Metered::No)));
        let d = on_power(&s, Some(&vpn), Offline::Told, AT_42);
        assert_eq!((d.reason, d.up_lan), (Reason::OnBattery, Suspended));
        assert!(!d.explanation.contains("LAN"), "{}", d.explanation);
    }
}
