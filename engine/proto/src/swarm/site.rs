//! Site coordination ("LAN first, WAN once") inside the swarm: the
//! capwise peers of one site (LAN peers that speak `capwise_site`) share
//! the work of fetching over the WAN, so that each piece crosses the
//! branch's WAN link about once, and take the rest from each other.
//!
//! - Runs only after [`Swarm::enable_site`] (the engine's
//!   `TorrentOptions::site_coordination`); only then does our extension
//!   handshake name `capwise_site`, and only to LAN peers.
//! - A *site member* is a connected peer for which [`is_site_member`]
//!   holds: LAN class, named `capwise_site`, and sent a valid message with
//!   its member id. That one predicate is where further conditions (a
//!   proven channel membership) belong.
//! - What members hold comes from their bitfields and `have`s (counted per
//!   piece in `held`); what they fetch over the WAN from their claims
//!   ([`crate::ext::site::SiteMsg`]), each with an expiry (the sender's
//!   ttl, at most [`site::MAX_TTL`]), renewed by the sender every
//!   [`site::RENEW_INTERVAL`] while the fetch goes on, dropped at once
//!   when the member leaves, when it announces the piece, or when a full
//!   list from it no longer names it; a claim older than
//!   [`site::MAX_CLAIM_AGE`] counts no more.
//! - A WAN source (a WAN peer, a WAN web seed) is asked only for pieces
//!   that (a) no member holds, (b) no member claims (of two claims on one
//!   piece, the higher [`site::rank`] wins, on both sides), and (c) are
//!   ours by the split (rendezvous hashing of the piece over our member id
//!   and the members') or already claimed by us; only when a WAN source
//!   has nothing of that kind left does it take unclaimed pieces of other
//!   members' shares (a member that is slow, has no WAN, or left a piece
//!   alone), claiming them first. LAN peers are asked for everything.
//! - Our claims: a piece picked for a WAN source is claimed in the same
//!   step (an increment to every member); every renewal sends the full
//!   list of pieces still in flight over the WAN (requests out at WAN
//!   peers, a WAN web seed's, or verifying), so a fetch that ended frees
//!   its piece within a renewal. A member that joins late gets the full
//!   list at once.
//! - With no member connected the filter is off: exactly the swarm's
//!   behaviour without coordination.
//! - A site-wide WAN rate cap: every message says whether we want WAN
//!   bytes now (`w`: we have WAN fetches in flight, so it turns on with
//!   the first claim and off with the renewal that releases the last);
//!   [`Swarm::site_wan_wanting`] names the members that want (an older
//!   member that sends no `w` always counts), and the engine splits the
//!   cap with [`site::wan_share`] over the members of all its torrents.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use bytes::Bytes;

use super::{Message, Outgoing, Peer, Swarm, Violation};
use crate::bitfield::Bitfield;
use crate::class::PeerClass;
use crate::ext::site::{self, MemberId, SiteMsg};
use crate::picker::PeerKey;

/// The one predicate "is this peer a trusted site member": LAN, speaks
/// `capwise_site`, told us its member id, and, where the torrent requires
/// channel membership, proved it (a rogue LAN peer cannot claim pieces for
/// the site).
fn is_site_member(peer: &Peer, state: &SwarmSite, key: PeerKey) -> bool {
    peer.origin.class == PeerClass::Lan
        && state.members.contains_key(&key)
        && super::member::admitted(&peer.member)
}

/// A member's pieces `has` start (`add`) or stop counting in `held`.
fn count_held(held: &mut [u16], has: &Bitfield, add: bool) {
    for i in has.ones() {
        if let Some(h) = held.get_mut(i as usize) {
            *h = if add {
                h.saturating_add(1)
            } else {
                h.saturating_sub(1)
            };
        }
    }
}

/// A member's live claim on a piece.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// When it lapses unless renewed.
    expires: Instant,
    /// When the member first claimed it (for [`site::MAX_CLAIM_AGE`]).
    since: Instant,
}

#[derive(Debug)]
struct Member {
    id: MemberId,
    claims: HashMap<u32, Claim>,
    /// Its last word on wanting WAN bytes (an older member: always).
    wants_wan: bool,
}

