//! Desktop notifications: when capwise starts holding back (seeding paused
//! on a metered network, a budget near its cap or at its end, roaming, on
//! battery) it says so once, in the decision's sentence, through
//! `org.freedesktop.Notifications` on the session bus (`dbus.rs`). Once per
//! change: the same holding-back again (a re-read of the network file, a
//! new usage figure in the sentence) says nothing. Off with `notify = false`;
//! without a session bus (a system service, a headless machine) silently off.

mod dbus;

use capwise_policy::decision::{Allowance, Decision, Reason};
use tokio::sync::watch;

/// What holding back looks like, as far as telling the user goes: the
/// reason and the allowances, not the sentence (whose figures move).
type Holding = (Reason, [Allowance; 4], bool);

/// Decides which decisions are news. Pure.
#[derive(Debug, Default)]
pub struct Watcher {
    current: Option<Holding>,
}

impl Watcher {
    /// The sentence to show for `decision`, if it starts a new way of
    /// holding back; `None` for the same state again or for no holding back.
    pub fn next(&mut self, decision: &Decision) -> Option<String> {
        let now = holding(decision);
        if now == self.current {
            return None;
        }
        self.current = now;
        now.map(|_| decision.explanation.clone())
    }
}

/// Whether `d` holds something back the user would want to hear of.
fn holding(d: &Decision) -> Option<Holding> {
    let allowances = [d.up_wan, d.up_lan, d.down_wan, d.down_lan];
    let held = match d.reason {
        Reason::Roaming | Reason::AtCap | Reason::NearCap | Reason::OnBattery => true,
        Reason::Metered => {
            d.up_wan == Allowance::Suspended
                || d.down_wan != Allowance::Unlimited
                || !d.background_allowed
        }
        // Nothing held back, nothing to bill (no route), or the user's own
        // schedule or network file: no news.
        Reason::Unmetered
        | Reason::NoRoute
        | Reason::Offline
        | Reason::SchedulePause
        | Reason::ScheduleFree => false,
    };
    held.then_some((d.reason, allowances, d.background_allowed))
}

/// Follows the decisions and notifies as [`Watcher`] says, while `enabled`
/// and a session bus can be had.
pub fn follow(mut decisions: watch::Receiver<Decision>, enabled: bool) {
    if !enabled {
        tracing::debug!("desktop notifications off (notify = false)");
        return;
    }
    tokio::spawn(async move {
        let mut bus = match dbus::Notifier::connect().await {
            Ok(bus) => bus,
            Err(error) => {
                tracing::debug!(%error, "no session bus: desktop notifications off");
                return;
            }
        };
        let mut watcher = Watcher::default();
        loop {
            let sentence = watcher.next(&decisions.borrow_and_update());
            if let Some(sentence) = sentence {
                bus.notify(&sentence).await;
            }
            if decisions.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use capwise_policy::decision::{decide, DecisionInput, Offline, Settings};
    use capwise_policy::network::{Metered, MeteredSource, Network, NetworkId, NetworkKind};
    use capwise_policy::power::Power;
    use capwise_policy::time::Timestamp;

    fn decision(metered: Metered, roaming: bool, settings: &Settings) -> Decision {
        decision_on(metered, roaming, settings, Power::Ac)
    }

    fn decision_on(metered: Metered, roaming: bool, settings: &Settings, power: Power) -> Decision {
        let network = Network {
            id: NetworkId::new("hotspot"),
            name: "Pixel hotspot".into(),
            kind: NetworkKind::Cellular,
            metered,
            metered_source: MeteredSource::File,
            roaming,
            ..Network::default()
        };
        decide(
            &DecisionInput {
                network: Some(&network),
                offline: Offline::Told,
                budget: None,
                schedule: None,
                power,
                settings,
            },
            Timestamp(1_790_000_000),
        )
    }

    #[test]
    fn going_on_battery_is_news_and_a_lower_charge_holding_more_back_too() {
        let s = Settings::default();
        let mut w = Watcher::default();
        assert_eq!(w.next(&decision(Metered::No, false, &s)), None);
        let at = |p| Power::Battery { percent: Some(p) };
        let unplugged = decision_on(Metered::No, false, &s, at(42));
        let said = w.next(&unplugged).expect("on battery is news");
        assert!(
            said.starts_with("On battery (42%): uploads to the internet paused"),
            "{said}"
        );
        assert_eq!(
            w.next(&decision_on(Metered::No, false, &s, at(41))),
            None,
            "1% less"
        );
        let low = w.next(&decision_on(Metered::No, false, &s, at(29)));
        assert!(low.is_some_and(|l| l.contains("background torrents wait")));
        assert_eq!(
            w.next(&decision(Metered::No, false, &s)),
            None,
            "plugged in"
        );
    }

    #[test]
    fn each_change_to_holding_back_is_news_once() {
        let s = Settings::default();
        let mut w = Watcher::default();
        assert_eq!(w.next(&decision(Metered::No, false, &s)), None);
        let metered = decision(Metered::Yes, false, &s);
        assert_eq!(
            w.next(&metered).as_deref(),
            Some(metered.explanation.as_str())
        );
        assert_eq!(w.next(&metered), None, "the same state again");
        let mut reworded = metered.clone();
        reworded.explanation.push_str(" (a new figure)");
        assert_eq!(w.next(&reworded), None, "a new sentence is not a new state");
        let roaming = decision(Metered::Yes, true, &s);
        assert_eq!(
            w.next(&roaming).as_deref(),
            Some(roaming.explanation.as_str())
        );
        assert_eq!(w.next(&decision(Metered::No, false, &s)), None);
        assert!(
            w.next(&metered).is_some(),
            "metered again after a spell unmetered"
        );
    }

    #[test]
    fn metered_with_nothing_held_back_is_no_news() {
        let s = Settings {
            upload_on_metered: true,
            background_on_metered: true,
            ..Settings::default()
        };
        assert_eq!(
            Watcher::default().next(&decision(Metered::Yes, false, &s)),
            None
        );
    }
}
