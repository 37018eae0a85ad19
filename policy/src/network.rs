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

    /// What the kind alone suggests when nobody says whether the link is
    /// metered: a cellular modem or Bluetooth tethering is probably metered
    /// (a phone's data plan), anything else is not known. Every source uses
    /// this one guess.
    pub fn metered_guess(self) -> Metered {
        match self {
            NetworkKind::Cellular | NetworkKind::Bluetooth => Metered::GuessYes,
            _ => Metered::Unknown,
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

    /// Stable name, as in network files: "guess-yes".
    pub fn as_str(self) -> &'static str {
        match self {
            Metered::Yes => "yes",
            Metered::No => "no",
            Metered::GuessYes => "guess-yes",
            Metered::GuessNo => "guess-no",
            Metered::Unknown => "unknown",
        }
    }

    /// Parses [`Metered::as_str`]'s output; anything else is unknown.
    pub fn parse(text: &str) -> Metered {
        match text {
            "yes" => Metered::Yes,
            "no" => Metered::No,
            "guess-yes" => Metered::GuessYes,
            "guess-no" => Metered::GuessNo,
            _ => Metered::Unknown,
        }
    }

    /// In words, for `capwise net`: "probably not metered".
    pub fn describe(self) -> &'static str {
        match self {
            Metered::Yes => "metered",
            Metered::No => "not metered",
            Metered::GuessYes => "probably metered",
            Metered::GuessNo => "probably not metered",
            Metered::Unknown => "not known, treated as not metered",
        }
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
    /// A guess from the kind of device (a cellular modem, Bluetooth or USB
    /// tethering), the same guess from every source.
    DeviceType,
    /// The DHCP vendor option `ANDROID_METERED` in a lease file.
    Dhcp,
    /// The `--network-file`.
    File,
    /// The user marked the network metered or unmetered.
    User,
    /// The network file is invalid: the safer guess, metered, is assumed.
    InvalidFile,
    /// Nobody: the default.
    #[default]
    Default,
}

