//! The subscriber's step: from what it holds and a verified manifest to
//! what it must do. Pure, so the agent's poller only carries it out.
//!
//! Rules: an offered item not held is added; a retired item held is
//! removed, its data kept unless the manifest's entry says
//! `delete_data`; an item that merely disappears from the list (neither
//! offered nor retired) is kept, since only an explicit retirement removes
//! anything. Items the subscriber holds for other reasons are never
//! touched: `held` lists only what this subscription added.
//!
//! One sequence number names one body: the state keeps the SHA-256 of the
//! body it accepted, and the same sequence with other bytes is refused
//! ([`ChannelError::Fork`]), while the same bytes again are a no-op.

use std::collections::BTreeSet;

use url::Url;

use crate::{
    verify_with_digest, BodyDigest, ChannelError, Item, Manifest, PublicKey, Retired, Trust,
};

/// What a subscription remembers between polls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionState {
    /// Sequence of the last accepted manifest.
    pub last_sequence: Option<u64>,
    /// Info-hashes (lower-case hex) this subscription added and still holds.
    pub held: BTreeSet<String>,
    /// SHA-256 of the body accepted at `last_sequence`.
    pub digest: Option<BodyDigest>,
}

/// What to do after accepting a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actions {
    /// Items to add, in manifest order.
    pub add: Vec<Item>,
    /// Held items to remove, in manifest order.
    pub remove: Vec<Retired>,
}

