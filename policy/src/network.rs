//! What we know about the current uplink: identity, kind, whether it is
//! metered (and who says so), roaming, and the link under a VPN.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable identifier for a network, used as the key of budgets and usage.
/// NetworkManager connection UUID; else the SSID; else interface plus the
/// gateway's hardware address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct NetworkId(pub String);

impl NetworkId {
    /// Builds an id from any string.
    pub fn new(id: impl Into<String>) -> Self {
        NetworkId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The physical (or virtual) kind of link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// 802.11 wireless.
    Wifi,
    /// Wired Ethernet (including USB tethering, whose metering is guessed).
    Ethernet,
    /// A mobile broadband modem (WWAN, PPP).
    Cellular,
    /// Bluetooth PAN/DUN tethering.
    Bluetooth,
    /// A VPN tunnel; its metering comes from the link underneath.
    Vpn,
    /// Anything we could not classify.
    #[default]
    Unknown,
}

impl NetworkKind {
    /// Stable lowercase name, used in the database and files.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkKind::Wifi => "wifi",
            NetworkKind::Ethernet => "ethernet",
            NetworkKind::Cellular => "cellular",
            NetworkKind::Bluetooth => "bluetooth",
            NetworkKind::Vpn => "vpn",
            NetworkKind::Unknown => "unknown",
        }
    }

    /// Parses [`NetworkKind::as_str`]'s output; anything else is `Unknown`.
    pub fn parse(text: &str) -> NetworkKind {
        match text {
            "wifi" => NetworkKind::Wifi,
            "ethernet" => NetworkKind::Ethernet,
            "cellular" => NetworkKind::Cellular,
            "bluetooth" => NetworkKind::Bluetooth,
            "vpn" => NetworkKind::Vpn,
            _ => NetworkKind::Unknown,
        }
    }
}

/// Whether traffic on a network costs money, with NetworkManager's nuance of
/// a heuristic guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Metered {
    /// Known to be metered.
    Yes,
    /// Known to be unmetered.
    No,
    /// Probably metered (e.g. a phone hotspot); treated as metered.
    GuessYes,
    /// Probably unmetered.
    GuessNo,
    /// Nobody knows.
    #[default]
    Unknown,
}

impl Metered {
    /// True when the policy must behave as on a metered link. A guess of
    /// "yes" counts: being wrong that way costs the user nothing.
    pub fn counts_as_metered(self) -> bool {
        matches!(self, Metered::Yes | Metered::GuessYes)
    }

    /// NetworkManager's `NMMetered` value (0 unknown, 1 yes, 2 no,
    /// 3 guess-yes, 4 guess-no); other values are unknown.
    pub fn from_networkmanager(value: u32) -> Metered {
        match value {
            1 => Metered::Yes,
            2 => Metered::No,
            3 => Metered::GuessYes,
            4 => Metered::GuessNo,
            _ => Metered::Unknown,
        }
    }
}

/// Who told us whether the network is metered; shown in explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MeteredSource {
    /// NetworkManager's `Metered` property.
    NetworkManager,
    /// The kind of device in sysfs (WWAN, tethering driver).
    Sysfs,
    /// The DHCP vendor option `ANDROID_METERED` in a lease file.
    Dhcp,
    /// The `--network-file`.
    File,
    /// The user marked the network metered or unmetered.
    User,
    /// Nobody: the default.
    #[default]
    Default,
}

impl MeteredSource {
    /// How the explanation names the source: "(NetworkManager says so)".
    pub fn says_so(self) -> &'static str {
        match self {
            MeteredSource::NetworkManager => "NetworkManager says so",
            MeteredSource::Sysfs => "guessed from the device type",
            MeteredSource::Dhcp => "the hotspot says so",
            MeteredSource::File => "the network file says so",
            MeteredSource::User => "you said so",
            MeteredSource::Default => "assumed",
        }
    }
}

/// The current uplink as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    /// Stable identifier (budget key).
    pub id: NetworkId,
    /// What a person calls it (SSID, connection name).
    pub name: String,
    /// Kind of link.
    pub kind: NetworkKind,
    /// Whether it is metered.
    pub metered: Metered,
    /// Who said whether it is metered.
    pub metered_source: MeteredSource,
    /// A cellular link roaming on a foreign network.
    pub roaming: bool,
    /// The interface carrying the default route (e.g. `wlan0`).
    pub interface: Option<String>,
    /// For a VPN: the link the tunnel runs over.
    pub underlying: Option<Box<Network>>,
}

impl Network {
    /// The metering that counts, with its source. A VPN over a metered link
    /// is metered; otherwise the network's own value holds.
    pub fn effective_metered(&self) -> (Metered, MeteredSource) {
        if let Some(under) = &self.underlying {
            let (m, source) = under.effective_metered();
            if m.counts_as_metered() && !self.metered_is_user_no() {
                return (m, source);
            }
        }
        (self.metered, self.metered_source)
    }

    /// True when the user explicitly said this network is unmetered.
    fn metered_is_user_no(&self) -> bool {
        self.metered_source == MeteredSource::User && self.metered == Metered::No
    }

    /// True when the policy must treat this network as metered.
    pub fn is_metered(&self) -> bool {
        self.effective_metered().0.counts_as_metered()
    }

    /// Roaming anywhere along the path.
    pub fn is_roaming(&self) -> bool {
        self.roaming || self.underlying.as_ref().is_some_and(|u| u.is_roaming())
    }

    /// True when traffic leaves through a VPN tunnel, so "LAN" peers are
    /// reached over the WAN and cost the same.
    pub fn through_vpn(&self) -> bool {
        self.kind == NetworkKind::Vpn || self.underlying.is_some()
    }

    /// Applies the user's stored word: a network marked metered or unmetered
    /// stays so, whatever the source guessed.
    pub fn with_user_override(mut self, metered: Option<bool>) -> Network {
        if let Some(is_metered) = metered {
            self.metered = if is_metered {
                Metered::Yes
            } else {
                Metered::No
            };
            self.metered_source = MeteredSource::User;
        }
        self
    }

    /// The name for sentences, falling back to the id.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            self.id.as_str()
        } else {
            &self.name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(metered: Metered) -> Network {
        Network {
            id: NetworkId::new("x"),
            metered,
            metered_source: MeteredSource::NetworkManager,
            ..Network::default()
        }
    }

    #[test]
    fn guess_yes_counts_as_metered_and_guess_no_does_not() {
        assert!(Metered::from_networkmanager(3).counts_as_metered());
        assert!(!Metered::from_networkmanager(4).counts_as_metered());
        assert_eq!(Metered::from_networkmanager(0), Metered::Unknown);
        assert_eq!(Metered::from_networkmanager(99), Metered::Unknown);
    }

    #[test]
    fn vpn_over_metered_link_is_metered() {
        let mut vpn = net(Metered::No);
        vpn.kind = NetworkKind::Vpn;
        vpn.underlying = Some(Box::new(net(Metered::GuessYes)));
        assert!(vpn.is_metered());
        assert!(vpn.through_vpn());
    }

    #[test]
    fn user_word_wins_over_the_source() {
        let n = net(Metered::Yes).with_user_override(Some(false));
        assert!(!n.is_metered());
        assert_eq!(n.effective_metered().1, MeteredSource::User);
        let n = net(Metered::No).with_user_override(Some(true));
        assert!(n.is_metered());
        let n = net(Metered::GuessYes).with_user_override(None);
        assert!(n.is_metered());
    }
}