impl MeteredSource {
    /// How the explanation names the source: "(NetworkManager says so)".
    pub fn says_so(self) -> &'static str {
        match self {
            MeteredSource::NetworkManager => "NetworkManager says so",
            MeteredSource::DeviceType => "guessed from the device type",
            MeteredSource::Dhcp => "the hotspot says so",
            MeteredSource::File => "the network file says so",
            MeteredSource::User => "you said so",
            MeteredSource::InvalidFile => "assumed while the network file is invalid",
            MeteredSource::Default => "nobody says",
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
    /// The metering that counts, with its source: metered when any link on
    /// the path counts as metered. The carrier bills the link under a VPN,
    /// so nobody's "unmetered" on the tunnel can hide a metered link; the
    /// user's "unmetered" on the billed link itself does hold.
    pub fn effective_metered(&self) -> (Metered, MeteredSource) {
        let own = (self.metered, self.metered_source);
        let Some(under) = &self.underlying else {
            return own;
        };
        let below = under.effective_metered();
        let below_known = below.0 != Metered::Unknown;
        if below.0.counts_as_metered() || (!own.0.counts_as_metered() && below_known) {
            below
        } else {
            own
        }
    }

    /// The link the carrier bills: under a VPN, the innermost link the
    /// tunnel runs over; else the network itself. Budgets, usage, schedules
    /// and interface counters belong to it.
    pub fn billed_link(&self) -> &Network {
        let mut link = self;
        while let Some(under) = link.underlying.as_deref() {
            link = under;
        }
        link
    }

    /// The network and every link under it, outermost first.
    pub fn path(&self) -> impl Iterator<Item = &Network> {
        std::iter::successors(Some(self), |n| n.underlying.as_deref())
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

    /// When the source does not know whether the network is metered, the
    /// guess from its kind ([`NetworkKind::metered_guess`]), said as a guess.
    pub fn with_kind_guess(mut self) -> Network {
        let guess = self.kind.metered_guess();
        if self.metered == Metered::Unknown && guess != Metered::Unknown {
            self.metered = guess;
            self.metered_source = MeteredSource::DeviceType;
        }
        self
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

    /// The user's words applied at every level: `word(id)` is what the user
    /// said about the network with that id.
    pub fn with_user_overrides<E>(
        mut self,
        word: &mut impl FnMut(&NetworkId) -> Result<Option<bool>, E>,
    ) -> Result<Network, E> {
        if let Some(under) = self.underlying.take() {
            self.underlying = Some(Box::new(under.with_user_overrides(word)?));
        }
        let said = word(&self.id)?;
        Ok(self.with_user_override(said))
    }

    /// The name for sentences, falling back to the id.
    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            self.id.as_str()
        } else {
            &self.name
        }
    }

    /// The quoted name for sentences, naming the link a person pays for
    /// first: "'Pixel hotspot' (under VPN 'work')", or "'Pixel hotspot'".
    pub fn quoted_name(&self) -> String {
        let billed = self.billed_link();
        if std::ptr::eq(billed, self) {
            format!("'{}'", self.display_name())
        } else {
            format!(
                "'{}' (under VPN '{}')",
                billed.display_name(),
                self.display_name()
            )
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
    fn cellular_and_bluetooth_with_nobody_saying_are_guessed_metered() {
        for kind in [NetworkKind::Cellular, NetworkKind::Bluetooth] {
            let n = Network {
                kind,
                ..net(Metered::Unknown)
            }
            .with_kind_guess();
            assert_eq!(n.metered, Metered::GuessYes, "{kind:?}");
            assert_eq!(n.metered_source.says_so(), "guessed from the device type");
            assert!(n.is_metered());
        }
        let wifi = Network {
            kind: NetworkKind::Wifi,
            ..net(Metered::Unknown)
        }
        .with_kind_guess();
        assert_eq!(wifi.metered, Metered::Unknown);
        // A source's own word is kept.
        let said = Network {
            kind: NetworkKind::Cellular,
            ..net(Metered::No)
        }
        .with_kind_guess();
        assert_eq!(
            (said.metered, said.metered_source),
            (Metered::No, MeteredSource::NetworkManager)
        );
        assert_eq!(Metered::GuessNo.describe(), "probably not metered");
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

    fn vpn_over(link: Network) -> Network {
        Network {
            id: NetworkId::new("work-vpn"),
            name: "work".into(),
            kind: NetworkKind::Vpn,
            metered: Metered::Unknown,
            interface: Some("wg0".into()),
            underlying: Some(Box::new(link)),
            ..Network::default()
        }
    }

    #[test]
    fn the_billed_link_is_the_innermost_and_names_lead_with_it() {
        let mut hotspot = net(Metered::Yes);
        hotspot.id = NetworkId::new("hotspot");
        hotspot.name = "Pixel hotspot".into();
        let inner_vpn = vpn_over(hotspot);
        let mut outer = vpn_over(inner_vpn);
        outer.id = NetworkId::new("outer");
        assert_eq!(outer.billed_link().id.as_str(), "hotspot");
        assert_eq!(
            outer.path().map(|n| n.id.as_str()).collect::<Vec<_>>(),
            ["outer", "work-vpn", "hotspot"]
        );
        let vpn = outer.underlying.unwrap();
        assert_eq!(vpn.quoted_name(), "'Pixel hotspot' (under VPN 'work')");
        assert_eq!(vpn.billed_link().quoted_name(), "'Pixel hotspot'");
    }

    #[test]
    fn unmetered_on_the_tunnel_cannot_hide_a_metered_link_but_the_links_own_word_holds() {
        let mut hotspot = net(Metered::Yes);
        hotspot.id = NetworkId::new("hotspot");
        let words = |vpn_says: Option<bool>, link_says: Option<bool>| {
            move |id: &NetworkId| -> Result<Option<bool>, ()> {
                Ok(if id.as_str() == "hotspot" {
                    link_says
                } else {
                    vpn_says
                })
            }
        };
        let vpn = vpn_over(hotspot.clone())
            .with_user_overrides(&mut words(Some(false), None))
            .unwrap();
        assert!(vpn.is_metered(), "the carrier bills the hotspot");
        assert_eq!(vpn.effective_metered().1, MeteredSource::NetworkManager);

        let vpn = vpn_over(hotspot.clone())
            .with_user_overrides(&mut words(None, Some(false)))
            .unwrap();
        assert!(!vpn.is_metered(), "the user said the hotspot is unmetered");
        assert_eq!(vpn.effective_metered().1, MeteredSource::User);

        let mut free_link = hotspot;
        free_link.metered = Metered::No;
        let vpn = vpn_over(free_link)
            .with_user_overrides(&mut words(Some(true), None))
            .unwrap();
        assert!(vpn.is_metered(), "a tunnel the user pays for is metered");
    }
}