/// The swarm's side of site coordination.
#[derive(Debug, Default)]
pub(super) struct SwarmSite {
    /// Our member id, once enabled.
    id: Option<MemberId>,
    /// LAN peers that named `capwise_site`, with the id they gave it.
    speakers: BTreeMap<PeerKey, u8>,
    /// Site members (see [`is_site_member`]).
    members: BTreeMap<PeerKey, Member>,
    /// How many members hold each piece.
    held: Vec<u16>,
    /// Pieces ours by the split among us and the members.
    mine: Option<Bitfield>,
    /// Claims we announced and stand behind.
    ours: BTreeSet<u32>,
    /// Pieces a WAN web seed is fetching for us.
    seed_held: HashMap<u32, PeerKey>,
    /// When our claims are renewed next (while anyone listens).
    next_renewal: Option<Instant>,
    /// No later than the earliest lapse of a member's claim.
    next_expiry: Option<Instant>,
    /// Until then the split is new (a member came or went): every member
    /// first takes its own share, nobody takes another's.
    settling_until: Option<Instant>,
    /// Until then, with no member connected yet, WAN sources are asked for
    /// nothing ([`site::MEET_TIME`]).
    meeting_until: Option<Instant>,
}

/// How far a WAN source may reach beyond our own share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// Our share by the split, and our claims.
    Own,
    /// Also unclaimed pieces for which we are next in line after the
    /// owner (who is slow, has no WAN, or has not got there).
    Next,
    /// Any piece no member holds or claims.
    Any,
}

impl Reach {
    /// The order a WAN source tries them in.
    pub(super) const ALL: [Reach; 3] = [Reach::Own, Reach::Next, Reach::Any];
}

/// Which pieces a WAN source may be asked for now.
pub(super) struct WanFilter<'a> {
    site: &'a SwarmSite,
    id: MemberId,
    now: Instant,
    reach: Reach,
}

impl WanFilter<'_> {
    /// Whether piece `index` may come over the WAN.
    pub(super) fn allows(&self, index: u32) -> bool {
        let s = self.site;
        if s.held.get(index as usize).copied().unwrap_or(0) > 0 {
            return false;
        }
        let claimed_by_us = s.ours.contains(&index);
        if !claimed_by_us && s.ours.len() >= site::MAX_CLAIMS {
            return false;
        }
        for m in s.members.values() {
            if let Some(c) = m.claims.get(&index) {
                let live =
                    c.expires > self.now && self.now.duration_since(c.since) < site::MAX_CLAIM_AGE;
                let we_win = claimed_by_us && site::rank(self.id, index) > site::rank(m.id, index);
                if live && !we_win {
                    return false;
                }
            }
        }
        if claimed_by_us || s.mine.as_ref().is_some_and(|b| b.has(index)) {
            return true;
        }
        match self.reach {
            Reach::Own => false,
            Reach::Any => true,
            Reach::Next => {
                let owner = site::owner(s.members.values().map(|m| m.id).chain([self.id]), index);
                let rest = s.members.values().map(|m| m.id).chain([self.id]);
                site::owner(rest.filter(|&m| Some(m) != owner), index) == Some(self.id)
            }
        }
    }
}

impl SwarmSite {
    /// Whether coordination runs.
    pub(super) fn enabled(&self) -> bool {
        self.id.is_some()
    }

    /// The filter for a WAN source, `None` when no member is connected
    /// (then WAN sources are asked as without coordination).
    /// `None` also for a reach beyond our own while the split settles.
    pub(super) fn wan_filter(&self, now: Instant, reach: Reach) -> Option<WanFilter<'_>> {
        let id = self.id?;
        if self.members.is_empty()
            || (reach != Reach::Own && self.settling_until.is_some_and(|t| now < t))
        {
            return None;
        }
        Some(WanFilter {
            site: self,
            id,
            now,
            reach,
        })
    }

    /// Whether a filter applies at all (some member is connected).
    pub(super) fn active(&self) -> bool {
        self.id.is_some() && !self.members.is_empty()
    }
}

impl Swarm {
    /// Coordinate WAN fetching with this torrent's site members, under
    /// member id `id` (random per torrent and session; the engine's
    /// `TorrentOptions::site_coordination`). Call it before adding peers.
    pub fn enable_site(&mut self, id: MemberId) {
        self.site.id = Some(id);
        self.site.held = vec![0; self.picker.piece_count() as usize];
        self.site.meeting_until = Some(self.last_tick + site::MEET_TIME);
    }

    /// Whether WAN sources wait for the site to meet: coordination has just
    /// started and no member is connected yet.
    pub(super) fn site_meeting(&self, now: Instant) -> bool {
        self.site.members.is_empty() && self.site.meeting_until.is_some_and(|t| now < t)
    }

    /// Whether site coordination runs for this torrent.
    pub fn site_enabled(&self) -> bool {
        self.site.id.is_some()
    }

    /// Connected site members.
    pub fn site_members(&self) -> usize {
        self.site.members.len()
    }