impl Actions {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The actions for `manifest` (already verified) given `state`, and the
/// state once they are all carried out (its `digest` is the old one: only
/// [`accept`] knows the body's). A caller that fails an action records the
/// held set it actually reached instead.
pub fn step(state: &SubscriptionState, manifest: &Manifest) -> (Actions, SubscriptionState) {
    let add: Vec<Item> = manifest
        .items
        .iter()
        .filter(|item| !state.held.contains(&item.info_hash))
        .cloned()
        .collect();
    let remove: Vec<Retired> = manifest
        .retired
        .iter()
        .filter(|retired| state.held.contains(&retired.info_hash))
        .cloned()
        .collect();
    let mut held = state.held.clone();
    for retired in &remove {
        held.remove(&retired.info_hash);
    }
    held.extend(add.iter().map(|item| item.info_hash.clone()));
    let next = SubscriptionState {
        last_sequence: Some(
            state
                .last_sequence
                .map_or(manifest.sequence, |last| last.max(manifest.sequence)),
        ),
        held,
        digest: state.digest,
    };
    (Actions { add, remove }, next)
}

/// [`verify()`] against the state's last sequence, the fork check (the
/// last sequence again must be the same body), then [`step`]. On a refusal
/// the caller keeps `state` as it is.
pub fn accept(
    state: &SubscriptionState,
    bytes: &[u8],
    key: &PublicKey,
    manifest_url: &Url,
    now: u64,
) -> Result<(Manifest, Actions, SubscriptionState), ChannelError> {
    let (manifest, digest) = verify_with_digest(
        bytes,
        &Trust {
            key,
            manifest_url,
            last_sequence: state.last_sequence,
            now,
        },
    )?;
    if state.last_sequence == Some(manifest.sequence)
        && state.digest.is_some_and(|held| held != digest)
    {
        return Err(ChannelError::Fork {
            sequence: manifest.sequence,
        });
    }
    let (actions, mut next) = step(state, &manifest);
    if next.last_sequence == Some(manifest.sequence) {
        next.digest = Some(digest);
    }
    Ok((manifest, actions, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChannelKey;

    const NOW: u64 = 1_800_000_000;

    fn item(n: u8) -> Item {
        Item {
            info_hash: hex::encode([n; 20]),
            name: format!("f{n}"),
            size: 1,
            torrent: format!("f{n}.torrent"),
            web_seeds: vec![],
        }
    }

    fn manifest(sequence: u64, items: &[u8], retired: &[(u8, bool)]) -> Manifest {
        Manifest {
            channel: ChannelKey::from_seed([1; 32]).public().to_hex(),
            name: "c".into(),
            sequence,
            published: NOW,
            expires: NOW + 60,
            items: items.iter().map(|n| item(*n)).collect(),
            retired: retired
                .iter()
                .map(|(n, delete_data)| Retired {
                    info_hash: hex::encode([*n; 20]),
                    delete_data: *delete_data,
                })
                .collect(),
            report: None,
            membership: None,
        }
    }

    #[test]
    fn first_manifest_adds_everything() {
        let (actions, next) = step(&SubscriptionState::default(), &manifest(1, &[1, 2], &[]));
        assert_eq!(actions.add, vec![item(1), item(2)]);
        assert!(actions.remove.is_empty());
        assert_eq!(next.last_sequence, Some(1));
        assert_eq!(next.held.len(), 2);
    }

    #[test]
    fn a_new_version_adds_the_changed_item_and_retires_the_old_one() {
        let (_, held) = step(&SubscriptionState::default(), &manifest(1, &[1, 2], &[]));
        let (actions, next) = step(&held, &manifest(2, &[1, 3], &[(2, false), (7, true)]));
        assert_eq!(actions.add, vec![item(3)]);
        // 7 was never held by this subscription: not touched.
        assert_eq!(actions.remove.len(), 1);
        assert!(!actions.remove[0].delete_data);
        assert_eq!(
            next.held,
            [1u8, 3].iter().map(|n| hex::encode([*n; 20])).collect()
        );
        // The same manifest again does nothing.
        let (again, same) = step(&next, &manifest(2, &[1, 3], &[(2, false)]));
        assert!(again.is_empty());
        assert_eq!(same, next);
    }

    #[test]
    fn an_item_that_disappears_without_retirement_is_kept() {
        let (_, held) = step(&SubscriptionState::default(), &manifest(1, &[1, 2], &[]));
        let (actions, next) = step(&held, &manifest(2, &[1], &[]));
        assert!(actions.is_empty());
        assert_eq!(next.held, held.held);
    }

    #[test]
    fn the_same_sequence_with_another_body_is_a_fork() {
        let key = ChannelKey::from_seed([1; 32]);
        let url = Url::parse("http://hq/ch/manifest.json").unwrap();
        let first = manifest(5, &[1, 2], &[]).sign(&key).unwrap();
        let (_, actions, state) = accept(
            &SubscriptionState::default(),
            &first,
            &key.public(),
            &url,
            NOW,
        )
        .unwrap();
        assert_eq!(actions.add.len(), 2);
        assert!(state.digest.is_some());
        // The same bytes again: accepted, nothing to do, the same state.
        let (_, again, same) = accept(&state, &first, &key.public(), &url, NOW).unwrap();
        assert!(again.is_empty());
        assert_eq!(same, state);
        // The same body in a reformatted envelope is the same publication.
        let text = String::from_utf8(first.clone()).unwrap();
        let compact: serde_json::Value = serde_json::from_str(&text).unwrap();
        let reformatted = serde_json::to_vec(&compact).unwrap();
        assert_ne!(reformatted, first);
        assert!(accept(&state, &reformatted, &key.public(), &url, NOW).is_ok());
        // Sequence 5 signed again with other items: refused, nothing changes.
        let fork = manifest(5, &[3], &[(1, true)]).sign(&key).unwrap();
        assert_eq!(
            accept(&state, &fork, &key.public(), &url, NOW),
            Err(ChannelError::Fork { sequence: 5 })
        );
        // A newer sequence moves on, with its own digest.
        let next = manifest(6, &[3], &[(1, false)]).sign(&key).unwrap();
        let (_, actions, newer) = accept(&state, &next, &key.public(), &url, NOW).unwrap();
        assert_eq!(actions.add, vec![item(3)]);
        assert_eq!(actions.remove.len(), 1);
        assert_eq!(newer.last_sequence, Some(6));
        assert_ne!(newer.digest, state.digest);
        // And the old sequence 5 is now a rollback, whichever body.
        assert!(matches!(
            accept(&newer, &first, &key.public(), &url, NOW),
            Err(ChannelError::Rollback { .. })
        ));
    }

    #[test]
    fn a_state_without_a_digest_takes_the_body_it_sees() {
        // A state stored before digests were kept: the same sequence is
        // accepted once and pins its body from then on.
        let key = ChannelKey::from_seed([1; 32]);
        let url = Url::parse("http://hq/ch/manifest.json").unwrap();
        let old = SubscriptionState {
            last_sequence: Some(5),
            ..SubscriptionState::default()
        };
        let bytes = manifest(5, &[1], &[]).sign(&key).unwrap();
        let (_, _, state) = accept(&old, &bytes, &key.public(), &url, NOW).unwrap();
        assert!(state.digest.is_some());
        let fork = manifest(5, &[2], &[]).sign(&key).unwrap();
        assert!(accept(&state, &fork, &key.public(), &url, NOW).is_err());
    }

    #[test]
    fn nothing_changes_on_refusal() {
        let key = ChannelKey::from_seed([1; 32]);
        let url = Url::parse("http://hq/ch/manifest.json").unwrap();
        let (_, _, state) = accept(
            &SubscriptionState::default(),
            &manifest(5, &[1], &[]).sign(&key).unwrap(),
            &key.public(),
            &url,
            NOW,
        )
        .expect("accepted");
        let before = state.clone();
        let refusals = [
            manifest(4, &[2], &[(1, true)]).sign(&key).unwrap(), // rollback
            b"garbage".to_vec(),
        ];
        for bytes in refusals {
            assert!(accept(&state, &bytes, &key.public(), &url, NOW).is_err());
            assert_eq!(state, before);
        }
        // Expired, and wrong key.
        let bytes = manifest(6, &[2], &[(1, true)]).sign(&key).unwrap();
        assert!(accept(&state, &bytes, &key.public(), &url, NOW + 60).is_err());
        let other = ChannelKey::from_seed([3; 32]).public();
        assert!(accept(&state, &bytes, &other, &url, NOW).is_err());
        assert_eq!(state, before);
    }
}