    /// The site members that want WAN bytes now, by their last message
    /// (one without `w`, from an older member, counts as wanting): those
    /// a site-wide WAN rate cap is split among, besides us.
    pub fn site_wan_wanting(&self) -> Vec<PeerKey> {
        self.site
            .members
            .iter()
            .filter(|(key, m)| {
                m.wants_wan
                    && self
                        .peers
                        .get(key)
                        .is_some_and(|p| is_site_member(p, &self.site, **key))
            })
            .map(|(&key, _)| key)
            .collect()
    }

    /// Whether we want WAN bytes for this torrent now: we have WAN fetches
    /// in flight (claims we stand behind; a finished one leaves at once,
    /// the others hear of it at the next renewal).
    pub fn site_wants_wan(&self) -> bool {
        self.site.enabled() && !self.site.ours.is_empty()
    }

    /// Whether our extension handshake to a peer of `class` names
    /// `capwise_site`: to LAN peers only, and only when enabled.
    pub(super) fn site_offered(&self, class: PeerClass) -> bool {
        self.site_enabled() && class == PeerClass::Lan
    }

    /// The peer's extension handshake: a LAN peer naming `capwise_site`
    /// is greeted with our full list of claims.
    pub(super) fn site_handshake(&mut self, key: PeerKey, payload: &[u8], now: Instant) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if !self.site_offered(peer.origin.class) {
            return;
        }
        match crate::wire::extension::peer_extension_id(payload, site::EXTENSION_NAME) {
            Some(id) => {
                self.site.speakers.insert(key, id);
                self.site.ours = self.site_in_flight();
                if !self.site.ours.is_empty() {
                    self.site
                        .next_renewal
                        .get_or_insert(now + site::RENEW_INTERVAL);
                }
                let msg = self.site_msg(true, self.site.ours.iter().copied().collect());
                self.site_send(key, &msg);
            }
            None => {
                self.site.speakers.remove(&key);
            }
        }
    }

    /// A `capwise_site` message from `key`. Ignored from a peer we did not
    /// offer it to; an error drops the peer.
    pub(super) fn site_message(
        &mut self,
        key: PeerKey,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), Violation> {
        let Some(our_id) = self.site.id else {
            return Ok(());
        };
        if !self.site.speakers.contains_key(&key) {
            return Ok(());
        }
        let msg = SiteMsg::decode(payload, self.picker.piece_count())
            .map_err(|e| Violation(e.to_string()))?;
        let Some(peer) = self.peers.get(&key) else {
            return Ok(());
        };
        // A peer that has not proved channel membership (where the torrent
        // requires it) is no member: its claims and pieces count for nothing
        // until it has; its next full list (every few seconds) then counts.
        if !super::member::admitted(&peer.member) {
            return Ok(());
        }
        match self.site.members.get(&key) {
            Some(m) if m.id != msg.member => {
                return Err(Violation("capwise_site: the member id changed".into()));
            }
            Some(_) => {}
            None => {
                if msg.member == our_id {
                    return Ok(()); // our own echo
                }
                let known = self
                    .site
                    .members
                    .iter()
                    .find(|(_, m)| m.id == msg.member)
                    .map(|(&k, _)| k);
                if let Some(old) = known {
                    // A second connection of a known member: admission let
                    // it in because it replaces the first (both sides
                    // dialled, or the member moved). The member, its claims
                    // and the split stay as they are; only the connection
                    // changes, so nothing it was fetching is freed.
                    self.site_member_moved(old, key);
                    return self.site_message(key, payload, now);
                }
                count_held(&mut self.site.held, &peer.has, true);
                // The site met: a member that leaves later does not bring
                // the wait back.
                self.site.meeting_until = None;
                self.site.members.insert(
                    key,
                    Member {
                        id: msg.member,
                        claims: HashMap::new(),
                        wants_wan: true,
                    },
                );
                self.site_split_changed(now);
            }
        }
        let has = &self.peers.get(&key).expect("looked up above").has;
        let member = self.site.members.get_mut(&key).expect("inserted above");
        member.wants_wan = msg.wants_wan.unwrap_or(true);
        let ttl = std::time::Duration::from_secs(msg.ttl_secs.into()).min(site::MAX_TTL);
        let expires = now + ttl;
        let before = member.claims.len();
        if msg.full {
            let named: BTreeSet<u32> = msg.claims.iter().copied().collect();
            member.claims.retain(|i, _| named.contains(i));
        }
        let kept = member.claims.len();
        for &i in &msg.claims {
            if has.has(i) {
                continue;
            }
            let since = member.claims.get(&i).map_or(now, |c| c.since);
            member.claims.insert(i, Claim { expires, since });
        }
        if member.claims.len() > site::MAX_CLAIMS {
            return Err(Violation(format!(
                "capwise_site: more than {} claims",
                site::MAX_CLAIMS
            )));
        }
        // Claims given up free pieces for our WAN sources.
        self.refill |= kept < before;
        if !msg.claims.is_empty() {
            self.site.next_expiry = Some(self.site.next_expiry.map_or(expires, |t| t.min(expires)));
        }
        Ok(())
    }

    /// Peer `key` announced piece `index`.
    pub(super) fn site_peer_has(&mut self, key: PeerKey, index: u32) {
        if let Some(m) = self.site.members.get_mut(&key) {
            m.claims.remove(&index);
            if let Some(h) = self.site.held.get_mut(index as usize) {
                *h = h.saturating_add(1);
            }
        }
    }

    /// Peer `key` turned out to lack piece `index` after all.
    pub(super) fn site_peer_lacks(&mut self, key: PeerKey, index: u32) {
        if self.site.members.contains_key(&key) {
            if let Some(h) = self.site.held.get_mut(index as usize) {
                *h = h.saturating_sub(1);
                self.refill = true;
            }
        }
    }

    /// Peer `key` sent its first full account of its pieces.
    pub(super) fn site_peer_pieces(&mut self, key: PeerKey) {
        if !self.site.members.contains_key(&key) {
            return;
        }
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        count_held(&mut self.site.held, &peer.has, true);
    }

    /// Site member `old` goes on over connection `new` (a replacement):
    /// what the old connection held counts no more, what the new one holds
    /// does.
    fn site_member_moved(&mut self, old: PeerKey, new: PeerKey) {
        let Some(member) = self.site.members.remove(&old) else {
            return;
        };
        if let Some(peer) = self.peers.get(&old) {
            count_held(&mut self.site.held, &peer.has, false);
        }
        if let Some(peer) = self.peers.get(&new) {
            count_held(&mut self.site.held, &peer.has, true);
        }
        self.site.members.insert(new, member);
    }

    /// Peer `key` (with pieces `has`) left: its claims go, its share is
    /// split among those who stay.
    pub(super) fn site_peer_gone(&mut self, key: PeerKey, has: &Bitfield) {
        let now = self.last_tick;
        self.site.speakers.remove(&key);
        if self.site.members.remove(&key).is_some() {
            count_held(&mut self.site.held, has, false);
            self.site_split_changed(now);
        }
        if self.site.speakers.is_empty() {
            self.site.next_renewal = None;
        }
    }

    /// A site member is unchoked whatever the choker says (while uploads
    /// are allowed): LAN members are asked for everything they hold.
    pub(super) fn site_always_unchoked(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|p| p.peer_interested && is_site_member(p, &self.site, key))
    }

    /// Pieces were picked for a WAN source: claim them (an increment to
    /// everyone listening) in the same step.
    pub(super) fn site_claim(&mut self, pieces: &[u32]) {
        if self.site.speakers.is_empty() {
            return;
        }
        let new: Vec<u32> = pieces
            .iter()
            .copied()
            .filter(|&i| self.site.ours.insert(i))
            .collect();
        if new.is_empty() {
            return;
        }
        // Renewals run while we claim anything (an idle seed has no timer).
        let renew_at = self.last_tick + site::RENEW_INTERVAL;
        self.site.next_renewal.get_or_insert(renew_at);
        let msg = self.site_msg(false, new);
        let keys: Vec<PeerKey> = self.site.speakers.keys().copied().collect();
        for key in keys {
            self.site_send(key, &msg);
        }
    }

    /// A WAN web seed took `pieces` / let go of one.
    pub(super) fn site_seed_took(&mut self, key: PeerKey, pieces: &[u32]) {
        if self.site.id.is_none() {
            return;
        }
        for &i in pieces {
            self.site.seed_held.insert(i, key);
        }
        self.site_claim(pieces);
    }

    pub(super) fn site_seed_dropped(&mut self, index: Option<u32>, key: PeerKey) {
        match index {
            Some(i) => {
                self.site.seed_held.remove(&i);
            }
            None => self.site.seed_held.retain(|_, k| *k != key),
        }
    }

    /// We verified piece `index`: our `have` ends our claim.
    pub(super) fn site_piece_had(&mut self, index: u32) {
        self.site.ours.remove(&index);
        self.site.seed_held.remove(&index);
    }

    /// Our claims are to be renewed at the next tick (the WAN window shut:
    /// what we can no longer fetch is released, and `w` says 0).
    pub(super) fn site_renew_now(&mut self, now: Instant) {
        if self.site.enabled() && !self.site.speakers.is_empty() {
            self.site.next_renewal = Some(now);
        }
    }

    /// The next instant site coordination has timed work.
    pub(super) fn site_timeout(&self) -> Option<Instant> {
        [
            self.site.next_renewal,
            self.site.next_expiry,
            self.site.settling_until,
            self.site.meeting_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timed work: renew our claims, let members' claims lapse.
    pub(super) fn site_tick(&mut self, now: Instant) {
        if self.site.meeting_until.is_some_and(|t| t <= now) {
            // Alone or not, the WAN sources may go on now.
            self.site.meeting_until = None;
            self.refill = true;
        }
        if self.site.settling_until.is_some_and(|t| t <= now) {
            // Others' shares are open to our WAN sources from now on.
            self.site.settling_until = None;
            self.refill = true;
        }
        if self.site.next_expiry.is_some_and(|t| t <= now) {
            let mut next: Option<Instant> = None;
            let mut lapsed = false;
            for m in self.site.members.values_mut() {
                m.claims.retain(|_, c| {
                    let live = c.expires > now && now.duration_since(c.since) < site::MAX_CLAIM_AGE;
                    if live {
                        let end = c.expires.min(c.since + site::MAX_CLAIM_AGE);
                        next = Some(next.map_or(end, |t| t.min(end)));
                    }
                    lapsed |= !live;
                    live
                });
            }
            self.site.next_expiry = next;
            self.refill |= lapsed;
        }
        if self.site.next_renewal.is_some_and(|t| t <= now) {
            let live = self.site_in_flight();
            // An empty list goes out once (it releases everything), then
            // renewals stop until we claim again.
            self.site.next_renewal = (!live.is_empty()).then_some(now + site::RENEW_INTERVAL);
            self.site.ours = live;
            let msg = self.site_msg(true, self.site.ours.iter().copied().collect());
            let keys: Vec<PeerKey> = self.site.speakers.keys().copied().collect();
            for key in keys {
                self.site_send(key, &msg);
            }
        }
    }

    /// Pieces we fetch over the WAN now: requests out at WAN peers (sent
    /// or waiting for credit), a WAN web seed's, or a claimed piece being
    /// verified.
    fn site_in_flight(&self) -> BTreeSet<u32> {
        let mut pieces: BTreeSet<u32> = self.site.seed_held.keys().copied().collect();
        for p in self.peers.values() {
            if p.origin.class == PeerClass::Wan {
                pieces.extend(p.outstanding.keys().chain(p.unsent.iter()).map(|b| b.index));
            }
        }
        pieces.extend(
            self.site
                .ours
                .iter()
                .copied()
                .filter(|&i| self.picker.is_verifying(i)),
        );
        pieces.retain(|&i| !self.have.has(i));
        pieces.into_iter().take(site::MAX_CLAIMS).collect()
    }

    fn site_msg(&self, full: bool, claims: Vec<u32>) -> Bytes {
        let msg = SiteMsg {
            member: self.site.id.unwrap_or_default(),
            ttl_secs: site::CLAIM_TTL.as_secs() as u32,
            full,
            claims,
            // Sent after `ours` was brought up to date.
            wants_wan: Some(!self.site.ours.is_empty()),
        };
        Bytes::from(msg.encode())
    }

    fn site_send(&mut self, key: PeerKey, payload: &Bytes) {
        let (Some(&id), Some(peer)) = (self.site.speakers.get(&key), self.peers.get_mut(&key))
        else {
            return;
        };
        peer.outbox.push_back(Outgoing::Message(Message::Extended {
            id,
            payload: payload.clone(),
        }));
        self.dirty.push(key);
    }

    /// The member set changed: the split is computed again, and WAN
    /// sources may be asked for other pieces.
    fn site_split_changed(&mut self, now: Instant) {
        self.refill = true;
        self.site.settling_until = Some(now + site::SETTLE_TIME);
        let Some(our_id) = self.site.id else {
            return;
        };
        if self.site.members.is_empty() {
            self.site.mine = None;
            return;
        }
        let count = self.picker.piece_count();
        let mut mine = Bitfield::new(count);
        let ids: Vec<MemberId> = self.site.members.values().map(|m| m.id).collect();
        for i in 0..count {
            if site::owner(ids.iter().copied().chain([our_id]), i) == Some(our_id) {
                mine.set(i);
            }
        }
        self.site.mine = Some(mine);
    }
}
